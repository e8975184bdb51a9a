"""Segmentation networks (Islam et al., MELBA 2026, §4.4): U-Net, Attention U-Net, Swin-UNet.

All take images (B, H, W, Cin) and return float32 logits (B, H, W, num_classes);
`width` multiplies every channel count so tests and CPU runs stay small. `dtype` is the
computation dtype (config.model.dtype: float32 or bfloat16): inputs, convolutions,
matmuls and activations run in it, parameters stay float32 (Flax's param_dtype), the
norms' statistics are float32 (Flax's), Swin's attention softmax is float32, and the
logits are cast to float32 for the losses and the argmax.

* U-Net (Ronneberger 2015): blocks of 2 × (3×3 conv, norm, ReLU), 2× max-pool down,
  2× transposed-conv up, skip concatenation; channels base·(1, 2, 4, 8), bottleneck
  base·16 (base 64 at width 1). GroupNorm stands in for BatchNorm: the shared loop
  carries parameters only, no batch statistics.
* Attention U-Net (Oktay 2018; LeeJunHyun's 2-D AttU_Net): the same with additive
  attention gates on the skips: ψ = σ(norm(1×1 conv(ReLU(W_g g + W_x x)))), F_int =
  C/2, skip × ψ before concatenation; nearest ×2 + conv up.
* Swin-UNet (Cao 2022; HuCaoFighting/Swin-Unet): patch 4, embed 96, depths
  [2, 2, 2, 2], heads [3, 6, 12, 24], MLP 4, qkv bias, window 8 at 256×256 (7 at 224);
  PatchMerging (2×2 concat → LN → Linear 4C→2C, no bias), PatchExpand (Linear C→2C →
  2×2 pixel shuffle → LN), skip concat → Linear 2C→C, final ×4 expand (Linear C→16C),
  1×1 head without bias. Where a stage's resolution is ≤ the window, the window is
  the whole map and there is no shift (Swin's rule). No drop-path (CPU runs are short).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ARCHITECTURES = ("unet", "attention_unet", "swin_unet")
#: config.model.dtype values: the networks' computation dtype (parameters stay float32).
DTYPES = ("float32", "bfloat16")


def _ch(base: int, width: float) -> int:
  return max(4, int(round(base * width)))


def _norm(c: int, dtype):
  return nn.GroupNorm(num_groups=min(8, c) if c % min(8, c) == 0 else 1, dtype=dtype)


class ConvBlock(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.relu(_norm(self.features, self.dtype)(
          nn.Conv(self.features, (3, 3), dtype=self.dtype)(x)))
    return x


class AttentionGate(nn.Module):
  """Additive attention gate: the skip x scaled by ψ(g, x) ∈ (0, 1) per pixel."""
  inter: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, g, x):
    dt = self.dtype
    a = _norm(self.inter, dt)(nn.Conv(self.inter, (1, 1), dtype=dt)(g))
    b = _norm(self.inter, dt)(nn.Conv(self.inter, (1, 1), dtype=dt)(x))
    psi = nn.sigmoid(_norm(1, dt)(nn.Conv(1, (1, 1), dtype=dt)(nn.relu(a + b))))
    return x * psi


class UNet(nn.Module):
  """U-Net; attention=True gives the Attention U-Net."""
  num_classes: int = 4
  width: float = 1.0
  depth: int = 4
  attention: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt = self.dtype
    x = jnp.asarray(x, dt)
    chans = [_ch(64 * 2**i, self.width) for i in range(self.depth + 1)]
    skips = []
    for c in chans[:-1]:
      x = ConvBlock(c, dt)(x)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = ConvBlock(chans[-1], dt)(x)
    for c, skip in zip(reversed(chans[:-1]), reversed(skips)):
      if self.attention:
        b, h, w, _ = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, x.shape[-1]), "nearest")
        x = nn.relu(_norm(c, dt)(nn.Conv(c, (3, 3), dtype=dt)(x)))
        skip = AttentionGate(max(1, c // 2), dt)(x, skip)
      else:
        x = nn.ConvTranspose(c, (2, 2), strides=(2, 2), dtype=dt)(x)
      x = ConvBlock(c, dt)(jnp.concatenate([skip, x], axis=-1))
    return nn.Conv(self.num_classes, (1, 1), dtype=dt)(x).astype(jnp.float32)


# -- Swin-UNet ---------------------------------------------------------------------


def window_partition(x, w: int):
  """(B, H, W, C) → (B·nW, w·w, C)."""
  b, h, wd, c = x.shape
  x = x.reshape(b, h // w, w, wd // w, w, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, w * w, c)


def window_reverse(x, w: int, h: int, wd: int):
  """(B·nW, w·w, C) → (B, H, W, C)."""
  c = x.shape[-1]
  x = x.reshape(-1, h // w, wd // w, w, w, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, h, wd, c)


def relative_position_index(w: int) -> np.ndarray:
  """(w², w²) index into the (2w−1)² relative-position bias table (Swin)."""
  coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij")).reshape(2, -1)
  rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (w - 1)
  return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def shift_attention_mask(h: int, wd: int, w: int, shift: int) -> np.ndarray:
  """(nW, w², w²) additive mask (0 / −100) for shifted windows (Swin)."""
  img = np.zeros((1, h, wd, 1))
  cnt = 0
  for hs in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
    for ws in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
      img[:, hs, ws, :] = cnt
      cnt += 1
  win = np.asarray(window_partition(img, w))[..., 0]              # (nW, w²)
  diff = win[:, None, :] - win[:, :, None]
  return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class WindowAttention(nn.Module):
  dim: int
  heads: int
  window: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    n, t, c = x.shape
    hd = c // self.heads
    qkv = nn.Dense(3 * c, use_bias=True, dtype=self.dtype)(x).reshape(n, t, 3, self.heads, hd)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    attn = (q * hd**-0.5) @ k.transpose(0, 1, 3, 2)                # (n, heads, t, t)
    table = self.param("rel_bias", nn.initializers.truncated_normal(0.02),
                       ((2 * self.window - 1)**2, self.heads))
    idx = relative_position_index(self.window)
    # Bias, mask and softmax in float32; the products with v in the computation dtype.
    attn = attn.astype(jnp.float32) + table[idx].transpose(2, 0, 1)[None]
    if mask is not None:
      nw = mask.shape[0]
      attn = attn.reshape(n // nw, nw, self.heads, t, t) + mask[None, :, None]
      attn = attn.reshape(n, self.heads, t, t)
    probs = nn.softmax(attn, axis=-1).astype(self.dtype)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, c)
    return nn.Dense(c, dtype=self.dtype)(out)


class SwinBlock(nn.Module):
  dim: int
  heads: int
  window: int
  shift: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, wd, c = x.shape
    window, shift = self.window, self.shift
    if min(h, wd) <= window:
      window, shift = min(h, wd), 0
    dt = self.dtype
    y = nn.LayerNorm(dtype=dt)(x)
    if shift:
      y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
    mask = jnp.asarray(shift_attention_mask(h, wd, window, shift)) if shift else None
    y = window_partition(y, window)
    y = WindowAttention(c, self.heads, window, dt)(y, mask)
    y = window_reverse(y, window, h, wd)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    x = x + y
    y = nn.Dense(int(c * self.mlp_ratio), dtype=dt)(nn.LayerNorm(dtype=dt)(x))
    return x + nn.Dense(c, dtype=dt)(nn.gelu(y, approximate=False))


class PatchMerging(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(
        b, h // 2, w // 2, 4 * c)
    return nn.Dense(2 * c, use_bias=False, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))


class PatchExpand(nn.Module):
  """Linear C → scale²·C/scale_div, pixel shuffle ×scale, LayerNorm."""
  scale: int = 2
  out_dim: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    out = self.out_dim or c // 2
    x = nn.Dense(self.scale**2 * out, use_bias=False, dtype=self.dtype)(x)
    s = self.scale
    x = x.reshape(b, h, w, s, s, out).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, out)
    return nn.LayerNorm(dtype=self.dtype)(x)


class SwinUNet(nn.Module):
  num_classes: int = 4
  width: float = 1.0
  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 2, 2)
  heads: Sequence[int] = (3, 6, 12, 24)
  window: int = 8
  patch: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt = self.dtype
    x = jnp.asarray(x, dt)
    b, h, w, _ = x.shape
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)                 # grey → 3 channels, as published
    n = len(self.depths)
    grid = h // self.patch
    if h % (self.patch * 2**(n - 1)) or w % (self.patch * 2**(n - 1)):
      raise ValueError(f"Swin-UNet: image {h}×{w} must be divisible by patch·2^(stages−1) = "
                       f"{self.patch * 2**(n - 1)}")
    for i in range(n):
      res = grid // 2**i
      if res > self.window and res % self.window:
        raise ValueError(f"Swin-UNet: stage {i} has {res}×{res} tokens, not divisible by "
                         f"window {self.window} (use 8 at 256×256 or 7 at 224×224)")
    dim = self.heads[0] * max(1, int(round(self.embed_dim * self.width / self.heads[0])))
    x = nn.Conv(dim, (self.patch, self.patch), strides=(self.patch, self.patch), dtype=dt)(x)
    x = nn.LayerNorm(dtype=dt)(x)
    skips = []
    for i in range(n):
      skips.append(x)
      for j in range(self.depths[i]):
        x = SwinBlock(dim * 2**i, self.heads[i], self.window,
                      0 if j % 2 == 0 else self.window // 2, dtype=dt)(x)
      if i < n - 1:
        x = PatchMerging(dt)(x)
    x = nn.LayerNorm(dtype=dt)(x)
    for i in reversed(range(n - 1)):                # decoder mirrors the encoder depths
      x = PatchExpand(dtype=dt)(x)
      x = nn.Dense(dim * 2**i, use_bias=False, dtype=dt)(jnp.concatenate([x, skips[i]], axis=-1))
      for j in range(self.depths[i]):
        x = SwinBlock(dim * 2**i, self.heads[i], self.window,
                      0 if j % 2 == 0 else self.window // 2, dtype=dt)(x)
    x = nn.LayerNorm(dtype=dt)(x)
    x = PatchExpand(scale=self.patch, out_dim=dim, dtype=dt)(x)
    return nn.Conv(self.num_classes, (1, 1), use_bias=False, dtype=dt)(x).astype(jnp.float32)


def build_model(mcfg, num_classes: int = 4) -> nn.Module:
  """The network of config.model: arch in ARCHITECTURES, width, Swin's window, and the
  computation dtype (dtype in DTYPES)."""
  if mcfg.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype: {mcfg.dtype!r} is not one of {DTYPES}")
  dtype = jnp.dtype(mcfg.dtype)
  if mcfg.arch == "unet":
    return UNet(num_classes, width=mcfg.width, depth=mcfg.depth, dtype=dtype)
  if mcfg.arch == "attention_unet":
    return UNet(num_classes, width=mcfg.width, depth=mcfg.depth, attention=True, dtype=dtype)
  if mcfg.arch == "swin_unet":
    return SwinUNet(num_classes, width=mcfg.width, window=mcfg.window,
                    depths=tuple(mcfg.depths),
                    heads=tuple(mcfg.heads), dtype=dtype)
  raise ValueError(f"config.model.arch: {mcfg.arch!r} is not one of {ARCHITECTURES}")
