"""UniFormer-S video backbone (Li et al., ICLR 2022) in Flax Linen, channels last.

The layout of Sense-X/UniFormer `video_classification/slowfast/models/uniformer.py`
and of CoReEcho's copy (`coreecho/uniformer.py`, `uniformer_small()`), so the published
PyTorch weights convert one-to-one (`backbones.uniformer_import.variables_from_torch`):

* `patch_embed1`: Conv3d kernel (3, 4, 4), stride (2, 4, 4), padding (1, 0, 0), then a
  per-token LayerNorm (eps 1e-5); `patch_embed2..4`: Conv3d kernel = stride (1, 2, 2),
  no padding (floor, as PyTorch), LayerNorm (eps 1e-5).
* stages 1-2: `CBlock` (local MHRA): x += pos_embed(x) (depthwise 3×3×3);
  x += conv2(attn(conv1(BN(x)))) with a depthwise 5×5×5 `attn`; x += CMlp(BN(x)).
* stages 3-4: `SABlock` (global MHSA over all T·H·W tokens): x += pos_embed(x);
  x += Attention(LN(x)); x += Mlp(LN(x)) with LayerNorm eps 1e-6, a fused qkv
  Dense(3·dim) laid out [q|k|v][head][head_dim] and scale head_dim^-0.5.
* `norm`: BatchNorm3d(512) on the stage-4 map; the published pooled feature is its mean
  over T·H·W. The classification `head` is not part of this module.

Every convolution pads explicitly as PyTorch does (never 'SAME', whose odd extra pad
goes at the end: `patch_embed1`'s temporal k3 s2 p1 would shift by one frame). GELU is
the exact erf form, softmax runs in float32, LayerNorm and BatchNorm compute the
variance as mean((x − mean)²), not E[x²] − E[x]².

No dropout or drop path: CoReEcho trains with drop_rate 0.1 (pos_drop, MLP and attention
projection outputs) and drop_path 0; this forward is deterministic, which equals the
published network in eval mode (both are identity there).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from backbones.video import NORM_STATS, published_input

#: PyTorch's Conv3d default init, kaiming_uniform(a=√5) = U(±1/√fan_in).
_CONV_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
#: UniFormer initialises Linear weights with trunc_normal_(std=.02), biases with 0.
_DENSE_INIT = nn.initializers.truncated_normal(0.02)
#: PyTorch BatchNorm momentum 0.1 (weight of the new batch) = Flax momentum 0.9.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5
PATCH_LN_EPS = 1e-5
BLOCK_LN_EPS = 1e-6


def _conv(features: int, kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int],
          dtype, name: str, groups: int = 1) -> nn.Conv:
  """Conv3d with bias and PyTorch's symmetric explicit padding `padding` per axis."""
  return nn.Conv(features, tuple(kernel), strides=tuple(strides),
                 padding=[(p, p) for p in padding], feature_group_count=groups, use_bias=True,
                 kernel_init=_CONV_INIT, dtype=dtype, name=name)


def _batch_norm(use_running_average: bool, dtype, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=use_running_average, momentum=BN_MOMENTUM,
                      epsilon=BN_EPS, use_fast_variance=False, dtype=dtype, name=name)


