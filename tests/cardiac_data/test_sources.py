"""config.data -> data sources: the reader options of config.data.reader (each changes
what is read), and splits a caller needs but the data has no case of."""
from __future__ import annotations

import pytest

from cardiac_data import builders
from cardiac_data import camus
from cardiac_data import echonet
from cardiac_data import sources
from cardiac_data.errors import DataFormatError
from configs import camus as camus_config
from configs import dynamic as dynamic_config
from configs import pediatric as pediatric_config
from tests import fixtures

SIZE = 16


def data_cfg(config_module, root, tmp_path, **reader):
  """The smoke config's `data` pointed at `root`, built at SIZE under tmp_path."""
  d = config_module.get_config("smoke").data
  d.update(root=str(root), cache_dir=str(tmp_path / "cache"), image_size=SIZE,
           tfds_dir=str(tmp_path / "tfds"))
  d.reader.update(**reader)
  return d


def split_keys(srcs) -> dict[str, list[str]]:
  return {role: builders.split_metadata(src, "key") for role, src in srcs.items()}


def write_filelist(fx, rows):
  fixtures.write_csv(fx.root / "FileList.csv", fixtures.DYNAMIC_FILELIST_HEADER, rows)


# --------------------------------------------------------------------------- empty splits


def test_all_test_filelist_names_the_empty_split(tmp_path):
  fx = fixtures.write_echonet_dynamic(tmp_path / "scored_only", num_videos=3)
  col = fixtures.DYNAMIC_FILELIST_HEADER.index("Split")
  write_filelist(fx, [[*r[:col], "TEST"] for r in fx.filelist])
  d = data_cfg(dynamic_config, fx.root, tmp_path)
  with pytest.raises(DataFormatError) as e:
    sources.load_sources(d)
  assert str(e.value).startswith(
      f"config.data.root={fx.root}: split 'train' has no cases (the FileList's Split column "
      "has only TEST)")
  # A caller that only scores (required=('test',)) gets the test split alone.
  _, srcs = sources.load_sources(d, required=("test",))
  assert split_keys(srcs) == {"test": list(fx.expected)}
  with pytest.raises(ValueError, match="'training' is not one of"):
    sources.load_sources(d, required=("training",))


def test_pediatric_without_training_folds_names_the_split_and_folds(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path / "ped", 2, folds=[0, 1])
  d = data_cfg(pediatric_config, fx.root, tmp_path)
  with pytest.raises(DataFormatError, match=r"split 'train' has no cases \(config.data.test_fold=0 "
                     r"puts fold2, fold3, .*fold9 in train"):
    sources.load_sources(d)
  _, srcs = sources.load_sources(d, required=("val", "test"))
  keys = [echonet.normalize_name(r[0]) for r in fx.filelist]
  assert split_keys(srcs) == {"val": [keys[1]], "test": [keys[0]]}


# ------------------------------------------------------------------ config.data.reader


def test_reader_strict(tmp_path):
  fx = fixtures.write_echonet_dynamic(tmp_path / "dyn", num_videos=4)  # TRAIN TRAIN VAL TEST
  rows = [list(r) for r in fx.filelist]
  rows[0][fixtures.DYNAMIC_FILELIST_HEADER.index("Split")] = "TRAINING"
  write_filelist(fx, rows)
  keys = list(fx.expected)
  d = data_cfg(dynamic_config, fx.root, tmp_path)
  builder, srcs = sources.load_sources(d)
  assert split_keys(srcs) == {"train": [keys[1]], "val": [keys[2]], "test": [keys[3]]}
  assert builders.skip_summary(builder)["reader"] == {
      echonet.SKIP_BAD_VALUE.format(column="Split"): 1}
  d.reader.strict = True
  with pytest.raises(DataFormatError) as e:
    sources.load_sources(d)
  assert e.value.row == 2 and e.value.path.endswith("FileList.csv")
  assert "Split='TRAINING' is not TRAIN, VAL or TEST" in str(e.value)


def test_reader_require_tracings(tmp_path):
  fx = fixtures.write_echonet_dynamic(tmp_path / "dyn", num_videos=4)
  keys = list(fx.expected)
  fixtures.write_csv(fx.root / "VolumeTracings.csv", fixtures.DYNAMIC_TRACING_HEADER,
                     [r for r in fx.tracings if echonet.normalize_name(r[0]) != keys[1]])
  d = data_cfg(dynamic_config, fx.root, tmp_path)
  default, srcs = sources.load_sources(d)
  assert split_keys(srcs)["train"] == keys[:2]
  assert [bool(ex["has_masks"]) for ex in srcs["train"]] == [True, False]
  d.reader.require_tracings = True
  required, srcs = sources.load_sources(d)
  assert split_keys(srcs)["train"] == keys[:1]
  assert builders.skip_summary(required)["reader"] == {echonet.SKIP_FEW_TRACES: 1}
  assert required.builder_config.name != default.builder_config.name


def test_camus_reader_release(tmp_path):
  """One root holding both releases (different patients): 'auto' finds the NIfTI one."""
  root = tmp_path / "camus"
  nifti = fixtures.write_camus(root, "nifti", num_frames=2, splits={
      "patient0001": "train", "patient0002": "val", "patient0003": "test"})
  mhd = fixtures.write_camus(root, "mhd", num_frames=2, splits={
      "patient0013": "train", "patient0020": "train", "patient0030": "test"})
  assert camus.mhd_default_split("patient0013") == "val"
  assert camus.mhd_default_split("patient0020") == "train"
  nifti_keys = {"train": ["patient0001_4CH"], "val": ["patient0002_4CH"],
                "test": ["patient0003_4CH"]}
  for release in ("auto", "nifti"):
    _, srcs = sources.load_sources(data_cfg(camus_config, root, tmp_path, release=release))
    assert split_keys(srcs) == nifti_keys
  _, srcs = sources.load_sources(data_cfg(camus_config, root, tmp_path, release="mhd"))
  assert split_keys(srcs) == {"train": ["patient0020_4CH"], "val": ["patient0013_4CH"],
                              "test": ["patient0030_4CH"]}
  ef = builders.split_metadata(srcs["val"], "ef")[0]
  assert ef == pytest.approx(mhd.expected["patient0013_4CH"]["ef"], rel=1e-6)
  assert builders.split_metadata(srcs["test"], "ef") == [None]   # testing/: no EF (NaN)
  assert nifti.expected["patient0003_4CH"]["has_gt"]


