"""Shared pytest setup, a tiny EchoNet-Dynamic array_record build for the builder and
pipeline tests, and the smoke MCSDR run trained once per test session (shared by the
xdist workers) for the tests that read a trained run."""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import traceback
from typing import NamedTuple
import warnings

from absl import flags
from absl import logging
import pytest

import tests


def pytest_configure(config):
  del config   # Markers are registered in pyproject.toml.
  # grain reads absl flags in worker processes (worker_count > 0); under pytest
  # they are never parsed, which raises UnparsedFlagAccessError (kauldron's fix).
  flags.FLAGS.mark_as_parsed()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()


@pytest.fixture
def x64():
  """Enables float64 for one test and restores the previous setting."""
  import jax  # pylint: disable=g-import-not-at-top
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", old)


#: Built frame size of the tiny dataset (fixture videos are 112 x 112).
TINY_SIZE = 32
#: Fixture video index -> corruption ('truncated': second half of the bytes cut; 'garbage').
TINY_CORRUPT = {4: "truncated", 7: "garbage"}


@dataclasses.dataclass
class TinyDynamic:
  root: pathlib.Path          # the manual_dir
  data_dir: pathlib.Path      # where the array_record dataset was built
  fixture: object             # tests.fixtures.DynamicFixture
  builder: object             # the built tfds builder
  keys: dict[str, list[str]]  # split -> keys of the videos expected in it, in order


@pytest.fixture(scope="session")
def tiny_dynamic(tmp_path_factory) -> TinyDynamic:
  """8 EchoNet-Dynamic videos (split TRAIN/TRAIN/VAL/TEST cyclic, video 2 is 80 x 128),
  video 4 truncated and video 7 not an AVI, built at 32 x 32."""
  from cardiac_data import builders  # pylint: disable=g-import-not-at-top
  from tests import fixtures  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("echonet_dynamic")
  fx = fixtures.write_echonet_dynamic(root, num_videos=8, sizes={2: (80, 128)})
  names = list(fx.expected)
  for i, kind in TINY_CORRUPT.items():
    path = root / "Videos" / f"{names[i]}.avi"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if kind == "truncated" else b"not an avi" * 50)
  keys = {s: [k for i, k in enumerate(names)
              if fx.expected[k]["split"] == s and i not in TINY_CORRUPT]
          for s in ("train", "val", "test")}
  data_dir = tmp_path_factory.mktemp("tfds")
  builder = builders.build("echonet_dynamic", root, data_dir, size=TINY_SIZE)
  return TinyDynamic(root, data_dir, fx, builder, keys)


# --------------------------------------------------------------- launchers and a trained run

EIGHT_DEVICES = "--xla_force_host_platform_device_count=8"


def launcher_env(devices: int = 1, **extra) -> dict[str, str]:
  """The environment of a launcher subprocess: CPU, `devices` host devices (1 or 8)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  xla = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join(xla + ([EIGHT_DEVICES] if devices == 8 else []))
  return env


def run_module(module, *args, cache, devices: int = 1):
  """`python -m module args` from the repository root, CARDIAC_DATA_CACHE=cache."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=str(tests.ROOT),
                        env=launcher_env(devices, CARDIAC_DATA_CACHE=str(cache)),
                        capture_output=True, text=True, timeout=900)


def launcher_error(monkeypatch, module, *args, cache, main=None) -> str:
  """`python -m MODULE ARGS` run in this process as absl's `app.run` runs it (the flags
  parsed from sys.argv, then `main`, or the given `main(argv)` for a launcher whose own
  flags are defined in its __main__ block only), which must fail: the traceback it stops
  with (what the subprocess prints on stderr).

  Afterwards absl's flags are as before: the config overrides (--config.a.b) the parse
  registered removed, every flag at its default and marked parsed (pytest_configure),
  main's log filter (launch.logs.quiet_libraries) taken off.
  """
  mod = importlib.import_module(module)   # launch.train defines --config, --workdir here
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(cache))
  # This process's JAX has started: its device count cannot change, and the launchers
  # leave an explicit count alone (training.sharding.configure_cpu_devices).
  monkeypatch.setenv("XLA_FLAGS", launcher_env(1)["XLA_FLAGS"] +
                     " --xla_force_host_platform_device_count=1")
  monkeypatch.chdir(tests.ROOT)
  argv = [module, *args]
  monkeypatch.setattr(sys, "argv", argv)     # ml_collections reads --config.a.b from there
  defined = set(flags.FLAGS)
  log_filters = list(logging.get_absl_handler().filters)
  try:
    with pytest.raises(Exception) as info, warnings.catch_warnings():
      # ml_collections loads the config file with importlib's load_module (deprecated).
      warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
      (main or mod.main)(flags.FLAGS(argv))
  finally:
    for name in set(flags.FLAGS) - defined:
      delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    flags.FLAGS.mark_as_parsed()
    logging.get_absl_handler().filters[:] = log_filters
  return "".join(traceback.format_exception(info.value))


def session_dir(tmp_path_factory) -> pathlib.Path:
  """A folder of this test session that every xdist worker sees (the workers' base temp
  dirs are its children); the session's own base temp dir without xdist."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> pathlib.Path:
  """CARDIAC_DATA_CACHE of the configs/pediatric.py:smoke runs, one per session (shared by
  the xdist workers: cohort generation and TFDS builds take their own file locks)."""
  path = session_dir(tmp_path_factory) / "smoke_cache"
  path.mkdir(exist_ok=True)
  return path


class SmokeRun(NamedTuple):
  workdir: pathlib.Path   # this worker's copy of the run's workdir
  cache: pathlib.Path     # the CARDIAC_DATA_CACHE it trained with
  stderr: str             # the launcher's stderr


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_cache) -> SmokeRun:
  """`launch.train --config=configs/pediatric.py:smoke` (no forced host device count),
  trained once per session: the first xdist worker to ask trains it (the others wait on a
  file lock) and each worker gets its own copy of the workdir (tests write into it, e.g.
  launch.sample)."""
  from cardiac_data.synthetic import cache as cache_lib  # pylint: disable=g-import-not-at-top
  shared = session_dir(tmp_path_factory) / "smoke_run"
  with cache_lib.file_lock(session_dir(tmp_path_factory) / "smoke_run.lock"):
    if not (shared / "result.json").exists():
      shared.mkdir(exist_ok=True)
      proc = run_module("launch.train", "--config=configs/pediatric.py:smoke",
                        f"--workdir={shared / 'run'}", cache=smoke_cache)
      (shared / "result.json").write_text(json.dumps(
          {"returncode": proc.returncode, "stderr": proc.stderr}))
  result = json.loads((shared / "result.json").read_text())
  assert result["returncode"] == 0, result["stderr"][-3000:]
  workdir = tmp_path_factory.mktemp("smoke_run") / "run"
  shutil.copytree(shared / "run", workdir)
  return SmokeRun(workdir, smoke_cache, result["stderr"])
