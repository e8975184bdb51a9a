"""`launch.train` end to end on the smoke config (the flax-examples one-run test), and its
command-line errors (absl's flag parsing and `main` run in this process:
tests/conftest.py's launcher_error)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import launcher_error
from tests.conftest import run_module


def run_train(*args, cache):
  return run_module("launch.train", *args, cache=cache)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_smoke_config_trains_and_writes_metrics(smoke_run):
  """The session's smoke run (`launch.train --config=configs/pediatric.py:smoke`,
  tests/conftest.py; it asserts the launcher's exit status 0)."""
  workdir = smoke_run.workdir
  metrics = json.loads((workdir / "metrics.json").read_text())
  for split in ("val", "test"):
    for name in ("mae", "rmse", "r2", "mean_predictor_mae"):
      assert f"{split}/{name}" in metrics
  assert metrics["test/n"] > 0
  for name in ("crps", "crps_all_pairs", "coverage90", "sigma_error_spearman", "aux_mae",
               "aux_sigma_error_spearman", "mae_over_mean_predictor"):
    assert f"test/{name}" in metrics
  assert metrics["test/mae_over_mean_predictor"] == pytest.approx(
      metrics["test/mae"] / metrics["test/mean_predictor_mae"])
  assert 0 < metrics["test/aux_mae"] < 3 * metrics["test/mean_predictor_mae"]
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in rows} == {"train", "val"}
  train = [r for r in rows if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"]          # The smoke run learns something.
  pred = np.load(workdir / "predictions.npz")
  assert pred["samples"].shape == (metrics["test/n"], 8) and pred["truth"].shape == (metrics["test/n"],)
  assert pred["ids"].dtype.kind == "U"
  assert (workdir / "plots" / "test_scatter.png").exists()
  assert (workdir / "predictions.npz").exists()
  assert "patient" not in smoke_run.stderr.lower()
  # The host settings of configs/common.py and pediatric.py reached the run.
  assert "YNNPACK fusions off (config.sharding.cpu_ynnpack=False)" in smoke_run.stderr
  from training import sharding  # pylint: disable=g-import-not-at-top
  devices = sharding.auto_cpu_devices(8)     # cpu_devices=0: one per core, dividing batch 8
  assert f"data parallel over {devices} devices" in smoke_run.stderr


def test_unknown_config_field_is_a_clear_error(tmp_path, smoke_cache, monkeypatch):
  err = launcher_error(monkeypatch, "launch.train", "--config=configs/pediatric.py:smoke",
                       "--config.optim.lrr=0.1", f"--workdir={tmp_path}", cache=smoke_cache)
  assert "lrr" in err


def test_unknown_variant_is_a_clear_error(tmp_path, smoke_cache, monkeypatch):
  err = launcher_error(monkeypatch, "launch.train", "--config=configs/pediatric.py:smok",
                       f"--workdir={tmp_path}", cache=smoke_cache)
  assert "unknown variant 'smok'" in err


def test_fewer_than_two_posterior_samples_is_a_clear_error(tmp_path, smoke_cache, monkeypatch):
  err = launcher_error(monkeypatch, "launch.train", "--config=configs/pediatric.py:smoke",
                       "--config.sampling.num_samples=1", f"--workdir={tmp_path}",
                       cache=smoke_cache)
  assert "config.sampling.num_samples" in err


def test_missing_data_root_names_the_field(tmp_path, smoke_cache, monkeypatch):
  err = launcher_error(monkeypatch, "launch.train", "--config=configs/pediatric.py:smoke",
                       "--config.data.root=/nonexistent/x", f"--workdir={tmp_path}",
                       cache=smoke_cache)
  assert "config.data.root" in err


@pytest.mark.slow
@pytest.mark.parametrize("config", ["camus", "dynamic"])
def test_other_mcsdr_configs_train_on_their_synthetic_cohorts(tmp_path, cache, config):
  proc = run_train(f"--config=configs/{config}.py:smoke", "--config.num_steps=4",
                   "--config.eval_every=4", "--config.checkpoint.save_every=4",
                   f"--workdir={tmp_path}", cache=cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["test/n"] > 0 and "test/crps" in metrics
  assert "test/by_quality" in metrics      # ground_truth.csv of the synthetic cohort
