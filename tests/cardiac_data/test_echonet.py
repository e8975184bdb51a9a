"""EchoNet-Dynamic and EchoNet-Pediatric readers on fixture trees, incl. every bad input."""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest

from cardiac_data import clips, echonet, tracings
from cardiac_data.errors import BadValueError, DataFormatError, VideoDecodeError
from tests import fixtures


@pytest.fixture(scope="module")
def dynamic_tree(tmp_path_factory):
  return fixtures.write_echonet_dynamic(tmp_path_factory.mktemp("dyn") / "EchoNet-Dynamic",
                                        num_videos=6, sizes={3: (128, 160)})


@pytest.fixture
def dynamic_copy(dynamic_tree, tmp_path):
  """A private copy of the Dynamic tree that a test may damage."""
  root = tmp_path / "copy"
  shutil.copytree(dynamic_tree.root, root)
  return fixtures.DynamicFixture(root, [list(r) for r in dynamic_tree.filelist],
                                 [list(r) for r in dynamic_tree.tracings], dynamic_tree.expected)


@pytest.fixture(scope="module")
def pediatric_tree(tmp_path_factory):
  return fixtures.write_echonet_pediatric(tmp_path_factory.mktemp("ped") / "downloads",
                                          num_videos=6, nested=True)


def _write_filelist(fx, rows):
  fixtures.write_csv(fx.root / "FileList.csv", fixtures.DYNAMIC_FILELIST_HEADER, rows)


def _write_tracings(fx, rows):
  fixtures.write_csv(fx.root / "VolumeTracings.csv", fixtures.DYNAMIC_TRACING_HEADER, rows)


# ------------------------------------------------------------------------- EchoNet-Dynamic


def test_dynamic_values_match_fixture(dynamic_tree):
  result = echonet.read_echonet_dynamic(dynamic_tree.root)
  assert result.skips.total == 0
  assert len(result.records) == 6
  by_key = {r.key: r for r in result.records}
  assert set(by_key) == set(dynamic_tree.expected)
  for key, exp in dynamic_tree.expected.items():
    rec = by_key[key]
    assert rec.dataset == "echonet_dynamic" and rec.view == "A4C"
    assert rec.video_path == str(dynamic_tree.root / "Videos" / f"{key}.avi")
    assert (rec.split, rec.ef, rec.esv, rec.edv) == (exp["split"], exp["ef"], exp["esv"],
                                                      exp["edv"])
    assert (rec.height, rec.width, rec.fps, rec.num_frames) == (*exp["size"], exp["fps"],
                                                               exp["num_frames"])
    # ED/ES by area although half the videos list the ED frame first.
    assert (rec.ed_frame, rec.es_frame) == (exp["ed"], exp["es"])
    assert set(rec.traces) == {exp["ed"], exp["es"]}
    if exp["size"] == (112, 112):
      for f, chords in exp["chords"].items():
        x = np.concatenate([chords[1:, 0], chords[:0:-1, 2]])
        y = np.concatenate([chords[1:, 1], chords[:0:-1, 3]])
        np.testing.assert_allclose(rec.traces[f], np.stack([x, y], 1), atol=1e-5)


def test_dynamic_clip_and_masks_agree_with_pixels(dynamic_tree):
  rec = next(r for r in echonet.read_echonet_dynamic(dynamic_tree.root).records
             if r.height == 112)
  clip = clips.load_clip(rec)
  assert clip.dtype == np.uint8 and clip.shape == (16, 112, 112)
  masks = clips.load_masks(rec)
  assert set(masks) == {rec.ed_frame, rec.es_frame}
  for f, m in masks.items():
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert m.sum() == pytest.approx(tracings.polygon_area(rec.traces[f]), rel=0.08)
    # The traced LV is the dark pool of the video.
    assert clip[f][m == 1].mean() < 60 < clip[f][m == 0].mean()
  assert masks[rec.ed_frame].sum() > masks[rec.es_frame].sum()


