"""Shared pytest setup, and a tiny EchoNet-Dynamic array_record build for the
builder and pipeline tests."""
from __future__ import annotations

import dataclasses
import pathlib

from absl import flags
import pytest


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
