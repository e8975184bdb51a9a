"""LaMoD's networks (Flax linen) over volumes (B, T, H, W, C), T = frames (pairs).

RegistrationNet  E_R / D_R of §3.1: a 3-D UNet without skips (as the published code's
                 `skip_connect=false`): spatial pooling only (no temporal pooling), a latent
                 z (B, T, H/2^L, W/2^L, C_z), and a decoder to the initial velocity v0 of
                 each pair (channels (x, y), pixels of the registration grid).
EpsNet           ε_θ(z^(m), m) of Eqs. 7–9: a 3-D UNet with skips and a sinusoidal
                 embedding of the diffusion step added in every block.
MotionDecoder    D_η: z → Lagrangian displacement (B, T, H_d, W_d, 2) on the DENSE grid
                 (upsampling by 2 per level, then a resize to the DENSE grid).
RegressionUNet   the direct mask → displacement baseline (StrainNet-like 3-D UNet).
LaMoD            holds the five parts (the registration-only displacement needs no net).

`dtype` is the computation dtype of every layer (float32, or bfloat16 on accelerators);
parameters stay float32 (Flax's `param_dtype`), GroupNorm/LayerNorm statistics are
reduced in float32, and `LaMoD`'s methods cast what leaves a network back to float32, so
losses, EPDiff shooting, strain and metrics run in float32.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _groups(c: int) -> int:
  return max(g for g in (8, 4, 2, 1) if c % g == 0)


class Conv(nn.Module):
  """'SAME' conv over (T, H, W) with kernel (kt, 3, 3), kt ∈ {1, 3}, computed as a 2-D
  conv of the kt time-neighbours stacked in channels (zero padding in time): the same
  function as a 3-D conv, several times faster on XLA:CPU for these channel counts."""
  features: int
  kt: int = 3
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, t, h, w, _ = x.shape
    if self.kt == 3:
      p = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
      x = jnp.concatenate([p[:, :-2], p[:, 1:-1], p[:, 2:]], axis=-1)
    elif self.kt != 1:
      raise ValueError(f"Conv: temporal kernel must be 1 or 3, got {self.kt}")
    y = nn.Conv(self.features, (3, 3), kernel_init=self.kernel_init, dtype=self.dtype)(
        x.reshape(b * t, h, w, x.shape[-1]))
    return y.reshape(b, t, h, w, self.features)


def step_embedding(t, dim: int):
  """Sinusoidal embedding (B, dim) of diffusion steps t (B,)."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class Block(nn.Module):
  """Conv (3, 3, 3) → GroupNorm → SiLU → conv (1, 3, 3) → GroupNorm → SiLU, with a
  residual path and an optional additive step embedding (one temporal conv per block
  keeps the CPU cost down; stacked blocks still mix time)."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, emb=None):
    dt = self.dtype
    h = Conv(self.features, dtype=dt)(x)
    h = nn.silu(nn.GroupNorm(num_groups=_groups(self.features), dtype=dt)(h))
    if emb is not None:
      h = h + nn.Dense(self.features, dtype=dt)(emb)[:, None, None, None, :]
    h = Conv(self.features, kt=1, dtype=dt)(h)
    h = nn.silu(nn.GroupNorm(num_groups=_groups(self.features), dtype=dt)(h))
    skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1, 1), dtype=dt)(x)
    return h + skip.astype(h.dtype)


def _pool(x):
  return nn.avg_pool(x, (1, 2, 2), strides=(1, 2, 2))


def _up(x, size=None):
  b, t, h, w, c = x.shape
  size = (2 * h, 2 * w) if size is None else tuple(size)
  return jax.image.resize(x, (b, t, *size, c), "linear")


#: Encoder.norm: how z is standardised for the diffusion (no affine terms). The published
#: code standardises with one global mean/std of the training latents; these are per case.
LATENT_NORMS = ("frame", "position", "none")


class Encoder(nn.Module):
  """E_R: Blocks and spatial pooling per width; a 1×1×1 projection to `latent` channels.
  `norm` (LATENT_NORMS): 'frame' standardises z per frame over (H, W, C), so positions
  keep their relative magnitudes (closest to the published global standardisation);
  'position' over the channels of each position (every position's vector gets unit scale:
  its norm is lost); 'none' leaves z as the projection gives it."""
  widths: Sequence[int]
  latent: int
  norm: str                  # No default: config.model.latent_norm is the one source.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for w in self.widths:
      x = _pool(Block(w, dtype=self.dtype)(x))
    z = nn.Conv(self.latent, (1, 1, 1), dtype=self.dtype)(x)
    if self.norm not in LATENT_NORMS:
      raise ValueError(f"latent norm {self.norm!r} is not one of {LATENT_NORMS}")
    if self.norm != "none":
      axes = (-3, -2, -1) if self.norm == "frame" else -1
      z = nn.LayerNorm(reduction_axes=axes, use_bias=False, use_scale=False,
                       dtype=self.dtype)(z)
    return z


class Decoder(nn.Module):
  """Upsampling decoder: per width a ×2 (bilinear) upsampling and a Block, a 3×3×3
  output conv (zero-initialised), then a bilinear resize to `out_size` if given (the
  DENSE displacement is smooth at the pixel scale)."""
  widths: Sequence[int]
  out_channels: int
  out_size: tuple[int, int] | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    x = Conv(self.widths[0], dtype=self.dtype)(z.astype(self.dtype))
    for w in self.widths:
      x = Block(w, dtype=self.dtype)(_up(x))
    x = Conv(self.out_channels, kernel_init=nn.initializers.zeros, dtype=self.dtype)(x)
    if self.out_size is not None and tuple(x.shape[2:4]) != tuple(self.out_size):
      x = _up(x, self.out_size)
    return x


class UNet(nn.Module):
  """3-D UNet with skips, spatial pooling; `step_dim` > 0 adds a step embedding;
  `in_pool` > 1 average-pools the input first and resizes the output back."""
  widths: Sequence[int]
  out_channels: int
  step_dim: int = 0
  in_pool: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, t=None):
    dt = self.dtype
    size = x.shape[2:4]
    x = x.astype(dt)
    if self.in_pool > 1:
      x = nn.avg_pool(x, (1, self.in_pool, self.in_pool), strides=(1, self.in_pool, self.in_pool))
    emb = None
    if self.step_dim:
      emb = nn.Dense(self.step_dim, dtype=dt)(step_embedding(t, self.step_dim))
      emb = nn.Dense(self.step_dim, dtype=dt)(nn.silu(emb))
    x = Conv(self.widths[0], dtype=dt)(x)
    skips = []
    for i, w in enumerate(self.widths):
      x = Block(w, dtype=dt)(x, emb)
      skips.append(x)
      if i < len(self.widths) - 1:
        x = _pool(x)
    for w, s in zip(reversed(self.widths[:-1]), reversed(skips[:-1])):
      x = _up(x, s.shape[2:4])
      x = Block(w, dtype=dt)(jnp.concatenate([x, s], axis=-1), emb)
    x = Conv(self.out_channels, kernel_init=nn.initializers.zeros, dtype=dt)(x)
    return _up(x, size) if self.in_pool > 1 else x


class LaMoD(nn.Module):
  """The registration net (E_R, D_R), ε_θ, D_η and the regression baseline.

  Inputs: `pairs` (B, T, H_r, W_r, 2) = (I⁰, I^τ) on the registration grid; `dense_pairs`
  (B, T, H_d, W_d, 2) the same on the DENSE grid (baseline only). `dtype`: computation
  dtype of all five networks; every method returns float32.
  """
  reg_widths: Sequence[int]
  latent: int
  eps_widths: Sequence[int]
  step_dim: int
  decoder_widths: Sequence[int]
  baseline_widths: Sequence[int]
  dense_size: tuple[int, int]
  latent_norm: str           # Encoder.norm (config.model.latent_norm).
  baseline_pool: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    dt = self.dtype
    self.reg_encoder = Encoder(self.reg_widths, self.latent, self.latent_norm, dtype=dt)
    self.reg_decoder = Decoder(tuple(reversed(self.reg_widths)), 2, dtype=dt)
    self.eps_net = UNet(self.eps_widths, self.latent, self.step_dim, dtype=dt)
    self.motion_decoder = Decoder(self.decoder_widths, 2, tuple(self.dense_size), dtype=dt)
    self.baseline = UNet(self.baseline_widths, 2, in_pool=self.baseline_pool, dtype=dt)

  def encode(self, pairs):
    return self.reg_encoder(pairs).astype(jnp.float32)

  def velocity(self, z):
    return self.reg_decoder(z).astype(jnp.float32)

  def eps(self, z_t, t):
    return self.eps_net(z_t, t).astype(jnp.float32)

  def motion(self, z):
    return self.motion_decoder(z).astype(jnp.float32)

  def regress(self, dense_pairs):
    return self.baseline(dense_pairs).astype(jnp.float32)

  def __call__(self, pairs, dense_pairs):
    """Touches every part (for init): returns (v0, ε̂, u, u_baseline)."""
    z = self.encode(pairs)
    t = jnp.zeros((z.shape[0],), jnp.int32)
    return self.velocity(z), self.eps(z, t), self.motion(z), self.regress(dense_pairs)