def test_dynamic_not_112_kept_counted_and_tracings_scaled(dynamic_tree):
  result = echonet.read_echonet_dynamic(dynamic_tree.root)
  assert result.notes[echonet.NOTE_NOT_112] == 1
  rec = next(r for r in result.records if r.height != 112)
  exp = dynamic_tree.expected[rec.key]
  assert (rec.height, rec.width) == (128, 160)
  poly = tracings.dynamic_chords_to_polygon(exp["chords"][exp["ed"]])
  np.testing.assert_allclose(rec.traces[exp["ed"]],
                             tracings.scale_polygon(poly, (112, 112), (128, 160)), atol=1e-4)
  clip = clips.load_clip(rec)
  masks = clips.load_masks(rec)
  assert clip.shape == (16, 128, 160) and masks[rec.ed_frame].shape == (128, 160)
  m = masks[rec.ed_frame]
  assert clip[rec.ed_frame][m == 1].mean() < 60 < clip[rec.ed_frame][m == 0].mean()


@pytest.mark.parametrize("avi_in_filelist,avi_in_tracings", [(True, False), (True, True),
                                                              (False, False)])
def test_dynamic_avi_extension_either_way(dynamic_copy, avi_in_filelist, avi_in_tracings):
  fx = dynamic_copy
  _write_filelist(fx, [[echonet.normalize_name(r[0]) + (".avi" if avi_in_filelist else ""),
                        *r[1:]] for r in fx.filelist])
  _write_tracings(fx, [[echonet.normalize_name(r[0]) + (".avi" if avi_in_tracings else ""),
                        *r[1:]] for r in fx.tracings])
  result = echonet.read_echonet_dynamic(fx.root)
  assert {r.key for r in result.records} == set(fx.expected)
  assert all(len(r.traces) == 2 for r in result.records)


def test_dynamic_missing_root_and_files(tmp_path, dynamic_copy):
  with pytest.raises(DataFormatError, match="root folder not found"):
    echonet.read_echonet_dynamic(tmp_path / "nope")
  os.remove(dynamic_copy.root / "VolumeTracings.csv")
  with pytest.raises(DataFormatError, match=r"VolumeTracings\.csv: file not found"):
    echonet.read_echonet_dynamic(dynamic_copy.root)
  shutil.rmtree(dynamic_copy.root / "Videos")
  _write_tracings(dynamic_copy, dynamic_copy.tracings)
  with pytest.raises(DataFormatError, match="Videos: video folder not found"):
    echonet.read_echonet_dynamic(dynamic_copy.root)
  # Without file checks the tables alone are read.
  assert len(echonet.read_echonet_dynamic(dynamic_copy.root, check_files=False).records) == 6
  os.remove(dynamic_copy.root / "FileList.csv")
  with pytest.raises(DataFormatError, match=r"FileList\.csv: file not found"):
    echonet.read_echonet_dynamic(dynamic_copy.root)


def test_dynamic_renamed_column_lists_expected_and_found(dynamic_copy):
  header = list(fixtures.DYNAMIC_FILELIST_HEADER)
  header[header.index("EF")] = "LVEF"
  fixtures.write_csv(dynamic_copy.root / "FileList.csv", header, dynamic_copy.filelist)
  with pytest.raises(DataFormatError) as e:
    echonet.read_echonet_dynamic(dynamic_copy.root)
  msg = str(e.value)
  assert "FileList.csv" in msg and "missing column(s) ['EF']" in msg
  assert "expected columns ['FileName', 'EF'," in msg and "found ['FileName', 'LVEF'," in msg


def test_dynamic_missing_tracing_column(dynamic_copy):
  fixtures.write_csv(dynamic_copy.root / "VolumeTracings.csv", ["FileName", "X1", "Y1", "X2", "Y2"],
                     [r[:5] for r in dynamic_copy.tracings])
  with pytest.raises(DataFormatError, match=r"VolumeTracings\.csv: missing column\(s\) \['Frame'\]"):
    echonet.read_echonet_dynamic(dynamic_copy.root)


