"""TFDS array_record builders: round trip through tfds.data_source, skips, splits, reuse."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cardiac_data import attributes
from cardiac_data import builders
from cardiac_data import pipeline
from cardiac_data import sources
from cardiac_data import video as video_lib
from cardiac_data.errors import DataFormatError
from configs import dynamic
from tests import conftest
from tests import fixtures

S = conftest.TINY_SIZE


def area_weights(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) overlap fractions of output cell j = [j·s, (j+1)·s), s = n_in/n_out."""
  s = n_in / n_out
  w = np.zeros((n_out, n_in))
  for j in range(n_out):
    lo, hi = j * s, (j + 1) * s
    for i in range(int(math.floor(lo)), min(int(math.ceil(hi)), n_in)):
      w[j, i] = (min(hi, i + 1) - max(lo, i)) / s
  return w


def area_resize_reference(frames: np.ndarray, size: int) -> np.ndarray:
  """float64 area-average resize (what INTER_AREA computes when shrinking)."""
  wy = area_weights(frames.shape[1], size)
  wx = area_weights(frames.shape[2], size)
  return np.einsum("yh,thw,xw->tyx", wy, frames.astype(np.float64), wx)


def tfds_source(tiny, split):
  return tfds.data_source("echonet_dynamic", split=split, data_dir=os.fspath(tiny.data_dir),
                          download=False, builder_kwargs={"config": tiny.builder.builder_config})


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_roundtrip_frames_and_labels(tiny_dynamic, split):
  src = tfds_source(tiny_dynamic, split)
  assert [ex["key"].decode() for ex in src] == tiny_dynamic.keys[split]
  for ex in src:
    key = ex["key"].decode()
    want = tiny_dynamic.fixture.expected[key]
    raw = video_lib.read_video(tiny_dynamic.root / "Videos" / f"{key}.avi")
    # Same frames as read_video after the same resize, and close to an exact area average.
    np.testing.assert_array_equal(ex["video"], builders.resize_to_square(raw, S, "stretch"))
    assert np.abs(ex["video"] - area_resize_reference(raw, S)).max() <= 1.0
    assert ex["video"].dtype == np.uint8 and ex["video"].shape == (16, S, S)
    assert ex["num_frames"] == 16 and ex["resized"]
    assert (ex["orig_height"], ex["orig_width"]) == want["size"]
    for field in ("ef", "edv", "esv", "fps"):
      assert ex[field] == pytest.approx(want[field], rel=1e-6)
    assert (ex["ed_frame"], ex["es_frame"]) == (want["ed"], want["es"])
    assert ex["fold"] == -1 and ex["attributes"].shape == (0,)
    # Masks: the traced LV is the dark pool of the frame it belongs to; ED > ES.
    assert ex["has_masks"]
    ed, es = ex["ed_mask"].astype(bool), ex["es_mask"].astype(bool)
    assert ed.sum() > es.sum() > 0
    frame = ex["video"][ex["ed_frame"]].astype(float)
    assert frame[ed].mean() < frame[~ed].mean() - 20


def test_undecodable_and_truncated_videos_are_skipped_and_counted(tiny_dynamic):
  summary = builders.skip_summary(tiny_dynamic.builder)
  reason = "video does not decode or is truncated"
  assert summary["train"] == {reason: 1}  # video 4, truncated
  assert summary["test"] == {reason: 1}   # video 7, not an AVI
  assert summary["val"] == {}
  assert {s: i.num_examples for s, i in tiny_dynamic.builder.info.splits.items()} == {
      s: len(k) for s, k in tiny_dynamic.keys.items()}


