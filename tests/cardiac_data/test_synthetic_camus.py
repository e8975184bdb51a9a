"""Synthetic CAMUS cohort: layout, reader/builder round trip, determinism, masks
against the true biplane EF, image contrast, splits, registry/cache."""
from __future__ import annotations

import csv
import gzip
import math
import pathlib

import nibabel as nib
import numpy as np
import pytest

from cardiac_data import builders
from cardiac_data import camus
from cardiac_data import clips
from cardiac_data import synthetic
from cardiac_data import volumes as V
from cardiac_data.synthetic import anatomy
from cardiac_data.synthetic import cache
from cardiac_data.synthetic import camus_writer as cw
from cardiac_data.synthetic import subjects

NUM = 6
SEED = 4
SIZE = 96
REVERSE_PROB = 0.3   # this seed gives both ED→ES and ES→ED half sequences
TAGS = ("ED", "ED_gt", "ES", "ES_gt", "half_sequence", "half_sequence_gt")


def _patients():
  return [f"patient{i:04d}" for i in range(1, NUM + 1)]


def _truth(root):
  with open(root / "ground_truth.csv", newline="") as fh:
    return {r["Patient"]: r for r in csv.DictReader(fh)}


def _files(root):
  return {p.relative_to(root).as_posix(): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.is_file()}


def _vol(root, patient, view, tag):
  return root / "database_nifti" / patient / f"{patient}_{view}_{tag}.nii.gz"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
  root = tmp_path_factory.mktemp("camus") / "CAMUS_public"
  count = cw.write_camus(root, NUM, SEED, workers=1, size=SIZE, reverse_prob=REVERSE_PROB)
  assert count == 2 * NUM
  return root


# ------------------------------------------------------------------------------ layout


def test_layout_names_and_cfg(cohort):
  assert sorted(p.name for p in cohort.iterdir()) == [
      "database_nifti", "database_split", "ground_truth.csv"]
  assert sorted(p.name for p in (cohort / "database_nifti").iterdir()) == _patients()
  for patient in _patients():
    folder = cohort / "database_nifti" / patient
    want = {f"Info_{v}.cfg" for v in cw.VIEWS}
    want |= {f"{patient}_{v}_{t}.nii.gz" for v in cw.VIEWS for t in TAGS}
    assert {p.name for p in folder.iterdir()} == want
    for view in cw.VIEWS:
      text = (folder / f"Info_{view}.cfg").read_text()
      keys = [line.split(":")[0] for line in text.splitlines()]
      assert keys == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"]
      cfg = camus.read_cfg(folder / f"Info_{view}.cfg")
      assert sorted([int(cfg["ED"]), int(cfg["ES"])]) == [1, int(cfg["NbFrame"])]
      assert cfg["ImageQuality"] in ("Good", "Medium", "Poor")
  head = (cohort / "ground_truth.csv").read_text().splitlines()[0].split(",")
  assert head[:5] == ["Patient", "TrueEF", "LabelNoiseSD", "Quality", "LabelEF"]


def test_nifti_header_and_gzip(cohort):
  truth = _truth(cohort)
  for patient in _patients()[:2]:
    for view in cw.VIEWS:
      sp = float(truth[patient][f"PixelSpacing{view}"])
      n = int(truth[patient][f"NbFrame{view}"])
      seq = nib.load(_vol(cohort, patient, view, "half_sequence"))
      # SimpleITK layout: nibabel array is (W, H, T), zooms (col, row, 1).
      assert seq.shape == (SIZE, SIZE, n) and seq.get_data_dtype() == np.uint8
      np.testing.assert_allclose(seq.header.get_zooms(), (sp, sp, 1.0), rtol=1e-6)
      ed = nib.load(_vol(cohort, patient, view, "ED_gt"))
      assert ed.shape == (SIZE, SIZE) and ed.get_data_dtype() == np.uint8
      raw = _vol(cohort, patient, view, "ED").read_bytes()
      assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"   # gzip, mtime 0
      assert not raw[3] & 0x08                                      # no file name
      assert len(gzip.decompress(raw)) > SIZE * SIZE


