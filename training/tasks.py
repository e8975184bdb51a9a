"""What a method gives the shared loop, and the registry of methods by config name.

A task is an object with:
  example_batch() -> batch               a host batch (dict of numpy arrays) for init;
  init(rng, batch) -> params             Flax params;
  loss(params, batch, rng) -> (loss, metrics)   pure and jit-able;
  train_batches(start_step) -> iterator  deterministic in (config.seed, step), so a
                                         resumed run sees the batches it would have seen;
  evaluate(params, rng, split, *, final, workdir) -> dict of floats
                                         (final=True also writes plots into workdir);
  meta() -> dict                         JSON-serialisable fitted preprocessing saved
                                         with every checkpoint (attribute scalers,
                                         target statistics), so a checkpoint is usable alone;
and optionally
  optimizer(num_steps) -> optax transform  its own parameter groups (LaMoD's phases);
                                         otherwise the loop builds one from config.optim.

A task never imports this package: its constructor, `Task(config, workdir, *, mesh,
make_optimizer)`, receives what it needs from the loop: the device mesh (sharded
sampling) and the optimiser factory `make_optimizer(optim_cfg, num_steps, *,
pretrained_encoder=False)`
(`training.optim.make_optimizer`). Compositions across method packages are made here,
the one layer above them: the MCSDR task with the AdaCon plug-in
(config.model.adacon.weight > 0).
"""
from __future__ import annotations

import functools
import importlib

# config.task -> "module:factory"; factories take (config, workdir, *, mesh, make_optimizer).
REGISTRY = {
    "ef_regression": "training.tasks:ef_regression_task",
    "segmentation": "segmentation.task:SegmentationTask",
    "lamod": "lamod_jax.task:LaMoDTask",
    "adacon": "adacon_jax.task:AdaConTask",
}

#: Tasks that can be built from a checkpoint's meta alone (`make_task(fitted=...)`).
SCORABLE = ("ef_regression", "adacon")


def ef_regression_task(config, workdir: str, **context):
  """MCSDR (or its deterministic baseline), with the AdaCon plug-in when
  config.model.adacon.weight > 0."""
  from adacon_jax import plugin  # pylint: disable=g-import-not-at-top
  from mcsdr_jax import task  # pylint: disable=g-import-not-at-top
  make_plugin = None
  if plugin.enabled(config.model.adacon) and context.get("fitted") is None:
    make_plugin = functools.partial(plugin.AdaConPlugin.fit, config.model.adacon)
  return task.EFRegressionTask(config, workdir, make_plugin=make_plugin, **context)


def make_task(config, workdir: str, *, mesh=None, make_optimizer=None, fitted=None):
  """The task of config.task, given the loop's mesh and optimiser factory (defaults:
  all devices, `training.optim.make_optimizer`). `fitted`: a checkpoint's task meta;
  the EF tasks then score with it and read no data (launch.predict)."""
  name = config.task
  if name not in REGISTRY:
    raise ValueError(f"config.task: unknown task {name!r}; known: {sorted(REGISTRY)}")
  if mesh is None:
    from training import sharding  # pylint: disable=g-import-not-at-top
    mesh = sharding.make_mesh()
  if make_optimizer is None:
    from training import optim  # pylint: disable=g-import-not-at-top
    make_optimizer = optim.make_optimizer
  module, factory = REGISTRY[name].split(":")
  extra = {}
  if fitted is not None:
    if name not in SCORABLE:
      raise ValueError(f"config.task={name!r}: scoring from a checkpoint alone is for the EF "
                       f"tasks {SCORABLE}")
    extra["fitted"] = fitted
  return getattr(importlib.import_module(module), factory)(
      config, workdir, mesh=mesh, make_optimizer=make_optimizer, **extra)
