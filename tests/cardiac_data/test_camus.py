"""CAMUS reader (NIfTI 2023 and MHD 2019) on fixture trees, incl. orientation and bad inputs."""
from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from cardiac_data import camus, clips
from cardiac_data.errors import BadValueError, DataFormatError, VideoDecodeError
from tests import fixtures

SPLITS = {"patient0001": "train", "patient0002": "train", "patient0003": "val",
          "patient0004": "test", "patient0005": "train"}


@pytest.fixture(scope="module")
def nifti_tree(tmp_path_factory):
  return fixtures.write_camus(tmp_path_factory.mktemp("camus") / "CAMUS_public", "nifti",
                              splits=SPLITS)


@pytest.fixture(scope="module")
def mhd_tree(tmp_path_factory):
  return fixtures.write_camus(tmp_path_factory.mktemp("camus_mhd") / "camus2019", "mhd",
                              splits=SPLITS)


@pytest.fixture
def nifti_copy(nifti_tree, tmp_path):
  shutil.copytree(nifti_tree.root, tmp_path / "c")
  return fixtures.CamusFixture(tmp_path / "c", nifti_tree.expected)


def _check_record(rec, exp):
  assert rec.dataset == "camus"
  assert rec.ef == exp["ef"] or (math.isnan(rec.ef) and math.isnan(exp["ef"]))
  assert (rec.ed_frame, rec.es_frame) == (exp["ed"], exp["es"])
  assert rec.num_frames == exp["image"].shape[0]
  assert (rec.height, rec.width) == exp["image"].shape[1:]
  cfg = exp["cfg"]
  assert dict(rec.attributes) == {"Age": float(cfg["Age"]), "Sex": cfg["Sex"],
                                  "ImageQuality": cfg["ImageQuality"]}
  np.testing.assert_array_equal(clips.load_clip(rec), exp["image"])


@pytest.mark.parametrize("view", ["4CH", "2CH"])
def test_nifti_values_match_fixture(nifti_tree, view):
  result = camus.read_camus(nifti_tree.root, view=view)
  assert result.skips.total == 0
  assert [r.key for r in result.records] == [f"{p}_{view}" for p in sorted(SPLITS)]
  for rec in result.records:
    exp = nifti_tree.expected[rec.key]
    assert rec.view == view and rec.split == exp["split"] and rec.fps == 30.0
    _check_record(rec, exp)
    masks = clips.load_masks(rec)
    assert set(masks) == {exp["ed"], exp["es"]}
    for f, m in masks.items():
      assert m.dtype == np.uint8
      np.testing.assert_array_equal(m, exp["labels"][f])
    # ED is the larger LV whichever order the cfg gives (ED=1 or ED=NbFrame).
    assert (masks[rec.ed_frame] == 1).sum() > (masks[rec.es_frame] == 1).sum()
  assert {r.ed_frame for r in result.records} == {0, 4}


def test_nifti_apex_at_top_and_matches_simpleitk(nifti_tree):
  rec = camus.read_camus(nifti_tree.root).records[0]
  image, spacing = camus.read_camus_volume(rec.video_path)
  labels, _ = camus.read_camus_volume(rec.mask_paths["sequence"])
  t, h, w = image.shape
  assert (h, w) == (40, 32) and spacing == pytest.approx((0.31, 0.154))
  # The known apex pixel is on the top row, left of centre (no transpose or flip).
  assert image[0, 0].argmax() == fixtures.apex_col((h, w)) and image[0, 0].max() == 255
  rows = np.arange(h)[:, None]
  lv_row = (rows * (labels[0] == 1)).sum() / (labels[0] == 1).sum()
  la_row = (rows * (labels[0] == 3)).sum() / (labels[0] == 3).sum()
  assert lv_row < la_row  # LV under the apex, atrium at the bottom.
  # Independent reader: SimpleITK's array of the same file is identical, spacing (x, y).
  img = sitk.ReadImage(rec.video_path)
  np.testing.assert_array_equal(sitk.GetArrayFromImage(img), image)
  assert img.GetSpacing()[:2] == pytest.approx(spacing[::-1])


def test_mhd_release(mhd_tree):
  result = camus.read_camus(mhd_tree.root)
  assert result.skips.total == 0 and len(result.records) == 5
  for rec in result.records:
    exp = mhd_tree.expected[rec.key]
    patient = rec.key.split("_")[0]
    want = "test" if exp["split"] == "test" else camus.mhd_default_split(patient)
    assert rec.split == want
    assert rec.video_path.endswith(f"{rec.key}_sequence.mhd")
    _check_record(rec, exp)
    if exp["has_gt"]:
      assert (rec.edv, rec.esv) == (exp["edv"], exp["esv"])  # LVedv/LVesv/LVef keys
      masks = clips.load_masks(rec)
      np.testing.assert_array_equal(masks[rec.es_frame], exp["labels"][exp["es"]])
    else:
      assert rec.split == "test" and math.isnan(rec.ef) and clips.load_masks(rec) == {}
  image, spacing = camus.read_camus_volume(result.records[0].video_path)
  assert spacing == pytest.approx((0.31, 0.154))  # (row, col) from SimpleITK's (x, y)
  assert image[0, 0].argmax() == fixtures.apex_col(image.shape[1:])


