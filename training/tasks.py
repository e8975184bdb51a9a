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
                                         target statistics), so a checkpoint is usable alone.
"""
from __future__ import annotations

import importlib

# config.task -> "module:factory"; factories take (config, workdir).
REGISTRY = {
    "ef_regression": "mcsdr_jax.task:EFRegressionTask",
    "segmentation": "segmentation.task:SegmentationTask",
    "lamod": "lamod_jax.task:LaMoDTask",
    "adacon": "adacon_jax.task:AdaConTask",
}


def make_task(config, workdir: str):
  name = config.task
  if name not in REGISTRY:
    raise ValueError(f"config.task: unknown task {name!r}; known: {sorted(REGISTRY)}")
  module, factory = REGISTRY[name].split(":")
  return getattr(importlib.import_module(module), factory)(config, workdir)
