"""K posterior samples per case (MCSDR §III-D, Eq. 7) in one jit-compiled, vmapped call.

The encoders run once per batch (`MCSDR.condition`); the K reverse-diffusion chains
are `jax.vmap` over K keys of one sampler from `diffusion.samplers`, whose network calls
are the cheap predictor only. Noise is drawn per case from fold_in(key, case id), so a
case's samples do not depend on which other cases share its batch.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffusion import samplers
from diffusion.schedule import VPSchedule
from evaluation import sharded


def per_case_noise(case_ids):
  """A noise_fn drawing element b of a (B,) state from fold_in(key, case_ids[b])."""
  def noise(key, shape, dtype=jnp.float32):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(case_ids)
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(keys)
  return noise


def sample_from_memory(model, params, memory, case_ids, key, schedule: VPSchedule, *,
                       num_samples: int, sampler: samplers.SamplerConfig = samplers.SamplerConfig(),
                       return_trajectory: bool = False):
  """K chains of the predictor alone, given the encoders' output `memory` (the head
  cost of a posterior). Returns samples (B, K) and trajectories (B, K, S) or None."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
  b = case_ids.shape[0]

  def eps_fn(y, t):
    return model.apply(params, memory, y, t, method=model.eps)

  noise_fn = per_case_noise(jnp.asarray(case_ids, jnp.int32))
  chain = samplers.get_sampler(sampler)

  def one_chain(k):
    return chain(eps_fn, schedule, k, (b,), noise_fn=noise_fn,
                 return_trajectory=return_trajectory)

  samples, traj = jax.vmap(one_chain)(jax.random.split(key, num_samples))   # (K, B), (K, S, B)
  if traj is not None:   # 'pf_ode' keeps no trajectory
    traj = jnp.transpose(traj, (2, 0, 1))
  return samples.T, traj


def sample_posterior(model, params, batch, key, schedule: VPSchedule, *, num_samples: int,
                     sampler: samplers.SamplerConfig = samplers.SamplerConfig(), return_trajectory: bool = False):
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


def make_sampler(model, schedule: VPSchedule, *, num_samples: int, sampler: samplers.SamplerConfig,
                 return_trajectory: bool = False, mesh=None):
  """jit-compiled `fn(params, batch, key) -> (samples (B, K), trajectories or None)`.

  On a `mesh` of several devices (the training loop hands the task its mesh), the
  cases of a batch are split over the mesh's first axis (padded to a multiple of its
  size, then cut back); each case's K chains stay on its device. Per-case noise
  (`per_case_noise`) makes the samples independent of the split. The diffrax PF-ODE
  runs under the same `Auto` mesh (the combination that works,
  ../shared/reference/jax_stack.md).
  """
  fn = functools.partial(sample_posterior, model, schedule=schedule, num_samples=num_samples,
                         sampler=sampler, return_trajectory=return_trajectory)
  if mesh is None or mesh.size == 1:
    if jax.device_count() > 1 and mesh is None:
      raise ValueError("make_sampler: several devices and no mesh; pass the mesh to split "
                       "the cases over")
    return jax.jit(fn)
  n = mesh.shape[mesh.axis_names[0]]
  jitted = jax.jit(fn, out_shardings=sharded.replicated(mesh))

  def run(params, batch, key):
    padded, b = sharded.pad_to_multiple(batch, n)
    params = jax.device_put(params, sharded.replicated(mesh))   # no-op when already there
    samples, traj = jitted(params, sharded.shard_cases(padded, mesh), key)
    return samples[:b], (None if traj is None else traj[:b])

  return run
