"""Dice / Hausdorff against hand-computed cases and the empty-mask policy; EF from masks of
analytic truncated ellipses against the volume formula."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cardiac_data import volumes
from segmentation import metrics as M


def _square(size, r0, c0, n):
  m = np.zeros((size, size), bool)
  m[r0:r0 + n, c0:c0 + n] = True
  return m


def test_dice_hand_cases():
  a = _square(10, 2, 2, 4)                     # 16 px
  b = _square(10, 2, 4, 4)                     # 16 px, overlap 2 columns = 8 px
  assert M.dice(a, b) == pytest.approx(2 * 8 / 32)
  assert M.dice(a, a) == 1.0
  assert M.dice(a, np.zeros_like(a)) == 0.0
  assert M.dice(np.zeros_like(a), np.zeros_like(a)) == M.EMPTY_POLICY["both_empty"]["dice"] == 1.0


def test_hausdorff_hand_cases():
  a = _square(12, 2, 2, 4)
  b = _square(12, 2, 5, 4)                     # shifted 3 columns right
  # Surfaces: each square's border ring. Farthest border pixel of a from b's border is
  # a's left column (col 2) → b's left column (col 5): 3 px; symmetric.
  hd, hd95 = M.hausdorff(a, b)
  assert hd == pytest.approx(3.0)
  assert hd95 <= hd
  # Anisotropic spacing scales the column distance.
  hd, _ = M.hausdorff(a, b, spacing=(1.0, 0.5))
  assert hd == pytest.approx(1.5)
  # One pixel far away: HD is that distance; HD95 (per direction) ignores it when the
  # set is large, here a→b 95th percentile is 0 and b→a has one outlier among many.
  big = _square(40, 5, 5, 20)
  extra = big.copy()
  extra[35, 35] = True
  hd, hd95 = M.hausdorff(extra, big)
  assert hd == pytest.approx(math.hypot(35 - 24, 35 - 24))
  assert hd95 == pytest.approx(0.0)


def test_hausdorff_matches_brute_force():
  rng = np.random.default_rng(0)
  a = np.zeros((16, 16), bool)
  b = np.zeros((16, 16), bool)
  a[3:9, 2:11] = True
  b[5:13, 4:9] = True
  b[rng.integers(0, 16, 3), rng.integers(0, 16, 3)] = True
  sa, sb = M.surface(a), M.surface(b)
  pa, pb = np.argwhere(sa), np.argwhere(sb)
  d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
  d_ab, d_ba = d.min(1), d.min(0)
  hd, hd95 = M.hausdorff(a, b)
  assert hd == pytest.approx(max(d_ab.max(), d_ba.max()))
  assert hd95 == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def test_empty_mask_policy():
  z = np.zeros((8, 8), bool)
  a = _square(8, 1, 1, 3)
  assert M.hausdorff(z, z) == (0.0, 0.0)
  hd, hd95 = M.hausdorff(a, z)
  assert math.isnan(hd) and math.isnan(hd95)
  hd, hd95 = M.hausdorff(z, a)
  assert math.isnan(hd) and math.isnan(hd95)
  out = M.per_structure(np.zeros((8, 8), int), np.where(a, 1, 0), [1, 2])
  np.testing.assert_array_equal(out["dice"], [0.0, 1.0])
  assert math.isnan(out["hd"][0]) and out["hd"][1] == 0.0


def _truncated_ellipse(size, apex, angle, a, b, tau):
  """Pixel centres inside {((s−a)/a)² + (v/b)² ≤ 1, s ≤ a(1+τ)} (echo's LV shape)."""
  e_l = np.array([math.sin(angle), math.cos(angle)])
  e_v = np.array([math.cos(angle), -math.sin(angle)])
  yy, xx = np.mgrid[0:size, 0:size].astype(float)
  p = np.stack([xx, yy], -1) - apex
  s, v = p @ e_l, p @ e_v
  return (((s - a) / a) ** 2 + (v / b) ** 2 <= 1) & (s <= a * (1 + tau))


def _formula_volume(a, b, tau, b2=None):
  """Stated 20-disc formula on the exact shape (biplane with the second width b2)."""
  big_l = a * (1 + tau)
  s = (np.arange(20) + 0.5) * big_l / 20
  r = np.sqrt(np.clip(1 - ((s - a) / a) ** 2, 0, None))
  return volumes.discs_volume(2 * b * r, big_l, None if b2 is None else 2 * b2 * r)


@pytest.mark.parametrize("angle", [0.0, 0.12, -0.25])
def test_ef_from_analytic_masks_within_one_percent(angle):
  size, a, tau, fl, fr = 256, 60.0, 0.7, 0.15, 0.25
  b, b2 = 0.5 * a, 0.45 * a
  apex = np.array([size / 2 + 3.3, 12.7])
  masks = {(bb, c): _truncated_ellipse(size, apex, angle, a * (1 - fl * c), bb * (1 - fr * c),
                                       tau) for bb in (b, b2) for c in (0, 1)}
  ef = M.ef_from_masks(masks[(b, 0)], masks[(b, 1)], masks[(b2, 0)], masks[(b2, 1)])
  # Affine contraction: the formula's EF is 100·(1 − (1−f_l)(1−f_r)²) in every method.
  ef_formula = 100 * (1 - (1 - fl) * (1 - fr) ** 2)
  v_ed, v_es = _formula_volume(a, b, tau), _formula_volume(a * (1 - fl), b * (1 - fr), tau)
  np.testing.assert_allclose(100 * (v_ed - v_es) / v_ed, ef_formula, rtol=1e-12)
  for method in ("discs", "area_length", "biplane"):
    assert abs(ef[method] - ef_formula) / ef_formula < 0.01, (method, ef[method], ef_formula)
  # Volumes themselves within 1 % of the stated formula.
  vol = M.lv_volumes(masks[(b, 0)])
  assert vol["discs"] / v_ed == pytest.approx(1.0, abs=0.01)
  vb = M.biplane_volume(vol, M.lv_volumes(masks[(b2, 0)]))
  assert vb / _formula_volume(a, b, tau, b2) == pytest.approx(1.0, abs=0.01)


def test_lv_axis_finds_apex_and_base():
  m = _truncated_ellipse(128, np.array([64.0, 10.0]), 0.0, 30.0, 15.0, 0.7)
  apex, base = M.lv_axis(m)
  assert apex[1] < base[1]                              # apex at the top of the image
  assert np.hypot(*(base - apex)) == pytest.approx(51.0, abs=1.0)
  with pytest.raises(ValueError):
    M.lv_axis(np.zeros((8, 8), bool))
  assert math.isnan(M.ef_from_masks(np.zeros((8, 8), bool), m)["discs"])


def test_unity_curves_to_masks(tmp_path):
  import json
  from cardiac_data import unity
  # LV endocardium: the right half of an ellipse (hinge → apex → hinge), 9 control points.
  th = np.linspace(-np.pi / 2, np.pi / 2, 9)
  cx, cy, a, b = 60.0, 50.0, 30.0, 20.0
  x, y = cx + b * np.cos(th), cy + a * np.sin(th)
  labels = {"01-abc-0001": {"labels": {
      "curve-lv-endo": {"type": "curve", "x": " ".join(map(str, x)), "y": " ".join(map(str, y))},
      "curve-la-endo": {"type": "off", "x": "", "y": ""}}},
      "01-abc-0002": {"labels": {"curve-lv-endo": {"type": "blurred", "x": "", "y": ""}}}}
  path = tmp_path / "labels.json"
  path.write_text(json.dumps(labels))
  frames = unity.read_unity_labels(path)
  mask, label_set = unity.frame_masks(frames["01-abc-0001"], (128, 128))
  np.testing.assert_array_equal(label_set, [1, 1, 0, 1])     # LA 'off' = annotated absent
  assert not (mask == 3).any()
  # The spline passes through its control points (at their chord-length parameters).
  pts = np.stack([x, y], 1)
  chord = np.r_[0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]
  dense = unity.interpolate_curve(pts, 2001)
  u = np.linspace(0, 1, 2001)
  for t, p in zip(chord / chord[-1], pts):
    np.testing.assert_allclose(dense[np.argmin(abs(u - t))], p, atol=0.05)
  # The mask holds the pixels inside the closed spline: its area (shoelace; skimage's
  # polygon also takes pixels on the edges, ~ +½ px × perimeter), and about the half
  # ellipse's π a b / 2 (the natural end conditions bulge slightly).
  from cardiac_data.tracings import polygon_area
  area = polygon_area(dense)
  perimeter = np.sum(np.hypot(*np.diff(np.vstack([dense, dense[:1]]), axis=0).T))
  assert area <= (mask == 1).sum() <= area + 0.5 * perimeter
  assert area == pytest.approx(np.pi * a * b / 2, rel=0.02)
  _, label_set = unity.frame_masks(frames["01-abc-0002"], (128, 128))
  np.testing.assert_array_equal(label_set, [1, 0, 0, 0])     # 'blurred' = unknown
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"f": {"labels": {"curve-lv-endo": {"type": "spline"}}}}))
  with pytest.raises(ValueError, match="bad.json: frame 'f', label 'curve-lv-endo'"):
    unity.read_unity_labels(bad)
