"""Tracing polygons and masks against independent geometry (shoelace, ellipse area)."""
from __future__ import annotations

import math

import cv2
from matplotlib import path as mpath
import numpy as np
import pytest

from cardiac_data import tracings
from tests import fixtures


def shoelace(poly):
  """Independent float64 shoelace area."""
  x = [float(p[0]) for p in poly]
  y = [float(p[1]) for p in poly]
  n = len(x)
  return 0.5 * abs(sum(x[i] * y[(i + 1) % n] - x[(i + 1) % n] * y[i] for i in range(n)))


def perimeter(poly):
  closed = np.vstack([poly, poly[:1]])
  return float(np.sum(np.linalg.norm(np.diff(closed, axis=0), axis=1)))


def pick_count(poly_int):
  """Lattice points inside or on a simple polygon with integer vertices (Pick)."""
  v = np.asarray(poly_int, np.int64)
  d = np.diff(np.vstack([v, v[:1]]), axis=0)
  boundary = sum(math.gcd(int(abs(dx)), int(abs(dy))) for dx, dy in d)
  return shoelace(v) + boundary / 2 + 1


def test_chord_polygon_order_x1_forward_then_x2_reversed():
  chords = np.array([[5, 0, 5, 9],        # long axis: ignored
                     [4, 1, 6, 1],
                     [3, 2, 7, 2],
                     [2, 3, 8, 3]], float)
  poly = tracings.dynamic_chords_to_polygon(chords)
  expected = [(4, 1), (3, 2), (2, 3), (8, 3), (7, 2), (6, 1)]
  np.testing.assert_array_equal(poly, np.array(expected, np.float32))
  assert poly.dtype == np.float32


def test_chord_polygon_of_ellipse_has_ellipse_area_and_mask_matches():
  a, b = 17.0, 31.0
  chords = fixtures.ellipse_chords(56, 55, a, b, n_chords=40)
  poly = tracings.dynamic_chords_to_polygon(chords)
  # The right order gives a simple polygon close to the ellipse; the wrong one
  # (X2 forward) would self-intersect and lose most of the area.
  assert shoelace(poly) == pytest.approx(math.pi * a * b, rel=0.02)
  bowtie = np.concatenate([chords[1:, :2], chords[1:, 2:]])
  assert shoelace(bowtie) < 0.5 * math.pi * a * b
  mask = tracings.rasterize_polygon(poly, (112, 112))
  assert mask.dtype == bool and mask.shape == (112, 112)
  # Pixel count = area up to a boundary band of half the perimeter.
  assert abs(mask.sum() - shoelace(poly)) <= 0.5 * perimeter(np.rint(poly)) + 1
  assert mask.sum() == pick_count(np.rint(poly))
  assert tracings.polygon_area(poly) == pytest.approx(shoelace(poly), rel=1e-9)


def test_rasterize_counts_lattice_points_by_picks_theorem():
  # skimage.draw.polygon on rounded vertices fills interior and boundary lattice
  # points, whose number Pick's theorem gives exactly: A + B/2 + 1.
  rng = np.random.default_rng(0)
  for k in range(4):
    poly = fixtures.ellipse_points(40.3, 50.7, 22.1 - k, 14.6 + k, n=13) + rng.normal(0, 1, (13, 2))
    mask = tracings.rasterize_polygon(poly, (96, 80))
    assert mask.sum() == pick_count(np.rint(poly))
    yy, xx = np.mgrid[0:96, 0:80]
    strictly_inside = mpath.Path(np.rint(poly)).contains_points(
        np.stack([xx.ravel(), yy.ravel()], 1), radius=-1e-6).reshape(96, 80)
    assert np.all(mask[strictly_inside])


def test_rasterize_clips_to_shape():
  mask = tracings.rasterize_polygon(np.array([[-10, -10], [200, -10], [200, 200], [-10, 200]]),
                                    (7, 5))
  assert mask.all() and mask.shape == (7, 5)


def test_ed_es_by_area_ignores_csv_order():
  big = fixtures.ellipse_points(50, 50, 20, 30)
  small = fixtures.ellipse_points(50, 50, 12, 22)
  mid = fixtures.ellipse_points(50, 50, 15, 25)
  assert tracings.ed_es_by_area({40: small, 3: big}) == (3, 40)
  assert tracings.ed_es_by_area({3: big, 40: small}) == (3, 40)
  assert tracings.ed_es_by_area({7: small, 9: mid, 1: big}) == (1, 7)
  assert tracings.ed_es_by_area({5: big, 2: big.copy()}) == (5, 2)  # tie: later ED
  with pytest.raises(ValueError):
    tracings.ed_es_by_area({1: big})


def test_chords_need_two_chords():
  with pytest.raises(ValueError, match="at least 2 chords"):
    tracings.dynamic_chords_to_polygon(np.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"\(N, 4\)"):
    tracings.dynamic_chords_to_polygon(np.zeros((5, 3)))


def test_scale_polygon_maps_pixel_centres_like_cv2_resize():
  poly = fixtures.ellipse_points(56, 50, 20, 30)
  scaled = tracings.scale_polygon(poly, (112, 112), (224, 336))
  # Pixel centre 0 -> 0.5 * s - 0.5; the last centre maps to the last centre.
  edge = tracings.scale_polygon(np.array([[0, 0], [111, 111]]), (112, 112), (224, 336))
  np.testing.assert_allclose(edge, [[1.0, 0.5], [334.0, 222.5]])
  small_mask = tracings.rasterize_polygon(poly, (112, 112)).astype(np.uint8)
  resized = cv2.resize(small_mask, (336, 224), interpolation=cv2.INTER_NEAREST).astype(bool)
  big_mask = tracings.rasterize_polygon(scaled, (224, 336))
  iou = (resized & big_mask).sum() / (resized | big_mask).sum()
  assert iou > 0.95
  assert shoelace(scaled) == pytest.approx(shoelace(poly) * 6, rel=1e-5)
