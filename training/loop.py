"""The one training loop every method uses (big_vision / flax-examples style).

A method supplies a `Task` (see `training.tasks`); this module owns the rest:
  * state = {"step", "params", "opt_state", "rng"}, a plain pytree;
  * a jit-compiled, donated train step; per-step RNG = fold_in(rng, step);
  * periodic evaluation; checkpoints of the last k steps and of the best
    validation metric (orbax, atomic); automatic resume from WORKDIR;
  * metrics to WORKDIR/metrics.jsonl and TensorBoard; a progress bar with rate/ETA;
  * a NaN/Inf guard that stops naming the step and metric, leaving the last good
    checkpoint untouched;
  * a final evaluation (best checkpoint when there is one) into WORKDIR/metrics.json.
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from training import checkpoint as checkpoint_lib
from training import optim
from training import pretrained as pretrained_lib
from training import sharding as sharding_lib
from training import tasks as tasks_lib
from training import writers


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or Inf."""


def train_step_fn(loss_fn, tx, ema_decay, state, batch):
  """One optimiser step of `loss_fn(params, batch, rng)` on the state pytree, with the
  step's RNG fold_in(rng, step) and the EMA update when the state keeps one; returns
  (new state, metrics). A loss whose metrics hold `batch_stats` (BatchNorm running
  averages updated by the forward pass, backbones.video.apply_train) sets them in the
  new params. The loop jits it with the state donated."""
  rng = jax.random.fold_in(state["rng"], state["step"])
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, rng)
  aux = dict(aux)
  batch_stats = aux.pop("batch_stats", None)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  if batch_stats is not None:
    params = dict(params, batch_stats=jax.lax.stop_gradient(batch_stats))
  metrics = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads))
  new_state = dict(step=state["step"] + 1, params=params, opt_state=opt_state, rng=state["rng"])
  if "ema" in state:
    new_state["ema"] = optax.incremental_update(params, state["ema"], 1.0 - ema_decay)
  return new_state, metrics


def eval_params(state):
  """The parameters to evaluate: the EMA if the run keeps one, else the raw ones."""
  return state.get("ema", state["params"])


def _check_finite(history: list[tuple[int, dict]], last_good: int | None) -> None:
  for step, metrics in history:
    for name in sorted(metrics, key=lambda k: (k != "loss", k)):
      value = metrics[name]
      if not np.all(np.isfinite(value)):
        raise NonFiniteError(
            f"training stopped: metric '{name}' is {np.ravel(value)[0]} at step {step}. "
            f"The last good checkpoint (step {last_good}) is left untouched; lower "
            "config.optim.lr or enable config.optim.grad_clip and resume.")


def _flush(writer, history, last_good, extra=None):
  """Checks and writes the train metrics accumulated since the last flush (plus `extra`,
  host-side numbers such as the window's steps/s)."""
  if not history:
    return {}
  history = jax.device_get(history)
  _check_finite(history, last_good)
  mean = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
  mean.update(extra or {})
  writer.write(history[-1][0], mean, "train")
  return mean


def run_once(fn, *args):
  """fn(*args) for a jitted `fn` run once per process (the parameter init). On CPU it is
  compiled without LLVM's optimisations: for an init's many small kernels they cost 4-10x
  the compile time (pediatric.py:smoke 15 s -> 4 s) and save little at one run; values
  move by float32 rounding (≤ 2e-7 relative, in ~4 % of the entries: fused multiply-adds)."""
  options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
  return fn.lower(*args).compile(compiler_options=options)(*args)


