"""Optimisers and learning-rate schedules from `config.optim`."""
from __future__ import annotations

import jax
import optax


def make_schedule(cfg, num_steps: int) -> optax.Schedule:
  warmup = int(cfg.warmup_steps)
  name = cfg.schedule
  if name == "constant":
    main = optax.constant_schedule(cfg.lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(cfg.lr, max(1, num_steps - warmup),
                                       alpha=cfg.min_lr / cfg.lr)
  elif name == "step":
    main = optax.exponential_decay(cfg.lr, transition_steps=cfg.decay_steps,
                                   decay_rate=cfg.decay_rate, staircase=True)
  else:
    raise ValueError(f"config.optim.schedule: unknown schedule {name!r} "
                     "(choose constant, cosine or step)")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), main], [warmup])
  return main


def _base_optimizer(cfg, lr) -> optax.GradientTransformation:
  name = cfg.name
  if name == "adamw":
    tx = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif name == "adam":
    tx = optax.adam(lr)
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov))
  else:
    raise ValueError(f"config.optim.name: unknown optimiser {name!r} (choose adamw, adam or sgd)")
  return tx


def encoder_labels(params, module: str = "encoder"):
  """'encoder' for every leaf under a submodule named `module`, else 'rest'."""
  def label(path, _):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return "encoder" if module in names else "rest"
  return jax.tree_util.tree_map_with_path(label, params)


def frozen_labels(params):
  """'frozen' for every leaf of a Flax variables dict outside its 'params' collection
  (BatchNorm's running statistics, `batch_stats`), else 'train'; a tree without a
  top-level 'params' key is all 'train'."""
  def label(path, _):
    top = getattr(path[0], "key", None) if path else None
    return "frozen" if top is not None and top != "params" else "train"
  if not (isinstance(params, dict) and "params" in params):
    return jax.tree.map(lambda _: "train", params)
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg, num_steps: int, *,
                   pretrained_encoder: bool = False) -> optax.GradientTransformation:
  """AdamW / Adam / SGD (Nesterov optional) with optional global-norm clipping.

  With a pretrained encoder, `cfg.encoder_lr_mult` (0.1 as MCSDR §IV-B) scales
  the schedule of the parameters under the `encoder` submodule (optax.multi_transform);
  a randomly initialised encoder trains at the full rate. Variables outside the
  'params' collection (BatchNorm running statistics) get no update, no weight decay and
  no part in the clipping norm: they are frozen, or set by the forward pass
  (training.loop.train_step_fn, norm_stats='train').
  """
  lr = make_schedule(cfg, num_steps)
  mult = float(cfg.encoder_lr_mult) if pretrained_encoder else 1.0
  if mult == 1.0:
    tx = _base_optimizer(cfg, lr)
  else:
    if mult <= 0:
      raise ValueError(f"config.optim.encoder_lr_mult must be > 0, got {mult}")
    tx = optax.multi_transform(
        {"encoder": _base_optimizer(cfg, lambda step: mult * lr(step)),
         "rest": _base_optimizer(cfg, lr)}, encoder_labels)
  clip = cfg.grad_clip
  tx = optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, frozen_labels)
