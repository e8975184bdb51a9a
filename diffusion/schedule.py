"""Variance-preserving noise schedule, discrete and continuous (Song et al. 2021).

Discrete (DDPM): β_t = linspace(β_start, β_end, T), ᾱ_t = Π_{s≤t}(1 − β_s), t = 0..T−1.
Continuous VP-SDE (MCSDR Eq. 3): dy = −½β(s)y ds + √β(s) dw, s ∈ [0, 1], with
β(s) = β̄_min + s(β̄_max − β̄_min), β̄_min = T·β_start, β̄_max = T·β_end (0.1 and 20 for the
default), so ᾱ(s) = exp(−β̄_min s − ½(β̄_max − β̄_min)s²) matches the discrete ᾱ at s = (t+1)/T.
A network trained on integer t is called at the continuous label t = s·(T − 1)
(score_sde's convention for discrete-trained VP models).

One `VPSchedule` object is taken by the models (mcsdr_jax.model.MCSDR) and the samplers.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class VPSchedule:
  """The linear-β VP schedule of (T, β_start, β_end); its arrays are derived.

  Hashable and a static pytree (no leaves): usable as a Flax module attribute and as an
  argument of jitted functions alike. ᾱ is computed in float64 and stored as float32.
  """
  num_steps: int = 1000
  beta_start: float = 1e-4
  beta_end: float = 0.02

  def __post_init__(self):
    if self.num_steps < 2 or not 0 < self.beta_start < self.beta_end < 1:
      raise ValueError(
          "diffusion schedule (config.diffusion.num_steps, beta_start, beta_end): need "
          f"num_steps ≥ 2 and 0 < beta_start < beta_end < 1, got {self.num_steps}, "
          f"{self.beta_start}, {self.beta_end}")
    object.__setattr__(self, "num_steps", int(self.num_steps))
    object.__setattr__(self, "beta_start", float(self.beta_start))
    object.__setattr__(self, "beta_end", float(self.beta_end))
    betas = np.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=np.float64)
    # Host arrays (never tracers); the properties below hand out jax arrays.
    object.__setattr__(self, "_betas", betas.astype(np.float32))
    object.__setattr__(self, "_alphas_cumprod", np.cumprod(1.0 - betas).astype(np.float32))

  @classmethod
  def from_config(cls, diffusion_cfg) -> VPSchedule:
    """The schedule of config.diffusion (num_steps, beta_start, beta_end)."""
    return cls(diffusion_cfg.num_steps, diffusion_cfg.beta_start, diffusion_cfg.beta_end)

  @property
  def betas(self) -> jnp.ndarray:
    """β_t, (T,) float32."""
    return jnp.asarray(self._betas)

  @property
  def alphas_cumprod(self) -> jnp.ndarray:
    """ᾱ_t, (T,) float32."""
    return jnp.asarray(self._alphas_cumprod)

  def alpha_bar(self, t):
    """ᾱ_t at integer steps t, with ᾱ_{−1} = 1 (the clean end of a reverse chain)."""
    return jnp.where(t >= 0, self.alphas_cumprod[jnp.maximum(t, 0)], 1.0)

  def beta_continuous(self, s):
    """β(s) of the VP-SDE, s ∈ [0, 1]."""
    T = self.num_steps
    return T * self.beta_start + s * T * (self.beta_end - self.beta_start)

  def alpha_bar_continuous(self, s):
    """ᾱ(s) = exp(−∫₀ˢ β(u) du) = exp(−β̄_min·s − ½(β̄_max − β̄_min)s²), s ∈ [0, 1]."""
    b0, b1 = self.num_steps * self.beta_start, self.num_steps * self.beta_end
    return jnp.exp(-b0 * s - 0.5 * (b1 - b0) * s ** 2)

  def alpha_bar_at_step(self, t):
    """ᾱ((t + 1)/T): the continuous ᾱ at the time of (possibly fractional) step labels t,
    taken as float32 (MCSDR's ε-preconditioning, mcsdr_jax.model.MCSDR.eps)."""
    return self.alpha_bar_continuous((jnp.asarray(t, jnp.float32) + 1.0) / self.num_steps)
