"""Two training phases in one optimiser: registration pre-training, then joint training.

LaMoD (§3, §4.2) first trains the registration network (E_R, D_R) alone, then trains
ε_θ and D_η (and here the regression baseline) with E_R frozen. `phase_gate` runs an
inner optax transformation only on steps first ≤ count < last: elsewhere the updates
are exactly zero and the inner state (Adam moments, its step count) is left as it was,
so a frozen group does not drift by momentum or weight decay, and a group that starts
late starts with fresh moments and a schedule counted from its first step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

REGISTRATION_MODULES = ("reg_encoder", "reg_decoder")


class GateState(NamedTuple):
  count: jax.Array
  inner: optax.OptState


def phase_gate(inner: optax.GradientTransformation, first: int,
               last: int | None = None) -> optax.GradientTransformation:
  """`inner` active for optimiser steps first ≤ count < last (last None: no end)."""

  def init(params):
    return GateState(jnp.zeros((), jnp.int32), inner.init(params))

  def update(updates, state, params=None):
    new_updates, new_inner = inner.update(updates, state.inner, params)
    active = state.count >= first
    if last is not None:
      active = active & (state.count < last)
    updates = jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), new_updates)
    kept = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_inner, state.inner)
    return updates, GateState(state.count + 1, kept)

  return optax.GradientTransformation(init, update)


def group_labels(params):
  """'registration' for leaves under E_R / D_R, 'joint' for everything else."""
  def label(path, _):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return "registration" if any(n in REGISTRATION_MODULES for n in names) else "joint"
  return jax.tree_util.tree_map_with_path(label, params)


def two_phase(registration: optax.GradientTransformation, joint: optax.GradientTransformation,
              pretrain_steps: int, freeze_registration: bool = True
              ) -> optax.GradientTransformation:
  """Registration group on steps [0, pretrain_steps) (and after, unless frozen); the
  joint group from pretrain_steps on."""
  return optax.multi_transform(
      {"registration": phase_gate(registration, 0,
                                  pretrain_steps if freeze_registration else None),
       "joint": phase_gate(joint, pretrain_steps)}, group_labels)
