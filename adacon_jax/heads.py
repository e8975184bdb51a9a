"""AdaCon networks (§III-C, Fig. 2): a video encoder, a regression branch and an
L2-normalised projection head (dense, ReLU, dense to 128, L2 normalisation)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from backbones import video as video_backbones


def l2_normalize(x, eps: float = 1e-12):
  return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


class ProjectionHead(nn.Module):
  """Dense(hidden) → ReLU → Dense(features) → L2 normalisation (published: 512→512→128)."""
  hidden: int = 512
  features: int = 128

  @nn.compact
  def __call__(self, h):
    h = nn.relu(nn.Dense(self.hidden, name="dense0")(h.astype(jnp.float32)))
    return l2_normalize(nn.Dense(self.features, name="dense1")(h))


class AdaConNet(nn.Module):
  """Encoder (backbones.video.make_video_encoder) → pooled feature h;
  regression = Dense(1)(h) (standardised EF), projection z = ProjectionHead(h).
  Returns (prediction (B,), z (B, proj_features))."""
  encoder: str = "frames"
  encoder_kwargs: Any = None
  features: int = 64
  proj_hidden: int = 512
  proj_features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    enc = video_backbones.make_video_encoder(self.encoder, self.features,
                                             dict(self.encoder_kwargs or {}), self.dtype)
    h = enc(video, train=train).astype(jnp.float32)
    pred = nn.Dense(1, name="regression")(h)[:, 0]
    z = ProjectionHead(self.proj_hidden, self.proj_features, name="projection")(h)
    return pred, z
