"""The uncertainty methods a user would pick instead of MCSDR's diffusion posterior, on
the same conditioning (`model.Conditioner`, the same encoder) and the same evaluation
(K predictive samples per case, `evaluation.probabilistic`):

  'heteroscedastic'  a mean and a σ head, trained by the Gaussian negative log-likelihood
                     (Nix & Weigend 1994; Kendall & Gal 2017 Eq. 5), β-NLL or the closed-form
                     CRPS of a Gaussian (Gneiting et al. 2005, Eq. 5): config.model.het_loss;
  'ensemble'         M = config.model.ensemble_size deterministic regressors (MSE) from
                     independent initialisations, trained side by side in one run (M
                     submodules, each its own parameters; Lakshminarayanan et al. 2017
                     without their adversarial term); the predictive is N(member mean,
                     member SD²);
  'mc_dropout'       the deterministic regressor with dropout (config.model.dropout) on
                     the pooled context and the head's hidden layer, kept on at test time
                     (Gal & Ghahramani 2016); the encoders run once per case, then K
                     dropout masks of the head (last-layer MC dropout).

Gaussian predictives are turned into K samples at the K mid-quantiles
μ + σ·Φ⁻¹((k − ½)/K), k = 1..K, so every method is scored by the same sample-based code.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy import special as jsp_special

from mcsdr_jax import model as model_lib

KINDS = ("heteroscedastic", "ensemble", "mc_dropout")
#: σ = softplus(raw) + SIGMA_FLOOR (standardised EF units): the NLL stays bounded.
SIGMA_FLOOR = 1e-3


def gaussian_nll(mu, sigma, y):
  """−log N(y; μ, σ²) = ½ log(2π σ²) + (y − μ)² / (2σ²), elementwise."""
  return 0.5 * jnp.log(2.0 * math.pi * sigma ** 2) + 0.5 * ((y - mu) / sigma) ** 2


def beta_nll(mu, sigma, y, beta: float = 1.0):
  """β-NLL (Seitzer et al. 2022, Eq. 4): sg(σ^{2β}) · gaussian_nll, elementwise. With
  β = 1 the gradient in μ is the MSE's, (μ − y), whatever σ, so a hard case's mean is
  not down-weighted as by the NLL; σ still gets the NLL's direction."""
  return jax.lax.stop_gradient(sigma ** (2.0 * beta)) * gaussian_nll(mu, sigma, y)


def gaussian_crps(mu, sigma, y):
  """CRPS(N(μ, σ²), y) = σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ (Gneiting et
  al. 2005, Eq. 5), elementwise."""
  z = (y - mu) / sigma
  pdf = jnp.exp(-0.5 * z ** 2) / math.sqrt(2.0 * math.pi)
  cdf = jsp_special.ndtr(z)
  return sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


def sigma_from_raw(raw):
  """The σ head's output → σ > 0 (softplus, plus SIGMA_FLOOR)."""
  return jax.nn.softplus(raw) + SIGMA_FLOOR


#: The proper scoring rules a (μ, σ) head can be trained with, by config name
#: (config.model.het_loss for 'heteroscedastic', config.diffusion.aux_loss for MCSDR's
#: auxiliary EF head).
GAUSSIAN_LOSSES = {"gaussian_nll": gaussian_nll, "beta_nll": beta_nll, "crps": gaussian_crps}


def gaussian_head_loss(name: str, out, y):
  """(mean loss, μ (B,), σ (B,)) of a (μ, raw σ) head's output `out` (B, 2) against the
  targets `y` (B,), with the scoring rule GAUSSIAN_LOSSES[name]."""
  mu, sigma = out[:, 0], sigma_from_raw(out[:, 1])
  return jnp.mean(GAUSSIAN_LOSSES[name](mu, sigma, y)), mu, sigma


def quantile_samples(mu, sigma, num_samples: int):
  """(B, K) samples μ + σ·Φ⁻¹((k − ½)/K) of N(μ, σ²) per case, k = 1..K."""
  levels = (jnp.arange(num_samples) + 0.5) / num_samples
  return mu[:, None] + sigma[:, None] * jsp_special.ndtri(levels)[None, :]


def ensemble_moments(preds):
  """Members' predictions (M, B) → (mean (B,), SD (B,), ddof = 1)."""
  return jnp.mean(preds, axis=0), jnp.std(preds, axis=0, ddof=1)


class Ensemble(nn.Module):
  """`members` DeterministicRegressors with independent parameters ("member0", …),
  applied to the same batch: (M, B) standardised EF.

  The members are separate submodules in one graph (a step costs M members': 0.40 s
  for 5 against 0.10 s for one, benchmarks.train_step on the 2-core CPU). The lifted
  transforms were far slower on XLA:CPU: `nn.scan` over stacked parameters took 8.7 s
  per step, and `nn.vmap`, which turns every convolution into a grouped one, did not
  reach step 50 in 5 minutes."""
  members: int
  regressor_kwargs: Any = None

  @nn.compact
  def __call__(self, batch, train: bool = False):
    kw = dict(self.regressor_kwargs or {})
    return jnp.stack([model_lib.DeterministicRegressor(**kw, name=f"member{m}")(batch, train)
                      for m in range(self.members)])


def check(mcfg) -> None:
  """Clear errors for a competitor's config.model fields."""
  if mcfg.kind == "heteroscedastic" and mcfg.het_loss not in GAUSSIAN_LOSSES:
    raise ValueError(f"config.model.het_loss: {mcfg.het_loss!r} is not one of "
                     f"{tuple(GAUSSIAN_LOSSES)}")
  if mcfg.kind == "ensemble" and mcfg.ensemble_size < 2:
    raise ValueError(f"config.model.ensemble_size must be ≥ 2 for kind='ensemble', got "
                     f"{mcfg.ensemble_size}")
  if mcfg.kind == "mc_dropout" and not 0.0 < mcfg.dropout < 1.0:
    raise ValueError(f"config.model.kind='mc_dropout' needs 0 < config.model.dropout < 1, "
                     f"got {mcfg.dropout}")
  if mcfg.kind == "ensemble" and mcfg.pretrained:
    raise ValueError("config.model.kind='ensemble' trains its members from independent "
                     "random initialisations; config.model.pretrained must be ''")
