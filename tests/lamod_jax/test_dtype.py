"""config.model.dtype: the LaMoD networks computed in bfloat16 against float32 (params and
gradients float32 in both; outputs float32 and within bf16 rounding of the float32 ones)."""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lamod_dense
from lamod_jax import networks
from lamod_jax import strain
from lamod_jax import task as task_lib

METHODS = ("encode", "velocity", "eps", "motion", "regress")


def tiny(dtype):
  return networks.LaMoD(reg_widths=(8,), latent=4, eps_widths=(8, 16), step_dim=8,
                        decoder_widths=(8,), baseline_widths=(8,), dense_size=(24, 24),
                        latent_norm="frame",
                        dtype=dtype)


def init(dtype, seed, reg_pairs, dense_pairs):
  """Parameters of `tiny(dtype)` (jit, an rbg key: see task_lib.fast_key)."""
  return jax.jit(tiny(dtype).init)(task_lib.fast_key(jax.random.key(seed)), reg_pairs,
                                   dense_pairs)


def nonzero_params(params, seed=0):
  """Every all-zero leaf (zero-initialised output convs, biases) drawn N(0, 0.05²), so no
  output is zero whatever the dtype."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (rng.normal(0.0, 0.05, x.shape).astype(np.float32)
                                 if not np.any(np.asarray(x)) else np.asarray(x)), params)


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  reg = (rng.random((2, 3, 16, 16)) > 0.5).astype(np.float32)
  dense = (rng.random((2, 3, 24, 24)) > 0.5).astype(np.float32)
  return task_lib.pairs(jnp.asarray(reg)), task_lib.pairs(jnp.asarray(dense))


@functools.partial(jax.jit, static_argnums=0)
def outputs(dtype, params, reg_pairs, dense_pairs):
  """Every network's output; each network gets the same float32 input for both dtypes."""
  model = tiny(dtype)
  z = tiny(jnp.float32).apply(params, reg_pairs, method=networks.LaMoD.encode)
  t = jnp.array([3, 17])
  return {"encode": model.apply(params, reg_pairs, method=networks.LaMoD.encode),
          "velocity": model.apply(params, z, method=networks.LaMoD.velocity),
          "eps": model.apply(params, z, t, method=networks.LaMoD.eps),
          "motion": model.apply(params, z, method=networks.LaMoD.motion),
          "regress": model.apply(params, dense_pairs, method=networks.LaMoD.regress)}


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_bfloat16_changes_the_computation_within_bf16_rounding():
  reg_pairs, dense_pairs = inputs()
  p32 = init(jnp.float32, 0, reg_pairs, dense_pairs)
  p16 = init(jnp.bfloat16, 0, reg_pairs, dense_pairs)
  # Parameters are float32 and identical whatever the computation dtype.
  for a, b in zip(jax.tree.leaves(p32), jax.tree.leaves(p16)):
    assert a.dtype == jnp.float32 and b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  params = nonzero_params(p32)
  o32 = outputs(jnp.float32, params, reg_pairs, dense_pairs)
  o16 = outputs(jnp.bfloat16, params, reg_pairs, dense_pairs)
  for m in METHODS:
    assert o32[m].dtype == jnp.float32 and o16[m].dtype == jnp.float32, m   # cast back
    assert o16[m].shape == o32[m].shape
    err = rel_err(o16[m], o32[m])
    # bf16 has an 8-bit significand (rounding 2^-9 ≈ 2e-3): a real bf16 computation
    # differs by ~1e-3..1e-2 over a few layers; identical would mean the option is inert.
    assert 1e-4 < err < 5e-2, (m, err)


def test_bfloat16_gradients_are_float32_and_close():
  reg_pairs, dense_pairs = inputs(1)
  params = nonzero_params(init(jnp.float32, 1, reg_pairs, dense_pairs))

  def loss(p, dtype):
    o = outputs(dtype, p, reg_pairs, dense_pairs)
    return sum(jnp.mean(v ** 2) for v in o.values())

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  g32, g16 = grad(params, jnp.float32), grad(params, jnp.bfloat16)
  flat32, flat16 = jax.tree.leaves(g32), jax.tree.leaves(g16)
  assert all(g.dtype == jnp.float32 for g in flat16)
  v32 = np.concatenate([np.ravel(g) for g in flat32])
  v16 = np.concatenate([np.ravel(g) for g in flat16])
  assert 1e-4 < rel_err(v16, v32) < 5e-2


def test_unknown_dtype_is_named(tmp_path, monkeypatch):
  monkeypatch.setenv("CARDIAC_DATA_CACHE", os.environ.get("CARDIAC_DATA_CACHE",
                                                          str(tmp_path / "cache")))
  config = lamod_dense.get_config("smoke")
  config.model.dtype = "float16"
  with pytest.raises(ValueError, match="config.model.dtype"):
    task_lib.LaMoDTask(config, str(tmp_path))


@pytest.mark.slow
def test_bfloat16_task_predictions_and_epe(tmp_path, monkeypatch):
  """The smoke task's three methods on the test split, bf16 against f32 networks (the
  same float32 parameters and noise): displacements within 5e-2 relative, EPE within 5%."""
  monkeypatch.setenv("CARDIAC_DATA_CACHE", os.environ.get("CARDIAC_DATA_CACHE",
                                                          str(tmp_path / "cache")))
  preds, params, tasks = {}, None, {}
  for dtype in ("float32", "bfloat16"):
    config = lamod_dense.get_config("smoke")
    config.model.dtype = dtype
    task = tasks[dtype] = task_lib.LaMoDTask(config, str(tmp_path))
    if params is None:
      params = nonzero_params(task.init(jax.random.key(0), task.example_batch()))
    preds[dtype] = task.predict(params, "test", jax.random.key(3))
  arr = tasks["float32"].data["test"]
  for m in task_lib.METHODS:
    a, b = preds["bfloat16"][m], preds["float32"][m]
    assert a.dtype == np.float32
    err = rel_err(a, b)
    assert 1e-4 < err < 5e-2, (m, err)
    epe = [float(strain.end_point_error(p[m], arr["disp"], arr["support"][:, None]))
           for p in (preds["bfloat16"], preds["float32"])]
    assert epe[0] == pytest.approx(epe[1], rel=0.05), (m, epe)
