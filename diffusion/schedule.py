"""Variance-preserving noise schedule, discrete and continuous (Song et al. 2021).

Discrete (DDPM): β_t = linspace(β_start, β_end, T), ᾱ_t = Π_{s≤t}(1 − β_s), t = 0..T−1.
Continuous VP-SDE (MCSDR Eq. 3): dy = −½β(s)y ds + √β(s) dw, s ∈ [0, 1], with
β(s) = β̄_min + s(β̄_max − β̄_min), β̄_min = T·β_start, β̄_max = T·β_end (0.1 and 20 for the
default), so ᾱ(s) = exp(−β̄_min s − ½(β̄_max − β̄_min)s²) matches the discrete ᾱ at s = (t+1)/T.
A network trained on integer t is called at the continuous label t = s·(T − 1)
(score_sde's convention for discrete-trained VP models).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


def alpha_bar_continuous(s, num_steps: int, beta_start: float, beta_end: float):
  """ᾱ(s) = exp(−β̄_min·s − ½(β̄_max − β̄_min)s²) of the VP-SDE with β̄ = T·β (s ∈ [0, 1])."""
  b0, b1 = num_steps * beta_start, num_steps * beta_end
  return jnp.exp(-b0 * s - 0.5 * (b1 - b0) * s ** 2)


class VPSchedule(NamedTuple):
  """Arrays of the discrete schedule (a pytree; pass it into jitted functions)."""
  betas: jnp.ndarray            # (T,)
  alphas_cumprod: jnp.ndarray   # (T,) ᾱ_t
  beta_start: float
  beta_end: float

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]

  def beta_continuous(self, s):
    """β(s) of the VP-SDE, s ∈ [0, 1]."""
    T = self.num_steps
    return T * self.beta_start + s * T * (self.beta_end - self.beta_start)

  def alpha_bar_continuous(self, s):
    """ᾱ(s) = exp(−∫₀ˢ β(u) du)."""
    return alpha_bar_continuous(s, self.num_steps, self.beta_start, self.beta_end)


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> VPSchedule:
  """The DDPM/MCSDR schedule; ᾱ computed in float64, stored as float32."""
  if num_steps < 2 or not 0 < beta_start < beta_end < 1:
    raise ValueError(f"linear_schedule: need num_steps ≥ 2 and 0 < beta_start < beta_end < 1, "
                     f"got {num_steps}, {beta_start}, {beta_end}")
  betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  alphas_cumprod = np.cumprod(1.0 - betas)
  return VPSchedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alphas_cumprod, jnp.float32),
                    float(beta_start), float(beta_end))
