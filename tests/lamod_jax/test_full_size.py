"""configs/lamod_dense.py:full builds and trains (issue 17 item 5): the paper-sized networks,
128² registration grid, T = 500 and bfloat16, with only the data shrunk, for 2 steps (one
registration pre-training step, one joint step) through the shared loop."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from configs import lamod_dense
from lamod_jax import task as task_lib
from training import loop
from training import optim


class _Recording(task_lib.LaMoDTask):
  """LaMoDTask keeping the parameters its (last) evaluation saw: the trained ones."""

  def evaluate(self, params, rng, split, *, final, workdir):
    self.evaluated = jax.tree.map(np.asarray, params)
    return super().evaluate(params, rng, split, final=final, workdir=workdir)


def full_two_steps():
  """`full` with the data shrunk: 6 subjects (4 train, 1 val, 1 test), 3 of the 40 frames,
  batch 2; one step per phase; evaluation cut to one cheap sample (no diagnosis, no final
  splits; the loop still evaluates val once, at the last step)."""
  c = lamod_dense.get_config("full")
  c.data.synthetic.num_subjects = 6
  c.data.frames = 3
  c.data.batch_size = 2
  c.data.eval_batch_size = 2
  c.pretrain.steps = 1
  c.num_steps = 2
  c.log_every = 1
  c.diagnosis.enabled = False
  c.sampling.update(steps=2, num_samples=1)
  c.final_eval_splits = ()
  return c


@pytest.mark.slow
def test_full_variant_trains_two_steps(tmp_path, monkeypatch):
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(tmp_path / "cache"))
  config = full_two_steps()
  full = lamod_dense.get_config("full")
  # Only the data (and the evaluation's cost) are shrunk: the model is the paper's.
  for key in ("model", "registration", "diffusion", "pretrain", "optim"):
    assert config[key].to_dict() == (full[key].to_dict() if key != "pretrain" else
                                     dict(full[key].to_dict(), steps=1)), key
  assert config.data.reg_size == 128 and config.model.dtype == "bfloat16"
  assert config.diffusion.num_steps == 500
  task = _Recording(config, str(tmp_path / "run"), make_optimizer=optim.make_optimizer)
  loop.train_and_evaluate(config, str(tmp_path / "run"), task=task)
  rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train = {r["step"]: r for r in rows if r["split"] == "train"}
  assert sorted(train) == [1, 2]
  assert train[1]["reg_data"] > 0 and train[1]["motion_loss"] == 0       # registration
  assert train[2]["motion_loss"] > 0 and train[2]["diffusion_loss"] > 0   # joint
  for r in train.values():
    assert all(np.isfinite(v) for k, v in r.items() if k != "split"), r
  # Step 1 trains D_R (only its zero-initialised output conv gets a gradient at the
  # first step, so E_R's gradient is still exactly zero), step 2 ε_θ, D_η and the baseline
  # with E_R frozen: every network but E_R moved, E_R stayed put.
  init = loop.init_state(task, config, jax.random.key(config.seed))[0]["params"]["params"]
  trained = task.evaluated["params"]
  for net in ("reg_encoder", "reg_decoder", "eps_net", "motion_decoder", "baseline"):
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(trained[net])), net
    change = max(jax.tree.leaves(jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), init[net], trained[net])))
    assert (change == 0) if net == "reg_encoder" else (change > 0), (net, change)
