"""K posterior samples per case (MCSDR §III-D, Eq. 7) in one jit-compiled, vmapped call.

The encoders run once per batch (`MCSDR.condition`); the K reverse-diffusion chains
are `jax.vmap` over K keys of one sampler from `diffusion.samplers`, whose network calls
are the cheap predictor only. Noise is drawn per case from fold_in(key, case id), so a
case's samples do not depend on which other cases share its batch.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from diffusion import samplers
from diffusion.schedule import VPSchedule

SAMPLERS = ("ddim", "ddpm", "pf_ode")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """name: 'ddim' (τ = `steps`, η = `eta`, `spacing`), 'ddpm' (all T steps) or 'pf_ode'
  (diffrax; `steps` None = adaptive with rtol/atol, else fixed steps of `solver`)."""
  name: str = "ddim"
  steps: int | None = 10
  eta: float = 0.0
  spacing: str = "trailing"
  solver: str = "tsit5"
  rtol: float = 1e-4
  atol: float = 1e-4

  def __post_init__(self):
    if self.name not in SAMPLERS:
      raise ValueError(f"sampler name {self.name!r} is not one of {SAMPLERS}")
    if self.name == "ddim" and not self.steps:
      raise ValueError("the DDIM sampler needs steps ≥ 1")

  @property
  def label(self) -> str:
    if self.name == "ddim":
      return f"ddim{self.steps}" + (f"_eta{self.eta:g}" if self.eta else "")
    if self.name == "pf_ode":
      return f"pf_ode_{self.solver}" + (f"{self.steps}" if self.steps else "_adaptive")
    return "ddpm"


def sampler_times(cfg: SamplerConfig, schedule: VPSchedule):
  """Diffusion times of the states a trajectory holds (prior first), for plots."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if cfg.name == "ddim":
    return samplers.ddim_timesteps(schedule.num_steps, cfg.steps, cfg.spacing)
  if cfg.name == "ddpm":
    return np.arange(schedule.num_steps, -1, -1) - 1
  return None


def per_case_noise(case_ids):
  """A noise_fn drawing element b of a (B,) state from fold_in(key, case_ids[b])."""
  def noise(key, shape, dtype=jnp.float32):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(case_ids)
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(keys)
  return noise


def run_sampler(cfg: SamplerConfig, eps_fn, schedule: VPSchedule, key, shape, noise_fn,
                return_trajectory: bool = False):
  """One chain of `cfg` for a batch state of `shape`; returns (y0, trajectory or None)."""
  if cfg.name == "ddim":
    return samplers.ddim_sample(eps_fn, schedule, key, shape, num_steps=cfg.steps, eta=cfg.eta,
                                spacing=cfg.spacing, noise_fn=noise_fn,
                                return_trajectory=return_trajectory)
  if cfg.name == "ddpm":
    return samplers.ddpm_sample(eps_fn, schedule, key, shape, noise_fn=noise_fn,
                                return_trajectory=return_trajectory)
  y, _ = samplers.pf_ode_sample(eps_fn, schedule, key, shape, solver=cfg.solver,
                                num_steps=cfg.steps, rtol=cfg.rtol, atol=cfg.atol,
                                noise_fn=noise_fn)
  return y, None


def sample_from_memory(model, params, memory, case_ids, key, schedule: VPSchedule, *,
                       num_samples: int, sampler: SamplerConfig = SamplerConfig(),
                       return_trajectory: bool = False):
  """K chains of the predictor alone, given the encoders' output `memory` (the head
  cost of a posterior). Returns samples (B, K) and trajectories (B, K, S) or None."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
  b = case_ids.shape[0]

  def eps_fn(y, t):
    return model.apply(params, memory, y, t, method=model.eps)

  noise_fn = per_case_noise(jnp.asarray(case_ids, jnp.int32))

  def one_chain(k):
    return run_sampler(sampler, eps_fn, schedule, k, (b,), noise_fn, return_trajectory)

  samples, traj = jax.vmap(one_chain)(jax.random.split(key, num_samples))   # (K, B), (K, S, B)
  if return_trajectory:
    traj = jnp.transpose(traj, (2, 0, 1))
  return samples.T, traj


def sample_posterior(model, params, batch, key, schedule: VPSchedule, *, num_samples: int,
                     sampler: SamplerConfig = SamplerConfig(), return_trajectory: bool = False):
  """Samples (B, K) of the standardised target, and trajectories (B, K, S) on request.

  `model` is an `mcsdr_jax.model.MCSDR`; `batch` needs the model inputs and `index`
  (the case ids that seed the noise). The encoders run once (`MCSDR.condition`), then
  `sample_from_memory`. Jit with `num_samples`, `sampler` and `return_trajectory`
  static (see `make_sampler`).
  """
  memory = model.apply(params, batch, method=model.condition)
  return sample_from_memory(model, params, memory, batch["index"], key, schedule,
                            num_samples=num_samples, sampler=sampler,
                            return_trajectory=return_trajectory)


def make_sampler(model, schedule: VPSchedule, *, num_samples: int, sampler: SamplerConfig,
                 return_trajectory: bool = False, mesh=None):
  """jit-compiled `fn(params, batch, key) -> (samples (B, K), trajectories or None)`.

  With several devices (or an explicit `mesh`), the cases of a batch are split over
  the mesh's "data" axis (padded to a multiple of the device count, then cut back);
  each case's K chains stay on its device. Per-case noise (`per_case_noise`) makes
  the samples independent of the split. The diffrax PF-ODE runs under the same
  `Auto` mesh (the combination that works, ../shared/reference/jax_stack.md).
  """
  from training import sharding  # pylint: disable=g-import-not-at-top
  fn = functools.partial(sample_posterior, model, schedule=schedule, num_samples=num_samples,
                         sampler=sampler, return_trajectory=return_trajectory)
  if mesh is None and jax.device_count() == 1:
    return jax.jit(fn)
  mesh = mesh if mesh is not None else sharding.make_mesh()
  n = mesh.shape[sharding.DATA]
  jitted = jax.jit(fn, out_shardings=sharding.replicated(mesh))

  def sharded(params, batch, key):
    padded, b = sharding.pad_to_multiple(batch, n)
    params = jax.device_put(params, sharding.replicated(mesh))   # no-op when already there
    samples, traj = jitted(params, sharding.shard_host_array(padded, mesh), key)
    return samples[:b], (None if traj is None else traj[:b])

  return sharded