def test_mhd_default_split_is_deterministic_and_about_one_in_ten():
  ids = [f"patient{i:04d}" for i in range(1, 451)]
  splits = [camus.mhd_default_split(p) for p in ids]
  assert splits == [camus.mhd_default_split(p) for p in ids]
  assert 25 <= splits.count("val") <= 70


def test_mhd_with_fold_lists(mhd_tree, tmp_path):
  lists = tmp_path / "listSubGroups"
  fold_splits = {"patient0001": "test", "patient0002": "val", "patient0003": "train",
                 "patient0005": "train"}
  fixtures.write_split_lists(lists, fold_splits, pattern="subGroup3_{subset}.txt")
  result = camus.read_camus(mhd_tree.root, split_list_dir=str(lists), fold=3)
  assert {r.key.split("_")[0]: r.split for r in result.records} == fold_splits
  assert result.skips.counts[camus.SKIP_NOT_LISTED] == 1


def test_nifti_root_may_be_database_nifti(nifti_tree):
  result = camus.read_camus(nifti_tree.root / "database_nifti")
  assert {r.key: r.split for r in result.records} == {
      k: v["split"] for k, v in nifti_tree.expected.items() if k.endswith("4CH")}


def test_split_list_problems(nifti_copy):
  root = nifti_copy.root
  split_dir = root / "database_split"
  (split_dir / "subgroup_validation.txt").write_text("patient0003\npatient0009\n")
  with pytest.raises(DataFormatError) as e:
    camus.read_camus(root)
  assert "subgroup_validation.txt" in str(e.value) and e.value.row == 2
  assert "patient0009 is listed but its folder is not" in str(e.value)
  (split_dir / "subgroup_validation.txt").write_text("patient0001\n")
  with pytest.raises(DataFormatError, match="patient0001 is also listed in subgroup_training"):
    camus.read_camus(root)
  (split_dir / "subgroup_validation.txt").write_text("")
  result = camus.read_camus(root)
  assert result.skips.counts[camus.SKIP_NOT_LISTED] == 1
  os.remove(split_dir / "subgroup_testing.txt")
  with pytest.raises(DataFormatError, match=r"subgroup_testing\.txt: split list not found"):
    camus.read_camus(root)


def _cfg_path(root, patient="patient0002", view="4CH"):
  return root / "database_nifti" / patient / f"Info_{view}.cfg"


def _edit_cfg(path, drop=(), **set_):
  cfg = camus.read_cfg(path)
  for k in drop:
    cfg.pop(k)
  cfg.update({k: str(v) for k, v in set_.items()})
  path.write_text("".join(f"{k}: {v}\n" for k, v in cfg.items()))


def test_cfg_ef_or_lvef_and_missing_keys(nifti_copy):
  root = nifti_copy.root
  path = _cfg_path(root)
  _edit_cfg(path, drop=["EF"], LVef=61.5)
  rec = {r.key: r for r in camus.read_camus(root).records}["patient0002_4CH"]
  assert rec.ef == 61.5
  _edit_cfg(path, drop=["LVef"])
  with pytest.raises(DataFormatError, match=r"Info_4CH\.cfg: missing cfg key\(s\) \['EF \(or LVef\)'\]"):
    camus.read_camus(root)
  _edit_cfg(path, drop=["ED"], EF=50)
  with pytest.raises(DataFormatError, match=r"patient0002/Info_4CH\.cfg: missing cfg key\(s\) \['ED'\]"):
    camus.read_camus(root)
  _edit_cfg(path, ED=5, Sex="", Age="nan")
  rec = {r.key: r for r in camus.read_camus(root).records}["patient0002_4CH"]
  assert rec.attributes["Sex"] is None and rec.attributes["Age"] is None
  _edit_cfg(path, drop=["ImageQuality"])
  result = camus.read_camus(root)
  assert result.notes[camus.NOTE_MISSING_DEMOGRAPHIC] == 1
  assert {r.key: r for r in result.records}["patient0002_4CH"].attributes["ImageQuality"] is None


@pytest.mark.parametrize("key,value,what", [
    ("EF", "abc", "not a number"), ("EF", "140", "outside"), ("ED", "9", "outside"),
    ("ES", "2.5", "not an integer"), ("NbFrame", "7", "has 5 frames but"),
    ("Sex", "W", "not M or F"), ("ImageQuality", "Excellent", "not one of"),
    ("Age", "-1", "outside")])
