"""Segmentation frames from the real layouts: the built-in scenario written as CAMUS NIfTI,
Unity labels + PNG and EchoNet-Dynamic, read back by the real readers; a mixed fixture
tree (both Unity label schemas, a straight segment, 'off' and 'blurred' labels,
EchoNet-Pediatric tracings) trained on for a few steps with each image's label set checked."""
from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from cardiac_data import errors
from cardiac_data import seg_frames
from cardiac_data import volumes
from cardiac_data.synthetic import echonet_writer
from cardiac_data.synthetic import seg_domains
from configs import seg_partial
from segmentation import data as data_lib

SIZE = 32


def _dice(a, b):
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("segtree")
  seg_domains.write_seg_domains(root, 6, seed=3, workers=1, size=SIZE)
  return root


def _build(tree, tmp_path, domain, dataset, **options):
  return seg_frames.build(dataset, tree / domain, tmp_path / "tfds" / domain, size=SIZE, **options)


def test_builtin_scenario_through_the_real_readers(tree, tmp_path):
  # CAMUS NIfTI: ED and ES of both views, every structure, label maps = the painted ones.
  camus = _build(tree, tmp_path, "camus", "camus")
  got = {s: seg_frames.read_split(camus, s) for s in camus.info.splits}
  assert sum(len(g["key"]) for g in got.values()) == 6 * 2 * 2
  for split, g in got.items():
    assert g["label_set"].all()
    for i, key in enumerate(g["key"]):
      patient, view, phase = key.split("_")
      views, _ = seg_domains.render_case(3, "camus", int(patient[-4:]) - 1, SIZE)
      v = {x.name: x for x in views}[view]
      t = ("ED", "ES").index(phase)
      np.testing.assert_array_equal(g["label"][i], v.label_maps()[t])
      np.testing.assert_array_equal(g["image"][i], v.images[t])
      assert g["phase"][i] == t and np.all(g["spacing_mm"][i] == np.float32(v.spacing_mm))
  # CAMUS splits come from database_split/, as the writer's domain_split.
  want = seg_domains.domain_split(6, 3, 0)
  for split, g in got.items():
    for key in g["key"]:
      assert seg_frames.SPLITS[want[int(key[7:11]) - 1]] == split
  # Unity: curves redrawn by the reader match the painted structures.
  unity = _build(tree, tmp_path, "unity", "unity", curves=dict(lv="curve-lv-endo",
                                                                lvm="curve-lv-epi",
                                                                la="curve-la-endo"))
  for split in unity.info.splits:
    g = seg_frames.read_split(unity, split)
    assert g["label_set"].all() and np.isnan(g["spacing_mm"]).all()
    for i, key in enumerate(g["key"]):
      index = next(k for k in range(6) if seg_domains.unity_frame_code(3, k, 0)[:-5] == key[:-5])
      (v,), _ = seg_domains.render_case(3, "unity", index, SIZE)
      ref = v.label_maps()[int(key[-4:])]
      for c in (1, 2, 3):
        assert _dice(g["label"][i] == c, ref == c) > 0.9, (key, c)
  # EchoNet-Dynamic: LV only, from the chords; 112×112 AVIs resized to S.
  echo = _build(tree, tmp_path, "echonet", "echonet_dynamic")
  g = seg_frames.read_split(echo, "train")
  np.testing.assert_array_equal(g["label_set"], [[True, True, False, False]] * len(g["key"]))
  assert set(np.unique(g["label"])) == {0, 1} and set(g["phase"]) == {0, 1}
  # Same seed, same bytes.
  again = tmp_path / "again"
  seg_domains.write_seg_domains(again, 6, seed=3, workers=2, size=SIZE)
  for rel in ("unity/labels/labels.json", "echonet/VolumeTracings.csv",
              "camus/database_nifti/patient0002/patient0002_2CH_ES_gt.nii.gz"):
    assert (again / rel).read_bytes() == (tree / rel).read_bytes()


def test_options_are_checked():
  with pytest.raises(ValueError, match="unknown option"):
    seg_frames.check_options("camus", {"curves": {}})
  with pytest.raises(ValueError, match="frames"):
    seg_frames.check_options("camus", {"frames": "all"})
  with pytest.raises(ValueError, match="unknown structure"):
    seg_frames.check_options("unity", {"curves": {"rv": "curve-rv-endo"}})
  with pytest.raises(ValueError, match="dataset"):
    seg_frames.check_options("acdc", {})
  assert seg_frames.unity_curves({"lv": "a", "lvm": "", "la": "b"}) == {1: "a", 3: "b"}


