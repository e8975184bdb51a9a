"""Atomic, resumable checkpoints with orbax (V0 CheckpointManager API).

Two managers under `WORKDIR/checkpoints/`:
  last/  the latest `keep` checkpoints, written every `save_every` steps (resume point);
  best/  one checkpoint, replaced when the configured validation metric improves.
Each step folder holds the state pytree and a JSON `meta` item (config, fitted
preprocessing, metric values). Orbax writes into a temporary folder and renames it
on commit, so a killed run never leaves a half-written checkpoint that looks valid.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _write_each_array_once() -> None:
  """Registers orbax's jax.Array handler with replica-parallel writing off: each array
  is written by the process holding its first replica instead of being cut into one
  slice per replica (orbax's default off GPU). Every slice is an eagerly compiled op
  per shape and device, so saving pediatric.py:smoke's state over 8 CPU devices cost
  14.7 s (1,330 slices) against 0.3 s; the slices pay only for arrays of many MB
  written by many hosts. orbax 0.12 has no public path to its array metadata store
  (which restores typed PRNG keys); where it moved, orbax's default stays."""
  try:
    from orbax.checkpoint._src.metadata import array_metadata_store  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  absl_logger = logging.getLogger("absl")    # Not its warning that jax.Array is overridden.
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False, array_metadata_store=array_metadata_store.Store()),
        override=True)
  finally:
    absl_logger.setLevel(level)


_write_each_array_once()


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         cleanup_tmp_directories=True)
  # Handlers named up front: item_metadata() then reads the state's array metadata
  # (without them it returns None, and a restore falls back to the saved shardings).
  return ocp.CheckpointManager(directory, options=options, item_handlers=dict(
      state=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler()))


# Config fields that change the shapes or meaning of a checkpoint's state.
STATE_FIELDS = ("task", "model", "data.dataset", "data.attributes", "data.categorical",
                "optim.name", "optim.ema_decay", "diffusion")


_ABSENT = object()


def _leaves(value, prefix: str) -> dict:
  """{'prefix.a.b': leaf} of a nested config dict (lists and tuples compare equal, as
  JSON stores tuples as lists)."""
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      out.update(_leaves(v, f"{prefix}.{k}"))
    return out
  return {prefix: _as_lists(value)}


def _as_lists(value):
  return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _state_leaves(config: dict, fields) -> dict:
  out = {}
  for field in fields:
    parts, d = field.split("."), config
    for part in parts:
      d = d.get(part, _ABSENT) if isinstance(d, dict) else _ABSENT
    if d is not _ABSENT:
      out.update(_leaves(d, field))
  return out


