"""Data parallelism on 8 faked CPU devices against one device (issue: accelerator scale).

The 8-device checks run in subprocesses (the device count is fixed when JAX starts):
tests/multidevice_worker.py for the train step, sampling and a sharded checkpoint,
and `launch.train` on configs/pediatric.py:smoke (against the session's smoke run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from cardiac_data import host
from training import checkpoint as checkpoint_lib
from training import loop
from training import sharding
from tests.conftest import launcher_env
from tests.conftest import run_module
import tests

ROOT = str(tests.ROOT)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  out = tmp_path_factory.mktemp("multidevice")
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_worker.py"),
                         str(out)], cwd=ROOT, env=launcher_env(8), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_sharded_train_steps_equal_one_device(worker):
  _, r = worker
  assert r["devices"] == 8
  t = r["train"]
  np.testing.assert_allclose(t["loss_8"], t["loss_1"], rtol=1e-5)
  np.testing.assert_allclose(t["loss_8_fsdp"], t["loss_1"], rtol=1e-5)
  assert t["param_diff"] < 1e-5 and t["param_diff_fsdp"] < 1e-5
  assert r["fsdp_sharded_leaves"] > 0          # the switch really split some leaves


@pytest.mark.slow
@pytest.mark.parametrize("label", ["sample_ddim10", "sample_pf_ode_heun8"])
def test_sharded_sampling_equals_unsharded(worker, label):
  s = worker[1][label]
  assert s["shape"] == [6, 5]                  # 6 cases padded to 8 devices, cut back
  assert s["spread"] > 0.05 and s["diff"] < 1e-5


@pytest.mark.slow
def test_checkpoint_from_8_devices_restores_on_1(worker):
  out, _ = worker
  assert jax.device_count() == 1
  from tests import multidevice_worker as mw  # pylint: disable=g-import-not-at-top
  cfg = mw.config(shard_min=64)
  template, _, _ = loop.init_state(mw.TinyTask(), cfg, jax.random.key(1), sharding.make_mesh())
  ckpts = checkpoint_lib.Checkpoints(str(out / "ckpt"), keep=1)
  restored, meta = ckpts.restore(template)
  ckpts.close()
  assert int(restored["step"]) == 3 and meta["config"]["sharding"]["shard_params_min_size"] == 64
  saved = np.load(out / "ckpt_params.npz")
  leaves = jax.tree.leaves(restored["params"])
  assert len(leaves) == len(saved.files)
  for i, leaf in enumerate(leaves):
    np.testing.assert_array_equal(np.asarray(leaf), saved[f"arr_{i}"])
  # Without a template (launch.predict / launch.sample, config.model.pretrained): the
  # arrays come back on this process's one CPU device.
  ckpts = checkpoint_lib.Checkpoints(str(out / "ckpt"), keep=1)
  arrays, _ = ckpts.restore_arrays("last")
  ckpts.close()
  for i, leaf in enumerate(jax.tree.leaves(arrays["params"])):
    assert len(leaf.sharding.device_set) == 1
    np.testing.assert_array_equal(np.asarray(leaf), saved[f"arr_{i}"])


def test_batch_size_not_divisible_is_a_clear_error():
  mesh = sharding.make_mesh()
  sharding.check_batch_size(8, mesh)
  with pytest.raises(ValueError, match=r"config.data.batch_size=6 .* 4 devices"):
    sharding.check_batch_size(6, type("M", (), {"shape": {"data": 4}})())


@pytest.mark.slow
def test_launch_train_smoke_on_8_devices_matches_1(tmp_path, smoke_run):
  """The smoke config on 8 devices against the session's smoke run (tests/conftest.py: the
  same command without a forced device count), with the same data cache."""
  workdir = tmp_path / "run8"
  proc = run_module("launch.train", "--config=configs/pediatric.py:smoke",
                    f"--workdir={workdir}", cache=smoke_run.cache, devices=8)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "data parallel over 8 devices" in proc.stderr
  metrics = {devices: json.loads((w / "metrics.json").read_text())
             for devices, w in ((1, smoke_run.workdir), (8, workdir))}
  _assert_same(metrics[8], metrics[1])


def _assert_same(got, want, path="metrics"):
  """Same keys and structure; floats equal up to float32 summation order."""
  if isinstance(want, dict):
    assert isinstance(got, dict) and got.keys() == want.keys(), path
    for k in want:
      _assert_same(got[k], want[k], f"{path}/{k}")
  elif isinstance(want, float):
    assert got == pytest.approx(want, rel=1e-4, abs=1e-4), path
  elif isinstance(want, list):
    assert len(got) == len(want), path
    for i, (g, w) in enumerate(zip(got, want)):
      _assert_same(g, w, f"{path}[{i}]")
  else:
    assert got == want, path


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state():
  """Mixed precision by config (model.dtype): the encoder computes in bf16, parameters,
  gradients and AdamW moments stay float32, and the loss is close to float32's."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tests import multidevice_worker as mw  # pylint: disable=g-import-not-at-top
  cfg = mw.config()
  cfg.optim.name = "adamw"
  losses = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    task = mw.TinyTask()
    task.model = task.model.clone(conditioner_kwargs=dict(task.model.conditioner_kwargs,
                                                          dtype=dtype))
    state, tx, _ = loop.init_state(task, cfg, jax.random.key(0), sharding.make_mesh())
    state, metrics = jax.jit(lambda s, b: loop.train_step_fn(task.loss, tx, 0.0, s, b))(
        state, mw.batch())
    dtypes = {x.dtype for x in jax.tree.leaves((state["params"], state["opt_state"]))
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}, (dtype, dtypes)
    losses[jnp.dtype(dtype).name] = float(metrics["loss"])
  assert np.isfinite(losses["bfloat16"])
  assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)


