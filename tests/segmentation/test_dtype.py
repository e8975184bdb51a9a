"""config.model.dtype: bfloat16 computation with float32 parameters, against float32.

The reference is the same network, same parameters, computed in float32. bfloat16 keeps
8 bits of mantissa (a rounding of 2⁻⁹ ≈ 0.2 % per operation), so the logits move by a few
per cent of their scale after a dozen layers: nonzero (the option is not inert) and
bounded (measured at these shapes: mean |Δ| / mean |logit| 0.011 U-Net, 0.051 Attention
U-Net, 0.017 Swin-UNet; argmax agreement ≥ 0.97). The parameters are drawn with an 'rbg'
key (XLA:CPU compiles threefry's init several times slower; lamod_jax.task.fast_key).
"""
from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import seg_partial
from segmentation import losses
from segmentation import models


def tiny(arch, dtype):
  return models.build_model(ml_collections.ConfigDict(dict(
      arch=arch, width=0.0625, depth=2, window=4, depths=(2, 2), heads=(1, 2), dtype=dtype)))


def matmul_dtypes(jaxpr, acc=None):
  """Operand dtypes of every convolution and matrix product in a jaxpr (nested ones too)."""
  acc = collections.Counter() if acc is None else acc
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
      acc[tuple(str(v.aval.dtype) for v in eqn.invars)] += 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          matmul_dtypes(inner, acc)
  return acc


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_bfloat16_computes_in_bfloat16_with_float32_params(arch):
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
  y = jax.random.randint(jax.random.key(3), (2, 32, 32), 0, 4)
  sets = np.ones((2, 4), bool)
  cce = ml_collections.ConfigDict(dict(name="cce", dice_weight=0.0))
  out = {}
  params = jax.jit(tiny(arch, "float32").init)(jax.random.key(1, impl="rbg"), x)
  for dtype in ("float32", "bfloat16"):
    net = tiny(arch, dtype)
    # The network of either dtype creates float32 parameters of the same shapes.
    shapes = jax.eval_shape(net.init, jax.random.key(1), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(jnp.shape, params)
    ops = matmul_dtypes(jax.make_jaxpr(net.apply)(params, x).jaxpr)
    assert sum(ops.values()) > 0 and set(ops) == {(dtype, dtype)}, ops

    def loss_fn(p, net=net):
      logits = net.apply(p, x)
      return losses.segmentation_loss(cce, logits, y, sets), logits

    (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    assert logits.dtype == jnp.float32             # cast for the losses and the argmax
    out[dtype] = (np.asarray(logits, np.float64), float(loss))
  ref, got = out["float32"][0], out["bfloat16"][0]
  diff = np.abs(got - ref)
  rel_mean = diff.mean() / np.abs(ref).mean()
  assert 1e-3 < rel_mean < 0.08, rel_mean
  assert np.quantile(diff, 0.99) < 0.06 * np.abs(ref).max()
  assert np.mean(got.argmax(-1) == ref.argmax(-1)) > 0.95
  assert out["bfloat16"][1] == pytest.approx(out["float32"][1], rel=0.02)


def test_dtype_config():
  assert seg_partial.get_config("inter").model.dtype == "float32"
  for arch in seg_partial.ARCHS:
    assert seg_partial.get_config(f"inter,{arch},smoke").model.dtype == "float32"
    assert seg_partial.get_config(f"inter,{arch},full").model.dtype == "bfloat16"
  with pytest.raises(ValueError, match="config.model.dtype"):
    tiny("unet", "float16")
