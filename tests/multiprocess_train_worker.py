"""One process of a multi-process training check (tests/training/test_multiprocess.py).

  [JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=i]
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multiprocess_train_worker.py \\
      OUT --steps=2 [--resume_from=DIR]

Trains the smoke variant of every task (`TASKS`) for `--steps` steps with the shared
loop's pieces (`loop.init_state`, `loop.train_step_fn` jitted with the loop's shardings,
each process's own rows through `sharding.global_batch`), and checkpoints the state
with `training.checkpoint` (all processes together) into OUT/<task> at the end (and every --save_every steps, pausing --pause_after_save
seconds after each, a window to kill the run in). With --resume_from, each task first
restores DIR/<task>'s last checkpoint (written by another number of processes, or by a
killed run) and trains from its step. Process 0 writes
OUT/losses.json: {task: {step: loss}}. Evaluation is left out (it is the training
loop's own test); what is checked is the multi-process training path.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import sharding  # pylint: disable=g-import-not-at-top

sharding.maybe_initialize_distributed()    # First, before any other JAX call.

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import adacon_dynamic  # pylint: disable=wrong-import-position
from configs import lamod_dense  # pylint: disable=wrong-import-position
from configs import pediatric  # pylint: disable=wrong-import-position
from configs import seg_partial  # pylint: disable=wrong-import-position
from training import checkpoint as checkpoint_lib  # pylint: disable=wrong-import-position
from training import loop  # pylint: disable=wrong-import-position
from training import optim  # pylint: disable=wrong-import-position
from training import tasks as tasks_lib  # pylint: disable=wrong-import-position

#: task name -> its smoke config, with a global batch of 8 (one row per device).
TASKS = {
    "mcsdr": lambda: pediatric.get_config("smoke"),
    "adacon": lambda: adacon_dynamic.get_config("smoke"),
    "lamod": lambda: lamod_dense.get_config("smoke"),
    "segmentation": lambda: seg_partial.get_config("inter,smoke"),
}


def train(name: str, out: str, steps: int, resume_from: str | None, save_every: int = 0,
          pause_after_save: float = 0.0) -> dict[int, float]:
  config = TASKS[name]()
  config.data.batch_size = 8
  workdir = os.path.join(out, name)
  mesh = sharding.make_mesh()
  task = tasks_lib.make_task(config, workdir, mesh=mesh, make_optimizer=optim.make_optimizer)
  state, tx, state_sharding = loop.init_state(task, config, jax.random.key(config.seed), mesh)
  start = 0
  if resume_from:
    src = checkpoint_lib.Checkpoints(os.path.join(resume_from, name), keep=2)
    state, _ = src.restore(state)
    start = int(src.latest_step())
    src.close()
  step_fn = jax.jit(functools.partial(loop.train_step_fn, task.loss, tx, config.optim.ema_decay),
                    in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                    out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
  batches = task.train_batches(start)
  ckpts = checkpoint_lib.Checkpoints(workdir, keep=2)
  losses = {}
  for step in range(start + 1, steps + 1):
    state, metrics = step_fn(state, sharding.global_batch(next(batches), mesh))
    losses[step] = float(metrics["loss"])
    if save_every and step % save_every == 0 and step < steps:
      ckpts.save(step, state, {"config": config.to_dict()})
      ckpts.last.wait_until_finished()
      time.sleep(pause_after_save)     # A window for the test to kill this run.
  if hasattr(batches, "close"):
    batches.close()
  ckpts.save(steps, state, {"config": config.to_dict()})
  ckpts.close()
  return losses


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--resume_from", default=None)
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--save_every", type=int, default=0)
  parser.add_argument("--pause_after_save", type=float, default=0.0)
  args = parser.parse_args()
  losses = {name: train(name, args.out, args.steps, args.resume_from, args.save_every,
                        args.pause_after_save)
            for name in args.tasks.split(",")}
  if jax.process_index() == 0:
    with open(os.path.join(args.out, "losses.json"), "w") as f:
      json.dump({"processes": jax.process_count(), "devices": jax.device_count(),
                 "losses": losses}, f)


if __name__ == "__main__":
  main()
