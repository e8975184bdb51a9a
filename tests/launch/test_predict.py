"""`launch.predict` on a smoke-trained run (from its checkpoint alone) and on an imported
EchoNet model (no training): the predictions reproduce the run's own final evaluation,
a bare folder of AVIs gives the same numbers as the dataset it came from, and the
imported model's EF equals a direct forward pass on the same clip."""
from __future__ import annotations

import csv
import json
import shutil

import jax
import numpy as np
import pytest

from adacon_jax import task as adacon_task
from backbones import torch_import
from cardiac_data import builders
from cardiac_data import transforms
from cardiac_data import video as video_lib
from launch import import_weights
from launch import predict
from tests.backbones import import_reference as ref
from tests.conftest import run_module


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def cohort_root(cache):
  (root,) = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("echonet_pediatric")]
  return root


@pytest.fixture(scope="module")
def on_dataset(smoke_run, tmp_path_factory):
  """(run, cache, rows, summary) of predict --data_root=<the run's own cohort>."""
  workdir, cache = smoke_run.workdir, smoke_run.cache
  out = tmp_path_factory.mktemp("pred") / "all.csv"
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("CARDIAC_DATA_CACHE", str(cache))
    summary = predict.predict(str(workdir), str(out), data_root=str(cohort_root(cache)),
                              samples_out=str(out.with_suffix(".npz")))
  return workdir, cache, read_csv(out), summary, out


@pytest.mark.slow
def test_dataset_predictions_reproduce_the_runs_final_evaluation(on_dataset):
  workdir, _, rows, summary, out = on_dataset
  final = json.loads((workdir / "metrics.json").read_text())
  run = np.load(workdir / "predictions.npz")          # the run's σ-scaled test posterior
  test = [r for r in rows if r["split"] == "test"]
  assert [r["FileName"] for r in test] == list(run["ids"])
  np.testing.assert_allclose([float(r["ef_pred"]) for r in test],
                             np.clip(run["samples"].mean(1), 0, 100), atol=1e-3)
  np.testing.assert_allclose([float(r["sigma"]) for r in test],
                             run["samples"].std(1, ddof=1), atol=1e-3)
  np.testing.assert_allclose([float(r["EF"]) for r in test], run["truth"], atol=1e-3)
  for key in ("test/mae", "test/crps", "test/coverage90", "val/mae"):
    assert summary["metrics"][key] == pytest.approx(final[key], rel=1e-6), key
  assert summary["spread_scale"] == pytest.approx(final["test/spread_scale"])
  assert {r["split"] for r in rows} == {"train", "val", "test"}
  for r in rows:
    q = [float(r[c]) for c in ("q05", "q25", "q75", "q95")]
    assert q == sorted(q) and float(r["sigma"]) > 0
  saved = json.loads((out.parent / "all_metrics.json").read_text())
  assert saved["test/mae"] == pytest.approx(final["test/mae"])
  assert (out.parent / "all_report" / "plots" / "test_scatter.png").is_file()
  assert np.load(out.with_suffix(".npz"))["test/samples"].shape == run["samples"].shape


