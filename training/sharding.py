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

Multi-process: the launchers call `maybe_initialize_distributed` first; it starts
`jax.distributed` when the environment asks (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID, a SLURM job of several tasks, a multi-host TPU slice, JAX_DISTRIBUTED=auto).
Each process's loader yields its block of rows of every global batch (process p of h: rows
p·B/h … (p+1)·B/h − 1, the rows a one-process run would put there), and `global_batch`
assembles the blocks into one global array, so a run's batches and losses do not depend
on the number of processes.
"""
from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from cardiac_data import host

DATA = "data"


def cluster_kind(env=None) -> str | None:
  """'explicit' (JAX_COORDINATOR_ADDRESS set), 'slurm' (a SLURM job of several tasks),
  'tpu' (a multi-host Cloud TPU slice), 'auto' (JAX_DISTRIBUTED=auto: jax detects the
  cluster, Open MPI included) or None (one process)."""
  env = os.environ if env is None else env
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "explicit"
  if env.get("JAX_DISTRIBUTED", "").lower() == "auto":
    return "auto"
  if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
    return "slurm"
  if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]) > 1:
    return "tpu"
  return None


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
  """Starts JAX's distributed runtime for a multi-process run; call it before any other
  JAX call (the launchers do, first thing). Returns True when initialised.

  Explicit arguments win; otherwise `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID`; otherwise jax's own detection on a SLURM job of several tasks
  (srun), a multi-host Cloud TPU slice, or wherever `JAX_DISTRIBUTED=auto` says (Open
  MPI). One process (none of these) needs nothing. CPU processes exchange collectives
  through gloo (set here; GPUs and TPUs use their own).
  """
  env = os.environ
  kind = "explicit" if coordinator_address else cluster_kind(env)
  if kind is None:
    return False
  if jax.distributed.is_initialized():    # A second launcher in one process.
    return True
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if kind == "explicit":
    address = coordinator_address or env["JAX_COORDINATOR_ADDRESS"]
    num = num_processes if num_processes is not None else env.get("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else env.get("JAX_PROCESS_ID")
    if num is None or pid is None:
      raise ValueError("multi-process run: JAX_COORDINATOR_ADDRESS needs JAX_NUM_PROCESSES "
                       "and JAX_PROCESS_ID (this process's id, 0 … N−1)")
    jax.distributed.initialize(address, int(num), int(pid))
  else:
    jax.distributed.initialize()
  logging.info("distributed (%s): process %d of %d, %d local / %d global devices", kind,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def auto_cpu_devices(batch_size: int, cores: int | None = None) -> int:
  """One CPU device per core, at most the largest divisor of `batch_size` that fits."""
  cores = host.usable_cores() if cores is None else int(cores)
  return max(n for n in range(1, max(1, min(cores, batch_size)) + 1) if batch_size % n == 0)


#: XLA:CPU's list of YNNPACK library fusions; an empty value turns them all off.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def configure_cpu_kernels(config, env=None) -> bool:
  """`config.sharding.cpu_ynnpack=False` turns off XLA:CPU's YNNPACK library fusions
  (dots, convolutions, reductions) by appending `YNN_FLAG=` to XLA_FLAGS, so XLA's own
  kernels and fused loops run them. For the per-frame CNN of the EF configs this is
  1.2–1.6× faster per train step on 2 x86 cores (the profile is in docs/benchmarks.md),
  while the LaMoD and segmentation networks run faster with it on. Results move by float32
  summation order only. Call it before the first JAX computation (launch.train does):
  XLA reads XLA_FLAGS once. A YNN_FLAG already in XLA_FLAGS is the user's and is left
  alone. Returns True when the flag was added.
  """
  env = os.environ if env is None else env
  if bool(config.sharding.cpu_ynnpack) or YNN_FLAG in env.get("XLA_FLAGS", ""):
    return False
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {YNN_FLAG}=".strip()
  logging.info("XLA:CPU YNNPACK fusions off (config.sharding.cpu_ynnpack=False)")
  return True


def configure_cpu_devices(config) -> int | None:
  """Sets how many CPU devices JAX creates (`config.sharding.cpu_devices`: 0, the default,
  = `auto_cpu_devices` of config.data.batch_size), before the first JAX computation.

  XLA:CPU runs one device's step on one thread plus a shared intra-op pool, which keeps
  ~1.2 of 2 cores busy for the small per-op work of a CPU-sized model; data parallelism
  over one device per core runs the batch's halves side by side (the same global batch,
  the same losses up to float32 summation order: tests/training/test_sharding.py). Only
  the CPU backend is affected (accelerators keep their devices). Left alone: several
  processes (jax.distributed), and an explicit --xla_force_host_platform_device_count
  in XLA_FLAGS. Returns the number set, or None when left alone.
  """
  requested = int(config.sharding.cpu_devices)
  if requested < 0:
    raise ValueError(f"config.sharding.cpu_devices={requested}: use 0 (one per core) or "
                     "a positive count")
  if cluster_kind() is not None or "xla_force_host_platform_device_count" in os.environ.get(
      "XLA_FLAGS", ""):
    return None
  n = requested or auto_cpu_devices(int(config.data.batch_size))
  jax.config.update("jax_num_cpu_devices", n)
  logging.info("CPU devices: %d (config.sharding.cpu_devices=%d, %d usable cores)", n,
               requested, host.usable_cores())
  return n


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