# ---------------------------------------------------------------------- readers


@pytest.mark.parametrize("view", ["2CH", "4CH"])
def test_reads_through_read_camus(cohort, view):
  truth = _truth(cohort)
  result = camus.read_camus(cohort, view=view)
  assert result.skips.total == 0
  assert [r.key for r in result.records] == [f"{p}_{view}" for p in _patients()]
  for rec in result.records:
    t = truth[rec.key[:-len(view) - 1]]
    assert rec.ef == pytest.approx(float(t["LabelEF"]))
    assert rec.attributes["ImageQuality"] == t[f"Quality{view}"]
    assert rec.attributes["Sex"] == t["Sex"]
    assert rec.attributes["Age"] == round(float(t["Age"]))
    assert rec.fps == float(t[f"FrameRate{view}"])
    assert (rec.ed_frame + 1, rec.es_frame + 1) == (int(t[f"ED{view}"]), int(t[f"ES{view}"]))
    frames = clips.load_clip(rec)
    assert frames.shape == (int(t[f"NbFrame{view}"]), SIZE, SIZE)
    seq_gt = camus.read_camus_labels(rec.mask_paths["sequence"])
    masks = clips.load_masks(rec)
    assert set(masks) == {rec.ed_frame, rec.es_frame}
    for phase, f in (("ED", rec.ed_frame), ("ES", rec.es_frame)):
      np.testing.assert_array_equal(masks[f], seq_gt[f])
      image, spacing = camus.read_camus_volume(_vol(cohort, rec.key[:11], view, phase))
      np.testing.assert_array_equal(image, frames[f])
      assert spacing == pytest.approx((float(t[f"PixelSpacing{view}"]),) * 2, rel=1e-6)
    # Apex at the top: the fan's tip is in the top rows, the LV above the LA.
    lab = masks[rec.ed_frame]
    rows_lv, cols_lv = np.nonzero(lab == 1)
    rows_la, cols_la = np.nonzero(lab == 3)
    drop = rows_la.mean() - rows_lv.mean()
    assert drop > max(5.0, 2 * abs(cols_la.mean() - cols_lv.mean()))
    top = np.nonzero(frames[rec.ed_frame][:4].max(0))[0]
    assert top.size and abs(top.mean() - SIZE / 2) < 0.1 * SIZE


def test_builds_with_the_camus_builder(cohort, tmp_path):
  b = builders.build("camus", cohort, tmp_path / "tfds", view="2CH", size=32)
  counts = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sum(counts.values()) == NUM
  assert all(not n for skips in builders.skip_summary(b).values() for n in skips.values())


# ------------------------------------------------------------------------ labels


def test_label_sets_and_contraction(cohort):
  orders = set()
  for patient in _patients():
    for view in cw.VIEWS:
      for phase in ("ED", "ES"):
        lab = camus.read_camus_labels(_vol(cohort, patient, view, f"{phase}_gt"))
        assert set(np.unique(lab).tolist()) == {0, 1, 2, 3}
      rec = camus.read_camus(cohort, view=view).records[int(patient[-4:]) - 1]
      seq = camus.read_camus_labels(rec.mask_paths["sequence"])
      assert all(set(np.unique(f).tolist()) == {0, 1, 2, 3} for f in seq)
      # c(φ) is monotone over either half cycle, so the LV area is largest at ED
      # and smallest at ES (up to a few boundary pixels where c is flat).
      area = (seq == 1).sum(axis=(1, 2))
      assert area[rec.ed_frame] >= area.max() - 3 and area[rec.es_frame] <= area.min() + 3
      assert area[rec.ed_frame] > 1.2 * area[rec.es_frame]
      step = np.diff(area) * (1 if rec.ed_frame == 0 else -1)
      assert np.all(step <= 3)
      orders.add(rec.ed_frame == 0)
  assert orders == {True, False}


