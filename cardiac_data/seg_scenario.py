"""The multi-domain segmentation scenario file (`ROOT/scenario.npz`) and its facts.

Arrays (one row per image): image uint8 (N, S, S), label uint8 (N, S, S) {0 bg, 1 LV,
2 LVM, 3 LA} (full labels; a task withholds per its config), domain int8 (index into
DOMAINS), patient int32, view int8 (0 2CH, 1 4CH), phase int8 (0 ED, 1 ES), split int8
(index into SPLITS), spacing_mm float32. The built-in scenario
(`cardiac_data.synthetic.seg_domains`) writes it; `load_scenario` reads it (no pickle).
"""
from __future__ import annotations

import pathlib

import numpy as np

DOMAINS = ("camus", "unity", "echonet")
SPLITS = ("train", "val", "test")
KEYS = ("image", "label", "domain", "patient", "view", "phase", "split", "spacing_mm")
NUM_CLASSES = 4
#: Structures each domain's dataset annotates (CAMUS all; Unity LV, LVM, LA; EchoNet LV).
DOMAIN_LABELS = {"camus": (1, 2, 3), "unity": (1, 2, 3), "echonet": (1,)}


def load_scenario(root) -> dict:
  """The arrays of ROOT/scenario.npz, checked (names, row counts, label range)."""
  path = pathlib.Path(root) / "scenario.npz"
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no scenario file (write one with "
                            "`python -m launch.synthesize --dataset=seg_domains`)")
  with np.load(path, allow_pickle=False) as z:
    missing = [k for k in KEYS if k not in z.files]
    if missing:
      raise ValueError(f"{path}: missing array(s) {missing}")
    out = {k: np.asarray(z[k]) for k in KEYS}
  n = len(out["image"])
  bad = [k for k in KEYS if len(out[k]) != n]
  if bad:
    raise ValueError(f"{path}: arrays {bad} do not have {n} rows like 'image'")
  if out["label"].max(initial=0) >= NUM_CLASSES:
    raise ValueError(f"{path}: label values must be < {NUM_CLASSES}")
  return out
