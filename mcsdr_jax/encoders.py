"""Video and attribute encoders (Flax Linen, pure init/apply).

`SmallVideoEncoder` is the CPU default: a 3D CNN that trains on 16×112×112 clips in
minutes. It returns a pooled feature and, on request, spatio-temporal tokens for
cross-attention. `AttributeEncoder` embeds patient attributes with a learned
"missing" embedding per attribute and train-time attribute dropout, so a case with
missing demographics still gets a prediction.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class SmallVideoEncoder(nn.Module):
  """3D CNN over (B, T, H, W, C): conv-GN-GELU stages, each halving H and W
  (and T from the second stage on)."""
  widths: Sequence[int] = (16, 32, 64, 128)
  features: int = 128
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video, *, train: bool = False, return_tokens: bool = False):
    x = video.astype(self.dtype)
    for i, width in enumerate(self.widths):
      stride = (1 if i == 0 else 2, 2, 2)
      x = nn.Conv(width, (3, 3, 3), strides=stride, padding="SAME", use_bias=False,
                  dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.GroupNorm(num_groups=min(8, width), dtype=self.dtype, name=f"norm{i}")(x)
      x = nn.gelu(x)
    tokens = nn.Dense(self.features, dtype=self.dtype, name="proj")(x)
    pooled = jnp.mean(tokens, axis=(1, 2, 3))
    if return_tokens:
      return pooled, tokens.reshape(tokens.shape[0], -1, self.features)
    return pooled


class AttributeEncoder(nn.Module):
  """One token per attribute: continuous value -> Dense, categorical -> Embed.

  Inputs (from cardiac_data.attributes.AttributePreprocessor.transform):
    cont f32 (B, n_cont), cont_missing bool (B, n_cont), cat int32 (B, n_cat) whose
    code `num_categories[j]` means missing. During training each attribute is
    replaced by its missing embedding with probability `dropout` (needs the
    'attr_dropout' RNG).
  """
  num_categories: Sequence[int]
  features: int = 64
  dropout: float = 0.0

  @nn.compact
  def __call__(self, cont, cont_missing, cat, *, train: bool = False):
    b, n_cont = cont.shape
    n_cat = cat.shape[-1]
    tokens = []
    if n_cont:
      w = self.param("cont_w", nn.initializers.normal(1.0), (n_cont, self.features))
      bias = self.param("cont_b", nn.initializers.zeros, (n_cont, self.features))
      missing_emb = self.param("cont_missing", nn.initializers.normal(0.02), (n_cont, self.features))
      cont_tok = cont[..., None] * w + bias
      missing = cont_missing
      if train and self.dropout > 0:
        drop = jax.random.bernoulli(self.make_rng("attr_dropout"), self.dropout, (b, n_cont))
        missing = missing | drop
      tokens.append(jnp.where(missing[..., None], missing_emb, cont_tok))
    for j in range(n_cat):
      codes = cat[:, j]
      if train and self.dropout > 0:
        drop = jax.random.bernoulli(self.make_rng("attr_dropout"), self.dropout, (b,))
        codes = jnp.where(drop, self.num_categories[j], codes)
      tokens.append(nn.Embed(self.num_categories[j] + 1, self.features, name=f"cat{j}")(codes)[:, None])
    if not tokens:
      return jnp.zeros((b, 0, self.features))
    tokens = jnp.concatenate(tokens, axis=1)
    return nn.gelu(nn.Dense(self.features, name="mix")(tokens))


class DeterministicRegressor(nn.Module):
  """Encoder + attribute tokens (mean-pooled) + MLP head -> one scalar (Table IV baseline)."""
  num_categories: Sequence[int]
  encoder_widths: Sequence[int] = (16, 32, 64, 128)
  features: int = 128
  attr_features: int = 64
  attr_dropout: float = 0.0

  @nn.compact
  def __call__(self, batch, *, train: bool = False):
    h = SmallVideoEncoder(self.encoder_widths, self.features, name="encoder")(batch["video"], train=train)
    a = AttributeEncoder(self.num_categories, self.attr_features, self.attr_dropout,
                         name="attributes")(batch["attr_cont"], batch["attr_cont_missing"],
                                            batch["attr_cat"], train=train)
    if a.shape[1]:
      h = jnp.concatenate([h, jnp.mean(a, axis=1)], axis=-1)
    h = nn.gelu(nn.Dense(self.features, name="head0")(h))
    return nn.Dense(1, name="head1")(h)[..., 0]
