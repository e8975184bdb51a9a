"""launch.sweep: search-space parsing, an Optuna study and a grid over a fake trainer,
resuming after the sweep process is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from launch import sweep
import tests

ROOT = str(tests.ROOT)


def test_parse_space_and_grid():
  space = sweep.parse_space(["optim.lr=loguniform(1e-4, 1e-2)", "model.hidden=choice(32, 64)",
                             "a.b=int(1, 4)", " x = uniform(0, 0.5) "])
  assert space == {"optim.lr": ("loguniform", (1e-4, 1e-2)),
                   "model.hidden": ("choice", (32, 64)), "a.b": ("int", (1, 4)),
                   "x": ("uniform", (0, 0.5))}
  assert sweep.parse_grid(["sampling.steps=5,10", "model.kind='mcsdr','deterministic'"]) == {
      "sampling.steps": [5, 10], "model.kind": ["mcsdr", "deterministic"]}
  for bad in ["optim.lr=normal(0, 1)", "optim.lr=uniform(2, 1)", "optim.lr=loguniform(0, 1)"]:
    with pytest.raises(ValueError, match="config.sweep.params"):
      sweep.parse_space([bad])


def test_unknown_field_is_a_clear_error():
  c = ml_collections.ConfigDict(dict(optim=dict(lr=1.0)))
  sweep.check_fields(c, ["optim.lr"])
  with pytest.raises(ValueError, match="'optim.lrr' is not in the config"):
    sweep.check_fields(c, ["optim.lrr"])


def _run(workdir, *args, sleep="0", wait=True):
  env = dict(os.environ, FAKE_TRIAL_SLEEP=sleep, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "launch.sweep", "--config=configs/pediatric.py:smoke",
         f"--workdir={workdir}", "--train_module=tests.fake_trial",
         "--config.sweep.metric=val/objective", "--config.num_steps=7", *args]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_optuna_sweep_is_killed_and_resumes(tmp_path):
  args = ("--config.sweep.params=('optim.lr=loguniform(1e-5, 1e-1)',)",
          "--config.sweep.num_trials=6", "--config.sweep.parallel=2")
  proc = _run(tmp_path, *args, sleep="3", wait=False)
  trials = tmp_path / "trials"
  deadline = time.time() + 300
  while time.time() < deadline:   # kill while the second pair of trials runs
    done = [d for d in trials.glob("*") if (d / "metrics.json").exists()] if trials.exists() else []
    if len(done) >= 2 and len(list(trials.glob("*"))) >= 3:
      break
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  starts = lambda d: (d / "starts.txt").read_text().count("start") if (d / "starts.txt").exists() else 0
  interrupted = {d: starts(d) for d in trials.glob("*") if not (d / "metrics.json").exists()}
  assert interrupted, "the kill came too late to interrupt a trial"

  res = _run(tmp_path, *args)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "resuming" in res.stdout
  summary = json.loads((tmp_path / "sweep_summary.json").read_text())
  assert summary["complete"] == 6 and summary["failed"] == 0
  assert len(summary["trials"]) == 6
  for d, before in interrupted.items():  # re-run in its own workdir, not replaced
    assert starts(d) == before + 1
    assert (d / "metrics.json").exists()
  # Every trial saw the sweep command's own override (--config.num_steps=7).
  for d in trials.glob("*"):
    assert json.loads((d / "metrics.json").read_text())["num_steps"] == 7
  best = summary["best"]
  assert best["value"] == min(t["value"] for t in summary["trials"])
  assert (tmp_path / "sweep.png").stat().st_size > 0


def test_grid_sweep_covers_the_product(tmp_path):
  res = _run(tmp_path, "--config.sweep.grid=('optim.lr=1e-4,1e-3,1e-2', 'model.hidden=32,64')")
  assert res.returncode == 0, res.stderr[-3000:]
  summary = json.loads((tmp_path / "sweep_summary.json").read_text())
  assert summary["kind"] == "grid" and summary["complete"] == 6
  seen = {(t["params"]["optim.lr"], t["params"]["model.hidden"]) for t in summary["trials"]}
  assert seen == {(lr, h) for lr in (1e-4, 1e-3, 1e-2) for h in (32, 64)}
  assert summary["best"]["params"] == {"optim.lr": 1e-3, "model.hidden": 64}
  assert summary["best"]["value"] == pytest.approx(0.0)
