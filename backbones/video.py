"""Video backbones shared by the EF regressors (MCSDR, AdaCon): clip (B, T, H, W, C) →
pooled feature (B, features) and, on request, spatio-temporal tokens (B, T', H', W', D).

`make_video_encoder(name, ...)` builds one by config name: 'frames' (`FrameEncoder`, a
per-frame 2D CNN with temporal convolutions, the CPU default), 'small'
(`SmallVideoEncoder`, a tubelet 3D CNN) or 'r2plus1d' (`r2plus1d.R2Plus1D18`,
accelerators). Flax Linen, pure init/apply; the module is named "encoder" so the
optimiser's encoder learning-rate multiplier finds it.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ENCODERS = ("frames", "small", "r2plus1d", "uniformer")
NORM_STATS = ("frozen", "train")


def published_input(video, channels: int = 0, pixel_mean=(), pixel_std=()):
  """A clip in the pipeline's scale (x/255, (B, T, H, W, C)) brought to what a published
  network was trained on: a grey clip (C = 1) replicated to `channels` channels (0 = as
  given), as EchoNet's AVIs store grey three times; then, when `pixel_mean` is given
  (one value per channel, 0..255 units), (255·x − mean_c) / std_c per channel.

  EchoNet-Dynamic and CoReEcho standardise 0..255 frames by dataset statistics
  (≈32.5 / ≈49.9); torchvision's Kinetics weights take [0, 1] frames with the
  Kinetics mean/std (pass mean·255, std·255). Computed in float32.
  """
  x = video.astype(jnp.float32)
  if channels:
    if x.shape[-1] == 1:
      x = jnp.repeat(x, channels, axis=-1)
    elif x.shape[-1] != channels:
      raise ValueError(f"encoder input: clip has {x.shape[-1]} channels, the stem expects "
                       f"{channels} (config.model.encoder_kwargs.in_channels)")
  if len(pixel_mean):
    mean = jnp.asarray(pixel_mean, jnp.float32)
    std = jnp.asarray(pixel_std, jnp.float32)
    if mean.shape != (x.shape[-1],) or std.shape != mean.shape:
      raise ValueError(f"config.model.encoder_kwargs.pixel_mean/pixel_std: need one value per "
                       f"input channel ({x.shape[-1]}), got {tuple(pixel_mean)} / {tuple(pixel_std)}")
    x = (255.0 * x - mean) / std
  return x


def apply_train(model: nn.Module, variables, *args, **kwargs):
  """`model.apply(variables, *args, **kwargs)` in a training step: with a `batch_stats`
  collection (BatchNorm) that collection is mutable, so an encoder with
  norm_stats='train' can update its running averages; returns (output, the updated
  batch_stats or None). With norm_stats='frozen' they come back unchanged."""
  if "batch_stats" in variables:
    out, updated = model.apply(variables, *args, mutable=["batch_stats"], **kwargs)
    return out, updated["batch_stats"]
  return model.apply(variables, *args, **kwargs), None


def make_video_encoder(name: str, features: int, kwargs: dict[str, Any], dtype) -> nn.Module:
  """The video encoder `name` of ENCODERS (config.model.encoder), named "encoder"."""
  if name == "frames":
    return FrameEncoder(features=features, dtype=dtype, name="encoder", **kwargs)
  if name == "small":
    return SmallVideoEncoder(features=features, dtype=dtype, name="encoder", **kwargs)
  if name == "r2plus1d":
    from backbones import r2plus1d  # pylint: disable=g-import-not-at-top
    return r2plus1d.R2Plus1D18(features=features, dtype=dtype, name="encoder", **kwargs)
  if name == "uniformer":
    from backbones import uniformer  # pylint: disable=g-import-not-at-top
    return uniformer.UniFormerS(features=features, dtype=dtype, name="encoder", **kwargs)
  raise ValueError(f"config.model.encoder: unknown encoder {name!r}; choose from {ENCODERS}")


class SmallVideoEncoder(nn.Module):
  """Tubelet patch embedding + 3D conv stages over (B, T, H, W, C).

  The clip is cut into non-overlapping `patch` = (pt, ph, pw) tubelets embedded by one
  matmul (as ViViT), then conv-GN-GELU stages run at that low resolution, each after the
  first halving H and W; `return_tokens=True` also returns that feature map
  (B, T', H', W', features). Full-resolution 3D convolutions are avoided on purpose: XLA's
  CPU kernels for them are slow, and this design trains on a laptop CPU in minutes.
  """
  widths: Sequence[int] = (64, 128)
  features: int = 128
  patch: Sequence[int] = (2, 8, 8)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video, *, train: bool = False, return_tokens: bool = False):
    b, t, h, w, c = video.shape
    pt, ph, pw = self.patch
    if t % pt or h % ph or w % pw:
      raise ValueError(f"SmallVideoEncoder: clip shape {(t, h, w)} is not divisible by the "
                       f"patch {tuple(self.patch)} (config.model.patch)")
    x = video.astype(self.dtype).reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // pt, h // ph, w // pw, pt * ph * pw * c)
    x = nn.Dense(self.widths[0], dtype=self.dtype, name="patch_embed")(x)
    for i, width in enumerate(self.widths):
      stride = (1, 1, 1) if i == 0 else (1, 2, 2)
      x = nn.Conv(width, (3, 3, 3), strides=stride, padding="SAME", use_bias=False,
                  dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.GroupNorm(num_groups=min(8, width), dtype=self.dtype, name=f"norm{i}")(x)
      x = nn.gelu(x)
    fmap = nn.Dense(self.features, dtype=self.dtype, name="proj")(x)
    pooled = jnp.mean(fmap, axis=(1, 2, 3))
    return (pooled, fmap) if return_tokens else pooled


class FrameEncoder(nn.Module):
  """Per-frame 2D CNN, then residual temporal convolutions: an (2+1)D design sized for CPUs.

  Each frame passes `widths` stride-2 conv-GN-GELU stages (2D convolutions are fast on
  XLA:CPU); `temporal` residual (3, 1, 1) convolutions then mix time. `norm='clip'`
  takes the GroupNorm statistics over all frames of a clip, so a frame-to-frame change
  (the cavity shrinking) survives normalisation; 'frame' normalises each frame alone,
  which removes much of a per-frame quantity such as cavity area. The pooled feature
  concatenates the mean, max and min over time of the per-frame spatial means, so a
  per-frame quantity such as cavity area can enter as its range over the cycle (as EF
  does). `motion=True` adds, per frame, its difference from the clip's temporal mean as
  input channels: static tissue cancels and the moving walls stand out, so each frame's
  2D CNN sees the motion it would otherwise have to infer across frames.
  `return_tokens=True` also returns the map (B, T, H', W', features).
  """
  widths: Sequence[int] = (16, 32, 64, 64)
  features: int = 64
  temporal: int = 1
  norm: str = "frame"
  motion: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video, *, train: bool = False, return_tokens: bool = False):
    if self.norm not in ("clip", "frame"):
      raise ValueError(f"config.model.encoder_kwargs.norm must be 'clip' or 'frame', "
                       f"got {self.norm!r}")
    if self.motion:
      video = jnp.concatenate([video, video - jnp.mean(video, axis=1, keepdims=True)], -1)
    b, t, h, w, c = video.shape
    x = video.astype(self.dtype).reshape(b * t, h, w, c)
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (5, 5) if i == 0 else (3, 3), strides=(2, 2), padding="SAME",
                  use_bias=False, dtype=self.dtype, name=f"conv{i}")(x)
      if self.norm == "clip":   # statistics over the clip's frames: keeps ED/ES contrast
        x = x.reshape((b, t) + x.shape[1:])
      x = nn.gelu(nn.GroupNorm(num_groups=min(8, width), dtype=self.dtype, name=f"norm{i}")(x))
      x = x.reshape((b * t,) + x.shape[-3:])
    x = x.reshape((b, t) + x.shape[1:])
    for j in range(self.temporal):
      y = nn.Conv(x.shape[-1], (3, 1, 1), padding="SAME", use_bias=False, dtype=self.dtype,
                  name=f"tconv{j}")(x)
      x = x + nn.gelu(nn.GroupNorm(num_groups=min(8, x.shape[-1]), dtype=self.dtype,
                                   name=f"tnorm{j}")(y))
    fmap = nn.Dense(self.features, dtype=self.dtype, name="proj")(x)
    per_frame = jnp.mean(fmap.astype(jnp.float32), axis=(2, 3))          # (B, T, F)
    stats = jnp.concatenate([per_frame.mean(1), per_frame.max(1), per_frame.min(1)], axis=-1)
    pooled = nn.Dense(self.features, name="pool")(stats)
    return (pooled, fmap) if return_tokens else pooled