def test_dynamic_duplicate_rows_named_with_row_numbers(dynamic_copy):
  rows = dynamic_copy.filelist + [[dynamic_copy.filelist[1][0] + ".avi",
                                   *dynamic_copy.filelist[1][1:]]]
  _write_filelist(dynamic_copy, rows)
  with pytest.raises(DataFormatError, match=r"duplicate FileName .* in rows \[3, 8\]"):
    echonet.read_echonet_dynamic(dynamic_copy.root)


@pytest.mark.parametrize("column,value,what", [
    ("EF", "abc", "is not a number"), ("EF", "", "is missing"), ("EF", "120", "is above 100"),
    ("EF", "-3", "is below 0"), ("ESV", "-1", "is below 0"), ("FrameHeight", "11.5", "integer"),
    ("FPS", "0", "is not positive"), ("Split", "TRAINING", "is not TRAIN, VAL or TEST")])
def test_dynamic_bad_value_names_file_and_row(dynamic_copy, column, value, what, caplog):
  rows = [list(r) for r in dynamic_copy.filelist]
  rows[3][fixtures.DYNAMIC_FILELIST_HEADER.index(column)] = value
  _write_filelist(dynamic_copy, rows)
  with pytest.raises(BadValueError) as e:
    echonet.read_echonet_dynamic(dynamic_copy.root, strict=True)
  assert isinstance(e.value, DataFormatError)
  assert e.value.row == 5 and e.value.path.endswith("FileList.csv")
  assert f"{column}=" in str(e.value) and what in str(e.value)
  # Default (strict=False): that row alone is skipped, counted under its column, logged
  # with its row number and value, never the file name.
  with caplog.at_level(logging.INFO):
    result = echonet.read_echonet_dynamic(dynamic_copy.root)
  bad = echonet.normalize_name(rows[3][0])
  assert {r.key for r in result.records} == set(dynamic_copy.expected) - {bad}
  reason = echonet.SKIP_BAD_VALUE.format(column=column)
  assert dict(result.skips.counts) == {reason: 1}
  (example,) = result.skips.examples[reason]
  assert example.startswith(f"FileList.csv row 5: {column}={value!r} ") and what in example
  assert result.notes[echonet.NOTE_VIDEO_WITHOUT_ROW] == 0
  assert f"1 × {reason}" in caplog.text and "row 5" in caplog.text
  assert all(k not in caplog.text for k in dynamic_copy.expected)


def test_dynamic_bad_values_in_several_rows_counted_once_each(dynamic_copy):
  rows = [list(r) for r in dynamic_copy.filelist]
  col = fixtures.DYNAMIC_FILELIST_HEADER.index
  rows[0][col("Split")] = "TRAINING"
  rows[1][col("EF")] = "n/a"
  rows[1][col("Split")] = "?"       # Two bad values: one skip, under the first column checked.
  rows[4][col("FPS")] = "fast"
  _write_filelist(dynamic_copy, rows)
  result = echonet.read_echonet_dynamic(dynamic_copy.root)
  assert len(result.records) == 3 and result.skips.total == 3
  assert dict(result.skips.counts) == {echonet.SKIP_BAD_VALUE.format(column=c): 1
                                       for c in ("Split", "EF", "FPS")}
  with pytest.raises(BadValueError, match="EF='n/a' is missing") as e:   # EF is checked first.
    echonet.read_echonet_dynamic(dynamic_copy.root, strict=True)
  assert e.value.row == 3


def test_dynamic_non_integer_tracing_frame_dropped_and_counted(dynamic_copy):
  fx = dynamic_copy
  key = echonet.normalize_name(fx.filelist[0][0])
  exp = fx.expected[key]
  rows = [r if not (echonet.normalize_name(r[0]) == key and r[-1] == exp["es"])
          else [*r[:-1], "No Systolic"] for r in fx.tracings]
  n_bad = sum(r[-1] == "No Systolic" for r in rows)
  _write_tracings(fx, rows)
  result = echonet.read_echonet_dynamic(fx.root)
  assert result.skips.counts[echonet.SKIP_BAD_FRAME] == n_bad == 21
  rec = next(r for r in result.records if r.key == key)
  assert set(rec.traces) == {exp["ed"]} and rec.ed_frame is None and rec.es_frame is None
  assert set(clips.load_masks(rec)) == {exp["ed"]}
  strict = echonet.read_echonet_dynamic(fx.root, require_tracings=True)
  assert key not in {r.key for r in strict.records} and len(strict.records) == 5
  assert strict.skips.counts[echonet.SKIP_FEW_TRACES] == 1


