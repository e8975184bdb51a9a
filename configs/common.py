"""Defaults shared by every config; each experiment file edits a copy."""
from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = ""
  c.seed = 42
  c.num_steps = 1000
  c.log_every = 50
  c.eval_every = 250
  c.final_eval_splits = ("val", "test")

  c.optim = ml_collections.ConfigDict(dict(
      name="adamw", lr=3e-4, weight_decay=1e-5, schedule="cosine", min_lr=1e-6,
      warmup_steps=0, momentum=0.9, nesterov=False, grad_clip=0.0, decay_steps=1000,
      decay_rate=0.1))
  c.checkpoint = ml_collections.ConfigDict(dict(
      save_every=250, keep=2, best_metric="mae", best_mode="min"))
  return c


def synthetic_data(dataset: str, num_subjects: int, seed: int = 0) -> ml_collections.ConfigDict:
  """`root` empty = the built-in synthetic cohort, generated on first use into
  `cache_dir` (empty = $CARDIAC_DATA_CACHE or ~/.cache/cardiac_jax)."""
  return ml_collections.ConfigDict(dict(
      dataset=dataset, root="", cache_dir="",
      synthetic=ml_collections.ConfigDict(dict(num_subjects=num_subjects, seed=seed))))
