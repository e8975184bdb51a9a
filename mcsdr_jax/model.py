"""MCSDR networks: conditioning c = (video, attributes) and the ε-predictor (Fig. 4), and
the deterministic baseline of Table IV (the same conditioning, an MSE head).

`condition(batch)` runs the encoders once per case and returns the predictor's memory;
`eps(memory, y_t, t)` is the cheap per-step call. Conditioning modes:
  * 'tokens' (default): the context is a summary token (the encoder's pooled feature,
    fused with the attribute embeddings when `attr_in_summary`), the video feature map
    pooled to `video_grid` = (t, h, w) tokens with learned position embeddings, and one
    token per attribute, so cross-attention weighs the evidence. The auxiliary EF head
    reads the summary token, so with `attr_in_summary` its supervision teaches the
    fusion of video and attributes directly (the published concatenation, c = [video,
    MLP(a)]); without it the attributes reach EF only through the diffusion loss.
  * 'paper_code': the published code's single token, concat(pooled video feature,
    MLP(attributes)); attention over one token is inert (see score_net.MCSN).
`use_attributes=False` is the vision-only ablation (attribute inputs are ignored).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from backbones import video as video_backbones
from diffusion import schedule as schedule_lib
from mcsdr_jax import encoders
from mcsdr_jax import score_net

CONDITIONINGS = ("tokens", "paper_code")


def _pool_matrix(size: int, bins: int) -> np.ndarray:
  """(bins, size) averaging matrix of adaptive average pooling (bin i covers
  [floor(i·size/bins), ceil((i+1)·size/bins)), as torch.nn.AdaptiveAvgPool)."""
  m = np.zeros((bins, size), np.float32)
  for i in range(bins):
    lo, hi = (i * size) // bins, -((-(i + 1) * size) // bins)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def adaptive_pool(fmap, grid: Sequence[int]):
  """Adaptive average pooling of a (B, T, H, W, D) map to (B, *grid, D); an axis
  shorter than its grid size is kept."""
  for axis, g in zip((1, 2, 3), grid):
    m = jnp.asarray(_pool_matrix(fmap.shape[axis], min(g, fmap.shape[axis])))
    fmap = jnp.moveaxis(jnp.tensordot(m, fmap, axes=([1], [axis])), 0, axis)
  return fmap


class Conditioner(nn.Module):
  """Encoders → context tokens (B, N, hidden) (mode 'tokens') or one token ('paper_code')."""
  num_categories: Sequence[int]
  encoder: str = "small"
  encoder_kwargs: Any = None
  features: int = 128
  hidden: int = 256
  attr_features: int = 64
  attr_dropout: float = 0.0
  use_attributes: bool = True
  conditioning: str = "tokens"
  video_grid: Sequence[int] = (4, 4, 4)
  attr_in_summary: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, batch, *, train: bool = False, return_pooled: bool = False):
    """Context tokens; with `return_pooled`, (context, the encoder's pooled feature)."""
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f"config.model.conditioning: {self.conditioning!r} is not one of "
                       f"{CONDITIONINGS}")
    enc = video_backbones.make_video_encoder(self.encoder, self.features,
                                             dict(self.encoder_kwargs or {}), self.dtype)
    pooled, fmap = enc(batch["video"], train=train, return_tokens=True)
    pooled, fmap = pooled.astype(jnp.float32), fmap.astype(jnp.float32)
    attrs = None
    if self.use_attributes and (batch["attr_cont"].shape[-1] or batch["attr_cat"].shape[-1]):
      attrs = encoders.AttributeEncoder(self.num_categories, self.attr_features,
                                        self.attr_dropout, name="attributes")(
          batch["attr_cont"], batch["attr_cont_missing"], batch["attr_cat"], train=train)
    if self.conditioning == "paper_code":
      c = pooled
      if attrs is not None:
        a = nn.relu(nn.Dense(self.attr_features, name="attr_mlp0")(attrs.reshape(attrs.shape[0], -1)))
        c = jnp.concatenate([c, nn.Dense(self.attr_features, name="attr_mlp1")(a)], axis=-1)
      return (c[:, None, :], pooled) if return_pooled else c[:, None, :]
    video = adaptive_pool(fmap, self.video_grid)
    video = video.reshape(video.shape[0], -1, video.shape[-1])
    video = nn.Dense(self.hidden, name="video_tokens")(video)
    video = video + self.param("video_pos", nn.initializers.normal(0.02), video.shape[1:])
    summary = pooled
    if attrs is not None and self.attr_in_summary:
      summary = jnp.concatenate([pooled, attrs.reshape(attrs.shape[0], -1)], axis=-1)
    summary = nn.Dense(self.hidden, name="summary_token")(summary)[:, None]
    context = [summary, video]
    if attrs is not None:
      a = nn.Dense(self.hidden, name="attr_tokens")(attrs)
      context.append(a + self.param("attr_pos", nn.initializers.normal(0.02), a.shape[1:]))
    context = jnp.concatenate(context, axis=1)
    return (context, pooled) if return_pooled else context


