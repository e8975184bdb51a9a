"""Data-parallel sharding over every device of every host (jax `docs/parallel.md`).

One 1-D mesh with axis "data" and `AxisType.Auto` (GSPMD propagation; diffrax's
while loops need Auto: jit(vmap(diffeqsolve)) over an Explicit mesh raises "Resource
axis: data … not found in mesh"). Batches are split
along their leading axis over "data"; parameters and optimiser state are
replicated, or, with `config.sharding.shard_params_min_size > 0`, every leaf with
at least that many elements is split along its largest axis divisible by the
device count (ZeRO-3 / FSDP style: XLA gathers them where used). The same code runs
on 1 CPU, 8 faked CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`),
one GPU and many hosts.

Multi-host: `maybe_initialize_distributed` calls `jax.distributed.initialize()` when
`--coordinator_address` (and process flags) or the cluster environment (SLURM,
Open MPI, Cloud TPU: jax auto-detects them when `JAX_DISTRIBUTED=auto`) say so; each
host's loader reads `shard_index = jax.process_index()` of `jax.process_count()`
(`cardiac_data.pipeline.PipelineConfig`), and `global_batch` assembles the
host-local batches into one global array.
"""
from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = "data"


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
  """Starts JAX's distributed runtime for a multi-host run, before any device use.

  Explicit arguments win; otherwise `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID`; `JAX_DISTRIBUTED=auto` lets jax detect SLURM / MPI / TPU pods.
  Returns True when initialised; single-host runs need nothing.
  """
  env = os.environ
  address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
  if address:
    num = num_processes if num_processes is not None else env.get("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else env.get("JAX_PROCESS_ID")
    if num is None or pid is None:
      raise ValueError("multi-host run: a coordinator address needs the number of processes "
                       "and this process's id (--num_processes/--process_id or "
                       "JAX_NUM_PROCESSES/JAX_PROCESS_ID)")
    jax.distributed.initialize(address, int(num), int(pid))
  elif env.get("JAX_DISTRIBUTED", "").lower() == "auto":
    jax.distributed.initialize()
  else:
    return False
  logging.info("distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """The 1-D ("data",) mesh over all devices (or the first `num_devices`)."""
  n = num_devices or jax.device_count()
  return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def data_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_sharding(mesh, tree: Any, min_size: int = 0) -> Any:
  """Shardings for a params/opt-state pytree (of arrays or ShapeDtypeStructs):
  replicated, or (min_size > 0) leaves of ≥ min_size elements split along their
  largest axis that the device count divides."""
  n = mesh.shape[DATA]

  def one(leaf):
    shape = getattr(leaf, "shape", ())
    if min_size <= 0 or n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
      return replicated(mesh)
    axes = [i for i in np.argsort(shape)[::-1] if shape[i] % n == 0]
    if not axes:
      return replicated(mesh)
    spec = [None] * len(shape)
    spec[int(axes[0])] = DATA
    return NamedSharding(mesh, P(*spec))

  return jax.tree.map(one, tree)


def check_batch_size(batch_size: int, mesh, field: str = "config.data.batch_size") -> None:
  n = mesh.shape[DATA]
  if batch_size % n:
    raise ValueError(f"{field}={batch_size} is not divisible by the {n} devices of the mesh; "
                     f"use a multiple of {n}")


def global_batch(batch: dict, mesh) -> dict:
  """Host-local numpy batch → global arrays split along axis 0 over "data".

  One process: `device_put`. Several: each host passes its own rows
  (`jax.make_array_from_process_local_data`), the global batch is their concatenation.
  """
  sharding = data_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      batch)
