"""LaMoD task pieces and a smoke run of configs/lamod_dense.py through the shared loop."""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiac_data import dense
from configs import lamod_dense
from lamod_jax import epdiff
from lamod_jax import task as task_lib
from training import loop
from training import optim


def test_translation_resampled_to_the_dense_grid():
  """Shooting a constant v0 translates by v0 (registration grid px); on the 48² DENSE grid
  the same motion is 48/32 times as many pixels, everywhere."""
  v0 = jnp.stack([jnp.full((32, 32), 0.8), jnp.full((32, 32), -0.4)])
  u = epdiff.displacement(epdiff.shoot(v0, n_steps=4).phi)
  np.testing.assert_allclose(u, v0, atol=1e-5)
  out = np.asarray(task_lib.to_dense_grid(u, (48, 48)))
  np.testing.assert_allclose(out[0], 1.2, atol=1e-5)
  np.testing.assert_allclose(out[1], -0.6, atol=1e-5)
  # A linear field x ↦ 0.1·(x − c) keeps its strain (slope) when resampled.
  xs = np.arange(32) - 15.5
  lin = np.stack([np.broadcast_to(0.1 * xs, (32, 32)), np.zeros((32, 32))])
  out = np.asarray(task_lib.to_dense_grid(jnp.asarray(lin), (48, 48)))
  np.testing.assert_allclose(np.diff(out[0, 20, 5:-5]), 0.1, atol=1e-5)


def test_frame_indices_and_pairs():
  np.testing.assert_array_equal(dense.frame_indices(40, 4), [0, 13, 26, 39])
  np.testing.assert_array_equal(dense.frame_indices(25, 8), [0, 3, 7, 10, 14, 17, 21, 24])
  # A shorter sequence (a 25-frame cine scan under `full`'s 40): nearest frames repeat.
  up = dense.frame_indices(25, 40)
  assert up[0] == 0 and up[-1] == 24 and set(up) == set(range(25))
  assert np.all(np.diff(up) >= 0) and np.all(np.abs(up - np.arange(40) * 24 / 39) <= 0.5)
  with pytest.raises(ValueError, match="config.data.frames"):
    dense.frame_indices(8, 1)
  seq = jnp.arange(2 * 3 * 2 * 2, dtype=jnp.float32).reshape(2, 3, 2, 2)
  p = np.asarray(task_lib.pairs(seq))
  assert p.shape == (2, 2, 2, 2, 2)
  np.testing.assert_array_equal(p[:, :, ..., 0], np.broadcast_to(seq[:, :1], (2, 2, 2, 2)))
  np.testing.assert_array_equal(p[..., 1], seq[:, 1:])


def test_masked_sq_error():
  u = np.zeros((2, 3, 2, 4, 4))
  v = u.copy()
  v[:, :, 0] = 2.0
  support = np.zeros((2, 4, 4))
  support[:, 1:3, 1:3] = 1
  v[:, :, :, 0, 0] = 50.0          # outside the support: ignored
  assert float(task_lib.masked_sq_error(v, u, support)) == pytest.approx(4.0)


