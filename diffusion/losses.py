"""Forward noising and the ε-prediction objective (MCSDR Eq. 6, DDPM's L_simple)."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffusion.schedule import VPSchedule

NoiseFn = Callable[[jax.Array, tuple, jnp.dtype], jnp.ndarray]


def gaussian_noise(key, shape, dtype=jnp.float32):
  return jax.random.normal(key, shape, dtype)


def _expand(a, like):
  return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def q_sample(schedule: VPSchedule, y0, t, noise):
  """y_t = √ᾱ_t·y0 + √(1−ᾱ_t)·ε for integer t of shape y0.shape[:t.ndim]."""
  ab = _expand(schedule.alphas_cumprod[t], y0)
  return jnp.sqrt(ab) * y0 + jnp.sqrt(1.0 - ab) * noise


def x0_from_eps(y_t, eps, alpha_bar):
  """ŷ0 = (y_t − √(1−ᾱ)·ε̂)/√ᾱ: the clean estimate implied by a predicted ε̂ (q_sample
  solved for y0; DDPM Eq. 15, DDIM Eq. 12's "predicted x0"), ᾱ broadcastable to y_t."""
  return (y_t - jnp.sqrt(1.0 - alpha_bar) * eps) / jnp.sqrt(alpha_bar)


def predict_x0(schedule: VPSchedule, y_t, t, eps):
  """`x0_from_eps` at integer t of shape y_t.shape[:t.ndim]."""
  return x0_from_eps(y_t, eps, _expand(schedule.alphas_cumprod[t], y_t))


def eps_prediction(schedule: VPSchedule, eps_fn: Callable, y0, key, *,
                   noise_fn: NoiseFn = gaussian_noise):
  """One draw of the ε-objective: (t, ε, y_t, ε_θ(y_t, t)), t ~ U{0..T−1} per batch item."""
  t_key, n_key = jax.random.split(key)
  t = jax.random.randint(t_key, (y0.shape[0],), 0, schedule.num_steps)
  noise = noise_fn(n_key, y0.shape, y0.dtype)
  y_t = q_sample(schedule, y0, t, noise)
  return t, noise, y_t, eps_fn(y_t, t)


def eps_loss(schedule: VPSchedule, eps_fn: Callable, y0, key, *,
             noise_fn: NoiseFn = gaussian_noise):
  """E_{t,ε}‖ε − ε_θ(y_t, t)‖² (Eq. 6), t ~ U{0..T−1} per batch item.

  `eps_fn(y_t, t)` predicts ε; y0 has a leading batch axis; `noise_fn` draws ε
  (LaMoD passes smoothed noise). Returns the mean over all elements.
  """
  _, noise, _, pred = eps_prediction(schedule, eps_fn, y0, key, noise_fn=noise_fn)
  return jnp.mean((pred - noise) ** 2)