def test_cfg_bad_values(nifti_copy, key, value, what):
  _edit_cfg(_cfg_path(nifti_copy.root), **{key: value})
  if key == "NbFrame":   # A cfg that disagrees with its sequence is structural: always raises.
    for strict in (False, True):
      with pytest.raises(DataFormatError, match=what):
        camus.read_camus(nifti_copy.root, strict=strict)
    return
  with pytest.raises(BadValueError, match=what) as e:
    camus.read_camus(nifti_copy.root, strict=True)
  assert e.value.path.endswith("patient0002/Info_4CH.cfg")
  # Default: that patient's view is skipped and counted; the others are read.
  result = camus.read_camus(nifti_copy.root)
  assert [r.key for r in result.records] == [f"{p}_4CH" for p in sorted(SPLITS)
                                             if p != "patient0002"]
  assert dict(result.skips.counts) == {camus.SKIP_BAD_VALUE: 1}
  (example,) = result.skips.examples[camus.SKIP_BAD_VALUE]
  assert example.startswith(f"patient #1: {key}=") and what in example
  # The other view's cfg is untouched: patient0002's 2CH is still read.
  assert "patient0002_2CH" in {r.key for r in camus.read_camus(nifti_copy.root, view="2CH").records}


def test_mhd_testing_without_ground_truth_counted_or_required(mhd_tree):
  result = camus.read_camus(mhd_tree.root)
  no_gt = sorted(f"{p}_4CH" for p, s in SPLITS.items() if s == "test")
  assert result.notes[camus.NOTE_NO_GROUND_TRUTH] == len(no_gt) == 1
  assert sorted(r.key for r in result.records if math.isnan(r.ef)) == no_gt
  required = camus.read_camus(mhd_tree.root, require_masks=True)
  assert sorted(r.key for r in required.records) == sorted(
      f"{p}_4CH" for p, s in SPLITS.items() if s != "test")
  assert dict(required.skips.counts) == {camus.SKIP_NO_MASKS: 1}
  assert all(r.split != "test" and r.mask_paths for r in required.records)


def test_cfg_line_without_colon(nifti_copy):
  path = _cfg_path(nifti_copy.root)
  path.write_text(path.read_text() + "garbage line\n")
  with pytest.raises(DataFormatError) as e:
    camus.read_camus(nifti_copy.root)
  assert e.value.row == 9 and "Key: value" in str(e.value)


def test_gt_label_out_of_range(nifti_copy):
  rec = {r.key: r for r in camus.read_camus(nifti_copy.root).records}["patient0001_4CH"]
  exp = nifti_copy.expected["patient0001_4CH"]
  bad = exp["labels"][exp["ed"]].copy()
  bad[5, 5] = 7
  fixtures.write_nifti(rec.mask_paths["ED"], bad, exp["spacing"])
  with pytest.raises(DataFormatError, match=r"ED_gt\.nii\.gz: label values \[7\] outside"):
    clips.load_masks(rec)


def test_missing_and_corrupt_files(nifti_copy, tmp_path):
  root = nifti_copy.root
  with pytest.raises(DataFormatError, match="CAMUS root folder not found"):
    camus.read_camus(tmp_path / "absent")
  with pytest.raises(DataFormatError, match="not a CAMUS root"):
    camus.read_camus(tmp_path)
  records = {r.key: r for r in camus.read_camus(root).records}
  rec = records["patient0003_4CH"]
  with open(rec.video_path, "wb") as f:
    f.write(b"\x1f\x8b not really gzip")
  with pytest.raises(VideoDecodeError, match="patient0003_4CH_half_sequence"):
    clips.load_clip(rec)
  with pytest.raises(DataFormatError, match="cannot read image header"):
    camus.read_camus(root)
  os.remove(rec.video_path)
  with pytest.raises(DataFormatError, match="half_sequence.nii.gz: file not found"):
    camus.read_camus(root)
  with pytest.raises(VideoDecodeError, match="image file not found"):
    clips.load_clip(rec)
  os.remove(_cfg_path(root, "patient0001"))
  with pytest.raises(DataFormatError, match=r"patient0001/Info_4CH\.cfg: cfg file not found"):
    camus.read_camus(root)


def test_missing_gt_file_in_training(mhd_tree, tmp_path):
  root = tmp_path / "m"
  shutil.copytree(mhd_tree.root, root)
  os.remove(root / "training" / "patient0001" / "patient0001_4CH_ES_gt.mhd")
  with pytest.raises(DataFormatError, match="patient0001_4CH_ES_gt.mhd: ground-truth file not found"):
    camus.read_camus(root)


def test_uint8_conversion_rejects_out_of_range(tmp_path):
  path = tmp_path / "x.nii.gz"
  fixtures.write_nifti(path, np.full((3, 4, 5), 300.0, np.float32), (1.0, 1.0))
  rec_like = type("R", (), {"video_path": str(path)})
  with pytest.raises(VideoDecodeError, match="outside 0..255"):
    clips.load_clip(rec_like)
  fixtures.write_nifti(path, np.full((3, 4, 5), 12.0, np.float32), (1.0, 1.0))
  clip = clips.load_clip(rec_like)
  assert clip.dtype == np.uint8 and clip.shape == (3, 4, 5) and (clip == 12).all()
