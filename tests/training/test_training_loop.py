"""The shared loop: one step, resume after a kill, NaN guard, best checkpoint."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from training import loop


class ToyTask:
  """Linear regression y = x·w* on a fixed random design; batches depend on step only."""

  def __init__(self, nan_at_step: int | None = None, crash_at_step: int | None = None):
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(64, 3)).astype(np.float32)
    self.y = self.x @ np.array([1.0, -2.0, 0.5], np.float32)
    self.nan_at_step = nan_at_step
    self.crash_at_step = crash_at_step
    self.evaluations = []

  def example_batch(self):
    return {"x": self.x[:8], "y": self.y[:8]}

  def init(self, rng, batch):
    return {"w": jax.random.normal(rng, (3,)), "b": jnp.zeros(())}

  def loss(self, params, batch, rng):
    noise = 1e-3 * jax.random.normal(rng, batch["y"].shape)  # Uses the step RNG.
    pred = batch["x"] @ params["w"] + params["b"] + noise
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss, {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}

  def train_batches(self, start_step):
    step = start_step
    while True:
      step += 1
      if step == self.crash_at_step:
        raise KeyboardInterrupt("simulated kill")
      idx = np.random.default_rng(step).choice(64, 8, replace=False)
      batch = {"x": self.x[idx].copy(), "y": self.y[idx].copy()}
      if step == self.nan_at_step:
        batch["y"][0] = np.nan
      yield batch

  def evaluate(self, params, rng, split, *, final, workdir):
    err = float(np.mean((self.x @ np.asarray(params["w"]) + float(params["b"]) - self.y) ** 2))
    self.evaluations.append((split, err))
    return {"mse": err}

  def meta(self):
    return {"target_mean": 0.0}


def make_config(num_steps=6):
  c = common.base_config()
  c.seed = 0
  c.num_steps = num_steps
  c.log_every = 1
  c.eval_every = 3
  c.optim.update(name="adam", lr=0.05, schedule="constant")
  c.checkpoint.update(save_every=3, keep=2, best_metric="mse", best_mode="min")
  c.data = ml_collections.ConfigDict(dict(batch_size=8))
  return c


def read_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def test_one_step_run_writes_outputs(tmp_path):
  cfg = make_config(num_steps=1)
  final = loop.train_and_evaluate(cfg, str(tmp_path), task=ToyTask())
  assert set(final) >= {"val/mse", "test/mse", "checkpoint"}
  with open(tmp_path / "metrics.json") as f:
    assert json.load(f)["val/mse"] == pytest.approx(final["val/mse"])
  assert (tmp_path / "checkpoints" / "last" / "1").is_dir()
  assert list((tmp_path / "tensorboard").iterdir()), "no TensorBoard event file"


def test_killed_run_resumes_with_identical_losses(tmp_path):
  ref_dir, dir_ = str(tmp_path / "ref"), str(tmp_path / "resumed")
  loop.train_and_evaluate(make_config(), ref_dir, task=ToyTask())
  reference = read_losses(ref_dir)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(make_config(), dir_, task=ToyTask(crash_at_step=5))
  assert sorted(os.listdir(os.path.join(dir_, "checkpoints", "last"))) == ["3"]
  loop.train_and_evaluate(make_config(), dir_, task=ToyTask())
  resumed = read_losses(dir_)
  assert sorted(resumed) == list(range(1, 7))  # Each step logged exactly once.
  for step in range(1, 7):
    assert resumed[step] == reference[step], step  # Bitwise: same batches, same RNG.


def test_nan_guard_names_step_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError, match=r"'loss' is nan at step 5"):
    loop.train_and_evaluate(make_config(), str(tmp_path), task=ToyTask(nan_at_step=5))
  assert sorted(os.listdir(tmp_path / "checkpoints" / "last")) == ["3"]
  from training import checkpoint
  ckpt = checkpoint.Checkpoints(str(tmp_path), best_metric="mse")
  state, _, _ = loop.init_state(ToyTask(), make_config(), jax.random.key(0))
  restored, meta = ckpt.restore(state)
  ckpt.close()
  assert int(restored["step"]) == 3
  assert np.all(np.isfinite(restored["params"]["w"]))
  assert meta["target_mean"] == 0.0


def test_final_evaluation_uses_best_checkpoint(tmp_path):
  task = ToyTask()
  final = loop.train_and_evaluate(make_config(), str(tmp_path), task=task)
  val_scores = [err for split, err in task.evaluations[:-2] if split == "val"]
  assert final["checkpoint"] == "best"
  assert final["val/mse"] == pytest.approx(min(val_scores), rel=1e-6)


def test_bad_optimizer_config_names_field(tmp_path):
  cfg = make_config()
  cfg.optim.name = "adagrad_typo"
  with pytest.raises(ValueError, match="config.optim.name"):
    loop.train_and_evaluate(cfg, str(tmp_path), task=ToyTask())


def test_train_rows_carry_the_windows_steps_per_s(tmp_path):
  """metrics.jsonl's train rows hold each log window's measured rate (steps / seconds)."""
  cfg = make_config(num_steps=6)
  cfg.log_every = 2
  loop.train_and_evaluate(cfg, str(tmp_path), task=ToyTask())
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f if '"train"' in line]
  assert [r["step"] for r in rows] == [2, 3, 4, 6]   # log_every, eval (3) and save (3, 6)
  assert all(0 < r["steps_per_s"] < 1e6 for r in rows)
