"""Contrastive and regression losses of AdaCon (Dai et al. 2021) and its baselines.

Embeddings z are L2-normalised rows (M, D), so z_i·z_j = cos θ_ij. `positives` is an
(M, M) bool matrix, P(i) = {p ≠ i : positives[i, p]} (same label or same label bucket,
`positive_mask`); the diagonal is ignored everywhere.

  * `adacon_loss`: Eq. 6, −1/|P(i)| Σ_p log[exp(s·cos θ_ip) / Σ_{a≠i} exp(s·(cos θ_ia + d_ia))]
    with the adaptive margin d (Eq. 4) on negatives only (d = 0 on positives, as Appendix A
    and the published code); mean over anchors with |P(i)| > 0 (the paper sums).
  * `supcon_loss`: Eq. 1 (Khosla et al. 2020), the same with d = 0; s = 1/temperature.
  * `npair_loss`: multi-class N-pair (Sohn 2016) on (anchor, positive) rows.
  * `adaptive_triplet_loss`: batch-all triplets with a label-dependent margin (Zheng et
    al. [17]; Appendix B: AdaCon's one-positive, one-negative limit).
  * `regression_loss`: L1, MSE or Huber(δ) (Table X).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from adacon_jax import ecdf as ecdf_lib

CONTRASTIVE = ("adacon", "supcon", "npair", "triplet", "none")
REGRESSION = ("mse", "l1", "huber")


def positive_mask(labels, bucket_width: float = 0.0):
  """positives[i, j] = labels i and j fall in the same bucket ⌊y/w⌋ (w = 0: equal labels)."""
  b = ecdf_lib.bucket(labels, bucket_width)
  return b[:, None] == b[None, :]


def _off_diagonal(m: int):
  return ~jnp.eye(m, dtype=bool)


def margin_contrastive_loss(z, positives, margins, scale: float):
  """Supervised contrastive loss with additive margins on negatives (Eq. 6 / Eq. 14).

  Returns (loss, number of anchors with at least one positive)."""
  m = z.shape[0]
  off = _off_diagonal(m)
  pos = positives & off
  sim = z @ z.T
  logits = scale * (sim + jnp.where(pos, 0.0, margins))
  logits = jnp.where(off, logits, -jnp.inf)
  log_den = jax.nn.logsumexp(logits, axis=1, keepdims=True)
  log_prob = scale * sim - log_den
  n_pos = jnp.sum(pos, axis=1)
  per_anchor = -jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
  has = n_pos > 0
  count = jnp.sum(has)
  return jnp.sum(jnp.where(has, per_anchor, 0.0)) / jnp.maximum(count, 1), count


def adacon_loss(z, phi, positives, *, scale: float = 150.0):
  """AdaCon Eq. 6 with φ = the ECDF values (M,) of the labels (d_ij = 2|φ_i − φ_j|)."""
  return margin_contrastive_loss(z, positives, ecdf_lib.adaptive_margin(phi), scale)[0]


def supcon_loss(z, positives, *, scale: float = 150.0):
  """SupCon (AdaCon Eq. 1): each label (or bucket) a class, no margins."""
  return margin_contrastive_loss(z, positives, jnp.zeros(positives.shape), scale)[0]


def npair_loss(anchors, positives_z, same_class, *, scale: float = 1.0):
  """Multi-class N-pair loss: anchor i, its positive row i, negatives the positive rows j
  of other classes: mean_i log(1 + Σ_{j: not same_class[i, j]} exp(s·(a_i·p_j − a_i·p_i)))."""
  sim = anchors @ positives_z.T
  diff = scale * (sim - jnp.diagonal(sim)[:, None])
  diff = jnp.where(same_class, -jnp.inf, diff)
  zero = jnp.zeros((sim.shape[0], 1), sim.dtype)
  return jnp.mean(jax.nn.logsumexp(jnp.concatenate([zero, diff], axis=1), axis=1))


def adaptive_triplet_loss(z, positives, margins):
  """mean over all triplets (a, p ∈ P(a), n ∉ P(a) ∪ {a}) of
  max(0, ‖z_a − z_p‖² − ‖z_a − z_n‖² + margins[a, n]); 0 if there is no triplet."""
  m = z.shape[0]
  off = _off_diagonal(m)
  d2 = jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
  pos = positives & off
  neg = ~positives & off
  t = d2[:, :, None] - d2[:, None, :] + margins[:, None, :]       # [a, p, n]
  valid = pos[:, :, None] & neg[:, None, :]
  total = jnp.sum(jnp.where(valid, jax.nn.relu(t), 0.0))
  return total / jnp.maximum(jnp.sum(valid), 1)


def regression_loss(pred, target, kind: str = "mse", delta: float = 1.0):
  """Batch mean of (p − y)², |p − y| or Huber_δ(p − y) = ½e² (|e| ≤ δ), δ(|e| − ½δ) else."""
  e = pred - target
  if kind == "mse":
    return jnp.mean(e ** 2)
  if kind == "l1":
    return jnp.mean(jnp.abs(e))
  if kind == "huber":
    a = jnp.abs(e)
    return jnp.mean(jnp.where(a <= delta, 0.5 * e ** 2, delta * (a - 0.5 * delta)))
  raise ValueError(f"config.adacon.regression: unknown loss {kind!r}; choose from {REGRESSION}")