def test_lv_cavity_darker_than_myocardium(cohort):
  for patient in _patients():
    for view in cw.VIEWS:
      for phase in ("ED", "ES"):
        image, _ = camus.read_camus_volume(_vol(cohort, patient, view, phase))
        lab = camus.read_camus_labels(_vol(cohort, patient, view, f"{phase}_gt"))
        assert image[lab == 1].mean() < 0.8 * image[lab == 2].mean()


def _axis_from_mask(mask):
  """(apex, base) of a cavity mask: principal axis through the centroid (exact
  for a shape symmetric about its long axis), extended half a pixel past the
  outermost pixel centres; the apex is the end nearer the top."""
  ys, xs = np.nonzero(mask)
  p = np.stack([xs, ys], 1).astype(np.float64)
  centre = p.mean(0)
  _, vec = np.linalg.eigh(np.cov((p - centre).T))
  e = vec[:, -1] * np.sign(vec[1, -1])
  s = (p - centre) @ e
  return centre + (s.min() - 0.5) * e, centre + (s.max() + 0.5) * e


def _biplane_from_masks(root, patient, phase):
  """Biplane method-of-discs volume (mm³) from the 4CH and 2CH LV masks."""
  parts = []
  for view in ("4CH", "2CH"):
    path = _vol(root, patient, view, f"{phase}_gt")
    lv = camus.read_camus_labels(path) == 1
    _, spacing = camus.read_camus_volume(path)
    d, length = V.disc_diameters_from_mask(lv, *_axis_from_mask(lv))
    parts.append((d * spacing[0], length * spacing[0]))
  (d4, l4), (d2, l2) = parts
  return float(V.discs_volume(d4, 0.5 * (l4 + l2), d2))


def test_biplane_ef_from_masks_matches_true_ef(cohort):
  # Tolerance 2 EF points (volumes 4 %): ~40-pixel LVs at S = 96 are rasterised at
  # pixel centres and the axis is estimated from the pixels; on 40 patients the
  # EF error had SD 0.4 and max 1.1 points.
  truth = _truth(cohort)
  for patient in _patients():
    t = truth[patient]
    edv, esv = (_biplane_from_masks(cohort, patient, ph) / 1000.0 for ph in ("ED", "ES"))
    assert edv == pytest.approx(float(t["TrueEDV"]), rel=0.04)
    assert esv == pytest.approx(float(t["TrueESV"]), rel=0.06)
    assert float(V.ejection_fraction(edv, esv)) == pytest.approx(float(t["TrueEF"]), abs=2.0)


def test_ground_truth_is_consistent(cohort):
  rank = {"Good": 0, "Medium": 1, "Poor": 2}
  for t in _truth(cohort).values():
    edv, esv = float(t["TrueEDV"]), float(t["TrueESV"])
    assert float(t["TrueEF"]) == pytest.approx(100 * (edv - esv) / edv, abs=1e-5)
    # Affine contraction: V_es/V_ed = (1 − f_l)(1 − f_r)².
    f_l, f_r = float(t["LongitudinalShortening"]), float(t["RadialShortening"])
    assert esv / edv == pytest.approx((1 - f_l) * (1 - f_r)**2, abs=2e-4)
    worst = max((t[f"Quality{v}"] for v in cw.VIEWS), key=rank.get)
    assert t["Quality"] == worst.lower()
    sd = subjects.LABEL_NOISE_SD[t["Quality"]]
    assert float(t["LabelNoiseSD"]) == sd
    assert abs(float(t["LabelEF"]) - float(t["TrueEF"])) < 4 * sd + 0.05


