"""LV tracings: EchoNet chord tables to polygons, polygon masks, ED/ES by area.

EchoNet-Dynamic's VolumeTracings.csv stores, per traced frame, the long axis
(row 0) and then the perpendicular disc chords (X1,Y1)-(X2,Y2) from apex to
mitral plane. The LV polygon is X1 forward then X2 reversed (rows 1.. only), as
in echonet/dynamic `echo.py`. EchoNet-Pediatric stores the contour points
directly. Coordinates are (x, y) pixels, x = column, y = row.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import skimage.draw

#: EchoNet tracings are pixel coordinates of the 112 x 112 frame (echonet/dynamic #73).
TRACING_GRID = (112, 112)


def dynamic_chords_to_polygon(chords: np.ndarray) -> np.ndarray:
  """(N, 4) rows X1,Y1,X2,Y2 (row 0 = long axis) -> float32 (2(N-1), 2) polygon (x, y).

  Raises ValueError for a malformed table or fewer than 2 chords after the long axis.
  """
  chords = np.asarray(chords, np.float64)
  if chords.ndim != 2 or chords.shape[1] != 4:
    raise ValueError(f"chords must have shape (N, 4), got {chords.shape}")
  if chords.shape[0] < 3:
    raise ValueError(f"need the long axis and at least 2 chords, got {chords.shape[0]} row(s)")
  x1, y1, x2, y2 = chords[1:].T
  x = np.concatenate([x1, x2[::-1]])
  y = np.concatenate([y1, y2[::-1]])
  return np.stack([x, y], axis=1).astype(np.float32)


def polygon_area(poly_xy: np.ndarray) -> float:
  """Unsigned shoelace area of a closed polygon (M, 2) in pixels^2."""
  p = np.asarray(poly_xy, np.float64)
  x, y = p[:, 0], p[:, 1]
  cross = np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]) + x[-1] * y[0] - y[-1] * x[0]
  return 0.5 * abs(float(cross))


def rasterize_polygon(poly_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Bool mask (H, W) of pixels inside the polygon.

  Same rule as echonet/dynamic `echo.py`: vertices rounded to the nearest pixel,
  then `skimage.draw.polygon` (pixel centres inside), clipped to `shape`.
  """
  p = np.asarray(poly_xy, np.float64)
  if p.ndim != 2 or p.shape[1] != 2:
    raise ValueError(f"polygon must have shape (M, 2), got {p.shape}")
  mask = np.zeros(tuple(shape), bool)
  rr, cc = skimage.draw.polygon(np.rint(p[:, 1]), np.rint(p[:, 0]), tuple(shape))
  mask[rr, cc] = True
  return mask


def ed_es_by_area(traces: Mapping[int, np.ndarray]) -> tuple[int, int]:
  """(ED, ES) frames: the traced frame with the largest / smallest polygon area.

  Independent of the order of frames in the CSV. Ties go to the later frame for
  ED and the earlier frame for ES. Raises ValueError with fewer than 2 frames.
  """
  if len(traces) < 2:
    raise ValueError(f"need at least 2 traced frames, got {len(traces)}")
  order = sorted(traces, key=lambda f: (polygon_area(traces[f]), f))
  return int(order[-1]), int(order[0])


def scale_polygon(poly_xy: np.ndarray, from_shape: tuple[int, int],
                  to_shape: tuple[int, int]) -> np.ndarray:
  """Maps (x, y) pixel coordinates between grids, pixel centres to pixel centres.

  x' = (x + 0.5) * W'/W - 0.5 (and the same for y with H), the convention of
  `cv2.resize`; used for EchoNet videos that are not 112 x 112.
  """
  p = np.asarray(poly_xy, np.float64)
  sy = to_shape[0] / from_shape[0]
  sx = to_shape[1] / from_shape[1]
  out = np.empty_like(p)
  out[:, 0] = (p[:, 0] + 0.5) * sx - 0.5
  out[:, 1] = (p[:, 1] + 0.5) * sy - 0.5
  return out.astype(np.float32)