def test_metadata_per_index(tiny_dynamic):
  meta = builders.metadata(tiny_dynamic.builder.info)
  assert meta["splits"]["val"]["resized"] == len(tiny_dynamic.keys["val"])
  src = pipeline.data_source(tiny_dynamic.builder, "train+val")
  assert builders.split_metadata(src, "num_frames") == [16] * len(src)
  want = [tiny_dynamic.fixture.expected[k]["ef"]
          for k in tiny_dynamic.keys["train"] + tiny_dynamic.keys["val"]]
  np.testing.assert_allclose(builders.split_metadata(src, "ef"), want, rtol=1e-6)
  assert builders.split_metadata(pipeline.data_source(tiny_dynamic.builder, "train[:1]"),
                                 "ef") is None


def test_build_reuses_then_rebuilds_when_source_changes(tmp_path, monkeypatch):
  fx = fixtures.write_echonet_dynamic(tmp_path / "src", num_videos=2)
  first = builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=8)
  assert builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=8) is first
  builders.forget_built()
  calls = []
  original = builders.EchonetDynamic._split_generators
  monkeypatch.setattr(builders.EchonetDynamic, "_split_generators",
                      lambda self, dl: calls.append(1) or original(self, dl))
  again = builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=8)
  assert calls == [] and again.info.splits["train"].num_examples == 2
  # Drop one video's row: the fingerprint changes and the dataset is regenerated.
  fixtures.write_csv(fx.root / "FileList.csv", fixtures.DYNAMIC_FILELIST_HEADER, fx.filelist[1:])
  os.utime(fx.root / "FileList.csv", ns=(1, 1))
  builders.forget_built()
  rebuilt = builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=8)
  assert calls == [1] and rebuilt.info.splits["train"].num_examples == 1


def test_pediatric_folds_and_raw_attributes(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path / "ped", num_videos=5, folds=[0, 1, 1, 3, 9],
                                        nested=True)
  b = builders.build("echonet_pediatric", fx.root, tmp_path / "tfds", size=16)
  assert {s: i.num_examples for s, i in b.info.splits.items()} == {
      "fold0": 1, "fold1": 2, "fold3": 1, "fold9": 1}
  splits = builders.pediatric_cv_splits(0, b)
  assert splits == {"train": "fold3+fold9", "val": "fold1", "test": "fold0"}
  with pytest.raises(ValueError, match="fold2"):
    builders.pediatric_cv_splits(1, b)
  # A role that is not required may be empty: it is left out.
  assert builders.pediatric_cv_splits(1, b, required=("train", "test")) == {
      "train": "fold0+fold3+fold9", "test": "fold1"}
  train = pipeline.data_source(b, splits["train"])
  assert [int(ex["fold"]) for ex in train] == [3, 9]
  spec = attributes.PEDIATRIC_SPEC
  want = []
  for ex in train:
    a = fx.expected[ex["key"].decode()]["attributes"]
    want.append([np.nan if a[n] is None else a[n] for n in spec.continuous]
                + [spec.categorical["Sex"].index(a["Sex"])])
  np.testing.assert_allclose(builders.raw_attributes(train), np.array(want, np.float32))
  np.testing.assert_allclose(np.stack([ex["attributes"] for ex in train]),
                             np.array(want, np.float32))


def test_default_configs_are_the_registered_ones(tmp_path):
  assert builders.EchonetDynamic.make_config(require_tracings=False) is (
      builders.EchonetDynamic.BUILDER_CONFIGS[0])
  assert builders.Camus.make_config(view="2CH").name == "2ch"
  fx = fixtures.write_camus(tmp_path / "camus", release="nifti", size=(40, 32), num_frames=2)
  b = builders.build("camus", fx.root, tmp_path / "tfds", view="2CH")
  ex = pipeline.data_source(b, "val")[0]
  assert ex["video"].shape == (2, 112, 112) and ex["ed_mask"].shape == (112, 112)


