"""Noise predictors ε_θ(y_t, t, c) for the scalar EF diffusion (MCSDR §III-C, Fig. 4).

Each predictor splits into `prepare(context)`, run once per case on the context
tokens (B, N, D), and `__call__(memory, y, t)`, run at every sampler step; so the
K × τ head calls of a posterior never repeat the key/value projections.

  * `MCSN`: the query is Dense([y_t, temb(t)]); cross-attention (Eq. 5) over the
    context tokens, post-LN residual blocks as in the published code, Dense → ε.
    With a single context token (the `paper_code` conditioning of `model.py`) the
    softmax is identically 1 and the block reduces to out(v(c)): attention is inert.
  * `MLPPredictor` (Table V "MLP"): [y_t, temb, mean-pooled context] → MLP → ε.
  * `TransformerDecoder` (Table V): pre-LN decoder layers (self-attention over the
    query token, cross-attention, FFN); deeper than MCSN.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
  """Sinusoidal embedding of (possibly fractional) diffusion times t (B,) → (B, dim)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class TimeQuery(nn.Module):
  """Query token from the noisy target and the time: Dense([y_t, GELU(Dense(temb))])."""
  hidden: int
  time_dim: int = 64

  @nn.compact
  def __call__(self, y, t):
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), y.shape)
    temb = nn.gelu(nn.Dense(self.time_dim, name="time")(timestep_embedding(t, self.time_dim)))
    return nn.Dense(self.hidden, name="query")(jnp.concatenate([y[:, None], temb], axis=-1))


class KeyValue(nn.Module):
  """Per-head keys and values of the context tokens: (B, N, D) → 2 × (B, N, H, D/H)."""
  hidden: int
  heads: int

  @nn.compact
  def __call__(self, context):
    if self.hidden % self.heads:
      raise ValueError(f"config.model.hidden={self.hidden} is not divisible by "
                       f"config.model.heads={self.heads}")
    shape = context.shape[:2] + (self.heads, self.hidden // self.heads)
    k = nn.Dense(self.hidden, name="key")(context).reshape(shape)
    v = nn.Dense(self.hidden, name="value")(context).reshape(shape)
    return k, v


class CrossAttention(nn.Module):
  """Multi-head attention of one query token per case over precomputed (k, v) (Eq. 5)."""
  hidden: int
  heads: int

  @nn.compact
  def __call__(self, x, kv):
    k, v = kv
    q = nn.Dense(self.hidden, name="query")(x).reshape(x.shape[0], self.heads, -1)
    logits = jnp.einsum("bhd,bnhd->bhn", q, k) / math.sqrt(q.shape[-1])
    weights = nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhn,bnhd->bhd", weights, v).reshape(x.shape[0], self.hidden)
    return nn.Dense(self.hidden, name="out")(out)


class FeedForward(nn.Module):
  hidden: int
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, x):
    x = nn.gelu(nn.Dense(self.hidden * self.mlp_ratio, name="fc1")(x))
    return nn.Dense(self.hidden, name="fc2")(x)


class MCSN(nn.Module):
  """Multimodal Conditional Score Network: `num_layers` post-LN blocks
  h = LN(q + Attn(q, K, V)); h = LN(h + FFN(h)); ε = Dense(h)."""
  hidden: int = 256
  heads: int = 8
  num_layers: int = 1
  mlp_ratio: int = 4
  time_dim: int = 64

  def setup(self):
    self.time_query = TimeQuery(self.hidden, self.time_dim)
    self.kv = [KeyValue(self.hidden, self.heads) for _ in range(self.num_layers)]
    self.attn = [CrossAttention(self.hidden, self.heads) for _ in range(self.num_layers)]
    self.ffn = [FeedForward(self.hidden, self.mlp_ratio) for _ in range(self.num_layers)]
    self.norm1 = [nn.LayerNorm() for _ in range(self.num_layers)]
    self.norm2 = [nn.LayerNorm() for _ in range(self.num_layers)]
    self.out = nn.Dense(1)

  def prepare(self, context):
    return [kv(context) for kv in self.kv]

  def __call__(self, memory, y, t):
    h = self.time_query(y, t)
    for i in range(self.num_layers):
      h = self.norm1[i](h + self.attn[i](h, memory[i]))
      h = self.norm2[i](h + self.ffn[i](h))
    return self.out(h)[:, 0]


class MLPPredictor(nn.Module):
  """Table V "MLP": ε = MLP([Dense(y_t, temb), Dense(mean-pooled context)])."""
  hidden: int = 256
  num_layers: int = 2
  time_dim: int = 64

  def setup(self):
    self.time_query = TimeQuery(self.hidden, self.time_dim)
    self.context = nn.Dense(self.hidden)
    self.layers = [nn.Dense(self.hidden) for _ in range(self.num_layers)]
    self.out = nn.Dense(1)

  def prepare(self, context):
    return self.context(jnp.mean(context, axis=1))

  def __call__(self, memory, y, t):
    h = self.time_query(y, t) + memory
    for layer in self.layers:
      h = layer(nn.gelu(h))
    return self.out(nn.gelu(h))[:, 0]


class TransformerDecoder(nn.Module):
  """Table V "Transformer decoder": pre-LN layers x += SelfAttn(LN x); x += CrossAttn(LN x);
  x += FFN(LN x). With one query token the self-attention is its value path."""
  hidden: int = 256
  heads: int = 8
  num_layers: int = 4
  mlp_ratio: int = 4
  time_dim: int = 64

  def setup(self):
    self.time_query = TimeQuery(self.hidden, self.time_dim)
    self.kv = [KeyValue(self.hidden, self.heads) for _ in range(self.num_layers)]
    self.self_attn = [nn.Dense(self.hidden) for _ in range(self.num_layers)]
    self.cross_attn = [CrossAttention(self.hidden, self.heads) for _ in range(self.num_layers)]
    self.ffn = [FeedForward(self.hidden, self.mlp_ratio) for _ in range(self.num_layers)]
    self.norms = [[nn.LayerNorm() for _ in range(3)] for _ in range(self.num_layers)]
    self.final_norm = nn.LayerNorm()
    self.out = nn.Dense(1)

  def prepare(self, context):
    return [kv(context) for kv in self.kv]

  def __call__(self, memory, y, t):
    h = self.time_query(y, t)
    for i in range(self.num_layers):
      n1, n2, n3 = self.norms[i]
      h = h + self.self_attn[i](n1(h))
      h = h + self.cross_attn[i](n2(h), memory[i])
      h = h + self.ffn[i](n3(h))
    return self.out(self.final_norm(h))[:, 0]


PREDICTORS = {"mcsn": MCSN, "mlp": MLPPredictor, "transformer_decoder": TransformerDecoder}