def test_dynamic_non_numeric_coordinate_names_row(dynamic_copy):
  rows = [list(r) for r in dynamic_copy.tracings]
  rows[4][2] = "x"
  _write_tracings(dynamic_copy, rows)
  with pytest.raises(DataFormatError) as e:
    echonet.read_echonet_dynamic(dynamic_copy.root)
  assert e.value.row == 6 and "Y1='x' is not a number" in str(e.value)


def test_dynamic_filelist_size_fps_frames_that_the_video_has_not(dynamic_copy, caplog):
  """Real FileList rows state 768x1024 for 112x112 AVIs: the header's size, FPS and frame
  count are used, the disagreements counted, and tracings scaled by the true size."""
  fx = dynamic_copy
  col = fixtures.DYNAMIC_FILELIST_HEADER.index
  rows = [list(r) for r in fx.filelist]
  small, big = rows[1], rows[3]                          # 112x112 and 128x160 videos
  small[col("FrameHeight")], small[col("FrameWidth")] = 768, 1024
  big[col("FrameHeight")], big[col("FrameWidth")] = 112, 112
  rows[0][col("FPS")] = 30
  rows[2][col("NumberOfFrames")] = 99
  _write_filelist(fx, rows)
  with caplog.at_level(logging.INFO):
    result = echonet.read_echonet_dynamic(fx.root)
  assert result.notes[echonet.NOTE_SIZE_DISAGREES] == 2
  assert result.notes[echonet.NOTE_FPS_DISAGREES] == 1
  assert result.notes[echonet.NOTE_FRAMES_DISAGREES] == 1
  assert result.notes[echonet.NOTE_NOT_112] == 1 and result.skips.total == 0
  assert "FileList.csv disagrees with the video headers" in caplog.text
  recs = {r.key: r for r in result.records}
  for row in rows:
    rec, exp = recs[echonet.normalize_name(row[0])], fx.expected[echonet.normalize_name(row[0])]
    assert (rec.height, rec.width, rec.fps, rec.num_frames) == (*exp["size"], 50.0, 16)
  # The 112x112 video (FileList: 768x1024): tracings unscaled; mask = the reference
  # polygon rasterised on its 112x112 grid, on the dark LV of the frame.
  rec = recs[echonet.normalize_name(small[0])]
  exp = fx.expected[rec.key]
  poly = tracings.dynamic_chords_to_polygon(exp["chords"][exp["ed"]])
  np.testing.assert_allclose(rec.traces[exp["ed"]], poly, atol=1e-5)
  mask = clips.load_masks(rec)[exp["ed"]]
  np.testing.assert_array_equal(mask, tracings.rasterize_polygon(poly, (112, 112)))
  frame = clips.load_clip(rec)[exp["ed"]]
  assert frame[mask == 1].mean() < 60 < frame[mask == 0].mean()
  # The 128x160 video (FileList: 112x112): tracings scaled from the 112 grid to 128x160.
  rec = recs[echonet.normalize_name(big[0])]
  exp = fx.expected[rec.key]
  poly = tracings.dynamic_chords_to_polygon(exp["chords"][exp["ed"]])
  np.testing.assert_allclose(rec.traces[exp["ed"]],
                             tracings.scale_polygon(poly, (112, 112), (128, 160)), atol=1e-4)
  mask = clips.load_masks(rec)[exp["ed"]]
  frame = clips.load_clip(rec)[exp["ed"]]
  assert mask.shape == (128, 160) and frame[mask == 1].mean() < 60 < frame[mask == 0].mean()


