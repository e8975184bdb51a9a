"""Argmax labels of images, in batches of one shape split over a device mesh.

`Predictor(model, mesh)` pads each batch to `batch_size` images (a multiple of the
mesh's first axis; `evaluation.sharded.pad_to_multiple` repeats the last image) and
places it with `evaluation.sharded.shard_cases`: each device computes its own images
only, and the labels come back replicated (every process of a multi-host run reads
them), cut back to the batch. Without a mesh, or on a 1-device mesh, the same batches
run on the default device. One batch shape: one compile.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from evaluation import sharded

#: Images per evaluation batch over all devices (rounded up to a multiple of their number).
EVAL_BATCH = 32


def labels_fn(model):
  """`fn(params, images (B, H, W, 1)) -> argmax labels (B, H, W)` (argmax of the logits =
  of the softmax; the models' logits are float32 whatever their computation dtype)."""
  return lambda params, x: jnp.argmax(model.apply(params, x), axis=-1)


class Predictor:
  """Argmax labels of (N, H, W) images in batches of `batch_size` over `mesh`."""

  def __init__(self, model, mesh=None, batch_size: int = EVAL_BATCH):
    self.mesh = mesh if mesh is not None and mesh.size > 1 else None
    self.devices = 1 if self.mesh is None else mesh.shape[mesh.axis_names[0]]
    self.batch_size = self.devices * -(-int(batch_size) // self.devices)
    fn = labels_fn(model)
    self.fn = (jax.jit(fn) if self.mesh is None
               else jax.jit(fn, out_shardings=sharded.replicated(self.mesh)))

  def place(self, images: np.ndarray):
    """≤ batch_size images (n, H, W) → (the batch (batch_size, H, W, 1), padded and, on
    a mesh, split over its first axis; n)."""
    if not 0 < len(images) <= self.batch_size:
      raise ValueError(f"Predictor.place: {len(images)} images, expected 1 … {self.batch_size}")
    padded, n = sharded.pad_to_multiple({"image": np.asarray(images)[..., None]},
                                        self.batch_size)
    if self.mesh is None:
      return jnp.asarray(padded["image"]), n
    return sharded.shard_cases(padded, self.mesh)["image"], n

  def __call__(self, params, images: np.ndarray, rows=None) -> np.ndarray:
    """Labels (len(rows), H, W) of `images[rows]` (rows None: all of them)."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    if self.mesh is not None:
      params = jax.device_put(params, sharded.replicated(self.mesh))   # no-op when there
    out = []
    for i in range(0, len(rows), self.batch_size):
      x, n = self.place(images[rows[i:i + self.batch_size]])
      out.append(np.asarray(self.fn(params, x))[:n])
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.int32)