def test_camus_half_sequence_frames(tree, tmp_path):
  b = _build(tree, tmp_path, "camus", "camus", frames="half_sequence", views=("4CH",))
  n = sum(b.info.splits[s].num_examples for s in b.info.splits)
  assert n == 6 * 2          # two-frame half sequences, one view
  g = seg_frames.read_split(b, "train")
  assert all(k.split("_")[1] == "4CH" for k in g["key"]) and set(g["phase"]) == {0, 1}


def _mix_unity_schemas(root: pathlib.Path) -> dict:
  """Rewrites the Unity labels: even frames in the list-of-instances schema, one frame's
  LV with straight_segment, one frame's LA 'off', one frame's LVM 'blurred', and a frame
  whose PNG is missing. Returns {frame code: expected label set}."""
  path = root / "unity" / "labels" / "labels.json"
  labels = json.loads(path.read_text())
  codes = sorted(labels)
  expect = {c: [True, True, True, True] for c in codes}
  for k, code in enumerate(codes):
    entry = labels[code]["labels"]
    if k % 2 == 0:
      entry.update({name: [lab, {"type": "curve", "x": "0 1", "y": "0 1"}]
                    for name, lab in entry.items()})          # first instance is used
  first = labels[codes[0]]["labels"]["curve-lv-endo"]
  first = first[0] if isinstance(first, list) else first
  first["straight_segment"] = True
  off = labels[codes[1]]["labels"]
  off["curve-la-endo"] = {"type": "off", "x": "", "y": ""}
  blurred = labels[codes[2]]["labels"]
  blurred["curve-lv-epi"] = [{"type": "blurred", "x": "", "y": ""}]
  expect[codes[2]][2] = False
  labels["01-" + "ab" * 32 + "-0007"] = {"labels": {"curve-lv-endo": {
      "type": "curve", "x": "1 5 9", "y": "1 9 1"}}}               # no PNG: a counted skip
  path.write_text(json.dumps(labels))
  return expect


@pytest.mark.slow   # trains through the loop
def test_train_from_mixed_real_layouts(tmp_path):
  """CAMUS NIfTI, EchoNet-Dynamic and -Pediatric tracings, Unity in both schemas: a few
  training steps, with each image's label set from its reader."""
  from training import loop                     # pylint: disable=g-import-not-at-top
  from segmentation import task as seg_task     # pylint: disable=g-import-not-at-top
  from training import optim                    # pylint: disable=g-import-not-at-top
  root = tmp_path / "data"
  seg_domains.write_seg_domains(root, 5, seed=4, workers=1, size=SIZE)
  expect = _mix_unity_schemas(root)
  echonet_writer.write_echonet_pediatric(root / "pediatric", 12, seed=5, workers=1, size=112)
  c = seg_partial.get_config("all3,smoke,marginal")
  c.data.cache_dir = str(tmp_path / "cache")
  c.data.tfds_dir = str(tmp_path / "tfds")
  c.data.root = str(root)
  c.data.sources.pediatric = ml_collections.ConfigDict(dict(
      dataset="echonet_pediatric", root="", view="A4C", test_fold=0, strict=False))
  c.data.domains = ("camus", "unity", "echonet", "pediatric")
  c.data.eval_domains = c.data.domains
  c.num_steps = 2
  task = seg_task.SegmentationTask(c, str(tmp_path / "run"), make_optimizer=optim.make_optimizer)
  data = task.data
  names = data["domains"]
  for i, key in enumerate(data["key"]):
    name = names[data["domain"][i]]
    want = {"camus": [True] * 4, "echonet": [True, True, False, False],
            "pediatric": [True, True, False, False]}.get(name) or expect[key]
    np.testing.assert_array_equal(data["label_set"][i], want, err_msg=f"{name} {key}")
    absent = ~np.asarray(want)
    assert not np.isin(data["label"][i], np.nonzero(absent)[0]).any()
  unity = [k for i, k in enumerate(data["key"]) if names[data["domain"][i]] == "unity"]
  assert len(unity) == len(expect)                  # the PNG-less frame was skipped
  assert {names[d] for d in data["domain"]} == set(c.data.domains)
  # The straight-segment frame's LV is exactly the polygon of its control points.
  labels = json.loads((root / "unity" / "labels" / "labels.json").read_text())
  code = sorted(expect)[0]
  lv = labels[code]["labels"]["curve-lv-endo"][0]
  pts = np.stack([np.array(lv["x"].split(), float), np.array(lv["y"].split(), float)], 1)
  i = data["key"].index(code)
  np.testing.assert_array_equal(data["label"][i] == 1, volumes.polygon_mask(pts, (SIZE, SIZE)))
  # Unity's LA is withheld in training (inter/all3), not in test.
  rows = np.array([names[d] == "unity" for d in data["domain"]])
  assert not task.sets["train"][rows, 3].any()
  np.testing.assert_array_equal(task.sets["test"][rows], data["label_set"][rows])
  # Every build went to config.data.tfds_dir, none to the cache's default folder.
  assert {p.name for p in (tmp_path / "tfds").iterdir()} >= {
      "seg_camus", "seg_unity", "seg_echonet_dynamic", "seg_echonet_pediatric"}
  assert not (tmp_path / "cache" / "tfds").exists()
  metrics = loop.train_and_evaluate(c, str(tmp_path / "run"))
  assert metrics["step"] == 2
  assert all(f"test/{d}/dice_lv" in metrics for d in c.data.domains)
  # HD in mm over the CAMUS images only: the others have no pixel spacing (counted).
  n_test = {d: int(np.sum((data["split"] == 2) & (data["domain"] == names.index(d))))
            for d in names}
  assert metrics["test/hd_no_spacing"] == n_test["unity"] * 3 + (
      n_test["echonet"] + n_test["pediatric"]) - sum(
          not expect[k][c_] for k in expect for c_ in (1, 2, 3)
          if data["split"][data["key"].index(k)] == 2)


