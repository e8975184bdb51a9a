"""Volume formulas against closed forms (ellipse / prolate spheroid)."""
from __future__ import annotations

import numpy as np
import pytest

from cardiac_data import volumes as V


def _ellipse(a, b, n, centre=(0.0, 0.0)):
  """Ellipse with semi-axis a along y (long axis, apex at the top), b along x."""
  th = np.linspace(0, 2 * np.pi, n, endpoint=False)
  return np.stack([centre[0] + b * np.sin(th), centre[1] - a * np.cos(th)], 1)


@pytest.mark.parametrize("n", [5, 20, 80, 320])
def test_discs_on_spheroid_match_midpoint_closed_form(n):
  # Midpoint discs of a prolate spheroid (semi-axes a, b, b), long axis L = 2a:
  # V_n = π b² L/n Σ (1 − x_i²) = 4/3 π a b² (1 + 1/(2 n²)) exactly.
  a, b = 30.0, 12.0
  s = (np.arange(n) + 0.5) * 2 * a / n
  d = 2 * b * np.sqrt(1 - ((s - a) / a)**2)
  exact = 4 / 3 * np.pi * a * b * b
  np.testing.assert_allclose(V.discs_volume(d, 2 * a), exact * (1 + 0.5 / n**2), rtol=1e-12)


def test_discs_converge_to_spheroid_volume():
  a, b = 30.0, 12.0
  exact = 4 / 3 * np.pi * a * b * b
  errs = []
  for n in (10, 20, 40, 80):
    s = (np.arange(n) + 0.5) * 2 * a / n
    errs.append(abs(V.discs_volume(2 * b * np.sqrt(1 - ((s - a) / a)**2), 2 * a) - exact))
  assert all(e2 < e1 / 3.5 for e1, e2 in zip(errs, errs[1:]))  # O(1/n²)
  assert errs[-1] / exact < 1e-4


def test_biplane_discs_on_triaxial_ellipsoid():
  a, b, c, n = 40.0, 15.0, 11.0, 20
  s = (np.arange(n) + 0.5) * 2 * a / n
  k = np.sqrt(1 - ((s - a) / a)**2)
  vol = V.discs_volume(2 * b * k, 2 * a, 2 * c * k)
  np.testing.assert_allclose(vol, 4 / 3 * np.pi * a * b * c * (1 + 0.5 / n**2), rtol=1e-12)
  # Single plane is the biplane formula with equal diameters.
  np.testing.assert_allclose(V.discs_volume(2 * b * k, 2 * a),
                             V.discs_volume(2 * b * k, 2 * a, 2 * b * k), rtol=1e-15)


def test_area_length_equals_ellipsoid_for_ellipse():
  a, b = 25.0, 9.0
  exact = 4 / 3 * np.pi * a * b * b
  np.testing.assert_allclose(V.area_length_volume(np.pi * a * b, 2 * a), exact, rtol=1e-14)
  poly = _ellipse(a, b, 20000)
  np.testing.assert_allclose(V.area_length_volume(V.polygon_area(poly), 2 * a), exact,
                             rtol=1e-6)


def test_contour_discs_match_analytic_spheroid():
  a, b, n = 30.0, 12.0, 20
  poly = _ellipse(a, b, 4001, centre=(50.0, 60.0))
  apex, base = np.array([50.0, 30.0]), np.array([50.0, 90.0])
  d, length = V.disc_diameters_from_contour(poly, apex, base, n)
  s = (np.arange(n) + 0.5) * 2 * a / n
  np.testing.assert_allclose(length, 2 * a)
  np.testing.assert_allclose(d, 2 * b * np.sqrt(1 - ((s - a) / a)**2), rtol=2e-4)


def test_long_axis_of_truncated_ellipse_contour():
  # Hinge → apex → hinge contour of an ellipse cut at s = a(1+τ) from the apex.
  a, b, tau = 30.0, 14.0, 0.65
  th = np.linspace(np.arccos(tau), 2 * np.pi - np.arccos(tau), 41)
  s, v = a + a * np.cos(th), b * np.sin(th)
  rot = np.deg2rad(17.0)
  e_l, e_v = np.array([np.sin(rot), np.cos(rot)]), np.array([np.cos(rot), -np.sin(rot)])
  apex0 = np.array([40.0, 20.0])
  poly = apex0 + s[:, None] * e_l + v[:, None] * e_v
  apex, base = V.long_axis_from_contour(poly)
  np.testing.assert_allclose(apex, apex0, atol=1e-9)
  np.testing.assert_allclose(base, apex0 + a * (1 + tau) * e_l, atol=1e-9)
  # Discs from the contour equal the analytic chords up to the polygon's sagitta.
  si = (np.arange(20) + 0.5) * a * (1 + tau) / 20
  exact = V.discs_volume(2 * b * np.sqrt(np.clip(1 - ((si - a) / a)**2, 0, None)), a * (1 + tau))
  np.testing.assert_allclose(V.discs_volume_from_contour(poly), exact, rtol=5e-3)


def test_chords_volume_and_contour_from_chords():
  a, b, tau, n = 30.0, 14.0, 0.65, 20
  length = a * (1 + tau)
  s = (np.arange(n) + 0.5) * length / n
  w = b * np.sqrt(1 - ((s - a) / a)**2)
  apex = np.array([56.0, 15.0])
  axis = np.stack([apex, apex + [0.0, length]])
  chords = np.stack([np.stack([apex[0] + w, apex[1] + s], 1),
                     np.stack([apex[0] - w, apex[1] + s], 1)], 1)
  np.testing.assert_allclose(V.discs_volume_from_chords(axis, chords),
                             V.discs_volume(2 * w, length), rtol=1e-12)
  poly = V.contour_from_chords(axis, chords)
  # Closed contour covers the truncated ellipse: area within 1.5 % of the exact area.
  th_h = np.arccos(tau)
  exact_area = a * b * (np.pi - th_h + np.sin(th_h) * np.cos(th_h))
  assert abs(V.polygon_area(poly) / exact_area - 1) < 0.015
  # Hinges lie on the mitral plane.
  np.testing.assert_allclose(poly[n + 1:n + 3, 1], apex[1] + length, atol=1e-9)


def test_mask_discs_on_large_spheroid():
  a, b = 200.0, 90.0
  shape = (460, 260)
  centre = (130.3, 230.7)
  mask = V.polygon_mask(_ellipse(a, b, 4000, centre), shape)
  apex = np.array([centre[0], centre[1] - a])
  base = np.array([centre[0], centre[1] + a])
  exact = 4 / 3 * np.pi * a * b * b * (1 + 0.5 / 20**2)
  np.testing.assert_allclose(V.discs_volume_from_mask(mask, apex, base), exact, rtol=5e-3)


def test_ejection_fraction():
  np.testing.assert_allclose(V.ejection_fraction(120.0, 48.0), 60.0)
  np.testing.assert_allclose(V.ejection_fraction(np.array([100.0, 50.0]), np.array([25.0, 40.0])),
                             [75.0, 20.0])


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="diameter shapes"):
    V.discs_volume(np.ones(20), 10.0, np.ones(19))
  with pytest.raises(ValueError, match="contour"):
    V.long_axis_from_contour(np.zeros((2, 2)))
  with pytest.raises(ValueError, match="coincide"):
    V.disc_diameters_from_contour(_ellipse(3, 2, 10), np.zeros(2), np.zeros(2))