class MCSDR(nn.Module):
  """ε_θ(y_t, t, c): Conditioner + a predictor of `score_net.PREDICTORS`.

  `eps_skip` (default) preconditions the output as ε̂ = √(1−ᾱ_t)·y_t + √ᾱ_t·F(y_t, t, c):
  the zero network is then the optimal ε-predictor for unit-variance targets, and F is a
  v-prediction (x̂0 = √ᾱ_t·y_t − √(1−ᾱ_t)·F). The loss is still Eq. 6. Without it (the
  published code) ε̂ must reproduce y_t to ~1e-3 at t ≈ T, where DDIM's first
  x̂0 = (y − √(1−ᾱ)ε̂)/√ᾱ multiplies the error by 1/√ᾱ_999 ≈ 157.
  `schedule` (diffusion.schedule.VPSchedule) gives ᾱ_t by the continuous VP form at
  s = (t+1)/T (`VPSchedule.alpha_bar_at_step`).
  `proj_head` is a plug-in's projection head on the encoder's pooled feature (the
  AdaCon plug-in, config.model.adacon); None = none, the parameters are unchanged.
  `aux_outputs`: width of the auxiliary EF head (2: μ and σ, config.diffusion.aux_loss).
  """
  num_categories: Sequence[int]
  predictor: str = "mcsn"
  predictor_kwargs: Any = None
  conditioner_kwargs: Any = None
  eps_skip: bool = True
  schedule: schedule_lib.VPSchedule = schedule_lib.VPSchedule()
  proj_head: nn.Module | None = None
  aux_outputs: int = 1

  def setup(self):
    if self.predictor not in score_net.PREDICTORS:
      raise ValueError(f"config.model.predictor: unknown predictor {self.predictor!r}; "
                       f"choose from {sorted(score_net.PREDICTORS)}")
    kw = dict(self.predictor_kwargs or {})
    self.conditioner = Conditioner(self.num_categories, **dict(self.conditioner_kwargs or {}))
    self.head = score_net.PREDICTORS[self.predictor](**kw)
    self.aux_head = nn.Dense(self.aux_outputs)

  def condition(self, batch, *, train: bool = False):
    """Memory of the predictor for each case (encoders run here, once)."""
    return self.head.prepare(self.conditioner(batch, train=train))

  def eps(self, memory, y, t):
    """ε̂ for noisy targets y (B,) at diffusion times t (scalar or (B,))."""
    out = self.head(memory, y, t)
    if not self.eps_skip:
      return out
    ab = self.schedule.alpha_bar_at_step(t)
    return jnp.sqrt(1.0 - ab) * y + jnp.sqrt(ab) * out

  def condition_and_aux(self, batch, *, train: bool = False):
    """(memory, a linear head on the first context token: EF estimate (B,), or (B,
    aux_outputs) when aux_outputs > 1): the auxiliary regression that supervises the
    encoder directly (config.diffusion.aux_weight, aux_loss)."""
    context = self.conditioner(batch, train=train)
    return self.head.prepare(context), self._aux(context)

  def _aux(self, context):
    out = self.aux_head(context[:, 0])
    return out[:, 0] if self.aux_outputs == 1 else out

  def condition_aux_and_projection(self, batch, *, train: bool = False):
    """(memory, EF estimate, the plug-in's embedding z (B, features) of the pooled feature)."""
    context, pooled = self.conditioner(batch, train=train, return_pooled=True)
    return self.head.prepare(context), self._aux(context), self.proj_head(pooled)

  def project(self, batch, *, train: bool = False):
    """The plug-in's embedding z of the pooled video feature only (a second view)."""
    return self.proj_head(self.conditioner(batch, train=train, return_pooled=True)[1])

  def __call__(self, batch, y, t, *, train: bool = False):
    if self.proj_head is not None:
      return self.eps(self.condition_aux_and_projection(batch, train=train)[0], y, t)
    return self.eps(self.condition_and_aux(batch, train=train)[0], y, t)


class DeterministicRegressor(nn.Module):
  """Table IV baseline: the same Conditioner, mean-pooled context → MLP → EF (standardised).

  `outputs` = 2 gives the heteroscedastic competitor's (μ, raw σ) (mcsdr_jax/competitors);
  `dropout` drops the pooled context and the hidden layer when `train` (MC dropout keeps
  it on at test time through `readout`). `features` (the encoders, once per case) and
  `readout` (the head) split the call for K dropout masks of the head alone."""
  num_categories: Sequence[int]
  conditioner_kwargs: Any = None
  hidden: int = 256
  outputs: int = 1
  dropout: float = 0.0

  def setup(self):
    self.conditioner = Conditioner(self.num_categories, **dict(self.conditioner_kwargs or {}))
    self.head0 = nn.Dense(self.hidden)
    self.head1 = nn.Dense(self.outputs)
    self.drop = nn.Dropout(self.dropout)

  def features(self, batch, *, train: bool = False):
    """The mean-pooled context (B, hidden)."""
    return jnp.mean(self.conditioner(batch, train=train), axis=1)

  def readout(self, h, *, train: bool = False):
    """(B,) for `outputs` = 1, else (B, outputs); dropout (the 'dropout' RNG) when `train`."""
    h = nn.gelu(self.head0(self.drop(h, deterministic=not train)))
    out = self.head1(self.drop(h, deterministic=not train))
    return out[..., 0] if self.outputs == 1 else out

  def __call__(self, batch, train: bool = False):
    return self.readout(self.features(batch, train=train), train=train)


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
