"""Reverse-time samplers over any array shape (kept apart from training, as score_sde).

`eps_fn(y, t)` predicts ε for a state `y` and a scalar time label `t` on the
discrete scale 0..T−1 (float for the ODE). Conditioning is closed over by the caller;
K posterior samples are `jax.vmap` over keys (see mcsdr_jax). `noise_fn(key, shape,
dtype)` draws the prior and per-step noise (LaMoD passes smoothed noise).
Every sampler returns (sample, trajectory); the trajectory is None unless requested.
"""
from __future__ import annotations

from typing import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.losses import NoiseFn, gaussian_noise
from diffusion.schedule import VPSchedule

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def ddim_timesteps(num_train_steps: int, num_steps: int, spacing: str = "trailing",
                   t_start: int | None = None) -> np.ndarray:
  """Descending timesteps t_0 > … > t_{τ−1} followed by −1 (meaning ᾱ = 1).

  'trailing' (default): linspace(−1, T−1, τ+1) truncated to int, the spacing of the
    published MCSDR code: (999, 899, …, 99, −1) for T = 1000, τ = 10; it starts at the
    last training step, so the N(0, 1) prior matches ᾱ_{T−1} ≈ 4e−5.
  'leading': (τ−1)·T/τ, …, T/τ, 0, −1, the DDIM paper's t_i = (i−1)·T/τ.
  `t_start` (default T−1): start the chain there instead (SDEdit-style; LaMoD Alg. 1
  starts from the noised registration latent), i.e. T is replaced by t_start + 1.
  """
  if t_start is not None:
    if not 0 <= int(t_start) < num_train_steps:
      raise ValueError(f"DDIM t_start must be in [0, {num_train_steps - 1}], got {t_start}")
    num_train_steps = int(t_start) + 1
  if not 1 <= num_steps <= num_train_steps:
    raise ValueError(f"DDIM steps must be in [1, {num_train_steps}], got {num_steps}")
  if spacing == "trailing":
    ts = np.linspace(-1, num_train_steps - 1, num_steps + 1).astype(np.int64)[::-1]
  elif spacing == "leading":
    ts = np.concatenate([np.arange(num_steps)[::-1] * (num_train_steps // num_steps), [-1]])
  else:
    raise ValueError(f"DDIM spacing must be 'trailing' or 'leading', got {spacing!r}")
  return ts.astype(np.int32)


def _ab(schedule: VPSchedule, t):
  return jnp.where(t >= 0, schedule.alphas_cumprod[jnp.maximum(t, 0)], 1.0)


def _start(key, shape, dtype, noise_fn, y_start, t_start):
  if (y_start is None) != (t_start is None):
    raise ValueError("give both y_start and t_start (a state already noised to t_start), "
                     "or neither")
  prior_key, step_key = jax.random.split(key)
  y = noise_fn(prior_key, shape, dtype) if y_start is None else jnp.asarray(y_start, dtype)
  return y, step_key


def ddim_sample(eps_fn: EpsFn, schedule: VPSchedule, key, shape, *, num_steps: int = 10,
                eta: float = 0.0, spacing: str = "trailing", dtype=jnp.float32,
                noise_fn: NoiseFn = gaussian_noise, return_trajectory: bool = False,
                y_start=None, t_start: int | None = None):
  """DDIM (Song et al. 2021, Eq. 12): deterministic for η = 0; trajectory (τ+1, *shape).

  With `y_start` at step `t_start` (both given) the chain starts there instead of at
  the prior (SDEdit; LaMoD Alg. 1, lines 3–6)."""
  ts = ddim_timesteps(schedule.num_steps, num_steps, spacing, t_start)
  y, step_key = _start(key, shape, dtype, noise_fn, y_start, t_start)

  def step(y, inputs):
    t, t_prev, k = inputs
    ab, ab_prev = _ab(schedule, t), _ab(schedule, t_prev)
    eps = eps_fn(y, t)
    x0 = (y - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab)) * jnp.sqrt(1.0 - ab / ab_prev)
    y = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma ** 2, 0.0)) * eps
         + sigma * noise_fn(k, shape, dtype))
    return y, (y if return_trajectory else None)

  keys = jax.random.split(step_key, num_steps)
  y0, traj = jax.lax.scan(step, y, (jnp.asarray(ts[:-1]), jnp.asarray(ts[1:]), keys))
  if return_trajectory:
    traj = jnp.concatenate([y[None], traj])
  return y0, traj


