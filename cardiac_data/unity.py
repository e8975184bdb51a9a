"""Unity Imaging curve labels → segmentation masks (the Unity Imaging labels JSON).

Labels JSON: {frame_code: {"labels": {name: {"type": T, "x": "x1 x2 …", "y": "y1 y2 …"}}}},
coordinates in original PNG pixels; T ∈ {'curve', 'point', 'off' (structure absent:
a true negative), 'blurred' (present but unclear: unknown)}. Curves are control
points of a natural cubic spline parameterised by normalised cumulative chord length
(UnityImaging/scantensus `interpolate_curve`).

Masks: a structure's curve (e.g. `curve-lv-endo`, mitral hinge → apex → hinge) is
closed by the straight segment between its ends and rasterised (pixel centres
inside, `volumes.polygon_mask`). Label set of a frame: a structure is annotated when
its curve is a 'curve' or 'off' (empty mask); 'blurred' or missing leaves it out.
Apical names: `curve-lv-endo` (LV), `curve-la-endo` (LA); no apical LV epicardium
curve is published, so LVM needs an explicit curve name (`STRUCTURE_CURVES`).
"""
from __future__ import annotations

import json
import os

import numpy as np
from scipy import interpolate

from cardiac_data import volumes

TYPES = ("curve", "point", "off", "blurred")
# Label id → curve name; LVM (2) is absent unless a curve name is configured.
STRUCTURE_CURVES = {1: "curve-lv-endo", 3: "curve-la-endo"}


def _floats(text, path, frame, name, axis):
  try:
    return np.array([float(v) for v in str(text).split()], np.float64)
  except ValueError as e:
    raise ValueError(f"{path}: frame {frame!r}, label {name!r}: {axis} is not a list of "
                     f"numbers ({e})") from None


def read_unity_labels(path: str | os.PathLike) -> dict:
  """{frame_code: {name: {'type': T, 'points': (n, 2) float64 (x, y)}}}."""
  path = os.fspath(path)
  with open(path, encoding="utf-8") as f:
    try:
      raw = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(raw, dict):
    raise ValueError(f"{path}: top level must be an object of frame codes")
  out = {}
  for frame, entry in raw.items():
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not isinstance(labels, dict):
      raise ValueError(f"{path}: frame {frame!r} has no 'labels' object")
    out[frame] = {}
    for name, lab in labels.items():
      kind = lab.get("type") if isinstance(lab, dict) else None
      if kind not in TYPES:
        raise ValueError(f"{path}: frame {frame!r}, label {name!r}: type {kind!r} is not one "
                         f"of {TYPES}")
      x = _floats(lab.get("x", ""), path, frame, name, "x")
      y = _floats(lab.get("y", ""), path, frame, name, "y")
      if x.shape != y.shape:
        raise ValueError(f"{path}: frame {frame!r}, label {name!r}: {x.size} x values but "
                         f"{y.size} y values")
      if kind == "curve" and x.size < 2:
        raise ValueError(f"{path}: frame {frame!r}, label {name!r}: a curve needs ≥ 2 points")
      out[frame][name] = {"type": kind, "points": np.stack([x, y], 1)}
  return out


def interpolate_curve(points, num: int = 100) -> np.ndarray:
  """`num` points (x, y) along the natural cubic spline through the control points,
  parameterised by normalised cumulative chord length (2 points: the segment)."""
  p = np.asarray(points, np.float64)
  chord = np.r_[0.0, np.cumsum(np.hypot(*np.diff(p, axis=0).T))]
  if chord[-1] <= 0:
    raise ValueError("curve control points coincide")
  t = chord / chord[-1]
  keep = np.r_[True, np.diff(t) > 0]               # repeated points break the spline
  t, p = t[keep], p[keep]
  u = np.linspace(0.0, 1.0, num)
  if len(t) == 2:
    return p[0] + u[:, None] * (p[1] - p[0])
  return interpolate.CubicSpline(t, p, bc_type="natural")(u)


def frame_masks(frame_labels: dict, shape, curves: dict | None = None,
                num: int = 200) -> tuple[np.ndarray, np.ndarray]:
  """(label map uint8 (H, W), label set bool[4]) of one frame (module docstring).

  Later structures in `curves` (label id → curve name) overwrite earlier ones; the
  LV is drawn last so that its cavity wins over an overlapping LA curve.
  """
  curves = dict(STRUCTURE_CURVES if curves is None else curves)
  out = np.zeros(shape, np.uint8)
  label_set = np.zeros(4, bool)
  label_set[0] = True
  for label in sorted(curves, key=lambda c: (c == 1, c)):
    lab = frame_labels.get(curves[label])
    if lab is None or lab["type"] == "blurred":
      continue
    label_set[label] = True
    if lab["type"] == "curve":
      out[volumes.polygon_mask(interpolate_curve(lab["points"], num), shape)] = label
  return out, label_set
