"""The paper's cine test protocol (configs/lamod_dense.py:cine): train on DENSE, test on
the test subjects' cine-like scans (data/test_cine/), predicted strain on the cine mask
(config.data.strain_mask='input'), and the Fig. 3-style figure (lamod_jax.reports)."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from cardiac_data import dense
from configs import lamod_dense
from lamod_jax import reports
from lamod_jax import strain
from lamod_jax import task as task_lib
from training import loop


def test_cine_variant_config():
  base = lamod_dense.get_config()
  for arg, size in (("cine", ""), ("smoke,cine", "smoke"), ("cine,full", "full")):
    c = lamod_dense.get_config(arg)
    ref = lamod_dense.get_config(size or None)
    assert c.data.split_folders.test == "test_cine" and c.data.strain_mask == "input"
    # Trains as the size variant: only the test folder and the strain mask differ.
    c.data.split_folders.test, c.data.strain_mask = "test", "label"
    assert c.to_dict() == ref.to_dict()
  assert base.data.split_folders.test == "test" and base.data.strain_mask == "label"
  with pytest.raises(ValueError, match="configs/lamod_dense.py: unknown variant"):
    lamod_dense.get_config("cine,dense")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("cine_cache")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, cache):
  """LaMoDTasks of smoke,cine on one cached cohort, with strain_mask 'input' (the
  variant) and 'label'."""
  out = {}
  for mask in ("input", "label"):
    config = lamod_dense.get_config("smoke,cine")
    config.data.cache_dir = str(cache)
    config.data.strain_mask = mask
    out[mask] = task_lib.LaMoDTask(config, str(tmp_path_factory.mktemp(f"cine_{mask}")))
  return out


def test_cine_frames_are_resampled_like_dense(tasks):
  """Each sample's data.frames frames are evenly spaced indices of its own frame count:
  the cine test split (25 frames) and the DENSE splits (8) give the same array shapes,
  frame 0 is the reference of both, and the cine labels are the files' frames."""
  task = tasks["input"]
  f = task.config.data.frames
  cfg = task.config.data
  root = task.root
  shapes = {s: task.data[s]["masks"].shape[1:] for s in ("train", "val", "test")}
  assert len(set(shapes.values())) == 1 and shapes["test"][0] == f
  for split, folder in (("test", "test_cine"), ("val", "val")):
    arr = task.data[split]
    assert arr["ids"] == sorted(p.name for p in (root / "data" / folder).iterdir())
    for n, sid in enumerate(arr["ids"]):
      s = dense.read_sample(root / "data" / folder / sid)
      t = s.mask.shape[0]
      assert t == (25 if folder == "test_cine" else cfg.synthetic.frames)
      idx = np.round(np.linspace(0, t - 1, f)).astype(int)
      assert idx[0] == 0
      np.testing.assert_array_equal(arr["masks"][n], s.mask[idx])
      np.testing.assert_array_equal(arr["disp"][n], s.displacement[idx[1:]])
      np.testing.assert_array_equal(arr["support"][n], np.any(s.displacement != 0, (0, 1)))
  # Test ids are the DENSE test subjects; their pattern and RV angle come from
  # ground_truth.json as for DENSE.
  assert task.data["test"]["ids"] == sorted(p.name for p in (root / "data" / "test").iterdir())
  assert not np.isnan(task.data["test"]["rv"]).any()
  assert set(task._patterns("test")) <= {"healthy", "lbbb"}


def test_cine_shorter_than_data_frames_repeats_nearest_frames(tasks, cache, tmp_path):
  """data.frames above the cine scan's 25 (as `full,cine`: 40): each split is resampled
  to data.frames, the 25 cine frames by nearest frames (some repeat), frame 0 first."""
  config = lamod_dense.get_config("smoke,cine")
  config.data.cache_dir = str(cache)
  config.data.frames = 30
  task = task_lib.LaMoDTask(config, str(tmp_path))
  arr = task.data["test"]
  assert arr["masks"].shape[1] == 30 and arr["disp"].shape[1] == 29
  idx = dense.frame_indices(25, 30)
  s = dense.read_sample(task.root / "data" / "test_cine" / arr["ids"][0])
  np.testing.assert_array_equal(arr["masks"][0], s.mask[idx])
  np.testing.assert_array_equal(arr["disp"][0], s.displacement[idx[1:]])
  assert task.data["train"]["masks"].shape[1] == 30            # 8 DENSE frames, repeated
  assert tasks["input"].data["test"]["masks"].shape[1] == 4