def test_dynamic_unreadable_header_or_no_file_checks_use_the_filelist(dynamic_copy):
  fx = dynamic_copy
  col = fixtures.DYNAMIC_FILELIST_HEADER.index
  rows = [list(r) for r in fx.filelist]
  rows[1][col("FrameHeight")], rows[1][col("FrameWidth")] = 768, 1024
  _write_filelist(fx, rows)
  key = echonet.normalize_name(rows[1][0])
  # check_files=False: no header is read; the FileList's values stand.
  rec = {r.key: r for r in echonet.read_echonet_dynamic(fx.root, check_files=False).records}[key]
  assert (rec.height, rec.width) == (768, 1024)
  (fx.root / "Videos" / f"{key}.avi").write_bytes(b"not an avi" * 20)
  result = echonet.read_echonet_dynamic(fx.root)
  assert result.notes[echonet.NOTE_NOT_PROBED] == 1
  assert result.notes.get(echonet.NOTE_SIZE_DISAGREES, 0) == 0
  rec = {r.key: r for r in result.records}[key]
  assert (rec.height, rec.width, rec.num_frames) == (768, 1024, 16)


def test_dynamic_rows_without_video_and_videos_without_row(dynamic_copy, caplog):
  fx = dynamic_copy
  missing_key = echonet.normalize_name(fx.filelist[2][0])
  os.remove(fx.root / "Videos" / f"{missing_key}.avi")
  extra = echonet.normalize_name(fx.filelist[4][0])
  _write_filelist(fx, [r for r in fx.filelist if echonet.normalize_name(r[0]) != extra])
  with caplog.at_level(logging.INFO):
    result = echonet.read_echonet_dynamic(fx.root)
  assert {r.key for r in result.records} == set(fx.expected) - {missing_key, extra}
  assert result.skips.counts[echonet.SKIP_NO_VIDEO] == 1
  assert result.notes[echonet.NOTE_VIDEO_WITHOUT_ROW] == 1
  assert result.notes[echonet.NOTE_TRACINGS_WITHOUT_ROW] == 1
  # Counts are logged, patient identifiers are not.
  text = caplog.text
  assert "1 × " + echonet.SKIP_NO_VIDEO in text and "videos without a FileList row" in text
  assert all(k not in text for k in fx.expected)


def test_load_clip_undecodable_and_truncated(dynamic_copy):
  fx = dynamic_copy
  records = {r.key: r for r in echonet.read_echonet_dynamic(fx.root).records}
  garbage, truncated = list(records)[:2]
  with open(records[garbage].video_path, "wb") as f:
    f.write(b"RIFF0000AVI not a video at all" * 10)
  with pytest.raises(VideoDecodeError, match=garbage):
    clips.load_clip(records[garbage])
  path = records[truncated].video_path
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(VideoDecodeError, match=f"{truncated}.*truncated"):
    clips.load_clip(records[truncated])


# ----------------------------------------------------------------------- EchoNet-Pediatric


def test_pediatric_values_match_fixture(pediatric_tree):
  result = echonet.read_echonet_pediatric(pediatric_tree.root, view="A4C", test_fold=3)
  assert result.skips.total == 0 and len(result.records) == 6
  for rec in result.records:
    exp = pediatric_tree.expected[rec.key]
    assert rec.dataset == "echonet_pediatric" and rec.view == "A4C"
    assert rec.video_path == str(pediatric_tree.view_dir / "Videos" / f"{rec.key}.avi")
    assert rec.ef == exp["ef"] and rec.fold == exp["fold"]
    assert rec.split == echonet.pediatric_split(exp["fold"], 3)
    assert dict(rec.attributes) == exp["attributes"]
    assert (rec.num_frames, rec.height, rec.width, rec.fps) == (16, 112, 112, 50.0)
    assert (rec.ed_frame, rec.es_frame) == (exp["ed"], exp["es"])
    for f, pts in exp["points"].items():
      np.testing.assert_allclose(rec.traces[f], pts, atol=1e-4)
  none_height = [r for r in result.records if r.attributes["Height"] is None]
  none_weight = [r for r in result.records if r.attributes["Weight"] is None]
  assert len(none_height) == 1 and len(none_weight) == 1
  rec = result.records[0]
  masks = clips.load_masks(rec)
  clip = clips.load_clip(rec)
  for f, m in masks.items():
    assert m.sum() == pytest.approx(tracings.polygon_area(rec.traces[f]), rel=0.08)
    assert clip[f][m == 1].mean() < 60 < clip[f][m == 0].mean()