def test_auto_cpu_devices_is_one_per_core_dividing_the_batch():
  assert sharding.auto_cpu_devices(8, cores=2) == 2
  assert sharding.auto_cpu_devices(8, cores=3) == 2      # 3 does not divide 8
  assert sharding.auto_cpu_devices(6, cores=16) == 6
  assert sharding.auto_cpu_devices(7, cores=4) == 1
  assert sharding.auto_cpu_devices(1, cores=8) == 1


def test_configure_cpu_devices_follows_the_config(monkeypatch):
  """config.sharding.cpu_devices reaches jax's CPU device count (0 = auto); an explicit
  XLA_FLAGS device count or a multi-process run is left alone; a negative count is named."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(jax.config, "update", lambda k, v: calls.append((k, v)))
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(sharding, "cluster_kind", lambda env=None: None)
  monkeypatch.setattr(host, "usable_cores", lambda: 2)
  cfg = ml_collections.ConfigDict(dict(sharding=dict(cpu_devices=0), data=dict(batch_size=8)))
  assert sharding.configure_cpu_devices(cfg) == 2
  cfg.sharding.cpu_devices = 1
  assert sharding.configure_cpu_devices(cfg) == 1
  assert calls == [("jax_num_cpu_devices", 2), ("jax_num_cpu_devices", 1)]
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert sharding.configure_cpu_devices(cfg) is None
  monkeypatch.delenv("XLA_FLAGS")
  monkeypatch.setattr(sharding, "cluster_kind", lambda env=None: "slurm")
  assert sharding.configure_cpu_devices(cfg) is None
  assert len(calls) == 2
  cfg.sharding.cpu_devices = -1
  with pytest.raises(ValueError, match="config.sharding.cpu_devices=-1"):
    sharding.configure_cpu_devices(cfg)


def test_configure_cpu_kernels_follows_the_config():
  """config.sharding.cpu_ynnpack=False appends the YNNPACK switch to XLA_FLAGS (kept
  flags kept); True, or the user's own setting of the switch, leaves XLA_FLAGS alone."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(sharding=dict(cpu_ynnpack=False)))
  env = {}
  assert sharding.configure_cpu_kernels(cfg, env)
  assert env == {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert sharding.configure_cpu_kernels(cfg, env)
  assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                      "--xla_cpu_experimental_ynn_fusion_type="]
  env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}
  assert not sharding.configure_cpu_kernels(cfg, env)
  assert env == {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}
  cfg.sharding.cpu_ynnpack = True
  env = {}
  assert not sharding.configure_cpu_kernels(cfg, env) and env == {}


def test_cpu_ynnpack_switch_reaches_xla():
  """In a fresh process, the XLA_FLAGS that configure_cpu_kernels writes take the
  YNNPACK fusion out of a compiled convolution that XLA's default gives to YNNPACK."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  code = ("import jax, jax.numpy as jnp\n"
          "x, w = jnp.ones((8, 32, 32, 16)), jnp.ones((3, 3, 16, 32))\n"
          "conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(\n"
          "    x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))\n"
          "print('__ynn_fusion' in conv.lower(x, w).compile().as_text())\n")
  found = {}
  for on in (True, False):
    env = launcher_env(1)
    env["XLA_FLAGS"] = " ".join(f for f in env["XLA_FLAGS"].split() if sharding.YNN_FLAG not in f)
    sharding.configure_cpu_kernels(
        ml_collections.ConfigDict(dict(sharding=dict(cpu_ynnpack=on))), env)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found[on] = proc.stdout.strip().splitlines()[-1]
  assert found[False] == "False"
  if found[True] != "True":
    pytest.skip("this XLA:CPU gives the convolution to no YNNPACK fusion by default")
