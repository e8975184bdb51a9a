"""Reverse-time samplers over any array shape (kept apart from training, as score_sde).

`eps_fn(y, t)` predicts ε for a state `y` and a scalar time label `t` on the
discrete scale 0..T−1 (float for the ODE). Conditioning is closed over by the caller;
K posterior samples are `jax.vmap` over keys (see mcsdr_jax). `noise_fn(key, shape,
dtype)` draws the prior and per-step noise (LaMoD passes smoothed noise).
Every sampler returns (sample, trajectory); the trajectory is None unless requested.

The registry (score_sde's `register_predictor` / `get_sampling_fn` pattern): a
`SamplerConfig` names a sampler registered with `register_sampler`; `get_sampler(cfg)`
returns its chain. MCSDR (mcsdr_jax.posterior) and LaMoD (lamod_jax.task) both call it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.losses import NoiseFn, gaussian_noise, x0_from_eps
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


def ddpm_timesteps(num_train_steps: int, t_start: int | None = None) -> np.ndarray:
  """Descending timesteps t_start, …, 0 of the ancestral chain followed by −1 (ᾱ = 1);
  `t_start` default T−1."""
  if t_start is not None and not 0 <= int(t_start) < num_train_steps:
    raise ValueError(f"DDPM t_start must be in [0, {num_train_steps - 1}], got {t_start}")
  first = num_train_steps - 1 if t_start is None else int(t_start)
  return np.arange(first, -2, -1).astype(np.int32)


def _check_start(y_start, t_start):
  if (y_start is None) != (t_start is None):
    raise ValueError("give both y_start and t_start (a state already noised to t_start), "
                     "or neither")


def _start(key, shape, dtype, noise_fn, y_start, t_start):
  _check_start(y_start, t_start)
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
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    eps = eps_fn(y, t)
    x0 = x0_from_eps(y, eps, ab)
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
  ts = ddpm_timesteps(schedule.num_steps, t_start)
  y, step_key = _start(key, shape, dtype, noise_fn, y_start, t_start)

  def step(y, inputs):
    t, k = inputs
    beta, ab, ab_prev = schedule.betas[t], schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    eps = eps_fn(y, t)
    mean = (y - beta / jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(1.0 - beta)
    var = beta * (1.0 - ab_prev) / (1.0 - ab)
    y = mean + jnp.sqrt(var) * noise_fn(k, shape, dtype)
    return y, (y if return_trajectory else None)

  keys = jax.random.split(step_key, len(ts) - 1)
  y0, traj = jax.lax.scan(step, y, (jnp.asarray(ts[:-1]), keys))
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
    y = x0_from_eps(y, eps_fn(y, s_end * (T - 1)), schedule.alpha_bar_continuous(s_end))
  traj = sol.ys if save_ts is not None else None
  return y, (traj, sol.stats["num_steps"])


# -- Registry ------------------------------------------------------------------------

_SAMPLERS: dict[str, Callable] = {}


def register_sampler(name: str):
  """Decorator registering `fn(cfg, eps_fn, schedule, key, shape, *, noise_fn, dtype,
  return_trajectory, y_start) -> (sample, trajectory or None)` under `name`
  (score_sde's `register_predictor`)."""
  def register(fn):
    if name in _SAMPLERS:
      raise ValueError(f"sampler {name!r} is already registered")
    _SAMPLERS[name] = fn
    return fn
  return register


def sampler_names() -> tuple[str, ...]:
  """The registered sampler names, in registration order."""
  return tuple(_SAMPLERS)


def _check_name(name: str):
  if name not in _SAMPLERS:
    raise ValueError(f"sampler name {name!r} is not one of {sampler_names()}")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """One reverse chain (hashable: a static argument of jit). `name` is registered:
  'ddim' (τ = `steps`, η = `eta`, `spacing`), 'ddpm' (all steps), 'pf_ode' (diffrax;
  `steps` None = adaptive with rtol/atol, else fixed steps of `solver`) or 'paper_code'
  (LaMoD's published shortcut: ε̂ predicted once at the start, reused by the DDPM chain).
  `t_start` (None: from the prior at T−1): the chain starts from a state `y_start`
  already noised to step t_start, given to the sampler (SDEdit; LaMoD Alg. 1)."""
  name: str = "ddim"
  steps: int | None = 10
  eta: float = 0.0
  spacing: str = "trailing"
  solver: str = "tsit5"
  rtol: float = 1e-4
  atol: float = 1e-4
  t_start: int | None = None

  def __post_init__(self):
    _check_name(self.name)
    if self.name == "ddim" and not self.steps:
      raise ValueError("the DDIM sampler needs steps ≥ 1")
    if self.name == "paper_code" and self.t_start is None:
      raise ValueError("the paper_code sampler reuses the ε̂ of a noised start state: "
                       "it needs t_start")
    if self.name == "pf_ode" and self.t_start is not None:
      raise ValueError("the pf_ode sampler starts from the prior: t_start must be None")

  @property
  def label(self) -> str:
    if self.name == "ddim":
      label = f"ddim{self.steps}" + (f"_eta{self.eta:g}" if self.eta else "")
    elif self.name == "pf_ode":
      label = f"pf_ode_{self.solver}" + (f"{self.steps}" if self.steps else "_adaptive")
    else:
      label = self.name
    return label if self.t_start is None else f"{label}_from{self.t_start}"


def get_sampler(cfg: SamplerConfig):
  """The chain of `cfg` (score_sde's `get_sampling_fn`): `fn(eps_fn, schedule, key, shape,
  *, noise_fn=gaussian_noise, dtype=float32, return_trajectory=False, y_start=None)` ->
  (sample, trajectory or None); `y_start` is the state at cfg.t_start (both or neither)."""
  _check_name(cfg.name)
  chain = _SAMPLERS[cfg.name]

  def sample(eps_fn: EpsFn, schedule: VPSchedule, key, shape, *,
             noise_fn: NoiseFn = gaussian_noise, dtype=jnp.float32,
             return_trajectory: bool = False, y_start=None):
    return chain(cfg, eps_fn, schedule, key, shape, noise_fn=noise_fn, dtype=dtype,
                 return_trajectory=return_trajectory, y_start=y_start)

  return sample


def sampler_times(cfg: SamplerConfig, schedule: VPSchedule):
  """Diffusion times of the states a trajectory holds (start first), for plots; None
  for 'pf_ode' (no trajectory)."""
  if cfg.name == "ddim":
    return ddim_timesteps(schedule.num_steps, cfg.steps, cfg.spacing, cfg.t_start)
  if cfg.name in ("ddpm", "paper_code"):
    return ddpm_timesteps(schedule.num_steps, cfg.t_start)
  return None


@register_sampler("ddim")
def _ddim(cfg, eps_fn, schedule, key, shape, *, noise_fn, dtype, return_trajectory, y_start):
  return ddim_sample(eps_fn, schedule, key, shape, num_steps=cfg.steps, eta=cfg.eta,
                     spacing=cfg.spacing, dtype=dtype, noise_fn=noise_fn,
                     return_trajectory=return_trajectory, y_start=y_start,
                     t_start=cfg.t_start)


@register_sampler("ddpm")
def _ddpm(cfg, eps_fn, schedule, key, shape, *, noise_fn, dtype, return_trajectory, y_start):
  return ddpm_sample(eps_fn, schedule, key, shape, dtype=dtype, noise_fn=noise_fn,
                     return_trajectory=return_trajectory, y_start=y_start,
                     t_start=cfg.t_start)


@register_sampler("pf_ode")
def _pf_ode(cfg, eps_fn, schedule, key, shape, *, noise_fn, dtype, return_trajectory,
            y_start):
  """No trajectory (pf_ode_sample's `save_ts` is not part of the config)."""
  del return_trajectory
  _check_start(y_start, cfg.t_start)
  y, _ = pf_ode_sample(eps_fn, schedule, key, shape, solver=cfg.solver, num_steps=cfg.steps,
                       rtol=cfg.rtol, atol=cfg.atol, dtype=dtype, noise_fn=noise_fn)
  return y, None


@register_sampler("paper_code")
def _paper_code(cfg, eps_fn, schedule, key, shape, *, noise_fn, dtype, return_trajectory,
                y_start):
  """LaMoD's published shortcut: ε̂ = eps_fn(y_start, t_start) once, reused at every step
  of the ancestral DDPM chain from t_start (LaMoD Alg. 1 as released)."""
  _check_start(y_start, cfg.t_start)
  eps = eps_fn(y_start, cfg.t_start)
  return ddpm_sample(lambda y, t: eps, schedule, key, shape, dtype=dtype, noise_fn=noise_fn,
                     return_trajectory=return_trajectory, y_start=y_start,
                     t_start=cfg.t_start)