@pytest.fixture
def mhd_root(tmp_path):
  """2019 release: training/ patient0001, 0002, 0013 (val by the default rule), testing/
  patient0004; and vital-style fold-2 lists in root/listSubGroups."""
  root = tmp_path / "camus2019"
  fixtures.write_camus(root, "mhd", num_frames=2, splits={
      "patient0001": "train", "patient0002": "train", "patient0013": "train",
      "patient0004": "test"})
  fixtures.write_split_lists(root / "listSubGroups", {
      "patient0013": "train", "patient0002": "train", "patient0001": "val",
      "patient0004": "test"}, pattern="subGroup2_{subset}.txt")
  return root


def test_camus_reader_fold_and_split_list_dir(mhd_root, tmp_path):
  mine = tmp_path / "my_lists"
  fixtures.write_split_lists(mine, {"patient0001": "train", "patient0013": "train",
                                    "patient0002": "val", "patient0004": "test"},
                             pattern="subGroup2_{subset}.txt")
  want = {
      (-1, ""): (["patient0001", "patient0002"], ["patient0013"]),   # the default rule
      (2, ""): (["patient0002", "patient0013"], ["patient0001"]),    # root/listSubGroups
      (2, str(mine)): (["patient0001", "patient0013"], ["patient0002"]),
  }
  names = set()
  for (fold, split_dir), (train, val) in want.items():
    d = data_cfg(camus_config, mhd_root, tmp_path, fold=fold, split_list_dir=split_dir)
    builder, srcs = sources.load_sources(d)
    assert split_keys(srcs) == {"train": [p + "_4CH" for p in train],
                                "val": [p + "_4CH" for p in val], "test": ["patient0004_4CH"]}
    names.add(builder.builder_config.name)
  assert len(names) == 3
  d = data_cfg(camus_config, mhd_root, tmp_path, fold=5)
  with pytest.raises(DataFormatError, match=r"subGroup5_training\.txt: split list not found"):
    sources.load_sources(d)


def test_camus_split_list_dir_outside_the_root_rebuilds_when_edited(mhd_root, tmp_path):
  mine = tmp_path / "my_lists"
  lists = {"patient0001": "train", "patient0013": "train", "patient0002": "val",
           "patient0004": "test"}
  fixtures.write_split_lists(mine, lists, pattern="subGroup2_{subset}.txt")
  d = data_cfg(camus_config, mhd_root, tmp_path, fold=2, split_list_dir=str(mine))
  _, srcs = sources.load_sources(d)
  assert split_keys(srcs)["val"] == ["patient0002_4CH"]
  fixtures.write_split_lists(mine, {**lists, "patient0002": "train", "patient0001": "val"},
                             pattern="subGroup2_{subset}.txt")
  builders.forget_built()
  _, srcs = sources.load_sources(d)
  assert split_keys(srcs)["val"] == ["patient0001_4CH"]


def test_camus_reader_require_tracings(mhd_root, tmp_path):
  d = data_cfg(camus_config, mhd_root, tmp_path, require_tracings=True)
  with pytest.raises(DataFormatError, match=r"split 'test' has no cases \(no patient of the "
                     r"split lists .* is in test; splits with cases: \['train', 'val'\]; the "
                     r"reader skipped 1 item\(s\)"):
    sources.load_sources(d)
  builder, srcs = sources.load_sources(d, required=("train", "val"))
  assert set(srcs) == {"train", "val"}
  assert builders.skip_summary(builder)["reader"] == {camus.SKIP_NO_MASKS: 1}


def test_reader_options_checked_and_mapped(tmp_path):
  d = data_cfg(dynamic_config, tmp_path, tmp_path)
  assert sources.reader_options(d) == {"strict": False, "require_tracings": False}
  for field, value in (("release", "mhd"), ("split_list_dir", str(tmp_path)), ("fold", 3)):
    bad = data_cfg(dynamic_config, tmp_path, tmp_path, **{field: value})
    with pytest.raises(ValueError, match=f"config.data.reader.{field}=.*a CAMUS option"):
      sources.reader_options(bad)
  c = data_cfg(camus_config, tmp_path, tmp_path, strict=True, require_tracings=True,
               release="mhd", split_list_dir=str(tmp_path), fold=0)
  assert sources.reader_options(c) == {"strict": True, "require_masks": True, "release": "mhd",
                                       "split_list_dir": str(tmp_path), "fold": 0}
  with pytest.raises(ValueError, match="config.data.reader.release='dicom' is not one of"):
    sources.reader_options(data_cfg(camus_config, tmp_path, tmp_path, release="dicom"))
  with pytest.raises(ValueError, match="config.data.reader.fold=-2"):
    sources.reader_options(data_cfg(camus_config, tmp_path, tmp_path, fold=-2))
  with pytest.raises(DataFormatError, match="config.data.reader.split_list_dir: folder not found"):
    sources.reader_options(data_cfg(camus_config, tmp_path, tmp_path,
                                    split_list_dir=str(tmp_path / "absent")))