def test_camus_half_sequence_and_label_maps(tmp_path):
  fx = fixtures.write_camus(tmp_path / "camus", release="nifti", size=(40, 32))
  b = builders.build("camus", fx.root, tmp_path / "tfds", view="4CH", size=16)
  n = 0
  for split in ("train", "val", "test"):
    for ex in pipeline.data_source(b, split):
      want = fx.expected[ex["key"].decode()]
      assert want["split"] == split
      assert ex["ef"] == pytest.approx(want["ef"], rel=1e-6)
      assert (ex["ed_frame"], ex["es_frame"]) == (want["ed"], want["es"])
      assert (ex["orig_height"], ex["orig_width"]) == (40, 32) and ex["has_masks"]
      # 'pad' keeps the aspect ratio: 40 x 32 -> 40 x 40 (4 zero columns each side) -> 16 x 16.
      # cv2.INTER_NEAREST reads source pixel floor(j * 40 / 16).
      padded = np.pad(want["labels"][want["ed"]], ((0, 0), (4, 4)))
      pick = np.floor(np.arange(16) * 40 / 16).astype(int)
      np.testing.assert_array_equal(ex["ed_mask"], padded[np.ix_(pick, pick)])
      assert set(np.unique(ex["ed_mask"])) == {0, 1, 2, 3}
      assert np.all(ex["video"][:, :, 0] == 0) and np.all(ex["video"][:, :, -1] == 0)
      n += 1
  assert n == 4


def test_bad_arguments_name_the_field(tmp_path):
  with pytest.raises(ValueError, match="dataset_name"):
    builders.build("echonet_adult", tmp_path, tmp_path)
  with pytest.raises(ValueError, match="view"):
    builders.EchonetPediatric.make_config(view="A2C")
  with pytest.raises(ValueError, match="resize_mode"):
    builders.EchonetDynamic.make_config(resize_mode="crop")
  with pytest.raises(ValueError, match="'test_fold'"):
    builders.EchonetPediatric.make_config(test_fold=3)
  with pytest.raises(DataFormatError, match="manual_dir"):
    builders.build("camus", tmp_path / "missing", tmp_path)


def test_tfds_dir_chooses_where_the_build_goes(tiny_dynamic, tmp_path):
  """config.data.tfds_dir (EF configs): the build lands there; empty = under the cache."""
  d = dynamic.get_config("smoke").data
  d.update(root=str(tiny_dynamic.root), cache_dir=str(tmp_path / "cache"),
           image_size=conftest.TINY_SIZE, tfds_dir=str(tmp_path / "mine"))
  builder, splits = sources.load_sources(d)
  assert os.path.commonpath([builder.data_dir, str(tmp_path / "mine")]) == str(tmp_path / "mine")
  assert len(splits["train"]) == len(tiny_dynamic.keys["train"])
  d.tfds_dir = ""
  builder, _ = sources.load_sources(d)
  default = sources.default_tfds_dir(d, tiny_dynamic.root)
  assert str(default).startswith(str(tmp_path / "cache"))
  assert os.path.commonpath([builder.data_dir, str(default)]) == str(default)


def test_reader_options_name_their_own_config(tmp_path):
  dyn = builders.EchonetDynamic
  default = dyn.BUILDER_CONFIGS[0]
  assert dyn.make_config(strict=False, require_tracings=False, check_files=True) is default
  made = [dyn.make_config(**kw) for kw in ({"strict": True}, {"require_tracings": True},
                                           {"strict": True, "require_tracings": True})]
  assert len({c.name for c in made} | {default.name}) == 4
  assert dict(made[0].reader_kwargs) == {"strict": True}
  cam = builders.Camus
  assert cam.make_config(release="auto", fold=None, split_list_dir=None, strict=False,
                         require_masks=False) is cam.BUILDER_CONFIGS[0]
  names = {cam.make_config(**kw).name for kw in (
      {"release": "mhd"}, {"fold": 1}, {"fold": 2}, {"split_list_dir": str(tmp_path)},
      {"strict": True}, {"require_masks": True})}
  assert len(names) == 6 and cam.BUILDER_CONFIGS[0].name not in names
  with pytest.raises(ValueError, match="unknown builder option 'require_tracings'"):
    cam.make_config(require_tracings=True)