def ddpm_sample(eps_fn: EpsFn, schedule: VPSchedule, key, shape, *, dtype=jnp.float32,
                noise_fn: NoiseFn = gaussian_noise, return_trajectory: bool = False,
                y_start=None, t_start: int | None = None):
  """Ancestral DDPM (Ho et al. 2020, Alg. 2) over all T steps, with the posterior
  variance β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t) and no noise at t = 0. With `y_start` at
  `t_start` the chain runs t_start, …, 0 from there (LaMoD Alg. 1, Eq. 8)."""
  y, step_key = _start(key, shape, dtype, noise_fn, y_start, t_start)
  T = schedule.num_steps if t_start is None else int(t_start) + 1
  if not 1 <= T <= schedule.num_steps:
    raise ValueError(f"DDPM t_start must be in [0, {schedule.num_steps - 1}], got {t_start}")

  def step(y, inputs):
    t, k = inputs
    beta, ab, ab_prev = schedule.betas[t], _ab(schedule, t), _ab(schedule, t - 1)
    eps = eps_fn(y, t)
    mean = (y - beta / jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(1.0 - beta)
    var = beta * (1.0 - ab_prev) / (1.0 - ab)
    y = mean + jnp.sqrt(var) * noise_fn(k, shape, dtype)
    return y, (y if return_trajectory else None)

  ts = jnp.arange(T - 1, -1, -1)
  y0, traj = jax.lax.scan(step, y, (ts, jax.random.split(step_key, T)))
  if return_trajectory:
    traj = jnp.concatenate([y[None], traj])
  return y0, traj


_SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun, "tsit5": diffrax.Tsit5,
            "dopri5": diffrax.Dopri5}


def pf_ode_sample(eps_fn: EpsFn, schedule: VPSchedule, key, shape, *, solver: str = "tsit5",
                  num_steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                  s_end: float = 1e-3, denoise: bool = True, save_ts=None,
                  max_steps: int = 4096, dtype=jnp.float32, noise_fn: NoiseFn = gaussian_noise):
  """Probability-flow ODE (MCSDR Eq. 4) from s = 1 to s_end with diffrax.

  dy/ds = −½β(s)[y + ∇log p_s(y)], ∇log p_s = −ε̂/√(1−ᾱ(s)), ε̂ = eps_fn(y, s·(T−1)).
  `num_steps` given: fixed steps of the chosen solver; else adaptive (PID controller,
  rtol/atol). `denoise` returns E[y_0 | y_{s_end}] = (y − √(1−ᾱ)ε̂)/√ᾱ at the end.
  `save_ts` (descending s values) returns the trajectory at those times.
  Returns (sample, (trajectory or None, number of solver steps)).
  """
  if solver not in _SOLVERS:
    raise ValueError(f"pf_ode solver must be one of {sorted(_SOLVERS)}, got {solver!r}")
  T = schedule.num_steps

  def drift(s, y, args):
    ab = schedule.alpha_bar_continuous(s)
    eps = eps_fn(y, s * (T - 1))
    return -0.5 * schedule.beta_continuous(s) * (y - eps / jnp.sqrt(1.0 - ab))

  y1 = noise_fn(key, shape, dtype)
  if num_steps is None:
    controller, dt0 = diffrax.PIDController(rtol=rtol, atol=atol), -(1.0 - s_end) / 20
  else:
    controller, dt0 = diffrax.ConstantStepSize(), -(1.0 - s_end) / num_steps
  saveat = diffrax.SaveAt(ts=jnp.asarray(save_ts, dtype)) if save_ts is not None \
      else diffrax.SaveAt(t1=True)
  sol = diffrax.diffeqsolve(diffrax.ODETerm(drift), _SOLVERS[solver](), t0=1.0, t1=s_end,
                            dt0=dt0, y0=y1, saveat=saveat, stepsize_controller=controller,
                            max_steps=max_steps)
  y = sol.ys[-1]
  if denoise:
    ab = schedule.alpha_bar_continuous(s_end)
    y = (y - jnp.sqrt(1.0 - ab) * eps_fn(y, s_end * (T - 1))) / jnp.sqrt(ab)
  traj = sol.ys if save_ts is not None else None
  return y, (traj, sol.stats["num_steps"])