@pytest.mark.slow
def test_a_bare_folder_of_avis_scores_as_its_dataset(on_dataset, tmp_path):
  """The test split's AVIs copied into a folder (names ordered as the split, so each case
  keeps its index and noise) with an attributes CSV give the dataset's numbers; without
  the CSV the attributes are missing and the numbers change; a corrupt file is skipped."""
  workdir, cache, rows, _, _ = on_dataset
  test = [r for r in rows if r["split"] == "test"]
  view = cohort_root(cache) / "A4C"
  filelist = {r["FileName"].removesuffix(".avi"): r for r in read_csv(view / "FileList.csv")}
  folder = tmp_path / "videos"
  folder.mkdir()
  with open(tmp_path / "attributes.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["FileName", "Age", "Sex", "Weight", "Height"])
    for i, r in enumerate(test):
      name = f"{i:03d}_{r['FileName']}"
      shutil.copy(view / "Videos" / f"{r['FileName']}.avi", folder / f"{name}.avi")
      row = filelist[r["FileName"]]
      w.writerow([f"{name}.avi", row["Age"], row["Sex"], row["Weight"], row["Height"]])
  (folder / "zzz_broken.avi").write_bytes(b"not a video" * 20)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("CARDIAC_DATA_CACHE", str(cache))
    predict.predict(str(workdir), str(tmp_path / "v.csv"), videos=str(folder),
                    attributes=str(tmp_path / "attributes.csv"))
    predict.predict(str(workdir), str(tmp_path / "bare.csv"), videos=str(folder))
  scored = read_csv(tmp_path / "v.csv")
  assert [r["FileName"] for r in scored] == [f"{i:03d}_{r['FileName']}" for i, r in enumerate(test)]
  assert all(r["EF"] == "" and r["split"] == "videos" for r in scored)
  np.testing.assert_allclose([float(r["ef_pred"]) for r in scored],
                             [float(r["ef_pred"]) for r in test], atol=1e-3)
  np.testing.assert_allclose([float(r["q95"]) for r in scored],
                             [float(r["q95"]) for r in test], atol=1e-3)
  bare = read_csv(tmp_path / "bare.csv")
  assert len(bare) == len(test)
  assert not np.allclose([float(r["ef_pred"]) for r in bare],
                         [float(r["ef_pred"]) for r in test], atol=1e-3)
  assert not (tmp_path / "v_metrics.json").exists()        # no label, no metrics


def test_bad_arguments_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints/"):
    predict.predict(str(tmp_path), str(tmp_path / "x.csv"), videos=str(tmp_path))
  with pytest.raises(ValueError, match="spread_scale"):
    predict.spread_scale(str(tmp_path), None, "-1")


@pytest.fixture(scope="module")
def imported_echonet(tmp_path_factory):
  data = ref.load("echonet_r2plus1d")
  sd = ref.random_state_dict([str(n) for n in data["names"]],
                             [s[s >= 0] for s in data["shapes"]], int(data["weight_seed"]))
  sd["fc.bias"] = np.array([torch_import.ECHONET_FC_BIAS], np.float32)
  folder = tmp_path_factory.mktemp("echonet")
  np.savez(folder / "echonet.npz", **{f"module.{k}": v for k, v in sd.items()})
  import_weights.import_weights("echonet_r2plus1d", str(folder / "echonet.npz"),
                                str(folder / "model"))
  return folder / "model"


@pytest.mark.slow
def test_imported_echonet_model_scores_avis_without_training(imported_echonet, tmp_path):
  """EF of the imported model on AVIs (launch.predict, through the grain pipeline) equals
  a direct forward pass on the clip built here: 32 frames every 2nd from the centred start,
  zero frames past the end, x/255."""
  videos = tmp_path / "videos"
  videos.mkdir()
  for i, t in enumerate((70, 40)):          # one long video, one shorter than the clip span
    frames = (ref.grey_clip(1, t, 112, 112, seed=i)[0]).astype(np.uint8)
    video_lib.write_video(videos / f"patient{i}.avi", frames, fps=50.0)
  out = tmp_path / "echonet.csv"
  proc = run_module("launch.predict", f"--workdir={imported_echonet}", f"--videos={videos}",
                    f"--out={out}", "--worker_count=0", "--batch_size=2", cache=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = read_csv(out)
  assert [r["FileName"] for r in rows] == ["patient0", "patient1"]
  assert all(r["sigma"] == "" for r in rows)                # a point model
  config = import_weights.echonet_config(json.loads((imported_echonet / "import.json").read_text()))
  model = adacon_task.build_model(config.model)
  with np.load(imported_echonet / import_weights.MODEL_FILE) as z:
    variables = torch_import.unflatten({k: z[k] for k in z.files})
  expected = []
  for i in range(2):
    video = video_lib.read_video(videos / f"patient{i}.avi")
    video = builders.resize_to_square(video, 112, "stretch")
    t = video.shape[0]
    start = transforms.center_start(t, 32, 2)
    idx = start + 2 * np.arange(32)
    clip = np.where((idx < t)[:, None, None], video[np.minimum(idx, t - 1)], 0)
    pred, _ = model.apply(variables, (clip[None, ..., None] / 255.0).astype(np.float32))
    expected.append(float(np.clip(pred[0], 0, 100)))
  np.testing.assert_allclose([float(r["ef_pred"]) for r in rows], expected, rtol=1e-4)
