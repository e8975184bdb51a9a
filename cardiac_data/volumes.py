"""Left-ventricular volume formulas from 2-D echo tracings.

Stated formulas (all lengths in one unit, volumes in that unit cubed; multiply by
pixel spacing³ for mL when spacing is in cm):

* Method of discs (modified Simpson's rule, ASE/EACVI chamber quantification):
  the long axis L (apex → midpoint of the mitral plane) is cut into n = 20 discs
  of height L/n; disc i has diameter d_i measured perpendicular to the axis at the
  middle of the disc (s_i = (i − ½)·L/n from the apex). Single plane:

      V = π/4 · Σ_i d_i² · L/n                                   (discs, 1 plane)

  biplane (A4C and A2C diameters a_i, b_i of the same disc):

      V = π/4 · Σ_i a_i · b_i · L/n                              (discs, 2 planes)

* Area–length (single plane): V = 8·A² / (3·π·L), A the cavity area.
  For a full ellipse contour with semi-axes a (along L = 2a) and b this equals the
  prolate-spheroid volume 4/3·π·a·b² exactly.

* Ejection fraction: EF = 100 · (EDV − ESV) / EDV.

Contours are (N, 2) arrays of (x, y) = (column, row) pixel coordinates with pixel
centres at integer coordinates (the convention of `skimage.draw.polygon` and of
EchoNet's VolumeTracings).
"""
from __future__ import annotations

import numpy as np

from cardiac_data.tracings import polygon_area  # noqa: F401  (re-exported)

NUM_DISCS = 20


def discs_volume(diameters, length, diameters2=None) -> np.ndarray:
  """Method of discs: π/4 · Σ d_i · d2_i · L/n over the last axis.

  Args:
    diameters: (..., n) disc diameters in one plane.
    length: (...) long-axis length L.
    diameters2: optional (..., n) diameters of the orthogonal plane (biplane);
      defaults to `diameters` (single plane).
  """
  d1 = np.asarray(diameters, np.float64)
  d2 = d1 if diameters2 is None else np.asarray(diameters2, np.float64)
  if d1.shape != d2.shape:
    raise ValueError(f"diameter shapes differ: {d1.shape} vs {d2.shape}")
  n = d1.shape[-1]
  return np.pi / 4.0 * np.sum(d1 * d2, axis=-1) * np.asarray(length, np.float64) / n


def area_length_volume(area, length) -> np.ndarray:
  """Single-plane area–length volume 8·A²/(3·π·L)."""
  area = np.asarray(area, np.float64)
  return 8.0 * area**2 / (3.0 * np.pi * np.asarray(length, np.float64))


def ejection_fraction(edv, esv) -> np.ndarray:
  """EF in percent, 100·(EDV − ESV)/EDV."""
  edv = np.asarray(edv, np.float64)
  return 100.0 * (edv - np.asarray(esv, np.float64)) / edv


def long_axis_from_contour(contour) -> tuple[np.ndarray, np.ndarray]:
  """(apex, base) of an LV contour traced from one mitral hinge to the other.

  The first and last points are the mitral hinges; base is their midpoint and the
  apex is the contour point farthest from it (exact for a truncated ellipse whose
  long semi-axis exceeds its short one).
  """
  p = np.asarray(contour, np.float64)
  if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
    raise ValueError(f"contour must be (N>=3, 2), got {p.shape}")
  base = 0.5 * (p[0] + p[-1])
  apex = p[np.argmax(np.sum((p - base)**2, axis=1))]
  return apex, base


def _axis_frame(apex, base):
  apex = np.asarray(apex, np.float64)
  base = np.asarray(base, np.float64)
  axis = base - apex
  length = float(np.hypot(*axis))
  if length <= 0:
    raise ValueError("apex and base coincide")
  e_l = axis / length
  e_v = np.array([-e_l[1], e_l[0]])
  return apex, e_l, e_v, length


def disc_diameters_from_contour(contour, apex=None, base=None,
                                num_discs: int = NUM_DISCS) -> tuple[np.ndarray, float]:
  """Diameters of the discs cut from a closed contour, and the axis length.

  Each disc's diameter is the span of the contour along the line perpendicular to
  the long axis through the disc's middle (outermost crossings). apex/base default
  to `long_axis_from_contour`.
  """
  p = np.asarray(contour, np.float64)
  if apex is None or base is None:
    apex, base = long_axis_from_contour(p)
  apex, e_l, e_v, length = _axis_frame(apex, base)
  s = (p - apex) @ e_l
  v = (p - apex) @ e_v
  s0, s1 = s, np.roll(s, -1)
  v0, v1 = v, np.roll(v, -1)
  si = (np.arange(num_discs) + 0.5) * length / num_discs            # (n,)
  ds = s1 - s0
  with np.errstate(divide="ignore", invalid="ignore"):
    t = (si[:, None] - s0[None]) / ds[None]                           # (n, E)
  crosses = (t >= 0) & (t < 1) & (ds[None] != 0)
  vi = np.where(crosses, v0[None] + t * (v1 - v0)[None], np.nan)
  with np.errstate(all="ignore"):
    d = np.nanmax(vi, axis=1) - np.nanmin(vi, axis=1)
  return np.nan_to_num(d, nan=0.0), length