def config_differences(saved: dict, current: dict, fields=STATE_FIELDS) -> list[str]:
  """'field: saved → current' for each state-defining field that both configs have and
  that differs."""
  a, b = _state_leaves(saved, fields), _state_leaves(current, fields)
  return [f"{k}: {a[k]!r} → {b[k]!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def config_additions(saved: dict, current: dict, fields=STATE_FIELDS) -> list[str]:
  """State-defining fields only one config has: added to the code since the checkpoint
  was written ('field = current (not in the saved config)') or since removed."""
  a, b = _state_leaves(saved, fields), _state_leaves(current, fields)
  return ([f"{k} = {b[k]!r} (not in the saved config)" for k in sorted(set(b) - set(a))] +
          [f"{k} (saved {a[k]!r}; no longer a field)" for k in sorted(set(a) - set(b))])


def check_same_config(saved: dict, current: dict, workdir: str) -> None:
  """Raises ValueError naming the differing fields if a checkpoint in `workdir` was
  written by a config whose state differs from `current`. Fields the code gained (or
  lost) since the checkpoint was written cannot be compared: they are logged, and a
  checkpoint whose arrays then do not fit is refused by Checkpoints.restore."""
  diff = config_differences(saved, current)
  if diff:
    raise ValueError(f"{workdir} holds a checkpoint of another config ({'; '.join(diff[:6])}"
                     f"{'; …' if len(diff) > 6 else ''}). Use another --workdir, or the "
                     "config that wrote it.")
  added = config_additions(saved, current)
  if added:
    logging.warning("%s: its checkpoint's config predates these fields (%s); if they change "
                    "the model, set them to what that run used (e.g. --config.FIELD=VALUE)",
                    workdir, "; ".join(added))


class Checkpoints:
  """Last-k and best-by-metric checkpoints of a training state pytree."""

  def __init__(self, workdir: str, *, keep: int = 2, best_metric: str | None = None,
               best_mode: str = "min"):
    if best_mode not in ("min", "max"):
      raise ValueError(f"config.checkpoint.best_mode must be 'min' or 'max', got {best_mode!r}")
    root = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.last = _manager(os.path.join(root, "last"), keep)
    self.best = _manager(os.path.join(root, "best"), 1) if best_metric else None
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.best_value = math.inf if best_mode == "min" else -math.inf
    if self.best is not None and self.best.latest_step() is not None:
      meta = self.best.restore(self.best.latest_step(),
                               args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
      self.best_value = float(meta["metrics"][best_metric])

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    self.last.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def improves(self, metrics: dict) -> bool:
    if self.best is None:
      return False
    if self.best_metric not in metrics:
      raise KeyError(f"config.checkpoint.best_metric={self.best_metric!r} is not among the "
                     f"evaluation metrics {sorted(metrics)}")
    value = float(metrics[self.best_metric])
    if not math.isfinite(value):
      return False
    return value < self.best_value if self.best_mode == "min" else value > self.best_value

  def save_best(self, step: int, state: Any, meta: dict, metrics: dict) -> None:
    """Saves `state` as the best checkpoint if `metrics` improve on the best so far."""
    if not self.improves(metrics):
      return
    self.best_value = float(metrics[self.best_metric])
    meta = dict(meta, metrics={k: float(v) for k, v in metrics.items()
                               if isinstance(v, (int, float)) or getattr(v, "size", 0) == 1})
    self.best.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, template: Any, *, which: str = "last", step: int | None = None):
    """Restores (state, meta) with the dtypes, shapes and shardings of `template`."""
    manager = self.last if which == "last" else self.best
    if manager is None:
      raise ValueError("no best checkpoint: config.checkpoint.best_metric is not set")
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {which!r} checkpoint in {manager.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except ValueError as e:   # Orbax names the arrays whose structure or shape differ.
      raise ValueError(f"{manager.directory}/{step}: the checkpoint's arrays do not fit this "
                       f"config's model (a config field that changes the model, e.g. one "
                       f"added since the run, differs from what wrote it): {e}") from e
    return restored.state, restored.meta

  def restore_arrays(self, which: str = "best", step: int | None = None):
    """(state as saved, on the CPU; meta) without a template: for reading another run's
    parameters (config.model.pretrained), whose task need not be built."""
    manager = self.last if which == "last" else self.best
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {which!r} checkpoint in {manager.directory}")
    metadata = manager.item_metadata(step)["state"]
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu), metadata,
        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def meta(self, which: str = "last", step: int | None = None) -> dict:
    """The JSON meta item of a checkpoint (config, fitted preprocessing, metrics)."""
    manager = self.last if which == "last" else self.best
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {which!r} checkpoint in {manager.directory}")
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def has_best(self) -> bool:
    return self.best is not None and self.best.latest_step() is not None

  def close(self) -> None:
    for manager in (self.last, self.best):
      if manager is not None:
        manager.wait_until_finished()
        manager.close()


def read_run(workdir: str) -> tuple[Any, dict, dict]:
  """(evaluation parameters as saved, on the CPU: the EMA where the run kept one; the
  checkpoint's meta; {"which", "step"}) of a training workdir's best checkpoint, else its
  last, without building its task (another run's weights, a model to score with).
  Raises FileNotFoundError naming `workdir` if it holds no checkpoint."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{workdir}: no checkpoints/ (not a training workdir)")
  with open(os.path.join(workdir, "config.json")) as f:
    best_metric = json.load(f)["checkpoint"]["best_metric"] or None
  ckpts = Checkpoints(workdir, keep=1, best_metric=best_metric)
  try:
    which = "best" if ckpts.has_best() else "last"
    step = (ckpts.best if which == "best" else ckpts.last).latest_step()
    if step is None:
      raise FileNotFoundError(f"{workdir}: its checkpoints/ is empty")
    state, meta = ckpts.restore_arrays(which)
  finally:
    ckpts.close()
  return state.get("ema", state["params"]), meta, {"which": which, "step": int(step)}