def init_state(task, config, rng, mesh=None, *, abstract: bool = False
               ) -> tuple[dict, optax.GradientTransformation, Any]:
  """The initial state, created directly with its shardings on `mesh` (default: all
  devices), its encoder from config.model.pretrained when set (training.pretrained);
  returns (state, optimiser, state shardings). `abstract`: the state as
  jax.ShapeDtypeStructs with their shardings, nothing computed or read (a template to
  restore a checkpoint into)."""
  mesh = mesh if mesh is not None else sharding_lib.make_mesh()
  if hasattr(task, "optimizer"):   # Its own parameter groups (LaMoD's phases, an encoder's rate).
    tx = task.optimizer(config.num_steps)
  else:
    tx = optim.make_optimizer(config.optim, config.num_steps)
  batch = task.example_batch()
  ema = bool(config.optim.ema_decay)

  def init(rng):
    init_rng, train_rng = jax.random.split(rng)
    params = task.init(init_rng, batch)
    state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                 rng=train_rng)
    if ema:
      state["ema"] = jax.tree.map(jnp.copy, params)
    return state

  shapes = jax.eval_shape(init, rng)
  shardings = sharding_lib.param_sharding(mesh, shapes, config.sharding.shard_params_min_size)
  if abstract:
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, shardings), tx, shardings
  state = run_once(jax.jit(init, out_shardings=shardings), rng)
  if pretrained_lib.source_of(config):
    state = pretrained_lib.apply_to_state(state, config, shardings)
  return state, tx, shardings


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task: Any | None = None) -> dict:
  """Trains `config.task` in `workdir`, resuming if a checkpoint is there.

  Returns the final evaluation metrics (also written to WORKDIR/metrics.json).
  """
  workdir = os.path.abspath(workdir)
  # Checkpoints go to WORKDIR, written by all processes together (orbax); metrics,
  # plots and predictions by process 0 only: the others write theirs (the same
  # numbers, every process evaluates the same global arrays) into a scratch folder.
  scratch = None
  if jax.process_index() == 0:
    out_dir = workdir
  else:
    scratch = tempfile.TemporaryDirectory(prefix=f"process_{jax.process_index()}_")
    out_dir = scratch.name
  os.makedirs(out_dir, exist_ok=True)
  writers.write_json(os.path.join(out_dir, "config.json"), config.to_dict())
  mesh = sharding_lib.make_mesh()
  task = task if task is not None else tasks_lib.make_task(
      config, workdir, mesh=mesh, make_optimizer=optim.make_optimizer)
  sharding_lib.check_batch_size(config.data.batch_size, mesh)
  if jax.device_count() > 1:
    logging.info("data parallel over %d devices (%d processes)", jax.device_count(),
                 jax.process_count())
  ckpt_cfg = config.checkpoint
  ckpts = checkpoint_lib.Checkpoints(workdir, keep=ckpt_cfg.keep,
                                     best_metric=ckpt_cfg.best_metric or None,
                                     best_mode=ckpt_cfg.best_mode)
  start = ckpts.latest_step()
  # Resuming restores into a template: the init is neither compiled nor run.
  state, tx, state_sharding = init_state(task, config, jax.random.key(config.seed), mesh,
                                         abstract=start is not None)
  if start is not None:
    checkpoint_lib.check_same_config(ckpts.meta()["config"], config.to_dict(), workdir)
    state, _ = ckpts.restore(state)
    logging.info("Resumed from %s at step %d", ckpts.last.directory, start)
  start = start or 0
  meta = dict(task.meta(), config=config.to_dict())
  writer = writers.MetricWriter(out_dir, resume_step=start)
  train_step = jax.jit(functools.partial(train_step_fn, task.loss, tx,
                                         config.optim.ema_decay),
                       in_shardings=(state_sharding, sharding_lib.data_sharding(mesh)),
                       out_shardings=(state_sharding, sharding_lib.replicated(mesh)),
                       donate_argnums=0)

  eval_rng = jax.random.key(config.seed + 1)
  batches = task.train_batches(start)
  history: list[tuple[int, dict]] = []
  last_good = start if start else None
  # The bar on a terminal only: in a log file the periodic step line says the same.
  bar = tqdm.tqdm(total=config.num_steps, initial=start, desc="train", unit="step",
                  dynamic_ncols=True, mininterval=1.0, disable=not sys.stderr.isatty())
  t0, s0 = time.time(), start
  tw = t0
  try:
    for step in range(start + 1, config.num_steps + 1):
      state, metrics = train_step(state, sharding_lib.global_batch(next(batches), mesh))
      history.append((step, metrics))
      bar.update(1)
      is_last = step == config.num_steps
      save = step % ckpt_cfg.save_every == 0 or is_last
      evaluate = step % config.eval_every == 0 or is_last
      if step % config.log_every == 0 or save or evaluate:
        # steps_per_s: this window's rate, measured after its steps finished (the first
        # window includes compilation; evaluation and checkpoint time are excluded).
        window = len(history)
        jax.block_until_ready(state["step"])
        now = time.time()
        mean = _flush(writer, history, last_good,
                      dict(steps_per_s=window / max(now - tw, 1e-9)))
        history = []
        rate = (step - s0) / max(now - t0, 1e-9)
        bar.set_postfix(loss=f"{mean['loss']:.4g}")
        logging.info("step %d/%d loss %.5g (%.2f steps/s, ETA %.0f s)", step, config.num_steps,
                     mean["loss"], rate, (config.num_steps - step) / max(rate, 1e-9))
      if evaluate:
        val = task.evaluate(eval_params(state), jax.random.fold_in(eval_rng, step), "val",
                            final=False, workdir=out_dir)
        writer.write(step, val, "val")
        if ckpts.best is not None:
          ckpts.save_best(step, state, meta, val)
      if save:
        ckpts.save(step, state, meta)
        last_good = step
      if not history:
        tw = time.time()
    ckpts.last.wait_until_finished()
    params, used = eval_params(state), "last"
    if ckpts.has_best():
      ckpts.best.wait_until_finished()
      params, used = eval_params(ckpts.restore(state, which="best")[0]), "best"
  finally:
    bar.close()
    writer.close()
    ckpts.close()
    if hasattr(batches, "close"):    # Ends the loader's worker processes now.
      batches.close()
  final = {}
  for split in config.final_eval_splits:
    res = task.evaluate(params, eval_rng, split, final=True, workdir=out_dir)
    final.update({f"{split}/{k}": v for k, v in res.items()})
  final["checkpoint"] = used
  final["step"] = int(config.num_steps)
  writers.write_json(os.path.join(out_dir, "metrics.json"), final)
  if scratch is not None:
    scratch.cleanup()
  return final