@pytest.mark.slow
def test_smoke_run(tmp_path, monkeypatch):
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(tmp_path / "cache"))
  config = lamod_dense.get_config("smoke")
  res = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for method in task_lib.METHODS:
    for name in ("epe", "segmental_ecc_mae", "global_peak_ecc_error"):
      assert np.isfinite(res[f"test/{method}/{name}"])
  saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert saved["test/lamod/epe"] == pytest.approx(res["test/lamod/epe"])
  # The final evaluation's diagnosis (config.diagnosis, on in every variant).
  n = config.diagnosis.num_samples
  for group in ("clean_latent", "lamod_ddpm", "lamod_ddim", f"lamod_mean{n}", "lamod_one"):
    for name in task_lib.SCORES:
      assert np.isfinite(saved[f"test/{group}/{name}"]), (group, name)
  assert all(saved[f"test/params/{m}"] > 0 for m in ("lamod", "registration", "regression"))
  rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  periodic = [r for r in rows if r["split"] == "val"]
  assert periodic and "lamod/epe" in periodic[-1]
  assert not any(k.startswith(("clean_latent/", "lamod_", "params/"))
                 for r in periodic for k in r)       # periodic evaluations: no diagnosis
  train = [r for r in rows if r["split"] == "train"]
  pre = [r for r in train if r["step"] <= config.pretrain.steps]
  joint = [r for r in train if r["step"] > config.pretrain.steps]
  assert pre and joint
  assert all(r["motion_loss"] == 0 for r in pre) and all(r["reg_data"] == 0 for r in joint)
  assert pre[-1]["reg_data"] < pre[0]["reg_data"]          # registration learns
  for name in ("es_motion", "errors", "segment_curves", "diagnosis", "fig3"):
    assert (tmp_path / "run" / "plots" / f"test_{name}.png").stat().st_size > 1000
  # Both phases' optimisers come from the loop's factory: config.pretrain.optim for the
  # registration phase, config.optim for the joint one.
  calls = []
  task = task_lib.LaMoDTask(config, str(tmp_path), make_optimizer=lambda cfg, n: calls.append(
      (cfg, n)) or optim.make_optimizer(cfg, n))
  task.optimizer(config.num_steps)
  p = config.pretrain.steps
  assert calls == [(config.pretrain.optim, p), (config.optim, config.num_steps - p)]
  with pytest.raises(ValueError, match="config.diffusion.training"):
    bad = lamod_dense.get_config("smoke")
    bad.diffusion.training = "shortcut"
    task_lib.LaMoDTask(bad, str(tmp_path))


def write_strainnet_as_distributed(tmp_path):
  """A dense tree in StrainNet's distributed layout: data/train/ and data/test_cine/ (the
  writer's cine-like scans of the test subjects), no val/ or test/, and no RV insertion
  angle for the first test sample. Returns (config, root, test ids)."""
  import shutil                                         # pylint: disable=g-import-not-at-top
  from cardiac_data.synthetic import dense_writer       # pylint: disable=g-import-not-at-top
  root = tmp_path / "StrainNet"
  dense_writer.write_dense(root, 12, seed=2, workers=1, size=32, frames=8)
  data = root / "data"
  for folder in (data / "val").iterdir():
    shutil.move(str(folder), data / "train" / folder.name)
  (data / "val").rmdir()
  shutil.rmtree(data / "test")
  gt = json.loads((root / "ground_truth.json").read_text())
  test_ids = sorted(f.name for f in (data / "test_cine").iterdir())
  gt["subjects"] = [s for s in gt["subjects"] if s["subject"] != test_ids[0]]
  (root / "ground_truth.json").write_text(json.dumps(gt))
  config = lamod_dense.get_config("smoke")
  config.data.root = str(root)
  config.data.split_folders.val = ""
  config.data.split_folders.test = "test_cine"
  config.data.val_fraction = 0.2
  return config, root, test_ids


def test_strainnet_layout_as_distributed(tmp_path):
  """data/train/ and data/test_cine/, no val/, and RV insertion angles for only some
  samples: validation is carved from training, and the samples without an angle are left
  out of the segmental metrics (counted), not a crash (through the loop:
  test_strainnet_layout_trains_and_evaluates)."""
  config, root, test_ids = write_strainnet_as_distributed(tmp_path)
  data = root / "data"
  task = task_lib.LaMoDTask(config, str(tmp_path))
  n_train = 12 - len(test_ids)
  assert len(task.data["val"]["ids"]) == round(0.2 * n_train)
  assert sorted(task.data["train"]["ids"] + task.data["val"]["ids"]) == sorted(
      f.name for f in (data / "train").iterdir())
  assert np.isnan(task.data["test"]["rv"]).sum() == 1
  # Without ground_truth.json at all: global strain only.
  config.num_steps = config.pretrain.steps + 1
  (root / "ground_truth.json").unlink()
  task = task_lib.LaMoDTask(config, str(tmp_path))
  assert np.isnan(task.data["test"]["rv"]).all()
  out = task.evaluate(task.init(jax.random.key(0), task.example_batch()), jax.random.key(1),
                      "test", final=False, workdir=str(tmp_path))
  assert out["segmental_skipped_no_rv"] == len(test_ids)
  assert math.isnan(out["lamod/segmental_ecc_mae"])
  assert np.isfinite(out["lamod/global_peak_ecc_error"]) and np.isfinite(out["lamod/epe"])


