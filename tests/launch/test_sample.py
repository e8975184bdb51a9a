"""`launch.sample` (the sampler / posterior-size study, MCSDR Fig. 7) on a smoke run.

The smoke config is trained once per session (a subprocess, tests/conftest.py); the
study's numbers are checked against task.predict scored by brute-force numpy float64,
and the restored checkpoint against the training run's own final metrics.
"""
from __future__ import annotations

import json
import os

from absl import flags
import jax
import numpy as np
import pytest

from configs import pediatric
from diffusion import samplers
from launch import sample
from mcsdr_jax import sampling_study
from tests.conftest import launcher_error
from training import runs

SAMPLERS = ("ddim5", "ddim10", "pf_ode")
KS = (1, 2, 4)
K = 4      # config.sampling.num_samples of the study (not a state field: same checkpoint)


@pytest.fixture(scope="module")
def trained(smoke_run):
  """(workdir, cache) of a trained smoke run (tests/conftest.py)."""
  return smoke_run.workdir, smoke_run.cache


def smoke_config():
  config = pediatric.get_config("smoke")
  config.sampling.num_samples = K
  return config


@pytest.fixture(scope="module")
def study(trained):
  """(config, (task, params, checkpoint info), study) of the reduced sweep."""
  workdir, cache = trained
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("CARDIAC_DATA_CACHE", str(cache))
    config = smoke_config()
    run = runs.load_run(config, str(workdir))
    result = sample.run_study(config, str(workdir), "test", SAMPLERS, KS, run=run)
    yield config, run, result


@pytest.mark.slow
def test_study_writes_json_and_plot(trained, study):
  workdir, _ = trained
  _, (task, _, _), result = study
  saved = json.loads((workdir / "sampling_study.json").read_text())
  assert saved == json.loads(json.dumps(result))
  assert saved["split"] == "test" and saved["num_cases"] == len(task.sources["test"]) > 0
  assert saved["num_clips"] == saved["num_cases"]          # 'mcsdr' sampling: 1 clip/video
  assert saved["checkpoint"]["which"] == "best" and saved["checkpoint"]["step"] in (10, 20)
  assert saved["device"]
  assert [e["name"] for e in saved["samplers"]] == list(SAMPLERS)
  assert [e["steps"] for e in saved["samplers"]] == [5, 10, None]
  assert all(e["k"] == K for e in saved["samplers"])
  assert [e["k"] for e in saved["k_sweep"]] == list(KS)
  assert all(e["name"] == "ddim10" for e in saved["k_sweep"])
  for e in saved["samplers"] + saved["k_sweep"]:
    assert e["mae"] >= 0 and e["rmse"] >= e["mae"] and e["seconds_per_case"] > 0
    if e["k"] == 1:
      assert e["crps"] is None and e["crps_all_pairs"] is None and e["coverage90"] is None
    else:
      assert 0 <= e["crps"] <= e["crps_all_pairs"] and 0 <= e["coverage90"] <= 1
  png = (workdir / "plots" / "sampling_study.png").read_bytes()
  assert png.startswith(b"\x89PNG")
  table = sampling_study.format_table(result)
  assert "pf_ode" in table and "–" in table       # K = 1 has no CRPS.


@pytest.mark.slow
def test_same_setting_in_both_sweeps_gives_the_same_numbers(study):
  _, _, result = study
  a = next(e for e in result["samplers"] if e["name"] == "ddim10")
  b = next(e for e in result["k_sweep"] if e["k"] == K)
  for key in sampling_study.METRIC_KEYS:
    assert a[key] == b[key], key


def _brute_force(samples, y):
  """MAE/RMSE of the clipped mean and the fair / all-pairs CRPS by double loops (float64)."""
  x = np.asarray(samples, np.float64)
  n, k = x.shape
  err = np.clip(x.mean(1), 0, 100) - y
  out = {"mae": np.mean(np.abs(err)), "rmse": np.sqrt(np.mean(err ** 2))}
  if k > 1:
    skill = np.mean(np.abs(x - y[:, None]), axis=1)
    pairs = np.array([sum(abs(x[i, a] - x[i, b]) for a in range(k) for b in range(k))
                      for i in range(n)])
    out["crps"] = np.mean(skill - pairs / (2 * k * (k - 1)))
    out["crps_all_pairs"] = np.mean(skill - pairs / (2 * k * k))
  return out