def test_strain_mask_input_strains_predictions_on_the_cine_mask(tasks):
  """score(u): with strain_mask='input' u is strained and segmented on the input's frame-0
  (cine) mask, the truth on the DENSE label's support (an independent computation with
  lamod_jax.strain); 'label' strains both on the label's support. On DENSE input the two
  masks coincide, so both settings score alike."""
  t_in, t_lab = tasks["input"], tasks["label"]
  arr = t_in.data["test"]
  u = arr["disp"]                                    # the truth itself as the "prediction"
  s_lab, _ = t_lab.score(u, "test")
  s_in, seg_in = t_in.score(u, "test")
  assert s_lab["epe"] == s_in["epe"] == 0.0
  assert s_lab["segmental_ecc_mae"] == pytest.approx(0.0, abs=1e-7)
  assert s_in["segmental_ecc_mae"] > 1e-3            # the contours differ
  maes = []
  for n in range(len(arr["ids"])):
    cine = arr["masks"][n, 0]
    assert not np.array_equal(cine, arr["support"][n])
    pred = np.asarray(strain.segmental_ecc(u[n] * cine, cine, arr["rv"][n]))
    true = np.asarray(strain.segmental_ecc(u[n] * arr["support"][n], arr["support"][n],
                                           arr["rv"][n]))
    np.testing.assert_allclose(seg_in[n], pred, rtol=1e-5, atol=1e-6)
    maes.append(np.nanmean(np.abs(pred - true)))
  assert s_in["segmental_ecc_mae"] == pytest.approx(np.mean(maes), rel=1e-5)
  # DENSE validation split: the input's frame-0 mask is the label's support.
  v = t_in.data["val"]
  np.testing.assert_array_equal(v["strain_support"], v["support"])
  a, _ = t_in.score(v["disp"] * 0.5, "val")
  b, _ = t_lab.score(v["disp"] * 0.5, "val")
  assert a == b


def test_bad_strain_mask_names_the_field(tmp_path):
  config = lamod_dense.get_config("smoke,cine")
  config.data.cache_dir = str(tmp_path)
  config.data.strain_mask = "cine"
  with pytest.raises(ValueError, match="config.data.strain_mask"):
    task_lib.LaMoDTask(config, str(tmp_path))


def test_fig3_needs_a_healthy_or_lbbb_case(tasks, tmp_path, caplog):
  task = tasks["input"]
  arr = task.data["test"]
  preds = {m: arr["disp"] * 0.8 for m in task_lib.METHODS}
  true_seg = task.true_ecc("test")
  patterns = task._patterns("test")
  assert reports.fig3_cases(["lbbb", "healthy", "healthy"]) == [1, 0]
  assert reports.fig3_cases(["", "lbbb"]) == [1]
  path = tmp_path / "test_fig3.png"
  assert reports.fig3_plot(str(path), arr, preds, true_seg, patterns, "test")
  assert path.stat().st_size > 5000
  with caplog.at_level(logging.INFO):
    assert not reports.fig3_plot(str(tmp_path / "none.png"), arr, preds, true_seg,
                                 [""] * len(patterns), "test")
  assert not (tmp_path / "none.png").exists()
  assert "no healthy or LBBB case" in caplog.text


@pytest.mark.slow
def test_cine_variant_trains_and_reports(tmp_path, monkeypatch):
  """smoke,cine through the loop: DENSE training and validation, the final test on
  test_cine with segmental Ecc MAE for every method, and the Fig. 3 figure."""
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(tmp_path / "cache"))
  config = lamod_dense.get_config("smoke,cine")
  res = loop.train_and_evaluate(config, str(tmp_path / "run"))
  saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
  for method in task_lib.METHODS:
    for name in task_lib.SCORES:
      assert np.isfinite(saved[f"test/{method}/{name}"]), (method, name)
  assert saved["test/segmental_skipped_no_rv"] == 0
  assert res["test/lamod/segmental_ecc_mae"] == pytest.approx(
      saved["test/lamod/segmental_ecc_mae"])
  rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert any(r["split"] == "val" for r in rows)              # DENSE validation
  assert (tmp_path / "run" / "plots" / "test_fig3.png").stat().st_size > 5000
  # The test split really is the cine scan: its masks are not the DENSE test masks.
  root = next((tmp_path / "cache").glob("dense-*"))
  sid = sorted(p.name for p in (root / "data" / "test_cine").iterdir())[0]
  c = dense.read_sample(root / "data" / "test_cine" / sid)
  d = dense.read_sample(root / "data" / "test" / sid)
  assert c.mask.shape[0] == 25 and not np.array_equal(c.mask[0], d.mask[0])
  assert math.isfinite(res["test/lamod/epe"])