@pytest.mark.slow
def test_strainnet_layout_trains_and_evaluates(tmp_path):
  """The layout of test_strainnet_layout_as_distributed through the loop: the final test
  metrics skip the sample without an RV insertion angle (counted) and are finite."""
  config, _, _ = write_strainnet_as_distributed(tmp_path)
  config.num_steps = config.pretrain.steps + 1
  res = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert res["test/segmental_skipped_no_rv"] == 1
  for method in task_lib.METHODS:
    for name in ("epe", "segmental_ecc_mae", "global_peak_ecc_error"):
      assert np.isfinite(res[f"test/{method}/{name}"])


def test_pretrain_extra_folders(tmp_path):
  """config.pretrain.extra_folders: the registration phase also draws the input masks of
  those folders (label.mat not read: removed here), each resized to the registration grid
  as an independent scipy read + jax.image.resize gives; training-split folders named
  again are left out; the baseline of pretrain.baseline and the joint phase keep the
  labelled training samples; a missing folder is an error naming it."""
  import scipy.io                                       # pylint: disable=g-import-not-at-top
  from cardiac_data.synthetic import dense_writer       # pylint: disable=g-import-not-at-top
  root = tmp_path / "dense"
  dense_writer.write_dense(root, 12, seed=3, workers=1, size=32, frames=8)
  cine = sorted((root / "data" / "test_cine").iterdir())
  for folder in cine:
    (folder / "label.mat").unlink()
  config = lamod_dense.get_config("smoke")
  config.data.root = str(root)
  config.pretrain.update(steps=40, baseline=True, extra_folders=("train", "test_cine"))
  config.num_steps = 42
  task = task_lib.LaMoDTask(config, str(tmp_path))
  train = task.data["train"]
  n = len(train["ids"])
  assert task.pretrain_reg.shape == (n + len(cine),) + train["reg"].shape[1:]
  np.testing.assert_array_equal(task.pretrain_reg[:n], train["reg"])
  for row, folder in zip(task.pretrain_reg[n:], cine):
    m = scipy.io.loadmat(folder / "input.mat")["input"][0].astype(np.float32)   # (H, W, T)
    t = np.round(np.linspace(0, m.shape[-1] - 1, config.data.frames)).astype(int)
    want = jax.image.resize(np.moveaxis(m[..., t], -1, 0), (len(t), config.data.reg_size,
                                                            config.data.reg_size), "linear")
    np.testing.assert_allclose(row, want, atol=1e-6)

  def rows_of(batch_rows, table):
    flat = table.reshape(len(table), -1)
    return [int(np.argmin(np.abs(flat - r.reshape(1, -1)).max(1))) for r in batch_rows]

  batches = task.train_batches(0)
  drawn = []
  for _ in range(config.pretrain.steps):
    b = next(batches)
    assert "disp" not in b and b["baseline_disp"].shape[0] == b["reg"].shape[0]
    drawn += rows_of(b["reg"], task.pretrain_reg)
    assert all(np.abs(train["masks"][i] - m).max() == 0 for i, m in
               zip(rows_of(b["masks"], train["masks"]), b["masks"]))
  assert max(drawn) >= n and min(drawn) < n            # both training and extra sequences
  joint = next(batches)
  assert "disp" in joint
  np.testing.assert_array_equal(
      joint["reg"], train["reg"][rows_of(joint["masks"], train["masks"])])

  config.pretrain.extra_folders = ("no_such_folder",)
  with pytest.raises(dense.DataFormatError, match="no_such_folder"):
    task_lib.LaMoDTask(config, str(tmp_path))
