"""Myocardial strain and motion errors from Lagrangian displacement (LaMoD §4.2).

Conventions (DENSEanalysis `pixelstrain.m`, LaMoD's port): displacement fields are
(2, H, W) in pixels with channel 0 = x (columns) and channel 1 = y (rows, pointing
down); the mask is the reference (frame-0) myocardium on which the field lives.

  F = I + ∇u per pixel, ∇u by least squares over the in-mask 4-neighbours (a pixel
      needs a neighbour along x and one along y, else NaN);
  E = ½(FᵀF − I) (Green–Lagrange);
  origin O = centroid of the mask, θ = atan2(Y − O_y, X − O_x);
  Ecc = e_cᵀ E e_c with e_c = (−sin θ, cos θ), Err = e_rᵀ E e_r with e_r = (cos θ, sin θ).

Six segments start at the RV insertion angle θ_RV and run counter-clockwise on screen
(y down), i.e. towards decreasing θ: segment k holds (θ_RV − θ) mod 2π ∈ [kπ/3, (k+1)π/3)
(0 anterior, 1 anteroseptal, 2 inferoseptal, 3 inferior, 4 inferolateral, 5 anterolateral).
EPE = Σ mask·‖u_pred − u_true‖₂ / Σ mask (the paper's end-point error).
Everything is jax.numpy and works under jit/vmap; leading axes (frames) are mapped.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

NUM_SEGMENTS = 6
SEGMENT_NAMES = ("anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral",
                 "anterolateral")


def _shift(a, dy: int, dx: int):
  """a[y + dy, x + dx] with zeros outside the grid (last two axes)."""
  pad = [(0, 0)] * (a.ndim - 2) + [(max(-dy, 0), max(dy, 0)), (max(-dx, 0), max(dx, 0))]
  p = jnp.pad(a, pad)
  h, w = a.shape[-2:]
  y0, x0 = max(dy, 0), max(dx, 0)
  return p[..., y0:y0 + h, x0:x0 + w]


def displacement_gradient(u, mask):
  """∇u (2, 2, H, W), G[i, j] = ∂u_i/∂X_j (j = 0: x), by least squares over the in-mask
  4-neighbours; NaN where a pixel lacks a neighbour along x or along y, or is outside."""
  m = jnp.asarray(mask).astype(u.dtype)
  cols, ok = [], m > 0
  for axis_shifts in (((0, 1), (0, -1)), ((1, 0), (-1, 0))):   # x neighbours, y neighbours
    num, cnt = 0.0, 0.0
    for dy, dx in axis_shifts:
      step = dx + dy                                   # +1 or −1 along this axis
      nb = _shift(m, dy, dx) * m
      num = num + nb * step * (_shift(u, dy, dx) - u)
      cnt = cnt + nb
    cols.append(num / jnp.maximum(cnt, 1.0))
    ok = ok & (cnt > 0)
  return jnp.where(ok, jnp.stack(cols, axis=1), jnp.nan)   # (2 [i], 2 [j], H, W)


def centroid(mask):
  """(O_x, O_y) of the mask pixels (column, row)."""
  m = jnp.asarray(mask).astype(jnp.float32)
  h, w = m.shape[-2:]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=m.dtype), jnp.arange(w, dtype=m.dtype),
                        indexing="ij")
  total = jnp.sum(m)
  return jnp.sum(m * xs) / total, jnp.sum(m * ys) / total


def polar_angle(mask, origin=None):
  """θ = atan2(Y − O_y, X − O_x) per pixel (H, W), about the mask centroid by default."""
  h, w = mask.shape[-2:]
  ox, oy = centroid(mask) if origin is None else origin
  ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
  return jnp.arctan2(ys - oy, xs - ox)


def green_lagrange(u, mask):
  """E = ½(FᵀF − I) as (2, 2, H, W) with F = I + ∇u; NaN where ∇u is undefined."""
  g = displacement_gradient(u, mask)
  f = g + jnp.eye(2, dtype=g.dtype)[:, :, None, None]
  ftf = jnp.einsum("kihw,kjhw->ijhw", f, f)
  return 0.5 * (ftf - jnp.eye(2, dtype=g.dtype)[:, :, None, None])


def polar_strain(u, mask, origin=None):
  """(Ecc, Err) maps (H, W) for one displacement field (2, H, W); NaN off the mask."""
  e = green_lagrange(u, mask)
  theta = polar_angle(mask, origin)
  c, s = jnp.cos(theta), jnp.sin(theta)
  ecc = s * s * e[0, 0] - 2 * s * c * e[0, 1] + c * c * e[1, 1]
  err = c * c * e[0, 0] + 2 * s * c * e[0, 1] + s * s * e[1, 1]
  return ecc, err


def strain_sequence(u, mask, origin=None):
  """(Ecc, Err) of shape (T, H, W) for displacements (T, 2, H, W) on one reference mask."""
  return jax.vmap(lambda v: polar_strain(v, mask, origin))(u)


def segment_index(mask, rv_angle, origin=None):
  """Segment 0..5 per pixel (H, W), counter-clockwise on screen from θ_RV (radians)."""
  theta = polar_angle(mask, origin)
  rel = jnp.mod(rv_angle - theta, 2 * math.pi)
  return jnp.clip(jnp.floor(rel / (2 * math.pi / NUM_SEGMENTS)), 0, NUM_SEGMENTS - 1
                  ).astype(jnp.int32)


def segment_means(values, mask, rv_angle, origin=None):
  """Mean of `values` (..., H, W) per segment over finite in-mask pixels → (..., 6);
  NaN for a segment without any."""
  seg = segment_index(mask, rv_angle, origin)
  onehot = (seg[..., None] == jnp.arange(NUM_SEGMENTS)) & (jnp.asarray(mask)[..., None] > 0)
  ok = onehot & jnp.isfinite(values)[..., None]
  vals = jnp.where(ok, values[..., None], 0.0)
  n = jnp.sum(ok, axis=(-3, -2))
  return jnp.where(n > 0, jnp.sum(vals, axis=(-3, -2)) / jnp.maximum(n, 1), jnp.nan)


def segmental_ecc(u, mask, rv_angle, origin=None):
  """Segmental Ecc curves (T, 6) for displacements (T, 2, H, W) on the reference mask."""
  ecc, _ = strain_sequence(u, mask, origin)
  return segment_means(ecc, mask, rv_angle, origin)


def end_point_error(u_pred, u_true, mask):
  """EPE = Σ mask·‖Δu‖₂ / Σ mask; u (..., 2, H, W), mask broadcast to (..., H, W)."""
  err = jnp.sqrt(jnp.sum((u_pred - u_true) ** 2, axis=-3))
  m = jnp.broadcast_to(jnp.asarray(mask).astype(err.dtype), err.shape)
  return jnp.sum(m * err) / jnp.sum(m)


def strain_errors(ecc_seg_pred, ecc_seg_true) -> dict:
  """Segmental Ecc MAE (mean over frames and segments) and the global peak Ecc error
  |min_t mean_k Ecc_pred − min_t mean_k Ecc_true| for curves (T, 6)."""
  seg_mae = jnp.nanmean(jnp.abs(ecc_seg_pred - ecc_seg_true))
  peak_pred = jnp.min(jnp.nanmean(ecc_seg_pred, axis=-1))
  peak_true = jnp.min(jnp.nanmean(ecc_seg_true, axis=-1))
  return dict(segmental_ecc_mae=seg_mae, global_peak_ecc_error=jnp.abs(peak_pred - peak_true))