def test_pediatric_root_forms(pediatric_tree, tmp_path):
  nested_base = pediatric_tree.root / "pediatric_echo_avi" / "pediatric_echo_avi"
  keys = set(pediatric_tree.expected)
  for root in (pediatric_tree.root, pediatric_tree.root / "pediatric_echo_avi", nested_base,
               nested_base / "A4C"):
    assert {r.key for r in echonet.read_echonet_pediatric(root).records} == keys
  with pytest.raises(DataFormatError, match="no PSAX/FileList.csv found"):
    echonet.read_echonet_pediatric(pediatric_tree.root, view="PSAX")
  with pytest.raises(DataFormatError, match="root folder not found"):
    echonet.read_echonet_pediatric(tmp_path / "absent")
  # Two candidate trees below the root: ambiguous.
  for sub in ("a", "b"):
    fixtures.write_echonet_pediatric(tmp_path / sub, 2, with_videos=False)
  with pytest.raises(DataFormatError, match="several A4C/FileList.csv"):
    echonet.read_echonet_pediatric(tmp_path)


def test_pediatric_psax_and_tracing_names_without_avi(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 3, view="PSAX", avi_in_tracings=False)
  result = echonet.read_echonet_pediatric(tmp_path, view="psax")
  assert [r.view for r in result.records] == ["PSAX"] * 3
  assert all(len(r.traces) == 2 for r in result.records)
  assert {r.key for r in result.records} == set(fx.expected)


def test_pediatric_fold_rule_every_test_fold(tmp_path):
  folds = [i % 10 for i in range(20)]
  fx = fixtures.write_echonet_pediatric(tmp_path, 20, folds=folds, with_videos=False)
  seen_test = {}
  for s in range(10):
    result = echonet.read_echonet_pediatric(fx.root, test_fold=s, check_files=False)
    assert len(result.records) == 20
    for rec in result.records:
      want = "test" if rec.fold == s else "val" if rec.fold == (s + 1) % 10 else "train"
      assert rec.split == want
      if rec.split == "test":
        seen_test.setdefault(rec.key, []).append(s)
    counts = {sp: sum(r.split == sp for r in result.records) for sp in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 2, "test": 2}
  # Every video is in the test split of exactly one run.
  assert sorted(seen_test) == sorted(fx.expected) and all(len(v) == 1 for v in seen_test.values())
  with pytest.raises(ValueError, match="test_fold"):
    echonet.read_echonet_pediatric(fx.root, test_fold=10, check_files=False)


@pytest.mark.parametrize("column,value,what", [
    ("Split", "TRAIN", "is not a number"), ("Split", "10", "is above 9"),
    ("Age", "-2", "is below 0"), ("Age", "old", "is not a number"), ("EF", "x", "not a number"),
    ("Sex", "X", "is not M or F"), ("Weight", "-5", "is below 0")])
def test_pediatric_bad_values(tmp_path, column, value, what):
  fx = fixtures.write_echonet_pediatric(tmp_path, 4, with_videos=False)
  rows = [list(r) for r in fx.filelist]
  rows[2][fixtures.PEDIATRIC_FILELIST_HEADER.index(column)] = value
  fixtures.write_csv(fx.view_dir / "FileList.csv", fixtures.PEDIATRIC_FILELIST_HEADER, rows)
  with pytest.raises(BadValueError) as e:
    echonet.read_echonet_pediatric(fx.root, check_files=False, strict=True)
  assert e.value.row == 4 and e.value.path.endswith("FileList.csv") and what in str(e.value)
  # Default: the row is skipped and counted, the other three are read as they are.
  result = echonet.read_echonet_pediatric(fx.root, check_files=False)
  bad = echonet.normalize_name(rows[2][0])
  assert {r.key for r in result.records} == set(fx.expected) - {bad}
  assert dict(result.skips.counts) == {echonet.SKIP_BAD_VALUE.format(column=column): 1}
  for rec in result.records:
    assert rec.ef == fx.expected[rec.key]["ef"] and rec.fold == fx.expected[rec.key]["fold"]


