"""R2Plus1D18: shapes and parameter count against torchvision's r2plus1d_18 layout,
token/pool consistency, gradient flow, bfloat16 and remat agreement."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backbones.r2plus1d import R2Plus1D18

TINY = 0.125
#: torchvision.models.video.r2plus1d_18().parameters() total (3 input channels, 400-class
#: fc, BatchNorm weight + bias counted; running statistics are buffers, not parameters).
TORCHVISION_R2PLUS1D18_PARAMS = 31_505_325


def torchvision_param_count(in_ch: int = 3, fc_out: int = 400) -> int:
  """Brute-force count of torchvision's VideoResNet(BasicBlock, Conv2Plus1D, [2,2,2,2],
  R2Plus1dStem): bias-free convs (in * out * kernel volume), 2 affine params per norm
  channel, and the final Linear(512, fc_out) with bias."""
  conv = lambda i, o, k: i * o * k
  norm = lambda c: 2 * c
  total = conv(in_ch, 45, 1 * 7 * 7) + norm(45) + conv(45, 64, 3 * 1 * 1) + norm(64)
  inplanes = 64
  for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
    for b in range(2):
      s = stride if b == 0 else 1
      mid = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
      for i in (inplanes, planes):  # conv1 (inplanes -> planes), conv2 (planes -> planes)
        total += conv(i, mid, 9) + norm(mid) + conv(mid, planes, 3) + norm(planes)
      if s != 1 or inplanes != planes:
        total += conv(inplanes, planes, 1) + norm(planes)
      inplanes = planes
  return total + 512 * fc_out + fc_out


def conv_out(n: int, k: int, p: int, s: int) -> int:
  return (n + 2 * p - k) // s + 1


def token_grid(t: int, h: int, w: int) -> tuple[int, int, int]:
  """Walks every strided layer: stem spatial (k7 p3 s2), stages 2-4 (k3 p1 s2 in T, H, W)."""
  h, w = conv_out(h, 7, 3, 2), conv_out(w, 7, 3, 2)
  for _ in range(3):
    t, h, w = (conv_out(n, 3, 1, 2) for n in (t, h, w))
  return t, h, w


def n_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def filled_params(shapes, seed: int = 0):
  """Params with the init's shapes, drawn by numpy: kernels normal / sqrt(fan_in), norm
  scales near 1, biases small. A jitted `init` spends ~15 s compiling its RNG on a CPU,
  so the tests that run the model take parameters from here (init is checked by shape)."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1])), jnp.float32)
    centre = 1.0 if name.endswith("['scale']") else 0.0
    return jnp.asarray(centre + 0.1 * rng.standard_normal(s.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


#: Runtime tests use one block per stage (stage 1's block is the stride-1 identity
#: shortcut kind, stages 2-4 the strided downsample kind), which halves compile time.
TINY_KW = dict(features=24, width=TINY, stage_blocks=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def tiny():
  """Model, params, clip (2, 8, 32, 32, 1), readout weights and the jitted
  value_and_grad of sum(pooled * weights) with (pooled, tokens) as aux."""
  model = R2Plus1D18(**TINY_KW)
  rng = np.random.default_rng(1)  # numpy, not jax.random: no RNG compile
  video = jnp.asarray(rng.standard_normal((2, 8, 32, 32, 1)), jnp.float32)
  weights = jnp.asarray(rng.standard_normal((2, 24)), jnp.float32)
  params = filled_params(jax.eval_shape(model.init, jax.random.key(0), video)["params"])

  def loss(p):
    pooled, fmap = model.apply({"params": p}, video, return_tokens=True)
    tokens = fmap.reshape(fmap.shape[0], -1, fmap.shape[-1])
    return jnp.sum(pooled * weights), (pooled, tokens)

  (_, (pooled, tokens)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return dict(model=model, params=params, video=video, pooled=pooled, tokens=tokens, grads=grads)


def test_reference_count_matches_torchvision():
  assert torchvision_param_count() == TORCHVISION_R2PLUS1D18_PARAMS


@pytest.mark.parametrize("in_ch,features", [(3, 400), (1, 512)])
def test_param_count_width1(in_ch, features):
  # GroupNorm and BatchNorm have the same affine count (scale + bias per channel), and
  # "proj" = Dense(512, features) with bias is the fc: with 3 channels and 400 features the
  # count is torchvision's exactly. For grey input and features=512 the stem conv has
  # 2 * 45 * 49 fewer weights and the head is 512 * 512 + 512 instead of 512 * 400 + 400.
  model = R2Plus1D18(features=features)
  video = jax.ShapeDtypeStruct((1, 16, 112, 112, in_ch), jnp.float32)
  shapes = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), video)["params"]
  assert n_params(shapes) == torchvision_param_count(in_ch, features)


@pytest.mark.parametrize("shape", [(2, 8, 32, 32, 1), (1, 16, 112, 112, 1), (3, 6, 20, 36, 3)])
def test_output_shapes(shape):
  model = R2Plus1D18(features=24, width=TINY)
  video = jax.ShapeDtypeStruct(shape, jnp.float32)

  def run(v):
    params = model.init(jax.random.key(0), v)
    pooled, fmap = model.apply(params, v, return_tokens=True)
    return pooled, fmap.reshape(fmap.shape[0], -1, fmap.shape[-1])

  pooled, tokens = jax.eval_shape(run, video)
  t, h, w = token_grid(*shape[1:4])
  assert (t, h, w) == tuple(-(-n // d) for n, d in zip(shape[1:4], (8, 16, 16)))
  assert pooled.shape == (shape[0], 24)
  assert tokens.shape == (shape[0], t * h * w, 24)


def test_tokens_mean_is_pooled(tiny):
  pooled, tokens = tiny["pooled"], tiny["tokens"]
  assert tokens.shape == (2, 1 * 2 * 2, 24)
  np.testing.assert_allclose(np.asarray(tokens.mean(axis=1)), np.asarray(pooled), atol=1e-5)
  assert np.all(np.isfinite(np.asarray(pooled))) and float(jnp.std(pooled)) > 0


def test_gradient_reaches_every_parameter(tiny):
  flat = jax.tree_util.tree_flatten_with_path(tiny["grads"])[0]
  assert len(flat) == len(jax.tree.leaves(tiny["params"]))
  dead = [jax.tree_util.keystr(k) for k, g in flat if not np.any(np.asarray(g) != 0)]
  assert not dead, dead


def test_bfloat16_close_to_float32(tiny):
  model = R2Plus1D18(**TINY_KW, dtype=jnp.bfloat16)
  out = jax.jit(model.apply)({"params": tiny["params"]}, tiny["video"])
  assert out.dtype == jnp.bfloat16
  out, ref = np.asarray(out.astype(jnp.float32)), np.asarray(tiny["pooled"])
  assert np.all(np.isfinite(out))
  assert np.linalg.norm(out - ref) < 0.1 * np.linalg.norm(ref)


def test_remat_same_params_and_output(tiny):
  # Also the return_tokens=False path: it must give the same pooled feature.
  model = R2Plus1D18(**TINY_KW, remat=True)
  shapes = jax.eval_shape(model.init, jax.random.key(0), tiny["video"])["params"]
  assert jax.tree.structure(shapes) == jax.tree.structure(tiny["params"])
  out = jax.jit(model.apply)({"params": tiny["params"]}, tiny["video"])
  np.testing.assert_allclose(np.asarray(out), np.asarray(tiny["pooled"]), atol=1e-5)


@pytest.mark.parametrize("kwargs,shape,match", [
    ({}, (8, 32, 32, 1), "video"),
    ({"norm": "layer"}, (1, 8, 32, 32, 1), "norm"),
    ({"norm": "batch", "norm_stats": "moving"}, (1, 8, 32, 32, 1), "norm_stats"),
    ({"project": False}, (1, 8, 32, 32, 1), "project=False"),
    ({"in_channels": 3, "pixel_mean": (1.0, 2.0)}, (1, 8, 32, 32, 1), "pixel_mean"),
    ({"width": 0.0}, (1, 8, 32, 32, 1), "width"),
    ({"stage_blocks": (2, 2, 2)}, (1, 8, 32, 32, 1), "stage_blocks"),
])
def test_bad_input_raises(kwargs, shape, match):
  model = R2Plus1D18(**{"features": 8, "width": TINY, **kwargs})
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros(shape))
