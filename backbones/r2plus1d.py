"""R(2+1)D-18 video encoder (Tran et al. 2018) in Flax Linen, torchvision layout.

The accelerator-sized alternative to `backbones.video.SmallVideoEncoder` for real echo clips
(B, T, H, W, C), channels last, same call signature. Layers follow torchvision's
`r2plus1d_18` (R2Plus1dStem, BasicBlock with Conv2Plus1D, stage widths 64-128-256-512,
strided first block in stages 2-4 with a 1x1x1 conv + norm shortcut, mean pool), a choice of normalisation:

* `norm='group'` (default for training from scratch): GroupNorm, no running statistics,
  the same affine parameters per channel as BatchNorm.
* `norm='batch'`: torchvision's BatchNorm3d (eps 1e-5; PyTorch momentum 0.1 = Flax 0.9),
  for published weights (`backbones.torch_import`). Its running statistics live in the
  `batch_stats` collection. `norm_stats='frozen'` (default) always normalises by them, as
  at inference and as a pretrained encoder is fine-tuned (the optimiser leaves the
  collection alone, training.optim); 'train' uses the batch's statistics when
  `train=True` and updates the running averages (apply with mutable=['batch_stats']).

The 400-class `fc` is replaced by a Dense projection "proj" to `features`, applied to the
pooled feature and, on request, to every token of the last stage; `project=False` drops
it (pooled = torchvision's 512-d pooled feature, `features` must be 512), for an imported
network whose own head reads that feature. `in_channels`, `pixel_mean`, `pixel_std`
bring the pipeline's grey x/255 clip to a published network's input
(`backbones.video.published_input`: grey replicated to 3 channels as EchoNet's AVIs,
standardised per channel in 0..255 units); by default the clip enters as it is (C = 1).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from backbones import video as video_lib

#: torchvision initialises convolutions with kaiming_normal_(mode="fan_out", relu).
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_STAGE_WIDTHS = (64, 128, 256, 512)
_STEM_WIDTH = 45


def scaled(channels: int, width: float) -> int:
  """Channel count `channels` times `width`, rounded, at least 1."""
  return max(1, int(round(channels * width)))


def mid_channels(in_ch: int, out_ch: int) -> int:
  """Conv2Plus1D mid width: parameters of a full 3x3x3 conv, floor(27 i o / (9 i + 3 o))."""
  return max(1, (in_ch * out_ch * 27) // (in_ch * 9 + out_ch * 3))


def norm_groups(channels: int, max_groups: int = 32) -> int:
  """Largest number of groups <= `max_groups` that divides `channels`."""
  return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def _conv(features: int, kernel: tuple[int, int, int], strides: tuple[int, int, int], dtype,
          name: str) -> nn.Module:
  """Bias-free conv with torchvision's padding kernel // 2 per axis and kaiming fan-out init."""
  return nn.Conv(features, kernel, strides=strides, padding=[(k // 2, k // 2) for k in kernel],
                 use_bias=False, kernel_init=_CONV_INIT, dtype=dtype, name=name)


NORMS = ("group", "batch")


def _norm(kind: str, channels: int, dtype, name: str, batch_stats: bool = False
          ) -> nn.Module:
  """GroupNorm, or BatchNorm normalising by the batch (`batch_stats`) or its running
  statistics (kind and stats mode checked in R2Plus1D18)."""
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not batch_stats, momentum=0.9, epsilon=1e-5,
                        dtype=dtype, name=name)
  return nn.GroupNorm(num_groups=norm_groups(channels), dtype=dtype, name=name)


class Conv2Plus1D(nn.Module):
  """Spatial (1,3,3) conv to `mid`, norm, ReLU, temporal (3,1,1) conv to `out` (no bias)."""
  out: int
  mid: int
  stride: int = 1
  norm: str = "group"
  dtype: jnp.dtype = jnp.float32
  batch_stats: bool = False

  @nn.compact
  def __call__(self, x):
    s = self.stride
    x = _conv(self.mid, (1, 3, 3), (1, s, s), self.dtype, "spatial")(x)
    x = nn.relu(_norm(self.norm, self.mid, self.dtype, "mid_norm", self.batch_stats)(x))
    return _conv(self.out, (3, 1, 1), (s, 1, 1), self.dtype, "temporal")(x)


class BasicBlock(nn.Module):
  """Two Conv2Plus1D + norm with a residual; both share mid = mid_channels(in, out)."""
  out: int
  stride: int = 1
  norm: str = "group"
  dtype: jnp.dtype = jnp.float32
  batch_stats: bool = False

  @nn.compact
  def __call__(self, x):
    in_ch = x.shape[-1]
    mid = mid_channels(in_ch, self.out)
    bs = self.batch_stats
    y = Conv2Plus1D(self.out, mid, self.stride, self.norm, self.dtype, bs, name="conv1")(x)
    y = nn.relu(_norm(self.norm, self.out, self.dtype, "norm1", bs)(y))
    y = Conv2Plus1D(self.out, mid, 1, self.norm, self.dtype, bs, name="conv2")(y)
    y = _norm(self.norm, self.out, self.dtype, "norm2", bs)(y)
    if self.stride != 1 or in_ch != self.out:
      s = self.stride
      x = _conv(self.out, (1, 1, 1), (s, s, s), self.dtype, "down_conv")(x)
      x = _norm(self.norm, self.out, self.dtype, "down_norm", bs)(x)
    return nn.relu(y + x)


class R2Plus1D18(nn.Module):
  """R(2+1)D-18 over (B, T, H, W, C) -> pooled (B, features) [, fmap (B, T', H', W', features)].

  Fields: `features` width of the final Dense "proj"; `width` multiplies the channel
  widths 64-128-256-512 and the stem's 45 (rounded, >= 1; small values for tests);
  `stage_blocks` BasicBlocks per stage; `norm` "group" (GroupNorm with the largest group
  count <= 32 dividing the channels) or "batch" (BatchNorm; `norm_stats` 'frozen' or
  'train', see the module doc); `project`, `in_channels`, `pixel_mean`, `pixel_std`: see
  the module doc; `dtype` computation dtype (params stay float32); `remat` recomputes
  each block's activations in the backward pass to save memory.

  The feature map is ceil(T/8) x ceil(H/16) x ceil(W/16) (stem stride (1,2,2), then
  stride 2 in T, H, W at stages 2-4), as SmallVideoEncoder's. pooled = proj(mean of the
  last stage over T, H, W) = fmap mean since proj is affine. `train` matters only to
  BatchNorm with norm_stats='train'; the model has no dropout.
  """
  features: int = 512
  width: float = 1.0
  stage_blocks: Sequence[int] = (2, 2, 2, 2)
  norm: str = "group"
  norm_stats: str = "frozen"
  project: bool = True
  in_channels: int = 0
  pixel_mean: Sequence[float] = ()
  pixel_std: Sequence[float] = ()
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  def _check(self, video):
    if video.ndim != 5:
      raise ValueError(f"R2Plus1D18: `video` must have rank 5 (B, T, H, W, C), got shape {video.shape}")
    if self.norm not in NORMS:
      raise ValueError(f"R2Plus1D18: `norm` must be one of {NORMS}, got {self.norm!r}")
    if self.norm_stats not in video_lib.NORM_STATS:
      raise ValueError(f"R2Plus1D18: `norm_stats` must be one of {video_lib.NORM_STATS}, "
                       f"got {self.norm_stats!r}")
    if not self.project and self.features != scaled(_STAGE_WIDTHS[-1], self.width):
      raise ValueError(f"R2Plus1D18: project=False returns the last stage's "
                       f"{scaled(_STAGE_WIDTHS[-1], self.width)} channels; set features to "
                       f"that, got {self.features}")
    if not self.width > 0:
      raise ValueError(f"R2Plus1D18: `width` must be > 0, got {self.width}")
    if self.features < 1:
      raise ValueError(f"R2Plus1D18: `features` must be >= 1, got {self.features}")
    if len(self.stage_blocks) != 4 or any(int(n) < 1 for n in self.stage_blocks):
      raise ValueError(f"R2Plus1D18: `stage_blocks` must be 4 positive ints, got {tuple(self.stage_blocks)}")

  @nn.compact
  def __call__(self, video, *, train: bool = False, return_tokens: bool = False):
    self._check(video)
    bs = train and self.norm_stats == "train"
    x = video_lib.published_input(video, self.in_channels, self.pixel_mean,
                                  self.pixel_std).astype(self.dtype)
    stem = scaled(_STEM_WIDTH, self.width)
    x = _conv(stem, (1, 7, 7), (1, 2, 2), self.dtype, "stem_spatial")(x)
    x = nn.relu(_norm(self.norm, stem, self.dtype, "stem_norm1", bs)(x))
    c0 = scaled(_STAGE_WIDTHS[0], self.width)
    x = _conv(c0, (3, 1, 1), (1, 1, 1), self.dtype, "stem_temporal")(x)
    x = nn.relu(_norm(self.norm, c0, self.dtype, "stem_norm2", bs)(x))
    block = nn.remat(BasicBlock) if self.remat else BasicBlock
    for i, (channels, n_blocks) in enumerate(zip(_STAGE_WIDTHS, self.stage_blocks)):
      for j in range(int(n_blocks)):
        stride = 2 if i > 0 and j == 0 else 1
        x = block(scaled(channels, self.width), stride, self.norm, self.dtype, bs,
                  name=f"layer{i + 1}_{j}")(x)
    if not self.project:
      pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
      return (pooled, x) if return_tokens else pooled
    proj = nn.Dense(self.features, dtype=self.dtype, name="proj")
    pooled = proj(jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3)).astype(self.dtype))
    if return_tokens:
      return pooled, proj(x)
    return pooled