def discs_volume_from_contour(contour, apex=None, base=None,
                              num_discs: int = NUM_DISCS) -> float:
  """Single-plane method-of-discs volume of a closed contour (pixel³)."""
  d, length = disc_diameters_from_contour(contour, apex, base, num_discs)
  return float(discs_volume(d, length))


def discs_volume_from_chords(long_axis, chords) -> float:
  """Volume from EchoNet-Dynamic style tracings (one frame).

  Args:
    long_axis: (2, 2) [[x_apex, y_apex], [x_base, y_base]] (VolumeTracings row 0).
    chords: (n, 2, 2) disc chords [[x1, y1], [x2, y2]] (rows 1..n); their lengths
      are the disc diameters d_i.
  """
  la = np.asarray(long_axis, np.float64)
  c = np.asarray(chords, np.float64)
  length = float(np.hypot(*(la[1] - la[0])))
  d = np.hypot(c[:, 1, 0] - c[:, 0, 0], c[:, 1, 1] - c[:, 0, 1])
  return float(discs_volume(d, length))


def contour_from_chords(long_axis, chords) -> np.ndarray:
  """Closed LV contour from an axis and its disc chords (apex → base order).

  Returns [apex, side-1 ends (apex→base), side-1 hinge, side-2 hinge, side-2 ends
  (base→apex)]. The hinges on the mitral plane are extrapolated half a disc
  beyond the last chord along each side, so the polygon covers the whole cavity
  (EchoNet's own mask polygon, rows 1.. only, stops at the last chord).
  """
  la = np.asarray(long_axis, np.float64)
  c = np.asarray(chords, np.float64)
  apex, base = la[0], la[1]
  side1, side2 = c[:, 0], c[:, 1]
  hinge1 = side1[-1] + 0.5 * (side1[-1] - side1[-2])
  hinge2 = side2[-1] + 0.5 * (side2[-1] - side2[-2])
  # Put the hinges on the mitral plane (perpendicular to the axis through base).
  _, e_l, _, _ = _axis_frame(apex, base)
  hinge1 = hinge1 + ((base - hinge1) @ e_l) * e_l
  hinge2 = hinge2 + ((base - hinge2) @ e_l) * e_l
  return np.concatenate([apex[None], side1, hinge1[None], hinge2[None], side2[::-1]])


def disc_diameters_from_mask(mask, apex, base,
                             num_discs: int = NUM_DISCS) -> tuple[np.ndarray, float]:
  """Mean disc diameters of a binary cavity mask (H, W), and the axis length.

  Pixels are assigned to the disc slab holding their centre; a slab's mean width
  is its pixel area over the slab height L/n. This is the discrete counterpart of
  the disc diameter and is unbiased for boundaries that are smooth on the pixel
  scale.
  """
  m = np.asarray(mask).astype(bool)
  if m.ndim != 2:
    raise ValueError(f"mask must be (H, W), got {m.shape}")
  apex, e_l, _, length = _axis_frame(apex, base)
  ys, xs = np.nonzero(m)
  s = (np.stack([xs, ys], 1).astype(np.float64) - apex) @ e_l
  h = length / num_discs
  idx = np.floor(s / h).astype(np.int64)
  ok = (idx >= 0) & (idx < num_discs)
  area = np.bincount(idx[ok], minlength=num_discs).astype(np.float64)
  return area / h, length


def discs_volume_from_mask(mask, apex, base, num_discs: int = NUM_DISCS) -> float:
  """Single-plane method-of-discs volume of a binary mask (pixel³)."""
  d, length = disc_diameters_from_mask(mask, apex, base, num_discs)
  return float(discs_volume(d, length))


def polygon_mask(contour, shape) -> np.ndarray:
  """Boolean mask (H, W) of pixels whose centres lie inside the polygon.

  Vertices are not rounded. (`cardiac_data.tracings.rasterize_polygon` rounds them
  to whole pixels as echonet/dynamic does, which shrinks 112-pixel LV masks enough
  to bias mask-based EF by about −1.3 points on the synthetic cohort.)
  """
  from skimage import draw  # Local: only tests and evaluation need it.
  p = np.asarray(contour, np.float64)
  rr, cc = draw.polygon(p[:, 1], p[:, 0], shape=shape)
  m = np.zeros(shape, bool)
  m[rr, cc] = True
  return m
