"""Patient-attribute encoder of MCSDR (Flax Linen, pure init/apply).

`AttributeEncoder` embeds patient attributes with a learned "missing" embedding per
attribute and train-time attribute dropout, so a case with missing demographics still
gets a prediction. The video backbones live in `backbones.video`.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


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
