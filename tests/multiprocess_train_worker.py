"""One process of a multi-process training check (tests/training/test_multiprocess.py).

  [JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=i]
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multiprocess_train_worker.py \\
      '[{"out": "OUT", "steps": 2}, {"out": "OUT2", "steps": 3, "tasks": ["mcsdr"],
          "resume_from": "OUT", "after": "OUT/losses.json"}]'

Runs a list of jobs in one launch (compilation dominates these runs; the XLA
compilation cache serves a job the programs an earlier one compiled). A job trains the
smoke variant of its tasks (all of `TASKS` by default) for `steps` steps with the shared
loop's pieces (`loop.init_state`, `loop.train_step_fn` jitted with the loop's shardings,
each process's own rows through `sharding.global_batch`) and checkpoints the state with
`training.checkpoint` (all processes together) into OUT/<task> at the end, and every
`save_every` steps, pausing `pause_after_save` seconds after each (a window to kill the
run in; process 0 first writes OUT/<task>/losses_so_far.json). A job with `after` first waits for that file (another launch's job has
finished); with `resume_from` it restores RESUME_FROM/<task>'s last checkpoint (written
by another number of processes, or by a killed run) and trains from its step.
Process 0 writes OUT/losses.json: {"processes", "devices", "losses": {task: {step:
loss}}}. Evaluation is left out (it is the training loop's own test); what is checked
is the multi-process training path.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

STARTED = time.monotonic()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import adacon_dynamic  # pylint: disable=wrong-import-position
from configs import lamod_dense  # pylint: disable=wrong-import-position
from configs import pediatric  # pylint: disable=wrong-import-position
from configs import seg_partial  # pylint: disable=wrong-import-position
from training import checkpoint as checkpoint_lib  # pylint: disable=wrong-import-position
from training import loop  # pylint: disable=wrong-import-position
from training import optim  # pylint: disable=wrong-import-position
from training import sharding  # pylint: disable=wrong-import-position
from training import tasks as tasks_lib  # pylint: disable=wrong-import-position

#: task name -> its smoke config, with a global batch of 8 (one row per device).
TASKS = {
    "mcsdr": lambda: pediatric.get_config("smoke"),
    "adacon": lambda: adacon_dynamic.get_config("smoke"),
    "lamod": lambda: lamod_dense.get_config("smoke"),
    "segmentation": lambda: seg_partial.get_config("inter,smoke"),
}


def wait_for(path: str, timeout_s: float = 600.0) -> None:
  deadline = time.monotonic() + timeout_s
  while not os.path.exists(path):
    if time.monotonic() > deadline:
      raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s")
    time.sleep(0.2)


SETUPS = {}     # task name -> setup(name, ...), built by the first job that trains it


def setup(name: str, workdir: str):
  """(config, mesh, task, jitted train step) of a task, built once per process (with the
  first job's `workdir`): a later job reuses the compiled step, as a training process
  would (process 1 cannot read the compilation cache process 0 writes)."""
  if name not in SETUPS:
    config = TASKS[name]()
    config.data.batch_size = 8
    mesh = sharding.make_mesh()
    task = tasks_lib.make_task(config, workdir, mesh=mesh, make_optimizer=optim.make_optimizer)
    _, tx, state_sharding = loop.init_state(task, config, jax.random.key(config.seed), mesh,
                                            abstract=True)
    step_fn = jax.jit(
        functools.partial(loop.train_step_fn, task.loss, tx, config.optim.ema_decay),
        in_shardings=(state_sharding, sharding.data_sharding(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    SETUPS[name] = (config, mesh, task, step_fn)
  return SETUPS[name]


def train(name: str, out: str, steps: int, resume_from: str | None, save_every: int = 0,
          pause_after_save: float = 0.0) -> dict[int, float]:
  workdir = os.path.join(out, name)
  config, mesh, task, step_fn = setup(name, workdir)
  # A resumed run restores into a template: its init is neither compiled nor run.
  state, _, _ = loop.init_state(task, config, jax.random.key(config.seed), mesh,
                                abstract=bool(resume_from))
  start = 0
  if resume_from:
    src = checkpoint_lib.Checkpoints(os.path.join(resume_from, name), keep=2)
    state, _ = src.restore(state)
    start = int(src.latest_step())
    src.close()
  batches = task.train_batches(start)
  ckpts = checkpoint_lib.Checkpoints(workdir, keep=2)
  losses = {}
  for step in range(start + 1, steps + 1):
    state, metrics = step_fn(state, sharding.global_batch(next(batches), mesh))
    losses[step] = float(metrics["loss"])
    if save_every and step % save_every == 0 and step < steps:
      ckpts.save(step, state, {"config": config.to_dict()})
      ckpts.last.wait_until_finished()
      if jax.process_index() == 0:
        with open(os.path.join(workdir, "losses_so_far.json"), "w") as f:
          json.dump(losses, f)
      time.sleep(pause_after_save)     # A window for the test to kill this run.
  if hasattr(batches, "close"):
    batches.close()
  ckpts.save(steps, state, {"config": config.to_dict()})
  ckpts.close()
  return losses


def run_job(out: str, steps: int, tasks=tuple(TASKS), resume_from: str | None = None,
            after: str | None = None, save_every: int = 0,
            pause_after_save: float = 0.0) -> None:
  if after:
    wait_for(after)
  losses = {}
  for name in tasks:
    start = time.monotonic()
    losses[name] = train(name, out, steps, resume_from, save_every, pause_after_save)
    print(f"{os.path.basename(out)}/{name}: {time.monotonic() - start:.1f} s", flush=True)
  if jax.process_index() == 0:
    with open(os.path.join(out, "losses.json.tmp"), "w") as f:
      json.dump({"processes": jax.process_count(), "devices": jax.device_count(),
                 "losses": losses}, f)
    os.replace(os.path.join(out, "losses.json.tmp"), os.path.join(out, "losses.json"))


def main():
  # Here, not at import: the cohort builders' spawned workers import this module too.
  sharding.maybe_initialize_distributed()    # Before any other JAX call.
  print(f"started in {time.monotonic() - STARTED:.1f} s", flush=True)
  for job in json.loads(sys.argv[1]):
    run_job(**job)


if __name__ == "__main__":
  main()