def test_splits_partition_the_patients(cohort):
  truth = _truth(cohort)
  lists = {}
  for subset in cw.SUBSETS:
    lines = (cohort / "database_split" / f"subgroup_{subset}.txt").read_text().splitlines()
    lists[subset] = lines
    assert all(truth[p]["Split"] == subset for p in lines)
  everyone = [p for names in lists.values() for p in names]
  assert sorted(everyone) == _patients()           # disjoint and complete
  assert [len(lists[s]) for s in cw.SUBSETS] == [4, 1, 1]
  assert [len(cw.camus_split(n, 0)) for n in (1, 2)] == [1, 2]
  big = cw.camus_split(500, 0)
  assert [big.count(s) for s in cw.SUBSETS] == [400, 50, 50]


# ------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_serial_and_parallel(cohort, tmp_path):
  again = tmp_path / "again"
  cw.write_camus(again, NUM, SEED, workers=2, size=SIZE, reverse_prob=REVERSE_PROB)
  assert _files(again) == _files(cohort)
  other = tmp_path / "other"
  cw.write_camus(other, 2, SEED + 1, workers=1, size=SIZE)
  assert (other / "ground_truth.csv").read_bytes() != (cohort / "ground_truth.csv").read_bytes()


def test_registry_cache_and_bad_arguments(tmp_path):
  assert synthetic.get_writer("camus") is cw.write_camus
  assert cw.write_camus.generator_version == "camus-1"
  root = cache.ensure_cohort("camus", 2, 0, cache_dir=tmp_path, workers=1, size=48)
  assert root == cache.ensure_cohort("camus", 2, 0, cache_dir=tmp_path, size=48)
  result = camus.read_camus(root, view="4CH")
  assert len(result.records) == 2 and result.skips.total == 0
  assert math.isfinite(result.records[0].ef)
  with pytest.raises(FileExistsError, match="overwrite"):
    cw.write_camus(root, 1, 0, size=48)
  for kwargs, field in (({"size": 16}, "size"), ({"reverse_prob": 1.5}, "reverse_prob")):
    with pytest.raises(ValueError, match=field):
      cw.write_camus(pathlib.Path(tmp_path) / "bad", 1, 0, **kwargs)
  with pytest.raises(ValueError, match="num_subjects"):
    cw.write_camus(tmp_path / "bad", 0, 0)


def test_polygon_centres_matches_skimage():
  from skimage import draw
  rng = np.random.default_rng(0)
  for k in range(60):
    n = int(rng.integers(3, 40))
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(3, 25, n) if k % 2 else np.full(n, rng.uniform(3, 30))  # star / convex
    pts = rng.uniform(-5, 45, 2) + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    rr, cc = draw.polygon(pts[:, 1], pts[:, 0], shape=(40, 40))
    want = np.zeros((40, 40), bool)
    want[rr, cc] = True
    np.testing.assert_array_equal(anatomy.polygon_centres(pts, 40), want)


def test_polygon_layer_indices_match_the_painted_fills():
  """`anatomy`'s layer indices (used by the painters and the label maps) name the
  fills of `polygons` in painter's order."""
  rng = np.random.default_rng(1)
  heart, acq = anatomy.make_heart_and_acquisition(subjects.adult_subject(rng), rng, size=64,
                                                  fps_choices=(50,), fps_probs=(1.0,))
  c, phase = anatomy.clip_contraction(acq)
  fills, _, _ = anatomy.polygons(heart, c, phase, acq.systolic_fraction)
  keys = [k for _, k in fills]
  assert len(keys) == 9
  assert [keys[j] for j in (anatomy.PERICARDIUM, anatomy.LA_WALL, anatomy.RA_WALL,
                            anatomy.RV_WALL, anatomy.MYOCARDIUM)] == [
      "pericardium", "atrial_wall", "atrial_wall", "rv_wall", "myocardium"]
  assert all(keys[j] == "blood" for j in (anatomy.LA, anatomy.RA, anatomy.RV, anatomy.LV))
