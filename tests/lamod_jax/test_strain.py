"""Strain, segments and EPE (lamod_jax/strain.py) on analytic deformations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lamod_jax import strain


def _annulus(size=40, r_in=8.0, r_out=14.0, center=(19.5, 19.5)):
  ys, xs = np.mgrid[:size, :size].astype(np.float64)
  r = np.hypot(xs - center[0], ys - center[1])
  return ((r >= r_in) & (r <= r_out)).astype(np.uint8), xs, ys


def _linear_field(mat, mask, xs, ys):
  """u = (A − I)(X − O) about the mask centroid, (2, H, W)."""
  ox, oy = (float(v) for v in strain.centroid(mask))
  dx, dy = xs - ox, ys - oy
  a = np.asarray(mat, np.float64) - np.eye(2)
  return np.stack([a[0, 0] * dx + a[0, 1] * dy, a[1, 0] * dx + a[1, 1] * dy])


def test_rotation_has_zero_strain(x64):
  mask, xs, ys = _annulus()
  c, s = math.cos(0.3), math.sin(0.3)
  u = _linear_field([[c, -s], [s, c]], mask, xs, ys)
  ecc, err = (np.asarray(a) for a in strain.polar_strain(u, mask))
  on = mask > 0
  assert np.all(np.isfinite(ecc[on])) and np.all(np.isnan(ecc[~on]))
  np.testing.assert_allclose(ecc[on], 0.0, atol=1e-12)
  np.testing.assert_allclose(err[on], 0.0, atol=1e-12)


@pytest.mark.parametrize("k", [0.8, 1.15])
def test_uniform_scaling(x64, k):
  mask, xs, ys = _annulus()
  u = _linear_field(k * np.eye(2), mask, xs, ys)
  ecc, err = (np.asarray(a)[mask > 0] for a in strain.polar_strain(u, mask))
  np.testing.assert_allclose(ecc, (k * k - 1) / 2, atol=1e-12)
  np.testing.assert_allclose(err, (k * k - 1) / 2, atol=1e-12)


def test_circumferential_stretch_and_channel_swap(x64):
  """Stretch by λ along y: on the ray θ = 0 (right of O) that is circumferential,
  Ecc = (λ² − 1)/2 and Err = 0; on θ = −π/2 (above O) it is radial. Swapping the
  x/y channels turns it into a shear with Ecc = (λ − 1)²/2 on θ = 0."""
  lam = 1.2
  mask, xs, ys = _annulus(size=41, center=(20.0, 20.0))
  u = _linear_field([[1.0, 0.0], [0.0, lam]], mask, xs, ys)
  ecc, err = (np.asarray(a) for a in strain.polar_strain(u, mask))
  ox, oy = (float(v) for v in strain.centroid(mask))
  assert (ox, oy) == (20.0, 20.0)
  right = (mask > 0) & (ys == 20) & (xs > 20) & np.isfinite(ecc)   # the tip pixel is NaN
  up = (mask > 0) & (xs == 20) & (ys < 20) & np.isfinite(ecc)
  assert right.sum() >= 5 and up.sum() >= 5
  np.testing.assert_allclose(ecc[right], (lam ** 2 - 1) / 2, atol=1e-12)
  np.testing.assert_allclose(err[right], 0.0, atol=1e-12)
  np.testing.assert_allclose(ecc[up], 0.0, atol=1e-12)
  np.testing.assert_allclose(err[up], (lam ** 2 - 1) / 2, atol=1e-12)
  swapped_ecc, _ = (np.asarray(a) for a in strain.polar_strain(u[::-1], mask))
  # Shear F = [[1, λ−1], [0, 1]]: E = [[0, (λ−1)/2], [(λ−1)/2, (λ−1)²/2]], Ecc on θ = 0 is E_yy.
  np.testing.assert_allclose(swapped_ecc[right], (lam - 1) ** 2 / 2, atol=1e-12)
  assert np.min(np.abs(swapped_ecc[right] - ecc[right])) > 0.19


def test_gradient_matches_bruteforce_least_squares(x64):
  """Per-pixel least squares over in-mask 4-neighbours, by numpy lstsq."""
  rng = np.random.default_rng(0)
  mask = (rng.random((9, 9)) < 0.7).astype(np.uint8)
  u = rng.standard_normal((2, 9, 9))
  g = np.asarray(strain.displacement_gradient(u, mask))
  for y in range(9):
    for x in range(9):
      nb = [(dy, dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
            if 0 <= y + dy < 9 and 0 <= x + dx < 9 and mask[y + dy, x + dx]]
      has_x = any(dx for _, dx in nb)
      has_y = any(dy for dy, _ in nb)
      if not (mask[y, x] and has_x and has_y):
        assert np.all(np.isnan(g[:, :, y, x]))
        continue
      dX = np.array([[dx, dy] for dy, dx in nb], float)
      du = np.array([u[:, y + dy, x + dx] - u[:, y, x] for dy, dx in nb])
      sol, *_ = np.linalg.lstsq(dX, du, rcond=None)      # du ≈ dX @ Gᵀ
      np.testing.assert_allclose(g[:, :, y, x], sol.T, atol=1e-12)


def test_segments_counter_clockwise_from_rv_insertion():
  mask, xs, ys = _annulus(size=41, center=(20.0, 20.0))
  # RV insertion straight right of the centre (θ = 0). Counter-clockwise on screen
  # (y down) goes up first: segment 0 is just above the ray, 5 just below it.
  seg = np.asarray(strain.segment_index(mask, 0.0))
  assert seg[19, 32] == 0          # a little above the +x ray
  assert seg[21, 32] == 5          # a little below
  assert seg[8, 20] == 1           # straight up: θ = −π/2, 90° from the RV point
  assert seg[20, 8] == 3 or seg[20, 8] == 2   # straight left: θ = π (boundary 2|3)
  assert seg[32, 20] == 4          # straight down: θ = +π/2 → 270° counter-clockwise
  # Rotating the insertion point by −60° (counter-clockwise on screen) shifts labels by one.
  seg60 = np.asarray(strain.segment_index(mask, -math.pi / 3))
  on = (mask > 0) & (np.abs(np.mod(np.arctan2(ys - 20, xs - 20), math.pi / 3)) > 0.05)
  np.testing.assert_array_equal(np.mod(seg60[on] + 1, 6), seg[on])
  counts = np.bincount(seg[mask > 0], minlength=6)
  assert counts.min() > 0.8 * counts.max()


def test_segment_means_match_loop():
  rng = np.random.default_rng(1)
  mask, _, _ = _annulus()
  values = rng.standard_normal((3, 40, 40))
  values[0, 5:10, :] = np.nan
  got = np.asarray(strain.segment_means(values, mask, 2.0))
  seg = np.asarray(strain.segment_index(mask, 2.0))
  for t in range(3):
    for k in range(6):
      sel = (seg == k) & (mask > 0) & np.isfinite(values[t])
      np.testing.assert_allclose(got[t, k], values[t][sel].mean(), rtol=1e-5)


def test_end_point_error_on_known_field():
  mask, _, _ = _annulus()
  u_true = np.zeros((4, 2, 40, 40))
  u_pred = u_true.copy()
  u_pred[:, 0] += 3.0
  u_pred[:, 1] += 4.0                         # ‖Δu‖ = 5 inside the mask
  u_pred[:, :, mask == 0] = 100.0             # ignored outside
  assert float(strain.end_point_error(u_pred, u_true, mask)) == pytest.approx(5.0)
  u_pred[2] = u_true[2]                       # one frame exact: mean 5·3/4
  assert float(strain.end_point_error(u_pred, u_true, mask)) == pytest.approx(3.75)


def test_strain_errors():
  true = np.tile(np.linspace(0, -0.2, 5)[:, None], (1, 6))
  pred = true + 0.01 * np.array([1, -1, 1, -1, 1, -1])
  pred[:, 0] += 0.02
  res = {k: float(v) for k, v in strain.strain_errors(pred, true).items()}
  assert res["segmental_ecc_mae"] == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-5)
  assert res["global_peak_ecc_error"] == pytest.approx(0.02 / 6, rel=1e-5)
