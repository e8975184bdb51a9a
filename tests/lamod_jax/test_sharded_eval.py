"""LaMoD evaluation split over devices: per-case noise, and 8 faked CPU devices against one.

The 8-device check runs in a subprocess (the device count is fixed when JAX starts):
tests/lamod_jax/sharded_eval_worker.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import noise as noise_lib
from lamod_jax import task as task_lib
import tests

ROOT = str(tests.ROOT)
WORKER = os.path.join(ROOT, "tests", "lamod_jax", "sharded_eval_worker.py")


def test_per_case_noise_is_keyed_by_case_not_batch():
  """Row b is the one-case draw noise_fn(fold_in(key, id_b)) (reference: a loop over the
  cases), so the cases 5, 9 draw the same noise alone or in a batch with others."""
  base = noise_lib.smoothed_noise(3, 3.0)
  key = jax.random.key(11)
  ids = np.array([2, 5, 9, 4], np.int32)
  shape = (4, 3, 6, 6, 2)
  out = np.asarray(task_lib.per_case_noise(base, jnp.asarray(ids))(key, shape))
  ref = np.stack([np.asarray(base(jax.random.fold_in(key, int(i)), shape[1:])) for i in ids])
  np.testing.assert_array_equal(out, ref)
  sub = np.asarray(task_lib.per_case_noise(base, jnp.asarray(ids[1:3]))(key, (2,) + shape[1:]))
  np.testing.assert_array_equal(sub, out[1:3])
  assert not np.allclose(out[0], out[1])           # different cases, different noise
  assert 0.1 < out.std() < 1.0                     # K(ε): smoothed, variance below 1


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=8"])
  return env


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  out = tmp_path_factory.mktemp("lamod_sharded")
  cache = os.environ.get("CARDIAC_DATA_CACHE", str(out / "cache"))
  proc = subprocess.run([sys.executable, WORKER, str(out)], cwd=ROOT,
                        env=_env(CARDIAC_DATA_CACHE=cache), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("method", task_lib.METHODS)
def test_sharded_predictions_equal_one_device(worker, sampler, method):
  """8 training cases in batches of 5 and 3 (each padded to 8 devices, cut back): equal
  to one device, and to one device with all 8 cases in one batch (noise keyed per case)."""
  assert worker["devices"] == 8
  r = worker[sampler][method]
  assert r["shape"][0] == 8
  assert r["scale"] > 0.5                       # nonzero outputs: the check can fail
  assert r["diff_8"] < 1e-5 * max(r["scale"], 1.0)
  assert r["diff_bs8"] < 1e-5 * max(r["scale"], 1.0)


@pytest.mark.slow
def test_sharded_diagnosis_equals_one_device(worker):
  """The final evaluation's diagnosis groups (clean latent, DDPM and DDIM chains, the
  chain from M = T, mean of N and one sample) on 8 devices equal one device's."""
  groups = worker["diagnosis"]
  assert set(groups) == {*task_lib.METHODS, "clean_latent", "lamod_ddpm", "lamod_ddim",
                         "lamod_start19", "lamod_mean2", "lamod_one"}
  for g, r in groups.items():
    assert r["shape"][0] == 8 and r["scale"] > 0.5, g
    assert r["diff_8"] < 1e-5 * max(r["scale"], 1.0), g


@pytest.mark.slow
def test_each_case_computed_once(worker):
  """Per-device FLOPs of 8 cases split over 8 devices ≈ 1/8 of one device's."""
  ratio = worker["flops_8"] / worker["flops_1"]
  assert 0.1 < ratio < 0.16, ratio