def test_missing_root_and_unknown_domain(tmp_path):
  c = seg_partial.get_config("inter,smoke")
  c.data.sources.camus.root = str(tmp_path / "nowhere")
  with pytest.raises(errors.DataFormatError, match="sources.camus.root"):
    seg_frames.load_domains(c.data, ("camus",))
  with pytest.raises(ValueError, match="no entry in config.data.sources"):
    seg_frames.load_domains(c.data, ("acdc",))


def test_withheld_fraction_is_per_patient():
  n_pat = 40
  data = {"domain": np.zeros(2 * n_pat, np.int8), "patient": np.repeat(np.arange(n_pat), 2),
          "label_set": np.ones((2 * n_pat, 4), bool), "domains": ("camus",)}
  cfg = seg_partial.get_config("intra").data       # LVM withheld from half of CAMUS
  sets = data_lib.assign_label_sets(data, cfg, seed=0)
  assert (~sets["train"][:, 2]).sum() == n_pat                   # half the patients, both phases
  np.testing.assert_array_equal(sets["train"][0::2, 2], sets["train"][1::2, 2])
  assert sets["test"].all()
  with pytest.raises(ValueError, match="unknown domain"):
    data_lib.assign_label_sets(data, ml_collections.ConfigDict(
        dict(cfg.to_dict(), withheld={"acdc": ("la",)})), 0)


def test_unreadable_case_is_a_counted_skip(tree, tmp_path):
  import shutil                                 # pylint: disable=g-import-not-at-top
  from cardiac_data import builders             # pylint: disable=g-import-not-at-top
  root = tmp_path / "echonet"
  shutil.copytree(tree / "echonet", root)
  video = sorted((root / "Videos").iterdir())[0]
  video.write_bytes(video.read_bytes()[:200])              # truncated AVI
  b = seg_frames.build("echonet_dynamic", root, tmp_path / "tfds", size=SIZE)
  assert sum(b.info.splits[s].num_examples for s in b.info.splits) == 2 * 5
  skipped = builders.skip_summary(b)
  assert sum(n for split, counts in skipped.items() if split != "reader"
             for reason, n in counts.items() if reason.startswith("case unreadable")) == 1


def test_config_sources_keep_the_reader_defaults():
  """configs/seg_partial.py lists every reader option so that flags can set it; its values
  must be the readers' defaults (one default, and the default build keeps its name)."""
  c = seg_partial.get_config("inter")
  for name, src in c.data.sources.items():
    options = {k: v for k, v in src.to_dict().items() if k not in ("dataset", "root")}
    defaults = seg_frames.OPTIONS[src.dataset]
    assert {k: defaults[k] for k in options} == seg_frames.check_options(src.dataset, options)
    assert set(options) <= set(defaults), name


def test_eval_domains_add_unseen_test_domains(tmp_path):
  """exp1_camus trains and validates on the CAMUS-like domain only, and tests on all three."""
  from segmentation import task as seg_task     # pylint: disable=g-import-not-at-top
  c = seg_partial.get_config("exp1_camus,smoke")
  c.data.cache_dir = str(tmp_path / "cache")
  task = seg_task.SegmentationTask(c, str(tmp_path))
  dom = task.data["domain"]
  assert task.domains == ("camus", "unity", "echonet")
  assert set(dom[task.index["train"]]) == set(dom[task.index["val"]]) == {0}
  assert set(dom[task.index["test"]]) == {0, 1, 2}
  c = seg_partial.get_config("inter,smoke")
  c.data.cache_dir = str(tmp_path / "cache")
  assert seg_task.SegmentationTask(c, str(tmp_path)).domains == ("camus", "unity")
