"""Evaluation batches over a device mesh: a batch that the host holds in full is padded
to a multiple of the device count and its cases are split over the mesh's first axis
(each device takes its rows; works across hosts). The mesh comes from the caller (the
training loop hands it to the tasks)."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def case_sharding(mesh) -> NamedSharding:
  """Cases (axis 0) split over the mesh's first axis."""
  return NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def pad_to_multiple(batch: dict, multiple: int) -> tuple[dict, int]:
  """Pads every leaf's axis 0 (repeating the last row) to a multiple of `multiple`;
  returns (padded batch, original size)."""
  sizes = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(f"batch leaves have different leading sizes {sorted(sizes)}")
  b = sizes.pop()
  extra = -b % multiple
  if not extra:
    return batch, b
  pad = lambda x: np.concatenate([np.asarray(x), np.repeat(np.asarray(x)[-1:], extra, 0)])  # noqa: E731
  return jax.tree.map(pad, batch), b


def shard_cases(batch: dict, mesh) -> dict:
  """A host-held batch (axis 0 a multiple of the mesh's first axis) → global arrays
  whose cases are split over that axis."""
  sharding = case_sharding(mesh)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(one, batch)


def host_block(rows: np.ndarray) -> np.ndarray:
  """This process's block of a global batch's rows (process p of h: rows p·B/h …
  (p+1)·B/h − 1), what `training.sharding.global_batch` expects from it; one process:
  all of them. B must be divisible by the process count."""
  h, p = jax.process_count(), jax.process_index()
  if len(rows) % h:
    raise ValueError(f"a global batch of {len(rows)} rows is not divisible by the {h} "
                     "processes (config.data.batch_size)")
  b = len(rows) // h
  return rows[p * b:(p + 1) * b]
