"""The label ECDF φ of AdaCon Eq. 5, fitted on the training split only, and the
adaptive margin d = 2|φ(y_i) − φ(y_q)| of Eq. 4.

φ(y) = (1/N)·Σ_j 1{y_j ≤ y} over the N training labels (Eq. 5, `mode='paper'`), or
the published code's mid-rank (1/N)·(Σ_j 1{y_j < y} + ½·Σ_j 1{y_j = y})
(`mode='midrank'`). With `bucket_width` w > 0 labels are first mapped to their bucket
⌊y/w⌋ (the published code's 0.05-wide EF buckets), so ties share one value.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

MODES = ("paper", "midrank")


def bucket(y, width: float):
  """⌊y / width⌋ (float), or y itself when width is 0; numpy or jax arrays."""
  xp = jnp if isinstance(y, jnp.ndarray) else np
  return xp.floor(y / width) if width > 0 else y


@dataclasses.dataclass(frozen=True)
class ECDF:
  """Sorted (bucketed) training labels; call it on numpy or jax arrays of labels."""
  sorted_values: np.ndarray
  bucket_width: float = 0.0
  mode: str = "paper"

  @classmethod
  def fit(cls, labels, *, bucket_width: float = 0.0, mode: str = "paper",
          name: str = "training labels") -> ECDF:
    """Fits φ on `labels` (the training split only; NaNs are an error naming `name`)."""
    if mode not in MODES:
      raise ValueError(f"ECDF mode must be one of {MODES}, got {mode!r}")
    if not bucket_width >= 0:
      raise ValueError(f"ECDF bucket_width must be ≥ 0, got {bucket_width}")
    y = np.asarray(labels, np.float64).ravel()
    if y.size == 0 or not np.all(np.isfinite(y)):
      raise ValueError(f"ECDF.fit: {name} must be a non-empty array of finite numbers "
                       f"({y.size} values, {int(np.sum(~np.isfinite(y)))} not finite)")
    return cls(np.sort(bucket(y, bucket_width)), float(bucket_width), mode)

  @property
  def n(self) -> int:
    return int(self.sorted_values.size)

  def __call__(self, y):
    """φ(y) in [0, 1] with the shape of `y` (numpy float64, or jax in its default float)."""
    xp = jnp if isinstance(y, jnp.ndarray) else np
    ref = xp.asarray(self.sorted_values, jnp.result_type(float) if xp is jnp else np.float64)
    b = bucket(xp.asarray(y, ref.dtype), self.bucket_width)
    le = xp.searchsorted(ref, b, side="right").astype(ref.dtype)
    if self.mode == "paper":
      return le / self.n
    lt = xp.searchsorted(ref, b, side="left").astype(ref.dtype)
    return (lt + 0.5 * (le - lt)) / self.n

  def to_json(self) -> dict:
    return {"sorted_values": self.sorted_values.tolist(), "bucket_width": self.bucket_width,
            "mode": self.mode}

  @classmethod
  def from_json(cls, d: dict) -> ECDF:
    return cls(np.asarray(d["sorted_values"], np.float64), float(d["bucket_width"]), d["mode"])


def adaptive_margin(phi):
  """d_ij = 2|φ_i − φ_j| (Eq. 4), an (M, M) matrix from φ (M,); in [0, 2)."""
  xp = jnp if isinstance(phi, jnp.ndarray) else np
  return 2.0 * xp.abs(phi[:, None] - phi[None, :])
