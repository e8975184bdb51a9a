"""The cine-like test split of the synthetic DENSE cohort (dense_writer, data/test_cine/)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io

from cardiac_data import dense
from cardiac_data.synthetic import dense_writer
from lamod_jax import strain

N, SEED, SIZE, FRAMES = 12, 3, 40, 10


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
  """The same cohort with the cine split (default 25 frames) and without it."""
  on = tmp_path_factory.mktemp("dense_cine")
  off = tmp_path_factory.mktemp("dense_no_cine")
  dense_writer.write_dense(on, N, seed=SEED, workers=1, size=SIZE, frames=FRAMES)
  dense_writer.write_dense(off, N, seed=SEED, workers=1, size=SIZE, frames=FRAMES,
                           cine_frames=0)
  return on, off


def _dice(a, b):
  return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def test_cine_split_holds_exactly_the_test_subjects(cohorts):
  on, off = cohorts
  test_ids = sorted(f.name for f in (on / "data" / "test").iterdir())
  assert test_ids
  assert sorted(f.name for f in (on / "data" / "test_cine").iterdir()) == test_ids
  assert not (off / "data" / "test_cine").exists()
  gt = dense.read_ground_truth(on)
  for sid, row in gt.items():
    assert ("cine" in row) == (sid in test_ids)
  raw_in = scipy.io.loadmat(on / "data" / "test_cine" / test_ids[0] / "input.mat")["input"]
  raw_lab = scipy.io.loadmat(on / "data" / "test_cine" / test_ids[0] / "label.mat")["label"]
  t_c = dense_writer.CINE_FRAMES
  assert raw_in.shape == (1, SIZE, SIZE, t_c) and raw_in.dtype == np.uint8
  assert raw_lab.shape == (2, SIZE, SIZE, t_c) and raw_lab.dtype == np.float64
  for sid in test_ids:
    s = dense.read_sample(on / "data" / "test_cine" / sid)     # the reader's checks pass
    assert s.mask.shape == (t_c, SIZE, SIZE) and s.displacement.shape == (t_c, 2, SIZE, SIZE)
    assert gt[sid]["cine"]["frames"] == t_c


def test_existing_splits_do_not_change(cohorts):
  """The DENSE files are byte-identical with and without the cine split (separate RNG
  stream), and ground_truth.json differs only by the cine entries."""
  on, off = cohorts
  files = sorted(p.relative_to(off) for p in (off / "data").glob("*/*/*.mat"))
  assert len(files) == 2 * N
  for rel in files:
    assert (on / rel).read_bytes() == (off / rel).read_bytes(), rel
  gt_on = dense.read_ground_truth(on)
  gt_off = dense.read_ground_truth(off)
  for sid, row in gt_on.items():
    row = dict(row)
    row.pop("cine", None)
    assert row == gt_off[sid]


def test_cine_label_is_the_dense_label_at_the_cine_frame_times(cohorts):
  """Independent check: per pixel, np.interp of the DENSE label (.mat, float64) over the
  DENSE frame indices at the cine frame j's time j·(T − 1)/(T_c − 1)."""
  on, _ = cohorts
  t_c = dense_writer.CINE_FRAMES
  times = np.arange(t_c) * (FRAMES - 1) / (t_c - 1)
  for folder in sorted((on / "data" / "test").iterdir()):
    u = scipy.io.loadmat(folder / "label.mat")["label"]                  # (2, H, W, T)
    u_c = scipy.io.loadmat(on / "data" / "test_cine" / folder.name / "label.mat")["label"]
    ref = np.apply_along_axis(lambda v: np.interp(times, np.arange(FRAMES), v), -1, u)
    np.testing.assert_allclose(u_c, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(u_c[..., 0], u[..., 0])                # same reference
    np.testing.assert_array_equal(u_c[..., -1], u[..., -1])              # same span


def test_cine_masks_differ_from_dense_by_a_bounded_amount(cohorts):
  """Cine masks are another scan of the same heart: frame-0 Dice with the DENSE mask in
  (0.7, 0.99); the DENSE label carries the frame-0 myocardium into the cine mask at every
  cine frame for most pixels (the motion is the same; contours differ by ≤ ~1.5 px)."""
  on, _ = cohorts
  gt = dense.read_ground_truth(on)
  for folder in sorted((on / "data" / "test").iterdir()):
    d = dense.read_sample(folder)
    c = dense.read_sample(on / "data" / "test_cine" / folder.name)
    assert 0.7 < _dice(d.mask[0] > 0, c.mask[0] > 0) < 0.99
    assert 0.7 < _dice(d.mask[-1] > 0, c.mask[-1] > 0) < 0.99
    pert = gt[folder.name]["cine"]
    assert 0.25 * SIZE / 48 - 1e-6 <= math.hypot(*pert["shift_xy"]) <= SIZE / 48 + 1e-6
    for key in ("endo_offset_px", "epi_offset_px"):
      assert abs(pert[key]) <= 0.5 * SIZE / 48
    assert 0.35 <= pert["threshold"] <= 0.65
    ys, xs = np.nonzero(d.mask[0])
    for t in (6, 12, 18):
      px = np.rint(xs + c.displacement[t, 0, ys, xs]).astype(int)
      py = np.rint(ys + c.displacement[t, 1, ys, xs]).astype(int)
      assert c.mask[t, py, px].mean() > 0.75


def test_cine_masks_without_perturbation_are_the_dense_masks():
  """With no shift, offsets or threshold change, the cine scan at frame times that fall on
  DENSE frames reproduces the DENSE masks exactly (T_c − 1 dividing T − 1)."""
  s = dense_writer.draw_subject(np.random.default_rng([0, 5, 1]), 40, 9)
  fields = dense_writer.angular_fields(s)
  m = dense_writer.masks(s, fields)
  u = dense_writer.displacements(s, fields, m[0] > 0)
  none = dict(shift=(0.0, 0.0), endo_offset=0.0, epi_offset=0.0, threshold=0.5)
  m_c, u_c = dense_writer.cine_scan(s, u, 5, none)         # DENSE frames 0, 2, 4, 6, 8
  np.testing.assert_array_equal(m_c, m[::2])
  np.testing.assert_allclose(u_c, u[::2], atol=1e-12)


def test_cine_is_deterministic_and_seeded(cohorts, tmp_path):
  on, _ = cohorts
  dense_writer.write_dense(tmp_path, N, seed=SEED, workers=2, size=SIZE, frames=FRAMES)
  for f in sorted((on / "data" / "test_cine").glob("*/*.mat")):
    assert (tmp_path / f.relative_to(on)).read_bytes() == f.read_bytes()
  assert (tmp_path / "ground_truth.json").read_bytes() == (on / "ground_truth.json").read_bytes()
  with pytest.raises(ValueError, match="cine_frames"):
    dense_writer.write_dense(tmp_path / "x", 3, cine_frames=2)


def test_cine_strain_tracks_the_dense_strain(cohorts):
  """Segmental Ecc of the cine label on the DENSE support is the DENSE Ecc at those times
  (the label is the DENSE label resampled); the cine frame count differs from DENSE's."""
  on, _ = cohorts
  gt = dense.read_ground_truth(on)
  folder = sorted((on / "data" / "test_cine").iterdir())[0]
  c = dense.read_sample(folder)
  d = dense.read_sample(on / "data" / "test" / folder.name)
  rv = math.radians(gt[folder.name]["rv_insertion_deg"])
  seg_c = np.asarray(strain.segmental_ecc(c.displacement, d.mask[0], rv))
  seg_d = np.asarray(strain.segmental_ecc(d.displacement, d.mask[0], rv))
  assert seg_c.shape == (dense_writer.CINE_FRAMES, 6) and seg_d.shape == (FRAMES, 6)
  np.testing.assert_allclose(seg_c[0], seg_d[0], atol=1e-6)
  np.testing.assert_allclose(seg_c[-1], seg_d[-1], atol=1e-6)
  assert np.nanmin(seg_c) == pytest.approx(np.nanmin(seg_d), abs=0.02)