def test_pediatric_empty_attributes_are_none(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 3, with_videos=False)
  rows = [list(r) for r in fx.filelist]
  rows[0][2:6] = ["", "NaN", "", "nan"]
  fixtures.write_csv(fx.view_dir / "FileList.csv", fixtures.PEDIATRIC_FILELIST_HEADER, rows)
  rec = echonet.read_echonet_pediatric(fx.root, check_files=False).records[0]
  assert dict(rec.attributes) == {"Age": None, "Sex": None, "Weight": None, "Height": None}


def test_pediatric_no_diastolic_and_missing_video(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 4)
  key = echonet.normalize_name(fx.filelist[1][0])
  ed = fx.expected[key]["ed"]
  rows = [[*r[:-1], "No Diastolic"] if echonet.normalize_name(r[0]) == key and r[-1] == ed else r
          for r in fx.tracings]
  fixtures.write_csv(fx.view_dir / "VolumeTracings.csv", fixtures.PEDIATRIC_TRACING_HEADER, rows)
  gone = echonet.normalize_name(fx.filelist[3][0])
  os.remove(fx.view_dir / "Videos" / f"{gone}.avi")
  result = echonet.read_echonet_pediatric(fx.root)
  assert result.skips.counts[echonet.SKIP_BAD_FRAME] == 40
  assert result.skips.counts[echonet.SKIP_NO_VIDEO] == 1
  rec = {r.key: r for r in result.records}[key]
  assert set(rec.traces) == {fx.expected[key]["es"]} and rec.ed_frame is None
  assert gone not in {r.key for r in result.records}


def test_pediatric_not_112_and_unreadable_video(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 3, sizes={0: (96, 128)})
  bad = echonet.normalize_name(fx.filelist[2][0])
  (fx.view_dir / "Videos" / f"{bad}.avi").write_bytes(b"not an avi")
  result = echonet.read_echonet_pediatric(fx.root)
  assert result.notes[echonet.NOTE_NOT_112] == 1 and result.notes[echonet.NOTE_NOT_PROBED] == 1
  recs = {r.key: r for r in result.records}
  big = recs[echonet.normalize_name(fx.filelist[0][0])]
  assert (big.height, big.width, big.num_frames) == (96, 128, 16)
  exp = fx.expected[big.key]
  np.testing.assert_allclose(
      big.traces[exp["ed"]],
      tracings.scale_polygon(exp["points"][exp["ed"]], (112, 112), (96, 128)), atol=1e-4)
  m = clips.load_masks(big)[exp["ed"]]
  clip = clips.load_clip(big)
  assert m.shape == (96, 128) and clip[exp["ed"]][m == 1].mean() < 60 < clip[exp["ed"]][m == 0].mean()
  # The unreadable one is kept for the builder, whose decode raises (a counted skip there).
  assert recs[bad].height == -1
  with pytest.raises(VideoDecodeError, match=bad):
    clips.load_clip(recs[bad])


def test_pediatric_duplicate_rows(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 3, with_videos=False)
  rows = fx.filelist + [[echonet.normalize_name(fx.filelist[0][0]), *fx.filelist[0][1:]]]
  fixtures.write_csv(fx.view_dir / "FileList.csv", fixtures.PEDIATRIC_FILELIST_HEADER, rows)
  with pytest.raises(DataFormatError, match=r"rows \[2, 5\]"):
    echonet.read_echonet_pediatric(fx.root, check_files=False)