def _layer_norm(eps: float, dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


def gelu(x):
  """PyTorch's nn.GELU(): the exact erf form."""
  return nn.gelu(x, approximate=False)


class PatchEmbed(nn.Module):
  """Conv3d `proj` (kernel, stride, padding as given) then LayerNorm `norm` (eps 1e-5)."""
  dim: int
  kernel: Sequence[int]
  stride: Sequence[int]
  padding: Sequence[int]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = _conv(self.dim, self.kernel, self.stride, self.padding, self.dtype, "proj")(x)
    return _layer_norm(PATCH_LN_EPS, self.dtype, "norm")(x)


class CMlp(nn.Module):
  """1×1×1 conv `fc1` dim → hidden, GELU, 1×1×1 conv `fc2` back."""
  hidden: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    x = gelu(_conv(self.hidden, (1, 1, 1), (1, 1, 1), (0, 0, 0), self.dtype, "fc1")(x))
    return _conv(dim, (1, 1, 1), (1, 1, 1), (0, 0, 0), self.dtype, "fc2")(x)


class Mlp(nn.Module):
  """Dense `fc1` dim → hidden, GELU, Dense `fc2` back (over tokens)."""
  hidden: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    x = gelu(nn.Dense(self.hidden, kernel_init=_DENSE_INIT, dtype=self.dtype, name="fc1")(x))
    return nn.Dense(dim, kernel_init=_DENSE_INIT, dtype=self.dtype, name="fc2")(x)


class Attention(nn.Module):
  """Multi-head self-attention over (B, N, C): fused `qkv` Dense(3C) whose output splits
  as [q|k|v][head][head_dim], scale head_dim^-0.5, softmax in float32, `proj` Dense(C)."""
  num_heads: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, n, c = x.shape
    head_dim = c // self.num_heads
    qkv = nn.Dense(3 * c, kernel_init=_DENSE_INIT, dtype=self.dtype, name="qkv")(x)
    qkv = qkv.reshape(b, n, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]            # (B, N, heads, head_dim)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits * head_dim ** -0.5, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, c)
    return nn.Dense(c, kernel_init=_DENSE_INIT, dtype=self.dtype, name="proj")(out)


class CBlock(nn.Module):
  """Local MHRA block over a (B, T, H, W, C) map (stages 1-2); BatchNorms `norm1`,
  `norm2` use running statistics when `use_running_average`."""
  mlp_ratio: float = 4.0
  use_running_average: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    x = x + _conv(dim, (3, 3, 3), (1, 1, 1), (1, 1, 1), self.dtype, "pos_embed", groups=dim)(x)
    y = _batch_norm(self.use_running_average, self.dtype, "norm1")(x)
    y = _conv(dim, (1, 1, 1), (1, 1, 1), (0, 0, 0), self.dtype, "conv1")(y)
    y = _conv(dim, (5, 5, 5), (1, 1, 1), (2, 2, 2), self.dtype, "attn", groups=dim)(y)
    x = x + _conv(dim, (1, 1, 1), (1, 1, 1), (0, 0, 0), self.dtype, "conv2")(y)
    y = _batch_norm(self.use_running_average, self.dtype, "norm2")(x)
    return x + CMlp(int(dim * self.mlp_ratio), self.dtype, name="mlp")(y)


class SABlock(nn.Module):
  """Global MHSA block (stages 3-4): conv position embedding, then attention and MLP over
  the T·H·W tokens flattened row-major over (t, h, w), as PyTorch's `flatten(2)`."""
  num_heads: int
  mlp_ratio: float = 4.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    shape = x.shape
    dim = shape[-1]
    x = x + _conv(dim, (3, 3, 3), (1, 1, 1), (1, 1, 1), self.dtype, "pos_embed", groups=dim)(x)
    x = x.reshape(shape[0], -1, dim)
    x = x + Attention(self.num_heads, self.dtype, name="attn")(
        _layer_norm(BLOCK_LN_EPS, self.dtype, "norm1")(x))
    x = x + Mlp(int(dim * self.mlp_ratio), self.dtype, name="mlp")(
        _layer_norm(BLOCK_LN_EPS, self.dtype, "norm2")(x))
    return x.reshape(shape)


class UniFormerS(nn.Module):
  """UniFormer-S over (B, T, H, W, C) → pooled (B, features) [, fmap (B, T', H', W', features)].

  Fields:
    features: width of the output. With `project` it is the width of a Dense "proj"
      applied to the pooled 512-d feature and to every token of the map (as
      `R2Plus1D18`); without, it must equal dims[-1] (512).
    project: False gives the published outputs: pooled = mean over T·H·W of the final
      BatchNorm `norm`'s output (CoReEcho's 512-d feature), fmap = that normed map.
    in_channels, pixel_mean, pixel_std: `backbones.video.published_input` (grey
      replicated to `in_channels`; (255·x − mean) / std when `pixel_mean` is given, in
      0..255 units; CoReEcho: mean (0.12741163, 0.1279413, 0.12912785)·255, std
      (0.19557191, 0.19562256, 0.1965878)·255). The clip arrives as x/255.
    norm_stats: "frozen": every BatchNorm normalises with its running statistics, in
      training too (no 'batch_stats' mutation); "train": batch statistics when
      `train=True` and running averages updated (apply with mutable=['batch_stats']),
      momentum 0.1 in PyTorch's convention, eps 1e-5. Flax updates the running variance
      with the biased batch variance, PyTorch with the unbiased one.
    dims, depths, head_dim, mlp_ratio: UniFormer-S (64, 128, 320, 512), (3, 4, 8, 3), 64, 4.
    dtype: computation dtype (params float32); remat: recompute each block in the backward.

  Grid: T' = ceil(T / 2), H' = floor(H / 32), W' = floor(W / 32) (a 36×112×112 clip
  gives 18×3×3); H and W must be at least 32. No dropout or drop path (see the module
  docstring): the forward is deterministic.
  """
  features: int = 512
  project: bool = True
  in_channels: int = 3
  pixel_mean: Sequence[float] = ()
  pixel_std: Sequence[float] = ()
  norm_stats: str = "frozen"
  dims: Sequence[int] = (64, 128, 320, 512)
  depths: Sequence[int] = (3, 4, 8, 3)
  head_dim: int = 64
  mlp_ratio: float = 4.0
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  def _check(self, video_shape):
    if len(video_shape) != 5:
      raise ValueError(f"UniFormerS: `video` must have rank 5 (B, T, H, W, C), got shape {video_shape}")
    if video_shape[2] < 32 or video_shape[3] < 32:
      raise ValueError(f"UniFormerS: H and W must be >= 32 (total stride 32), got {video_shape[2:4]}")
    if self.norm_stats not in NORM_STATS:
      raise ValueError(f"config.model.encoder_kwargs.norm_stats must be one of {NORM_STATS}, "
                       f"got {self.norm_stats!r}")
    if len(self.dims) != 4 or len(self.depths) != 4:
      raise ValueError(f"UniFormerS: `dims` and `depths` need 4 stages, got {tuple(self.dims)}, "
                       f"{tuple(self.depths)}")
    if any(d % self.head_dim for d in self.dims[2:]):
      raise ValueError(f"UniFormerS: dims {tuple(self.dims[2:])} of the attention stages must be "
                       f"multiples of head_dim {self.head_dim}")
    if not self.project and self.features != self.dims[-1]:
      raise ValueError(f"config.model.encoder_kwargs.project=False gives the published "
                       f"{self.dims[-1]}-d feature, so features must be {self.dims[-1]}, "
                       f"got {self.features}")

  @nn.compact
  def __call__(self, video, *, train: bool = False, return_tokens: bool = False):
    self._check(video.shape)
    running = self.norm_stats == "frozen" or not train
    x = published_input(video, self.in_channels, self.pixel_mean, self.pixel_std)
    x = x.astype(self.dtype)
    cblock = nn.remat(CBlock) if self.remat else CBlock
    sablock = nn.remat(SABlock) if self.remat else SABlock
    for stage, (dim, depth) in enumerate(zip(self.dims, self.depths)):
      if stage == 0:
        embed = PatchEmbed(dim, (3, 4, 4), (2, 4, 4), (1, 0, 0), self.dtype, name="patch_embed1")
      else:
        embed = PatchEmbed(dim, (1, 2, 2), (1, 2, 2), (0, 0, 0), self.dtype,
                           name=f"patch_embed{stage + 1}")
      x = embed(x)
      for i in range(int(depth)):
        name = f"blocks{stage + 1}_{i}"
        if stage < 2:
          x = cblock(self.mlp_ratio, running, self.dtype, name=name)(x)
        else:
          x = sablock(dim // self.head_dim, self.mlp_ratio, self.dtype, name=name)(x)
    x = _batch_norm(running, self.dtype, "norm")(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3)).astype(self.dtype)
    if not self.project:
      return (pooled, x) if return_tokens else pooled
    proj = nn.Dense(self.features, dtype=self.dtype, name="proj")
    return (proj(pooled), proj(x)) if return_tokens else proj(pooled)
