"""Label sets per source, and on-the-fly label dropout (Islam et al., MELBA 2026, §4.1, §5.3).

Classes are {0 bg, 1 LV, 2 LVM, 3 LA}. Every sample carries `label_set`, bool[4] with
bg always true: the structures its reader says are annotated (L_k of §4.1, plus
background; `cardiac_data.seg_frames`).
A structure outside the set is unlabelled: its pixels are stored as background.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CLASSES = ("bg", "lv", "lvm", "la")
STRUCTURES = CLASSES[1:]
NUM_CLASSES = len(CLASSES)

def label_set(structures) -> np.ndarray:
  """bool[4] with background and the named structures."""
  unknown = [s for s in structures if s not in STRUCTURES]
  if unknown:
    raise ValueError(f"unknown structure(s) {unknown}; known: {list(STRUCTURES)}")
  return np.array([True] + [s in structures for s in STRUCTURES])


def withhold(labels, label_sets):
  """Labels with every class outside its sample's set turned into background.

  labels: int (B, H, W); label_sets: bool (B, C). Works on numpy and jax arrays.
  """
  xp = jnp if isinstance(labels, jax.Array) else np
  b = xp.arange(labels.shape[0])[:, None, None]
  return xp.where(label_sets[b, labels], labels, 0)


def label_dropout(rng, labels, label_sets, p: float, droppable):
  """Label dropout (§5.3): per image and per droppable class, with probability p the
  class is set to background and removed from the image's label set. Only images
  that annotate the class are affected (the partially labelled class of fully
  labelled images). Returns (labels, label_sets).

  droppable: bool (C,), the partially labelled classes (never background).
  """
  droppable = jnp.asarray(droppable, bool).at[0].set(False)
  drop = jax.random.bernoulli(rng, p, label_sets.shape) & droppable[None] & label_sets
  b = jnp.arange(labels.shape[0])[:, None, None]
  labels = jnp.where(drop[b, labels], 0, labels)
  return labels, label_sets & ~drop


def partially_labelled(label_sets) -> np.ndarray:
  """bool (C,): classes annotated by some but not all of the given label sets."""
  s = np.asarray(label_sets, bool)
  return s.any(0) & ~s.all(0)


def fill_absent(labels, pred, label_sets, full_sets):
  """Pseudo-labels (§5.2): the teacher's prediction `pred` fills only the pixels stored as
  background (`labels` == 0) where it predicts a class absent from the image's label set
  but in its domain's full set; every annotated pixel and every present class is kept.
  labels, pred: int (B, H, W); label_sets, full_sets: bool (B, C). Returns new labels
  (numpy)."""
  labels, pred = np.asarray(labels), np.asarray(pred)
  absent = np.asarray(full_sets, bool) & ~np.asarray(label_sets, bool)
  absent[:, 0] = False
  fill = (labels == 0) & absent[np.arange(len(labels))[:, None, None], pred]
  return np.where(fill, pred, labels).astype(labels.dtype)
