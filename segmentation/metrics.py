"""Segmentation metrics and EF from masks (Islam et al., MELBA 2026, §5).

Definitions (numpy/scipy, float64):
  * Dice = 2|A∩B| / (|A| + |B|).
  * Surface of a mask = mask XOR its erosion (connectivity 1, i.e. the 4-neighbour
    cross); distances are Euclidean (EDT) in `spacing` units.
  * HD = max of the two directed maxima; HD95 = the max of the two per-direction 95th
    percentiles (MONAI's form; MedPy pools both directions instead).
  * Empty-mask policy (EMPTY_POLICY): both empty → Dice 1, HD 0, HD95 0 (a correct
    "absent"); exactly one empty → Dice 0, HD NaN, HD95 NaN (undefined; excluded from
    means and counted as `hd_undefined`).

EF from masks: the LV cavity of a label map → its long axis (the principal axis of
the largest connected LV component; the apex is the end whose first disc is the
narrower, the base the flat mitral end) → 20 discs of pixel area per slab
(`volumes.disc_diameters_from_mask`) → single-plane V = π/4·Σd_i²·L/20, biplane
V = π/4·Σa_i·b_i·L/20 (L the longer of the two views), area–length V = 8A²/(3πL),
EF = 100·(EDV − ESV)/EDV. The same function is applied to predicted and reference
masks; spacing cancels in EF.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cardiac_data import volumes

EMPTY_POLICY = {"both_empty": {"dice": 1.0, "hd": 0.0, "hd95": 0.0},
                "one_empty": {"dice": 0.0, "hd": math.nan, "hd95": math.nan}}
_CROSS = ndimage.generate_binary_structure(2, 1)


def dice(pred, ref) -> float:
  """Dice of two binary masks, with EMPTY_POLICY when both are empty."""
  a, b = np.asarray(pred, bool), np.asarray(ref, bool)
  total = a.sum() + b.sum()
  if total == 0:
    return EMPTY_POLICY["both_empty"]["dice"]
  return float(2.0 * np.logical_and(a, b).sum() / total)


def surface(mask) -> np.ndarray:
  m = np.asarray(mask, bool)
  return m ^ ndimage.binary_erosion(m, structure=_CROSS, border_value=0)


def directed_distances(a, b, spacing=(1.0, 1.0)) -> np.ndarray:
  """Distances from each surface pixel of a to the nearest surface pixel of b."""
  sa, sb = surface(a), surface(b)
  dist = ndimage.distance_transform_edt(~sb, sampling=spacing)
  return dist[sa]


def hausdorff(pred, ref, spacing=(1.0, 1.0)) -> tuple[float, float]:
  """(HD, HD95) with EMPTY_POLICY; HD95 = max of per-direction 95th percentiles."""
  a, b = np.asarray(pred, bool), np.asarray(ref, bool)
  if not a.any() and not b.any():
    p = EMPTY_POLICY["both_empty"]
    return p["hd"], p["hd95"]
  if not a.any() or not b.any():
    p = EMPTY_POLICY["one_empty"]
    return p["hd"], p["hd95"]
  d_ab, d_ba = directed_distances(a, b, spacing), directed_distances(b, a, spacing)
  hd = max(d_ab.max(), d_ba.max())
  hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
  return float(hd), float(hd95)


def per_structure(pred_labels, ref_labels, classes, spacing=(1.0, 1.0)) -> dict:
  """{'dice': (C,), 'hd': (C,), 'hd95': (C,)} for the given class ids of one image."""
  out = {"dice": [], "hd": [], "hd95": []}
  for c in classes:
    a, b = pred_labels == c, ref_labels == c
    out["dice"].append(dice(a, b))
    hd, hd95 = hausdorff(a, b, spacing)
    out["hd"].append(hd)
    out["hd95"].append(hd95)
  return {k: np.asarray(v) for k, v in out.items()}


# -- EF from masks -----------------------------------------------------------------


def largest_component(mask) -> np.ndarray:
  lab, n = ndimage.label(np.asarray(mask, bool), structure=_CROSS)
  if n <= 1:
    return lab > 0
  sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
  return lab == (1 + int(np.argmax(sizes)))


def lv_axis(mask, num_discs: int = volumes.NUM_DISCS):
  """(apex, base) (x, y) of an LV cavity mask: principal axis through the centroid,
  extended to the outer pixel edges; the apex is the end with the narrower first
  disc. Raises ValueError for an empty mask."""
  m = largest_component(mask)
  ys, xs = np.nonzero(m)
  if xs.size < 3:
    raise ValueError("LV mask has fewer than 3 pixels")
  pts = np.stack([xs, ys], 1).astype(np.float64)
  centre = pts.mean(0)
  evals, evecs = np.linalg.eigh(np.cov((pts - centre).T))
  e = evecs[:, np.argmax(evals)]
  s = (pts - centre) @ e
  # Pixel squares reach ½ px beyond their centres along any direction (|e|∞ ≤ 1).
  half = 0.5
  lo, hi = centre + (s.min() - half) * e, centre + (s.max() + half) * e
  d_lo, _ = volumes.disc_diameters_from_mask(m, lo, hi, num_discs)
  return (lo, hi) if d_lo[0] <= d_lo[-1] else (hi, lo)


def lv_volumes(mask, spacing: float = 1.0, num_discs: int = volumes.NUM_DISCS) -> dict:
  """Single-plane discs and area–length volumes of one LV mask, and its diameters."""
  m = largest_component(mask)
  apex, base = lv_axis(m, num_discs)
  d, length = volumes.disc_diameters_from_mask(m, apex, base, num_discs)
  area = float(m.sum())
  return {"discs": float(volumes.discs_volume(d, length)) * spacing**3,
          "area_length": float(volumes.area_length_volume(area, length)) * spacing**3,
          "diameters": d * spacing, "length": length * spacing}


def biplane_volume(v_a: dict, v_b: dict) -> float:
  """Biplane discs volume from two `lv_volumes` results (L = the longer axis)."""
  length = max(v_a["length"], v_b["length"])
  return float(volumes.discs_volume(v_a["diameters"], length, v_b["diameters"]))


def ef_from_masks(ed, es, ed2=None, es2=None, spacing: float = 1.0) -> dict:
  """EF (%) from ED/ES LV masks of one view (and optionally a second, orthogonal view):
  {'discs', 'area_length'[, 'biplane']}; NaN where a mask is empty."""
  try:
    v_ed, v_es = lv_volumes(ed, spacing), lv_volumes(es, spacing)
  except ValueError:
    return {"discs": math.nan, "area_length": math.nan, "biplane": math.nan}
  out = {k: float(volumes.ejection_fraction(v_ed[k], v_es[k])) for k in ("discs", "area_length")}
  if ed2 is not None and es2 is not None:
    try:
      w_ed, w_es = lv_volumes(ed2, spacing), lv_volumes(es2, spacing)
      out["biplane"] = float(volumes.ejection_fraction(biplane_volume(v_ed, w_ed),
                                                       biplane_volume(v_es, w_es)))
    except ValueError:
      out["biplane"] = math.nan
  return out
