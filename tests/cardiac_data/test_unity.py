"""Unity Imaging: both labels schemas, straight segments, PNG layout and the reader."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from cardiac_data import unity, volumes
from cardiac_data.errors import BadValueError, DataFormatError

SHAPE = (96, 112)


def _code(video: int, frame: int, cls: str = "01") -> str:
  return f"{cls}-{video:064x}-{frame:04d}"


def _xy(points) -> dict:
  p = np.asarray(points, np.float64)
  return {"x": " ".join(repr(float(v)) for v in p[:, 0]),
          "y": " ".join(repr(float(v)) for v in p[:, 1])}


def _curve(points, **extra) -> dict:
  return {"type": "curve", **_xy(points), **extra}


def _empty(kind: str) -> dict:
  return {"type": kind, "x": "", "y": ""}


def _half_ellipse(cx=50.0, cy=45.0, a=30.0, b=20.0, n=9) -> np.ndarray:
  th = np.linspace(-np.pi / 2, np.pi / 2, n)
  return np.stack([cx + b * np.cos(th), cy + a * np.sin(th)], 1)


def _write(path, frames: dict):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(frames))
  return path


def _dice(a, b) -> float:
  return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ------------------------------------------------------------------------------- schemas


def test_schemas_a_and_b_give_the_same_masks(tmp_path):
  lv, la = _half_ellipse(), _half_ellipse(cx=50.0, cy=80.0, a=12.0, b=15.0, n=7)[::-1]
  a = _write(tmp_path / "a.json", {"f": {"labels": {
      "curve-lv-endo": _curve(lv), "curve-la-endo": _curve(la)}}})
  b = _write(tmp_path / "b.json", {"f": {"labels": {
      "curve-lv-endo": [_curve(lv)], "curve-la-endo": [_curve(la)]}}})
  fa, fb = unity.read_unity_labels(a)["f"], unity.read_unity_labels(b)["f"]
  for name in ("curve-lv-endo", "curve-la-endo"):
    assert fa[name]["type"] == fb[name]["type"] == "curve"
    assert fa[name]["straight"] is fb[name]["straight"] is False
    assert fa[name]["points"].dtype == np.float64 and fa[name]["points"].shape[1] == 2
    np.testing.assert_array_equal(fa[name]["points"], fb[name]["points"])
  ma, sa = unity.frame_masks(fa, SHAPE)
  mb, sb = unity.frame_masks(fb, SHAPE)
  assert (ma == 1).sum() > 500 and (ma == 3).sum() > 100
  np.testing.assert_array_equal(ma, mb)
  np.testing.assert_array_equal(sa, [1, 1, 0, 1])
  np.testing.assert_array_equal(sa, sb)


def test_schema_b_uses_the_first_instance_and_empty_list_is_missing(tmp_path):
  first, second = _half_ellipse(), _half_ellipse(cx=60.0, a=20.0, b=10.0)
  path = _write(tmp_path / "b.json", {
      "f": {"labels": {"curve-lv-endo": [_curve(first), _curve(second)],
                       "curve-la-endo": []}},
      "g": {"labels": {"curve-lv-endo": [_empty("off"), _curve(second)]}}})
  frames = unity.read_unity_labels(path)
  np.testing.assert_array_equal(frames["f"]["curve-lv-endo"]["points"], first)
  assert "curve-la-endo" not in frames["f"]                  # empty list = missing
  mask, label_set = unity.frame_masks(frames["f"], SHAPE)
  expected = volumes.polygon_mask(unity.interpolate_curve(first, 200), SHAPE)
  np.testing.assert_array_equal(mask == 1, expected)
  np.testing.assert_array_equal(label_set, [1, 1, 0, 0])     # LA unknown
  assert frames["g"]["curve-lv-endo"]["type"] == "off"
  mask, label_set = unity.frame_masks(frames["g"], SHAPE)
  assert not mask.any()
  np.testing.assert_array_equal(label_set, [1, 1, 0, 0])


def test_label_types_decide_the_label_set(tmp_path):
  path = _write(tmp_path / "l.json", {
      "off": {"labels": {"curve-lv-endo": _curve(_half_ellipse()),
                         "curve-la-endo": _empty("off")}},
      "blurred": {"labels": {"curve-lv-endo": _empty("blurred"),
                             "curve-la-endo": [_empty("blurred")]}},
      "point": {"labels": {"curve-lv-endo": {"type": "point", "x": "3", "y": "4"}}}})
  frames = unity.read_unity_labels(path)
  mask, label_set = unity.frame_masks(frames["off"], SHAPE)
  np.testing.assert_array_equal(label_set, [1, 1, 0, 1])     # 'off' = annotated, empty
  assert (mask == 1).any() and not (mask == 3).any()
  for frame in ("blurred", "point"):
    mask, label_set = unity.frame_masks(frames[frame], SHAPE)
    np.testing.assert_array_equal(label_set, [1, 0, 0, 0])
    assert not mask.any()


def test_synthetic_curves_give_lvm_between_epi_and_endo(tmp_path):
  endo = _half_ellipse(a=25.0, b=15.0)
  epi = _half_ellipse(a=33.0, b=23.0)
  path = _write(tmp_path / "s.json", {"f": {"labels": {
      "curve-lv-endo": _curve(endo), "curve-lv-epi": _curve(epi),
      "curve-la-endo": _empty("off")}}})
  frame = unity.read_unity_labels(path)["f"]
  mask, label_set = unity.frame_masks(frame, SHAPE, unity.SYNTHETIC_CURVES)
  np.testing.assert_array_equal(label_set, [1, 1, 1, 1])
  cavity = volumes.polygon_mask(unity.interpolate_curve(endo, 200), SHAPE)
  outer = volumes.polygon_mask(unity.interpolate_curve(epi, 200), SHAPE)
  np.testing.assert_array_equal(mask == 1, cavity)
  np.testing.assert_array_equal(mask == 2, outer & ~cavity)
  assert 2 not in unity.STRUCTURE_CURVES                    # no published LVM curve
  _, label_set = unity.frame_masks(frame, SHAPE)
  np.testing.assert_array_equal(label_set, [1, 1, 0, 1])


@pytest.mark.parametrize("bad, match", [
    ({"curve-lv-endo": [{"x": "1 2", "y": "1 2"}]}, "type None is not one of"),
    ({"curve-lv-endo": ["curve"]}, "type 'str' is not one of"),
    ({"curve-lv-endo": {"type": "spline"}}, "type 'spline'"),
    ({"curve-lv-endo": {"type": "curve", "x": "1 a", "y": "1 2"}}, "x is not a list"),
    ({"curve-lv-endo": {"type": "curve", "x": "1 2 3", "y": "1 2"}}, "3 x values but 2"),
    ({"curve-lv-endo": [{"type": "curve", "x": "1", "y": "1"}]}, "needs ≥ 2 points"),
    ({"curve-lv-endo": _curve([[1, 1], [5, 5]], straight_segment="yes")},
     "straight_segment must be a boolean"),
])
def test_label_errors_name_file_frame_and_label(tmp_path, bad, match):
  path = _write(tmp_path / "bad.json", {"f": {"labels": bad}})
  with pytest.raises(DataFormatError, match=match) as info:
    unity.read_unity_labels(path)
  assert str(info.value).startswith(f"{path}: frame 'f', label 'curve-lv-endo'")
  assert isinstance(info.value, ValueError)


def test_file_errors_name_the_file(tmp_path):
  bad = tmp_path / "broken.json"
  bad.write_text("{not json")
  with pytest.raises(DataFormatError, match="broken.json: not valid JSON"):
    unity.read_unity_labels(bad)
  _write(bad, ["01-x"])
  with pytest.raises(DataFormatError, match="broken.json: top level"):
    unity.read_unity_labels(bad)
  _write(bad, {"f": {"nolabels": {}}})
  with pytest.raises(DataFormatError, match="broken.json: frame 'f' has no 'labels'"):
    unity.read_unity_labels(bad)
  with pytest.raises(DataFormatError, match="absent.json: labels file not found"):
    unity.read_unity_labels(tmp_path / "absent.json")


# ------------------------------------------------------------------------------- curves


@pytest.mark.parametrize("vertices", [
    [[20, 10], [90, 40], [30, 80]],                                  # integer triangle
    [[20.3, 10.6], [90.2, 40.1], [30.7, 80.4]],
    [[15, 15], [80, 12], [95, 70], [25, 85]],                        # quadrilateral
    [[15.5, 15.2], [80.1, 12.9], [95.4, 70.3], [25.8, 85.6]],
])
def test_straight_segments_give_the_polygon_of_the_vertices(tmp_path, vertices):
  v = np.asarray(vertices, np.float64)
  path = _write(tmp_path / "s.json", {
      "straight": {"labels": {"curve-lv-endo": _curve(v, straight_segment=True)}},
      "straight_b": {"labels": {"curve-lv-endo": [_curve(v, straight_segment=True)]}},
      "spline": {"labels": {"curve-lv-endo": _curve(v, straight_segment=False)}}})
  frames = unity.read_unity_labels(path)
  assert frames["straight"]["curve-lv-endo"]["straight"] is True
  assert frames["straight_b"]["curve-lv-endo"]["straight"] is True
  assert frames["spline"]["curve-lv-endo"]["straight"] is False
  polygon = volumes.polygon_mask(v, SHAPE)
  straight, _ = unity.frame_masks(frames["straight"], SHAPE)
  straight_b, _ = unity.frame_masks(frames["straight_b"], SHAPE)
  spline, _ = unity.frame_masks(frames["spline"], SHAPE)
  np.testing.assert_array_equal(straight == 1, polygon)
  np.testing.assert_array_equal(straight_b == 1, polygon)
  assert (spline == 1).sum() > 0 and ((spline == 1) != polygon).sum() > 50


def test_interpolate_curve_errors():
  with pytest.raises(ValueError, match="coincide"):
    unity.interpolate_curve([[1.0, 1.0], [1.0, 1.0]], 10)
  np.testing.assert_allclose(unity.interpolate_curve([[0.0, 0.0], [4.0, 2.0]], 3),
                             [[0, 0], [2, 1], [4, 2]])


def test_spline_through_circle_points_matches_the_disk():
  cx, cy, r = 55.0, 48.0, 30.0
  th = np.linspace(0, 2 * np.pi, 13)[:-1] + 0.3              # 12 control points
  pts = np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], 1)
  path_mask = volumes.polygon_mask(unity.interpolate_curve(pts, 400), SHAPE)
  yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
  disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
  assert _dice(path_mask, disk) > 0.98
  # The control points' own polygon (a straight segment) is a visibly worse disk.
  assert _dice(volumes.polygon_mask(pts, SHAPE), disk) < _dice(path_mask, disk)


# ------------------------------------------------------------------------------- release


def test_png_path_follows_unityo():
  code = "01-" + "ab12cd" + "e" * 58 + "-0007"
  assert len(code) == 72
  assert unity.png_path("/data/png-cache", code) == (
      f"/data/png-cache/01/ab/12/{code}.png")
  upper = "02-" + "AB12CD" + "F" * 58 + "-1234"
  assert unity.png_path("r", upper) == f"r/02/AB/12/{upper}.png"
  for bad in ("01-abc-0001", code[:-1], code + "\n", code.replace("e", "g", 1),
              "1-" + code[2:], code[:-5] + "_0007", "٠١" + code[2:]):
    with pytest.raises(ValueError, match="malformed Unity frame code"):
      unity.png_path("r", bad)


def _png(root, code, image, folder="png-cache"):
  path = unity.png_path(root / folder, code)
  (root / folder / code[:2] / code[3:5] / code[5:7]).mkdir(parents=True, exist_ok=True)
  assert cv2.imwrite(path, image)
  return path


def _tree(root, n_videos=6, frames_per_video=2):
  """labels/a.json (schema A) and labels/b.json (schema B) over n_videos videos."""
  lv = _half_ellipse()
  rng = np.random.default_rng(1)
  a, b, images = {}, {}, {}
  for v in range(n_videos):
    for f in range(frames_per_video):
      code = _code(1000 + v, 5 * f + 1)
      image = rng.integers(0, 256, SHAPE, dtype=np.uint8)
      images[code] = image
      _png(root, code, image)
      labels = {"curve-lv-endo": _curve(lv), "curve-la-endo": _empty("off")}
      if v % 2:
        b[code] = {"labels": {k: [val] for k, val in labels.items()}}
      else:
        a[code] = {"labels": labels}
  _write(root / "labels" / "a.json", a)
  _write(root / "labels" / "b.json", b)
  return images


def test_read_unity_records_and_splits(tmp_path):
  images = _tree(tmp_path, n_videos=12)
  result = unity.read_unity(tmp_path)
  assert len(result.records) == 24 and result.skips.total == 0
  assert [r.key for r in result.records] == sorted(images)
  for rec in result.records:
    assert isinstance(rec, unity.UnityFrame)
    assert rec.video == rec.key[:-5] and rec.png_path == unity.png_path(
        tmp_path / "png-cache", rec.key)
    assert set(rec.labels) == {"curve-lv-endo", "curve-la-endo"}
  by_video = {}
  for rec in result.records:
    by_video.setdefault(rec.video, set()).add(rec.split)
  assert all(len(s) == 1 for s in by_video.values())         # one split per video
  counts = {s: sum(v == {s} for v in by_video.values()) for s in ("train", "val", "test")}
  assert counts == {"train": 10, "val": 1, "test": 1}        # round(0.1 · 12) = 1
  again = unity.read_unity(tmp_path)
  assert [r.split for r in again.records] == [r.split for r in result.records]
  splits = {seed: tuple(r.split for r in unity.read_unity(tmp_path, seed=seed).records)
            for seed in range(6)}
  assert len(set(splits.values())) > 1                       # the seed matters
  wide = unity.read_unity(tmp_path, val_fraction=0.25, test_fraction=0.25)
  assert sorted(r.split for r in wide.records).count("test") == 6    # 3 videos × 2


def test_split_videos_keeps_val_test_and_train():
  assert unity.split_videos(["a", "b"]) == {"a": "train", "b": "train"}
  split = unity.split_videos(["c", "a", "b"])
  assert sorted(split.values()) == ["test", "train", "val"]
  split = unity.split_videos(list("abcd"), val_fraction=0.45, test_fraction=0.45)
  assert list(split.values()).count("train") >= 1
  assert unity.split_videos(list("abcdefgh"), seed=3) == unity.split_videos(
      list("hgfedcba"), seed=3)                             # order of input irrelevant
  with pytest.raises(ValueError):
    unity.split_videos(["a"], val_fraction=0.5, test_fraction=0.5)


def test_read_unity_skips_missing_png_and_unusable_frames(tmp_path):
  images = _tree(tmp_path, n_videos=4)
  missing = sorted(images)[3]
  os.remove(unity.png_path(tmp_path / "png-cache", missing))
  _write(tmp_path / "labels" / "c.json", {
      "01-not-a-code-0001": {"labels": {"curve-lv-endo": _curve(_half_ellipse())}},
      _code(77, 1): {"labels": {"curve-lv-endo": _empty("blurred"),
                                "curve-rv-endo": _curve(_half_ellipse())}}})
  _png(tmp_path, _code(77, 1), np.zeros(SHAPE, np.uint8))
  result = unity.read_unity(tmp_path)
  assert len(result.records) == 7 and missing not in {r.key for r in result.records}
  assert result.skips.counts == {unity.SKIP_NO_PNG: 1, unity.SKIP_MALFORMED_CODE: 1,
                                 unity.SKIP_NO_STRUCTURE: 1}
  assert "PNG frame not found" in result.summary()
  # Configured for RV-like curves, the frame with only an RV curve is usable.
  wide = unity.read_unity(tmp_path, curves={1: "curve-lv-endo", 2: "curve-rv-endo"})
  assert _code(77, 1) in {r.key for r in wide.records}
  # strict: the first fault in frame-code order raises, naming the file.
  with pytest.raises(DataFormatError, match=rf"{missing}\.png: PNG frame not found "
                     r"\(labelled in .*b\.json\)"):
    unity.read_unity(tmp_path, strict=True)
  _png(tmp_path, missing, images[missing])
  with pytest.raises(BadValueError, match="c.json: malformed Unity frame code"):
    unity.read_unity(tmp_path, strict=True)
  os.remove(tmp_path / "labels" / "c.json")
  assert len(unity.read_unity(tmp_path, strict=True).records) == 8


def test_read_unity_later_file_wins_and_layout_fallbacks(tmp_path):
  images = _tree(tmp_path, n_videos=3, frames_per_video=1)
  code = sorted(images)[0]
  # 'z.json' sorts after a.json and b.json: its labels replace the earlier ones.
  _write(tmp_path / "labels" / "z.json", {code: {"labels": {
      "curve-lv-endo": [_empty("off")], "curve-la-endo": [_empty("blurred")]}}})
  result = unity.read_unity(tmp_path)
  assert result.notes == {unity.NOTE_DUPLICATE: 1}
  rec = next(r for r in result.records if r.key == code)
  assert rec.labels["curve-lv-endo"]["type"] == "off"
  _, label, label_set = unity.load_frame(rec)
  assert not label.any()
  np.testing.assert_array_equal(label_set, [1, 1, 0, 0])     # off present, blurred absent
  # labels.json at the root, png_cache with an underscore.
  other = tmp_path / "other"
  _png(other, code, images[code], folder="png_cache")
  _write(other / "labels.json", {code: {"labels": {"curve-lv-endo": _curve(_half_ellipse())}}})
  result = unity.read_unity(other)
  assert [r.key for r in result.records] == [code]
  assert result.records[0].png_path == unity.png_path(other / "png_cache", code)
  empty = tmp_path / "empty"
  (empty / "png-cache").mkdir(parents=True)
  (empty / "labels").mkdir()
  with pytest.raises(DataFormatError, match=f"{empty}: no Unity labels"):
    unity.read_unity(empty)
  (other / "png_cache").rename(other / "pngs")
  with pytest.raises(DataFormatError, match=f"{other}: no PNG folder"):
    unity.read_unity(other)


def test_load_frame_reads_greyscale_and_masks(tmp_path):
  code = _code(5, 12)
  rng = np.random.default_rng(0)
  bgr = rng.integers(0, 256, SHAPE + (3,), dtype=np.uint8)
  path = _png(tmp_path, code, bgr)
  lv = _half_ellipse()
  _write(tmp_path / "labels" / "l.json", {code: {"labels": {
      "curve-lv-endo": [_curve(lv)], "curve-la-endo": [_empty("off")]}}})
  rec, = unity.read_unity(tmp_path).records
  image, label, label_set = unity.load_frame(rec)
  assert image.dtype == np.uint8 and image.shape == SHAPE
  np.testing.assert_array_equal(image, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
  assert label.dtype == np.uint8 and label.shape == SHAPE
  np.testing.assert_array_equal(label == 1, volumes.polygon_mask(
      unity.interpolate_curve(lv, 200), SHAPE))
  np.testing.assert_array_equal(label_set, [1, 1, 0, 1])
  # RGBA and greyscale PNGs.
  bgra = np.dstack([bgr, np.full(SHAPE, 255, np.uint8)])
  assert cv2.imwrite(path, bgra)
  np.testing.assert_array_equal(unity.load_frame(rec)[0],
                                cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY))
  grey = bgr[:, :, 0]
  assert cv2.imwrite(path, grey)
  np.testing.assert_array_equal(unity.load_frame(rec)[0], grey)
  # 16-bit and unreadable PNGs raise, naming the file.
  assert cv2.imwrite(path, grey.astype(np.uint16) * 257)
  with pytest.raises(DataFormatError, match=rf"{code}\.png: PNG frame is uint16"):
    unity.load_frame(rec)
  with open(path, "wb") as f:
    f.write(b"not a png")
  with pytest.raises(DataFormatError, match=rf"{code}\.png: cannot read PNG"):
    unity.load_frame(rec)