@pytest.mark.slow
def test_numbers_match_task_predict_scored_by_brute_force(study):
  config, (task, params, _), result = study
  ddim10 = samplers.SamplerConfig("ddim", 10, eta=config.sampling.eta,
                                  spacing=config.sampling.spacing)
  key = jax.random.key(config.seed + 2)
  for k in (1, K):
    samples, labels, _ = task.predict(params, "test", key, num_samples=k, sampler_cfg=ddim10)
    entry = next(e for e in result["k_sweep"] if e["k"] == k)
    for name, value in _brute_force(samples, labels).items():
      np.testing.assert_allclose(entry[name], value, rtol=1e-9, err_msg=f"K={k} {name}")


@pytest.mark.slow
def test_restored_checkpoint_reproduces_the_training_metrics(trained, study):
  """Training's final test evaluation (best checkpoint, key seed + 1, K = 8, DDIM-10)."""
  workdir, _ = trained
  config, (task, params, ckpt), _ = study
  final = json.loads((workdir / "metrics.json").read_text())
  assert final["checkpoint"] == ckpt["which"]
  k = pediatric.get_config("smoke").sampling.num_samples
  samples, labels, _ = task.predict(params, "test", jax.random.key(config.seed + 1),
                                    num_samples=k, trajectory=True)
  ref = _brute_force(samples, labels)
  for name in ("mae", "rmse"):
    np.testing.assert_allclose(final[f"test/{name}"], ref[name], rtol=1e-6, err_msg=name)
  np.testing.assert_allclose(final["test/raw_crps"], ref["crps"], rtol=1e-6)
  # The reported posterior is σ-scaled about each case's mean by the factor fitted on val.
  s = final["test/spread_scale"]
  assert s == final["val/spread_scale"] and 0.25 <= s <= 4.0
  mean = samples.mean(1, keepdims=True)
  scaled = _brute_force(mean + s * (samples - mean), labels)
  np.testing.assert_allclose(final["test/crps"], scaled["crps"], rtol=1e-6)
  np.testing.assert_allclose(final["test/mae"], scaled["mae"], rtol=1e-6)


@pytest.mark.slow
def test_checkpoint_of_another_config_names_the_field(trained, monkeypatch):
  """`launch.sample --config=... --config.model.hidden=64 --samplers=ddim5 --ks=1` in this
  process: its --config and --workdir (launch.train's flags) parsed from the command line,
  then `run_study` (what its main runs) with the --samplers and --ks values."""
  workdir, cache = trained
  f = flags.FLAGS
  err = launcher_error(monkeypatch, "launch.sample", "--config=configs/pediatric.py:smoke",
                       f"--workdir={workdir}", "--config.model.hidden=64", cache=cache,
                       main=lambda argv: sample.run_study(f.config, f.workdir, "test",
                                                          ["ddim5"], ["1"]))
  assert "model.hidden: 32 → 64" in err


def test_empty_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*launch.train"):
    sample.run_study(smoke_config(), str(tmp_path), "test", SAMPLERS, KS)
  assert not os.listdir(tmp_path)            # Nothing created there.


def test_bad_arguments_are_clear_errors(tmp_path):
  config = smoke_config()
  config.model.kind = "deterministic"
  with pytest.raises(ValueError, match="config.model.kind"):
    sample.run_study(config, str(tmp_path), "test", SAMPLERS, KS)
  for ks in ((0,), (4, -1), ("x",)):
    with pytest.raises(ValueError, match="--ks"):
      sample.run_study(smoke_config(), str(tmp_path), "test", SAMPLERS, ks)
  for name in ("ddim", "ddim0", "ddpm5", "euler"):
    with pytest.raises(ValueError, match="--samplers"):
      sample.run_study(smoke_config(), str(tmp_path), "test", (name,), KS)


def test_sampler_names():
  config = smoke_config()
  config.sampling.eta = 0.5
  got = {name: (cfg, steps) for name, cfg, steps in sampling_study.sampler_configs(
      ["ddpm", "DDIM20", "pf_ode", "pf_ode8", "ddpm"], config)}
  assert list(got) == ["ddpm", "ddim20", "pf_ode", "pf_ode8"]
  assert got["ddpm"] == (samplers.SamplerConfig("ddpm", None), 1000)
  assert got["ddim20"] == (samplers.SamplerConfig("ddim", 20, eta=0.5), 20)
  assert got["pf_ode"] == (samplers.SamplerConfig("pf_ode", None), None)
  assert got["pf_ode8"] == (samplers.SamplerConfig("pf_ode", 8), 8)
  assert sampling_study.parse_ks(["1", 5, "5", 40]) == [1, 5, 40]
