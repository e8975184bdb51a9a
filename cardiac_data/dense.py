"""Reader of DENSE samples in the StrainNet layout (scipy.io; MATLAB 5 .mat, no pickle).

  ROOT/data/<split>/<id>/input.mat   'input': (1, H, W, T) binary myocardium mask (uint8)
  ROOT/data/<split>/<id>/label.mat   'label': (2, H, W, T) Lagrangian displacement, pixels,
                                     channel 0 = x (columns), 1 = y (rows)
  ROOT/ground_truth.json             (synthetic cohorts) RV insertion angle, Ecc curves

Split folders: StrainNet distributes `data/train/` and `data/test_cine/` and no `val/`;
`role_folders` maps roles (train/val/test) to folder names, and carves validation from
training by a seeded split of the sample ids when no val folder is named (each sample id
is taken as one subject: the layout names no subject). `ground_truth.json` is optional
(`read_ground_truth(required=False)`): without an RV insertion angle a sample's
segmental strain cannot be placed (see lamod_jax.task).

Arrays come back time-first, as the JAX code uses them: mask (T, H, W) uint8 and
displacement (T, 2, H, W) float32. MATLAB v7.3 (HDF5) files are not read.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Mapping

import numpy as np
import scipy.io

from cardiac_data.errors import DataFormatError


@dataclasses.dataclass
class DenseSample:
  """One slice: `mask` (T, H, W) uint8, `displacement` (T, 2, H, W) float32, `id`."""
  id: str
  mask: np.ndarray
  displacement: np.ndarray


def _load(path: pathlib.Path, key: str) -> np.ndarray:
  if not path.is_file():
    raise DataFormatError(path, "missing file")
  try:
    data = scipy.io.loadmat(str(path), variable_names=[key])
  except (ValueError, NotImplementedError, OSError) as e:
    raise DataFormatError(path, f"not a readable MATLAB 5 .mat file ({e})") from e
  if key not in data:
    raise DataFormatError(path, f"no variable {key!r}")
  return np.asarray(data[key])


def _read_input(folder: pathlib.Path) -> np.ndarray:
  mask = _load(folder / "input.mat", "input")
  if mask.ndim != 4 or mask.shape[0] != 1:
    raise DataFormatError(folder / "input.mat", f"'input' must be (1, H, W, T), got {mask.shape}")
  if not np.all(np.isin(mask, (0, 1))):
    raise DataFormatError(folder / "input.mat", "mask values must be 0 or 1")
  return mask


def read_mask(folder) -> np.ndarray:
  """The input.mat mask sequence (T, H, W) uint8 of one sample folder, label.mat not read
  (it may be absent: unlabelled cine scans for registration pre-training)."""
  return np.transpose(_read_input(pathlib.Path(folder))[0], (2, 0, 1)).astype(np.uint8)


def read_sample(folder) -> DenseSample:
  """Reads input.mat and label.mat of one sample folder, with shape and value checks."""
  folder = pathlib.Path(folder)
  mask = _read_input(folder)
  label = _load(folder / "label.mat", "label")
  if label.ndim != 4 or label.shape[0] != 2:
    raise DataFormatError(folder / "label.mat",
                          f"'label' must be (2, H, W, T), got {label.shape}")
  if label.shape[1:] != mask.shape[1:]:
    raise DataFormatError(folder, f"label grid {label.shape[1:]} differs from input grid "
                          f"{mask.shape[1:]} (H, W, T)")
  if not np.all(np.isfinite(label)):
    raise DataFormatError(folder / "label.mat", "non-finite displacement")
  return DenseSample(folder.name, np.transpose(mask[0], (2, 0, 1)).astype(np.uint8),
                     np.transpose(label, (3, 0, 1, 2)).astype(np.float32))


def split_folders(root, split: str) -> list[pathlib.Path]:
  """Sample folders of ROOT/data/<split>, sorted by name."""
  base = pathlib.Path(root) / "data" / split
  if not base.is_dir():
    raise DataFormatError(base, "no such split folder (expected ROOT/data/<split>/<id>/)")
  folders = sorted(p for p in base.iterdir() if p.is_dir())
  if not folders:
    raise DataFormatError(base, "no sample folders")
  return folders


def read_split(root, split: str) -> list[DenseSample]:
  return [read_sample(f) for f in split_folders(root, split)]


ROLES = ("train", "val", "test")


def frame_indices(num_frames: int, frames: int) -> np.ndarray:
  """`frames` indices spread evenly over 0..num_frames−1 (0 first, the last frame last).
  A sequence shorter than `frames` is resampled to it by nearest frames (some repeat): a
  25-frame cine scan under `full`'s 40 frames (the paper resamples cine to 40 frames)."""
  if frames < 2 or num_frames < 2:
    raise ValueError(f"config.data.frames must be >= 2 and a sequence needs >= 2 frames, "
                     f"got frames={frames} for a sequence of {num_frames}")
  return np.round(np.linspace(0, num_frames - 1, frames)).astype(int)


def role_folders(root, folders: Mapping[str, str], *, val_fraction: float,
                 seed: int) -> dict[str, list[pathlib.Path]]:
  """{role: sample folders} for train/val/test from `folders` (role → folder name under
  ROOT/data/). An empty 'val' carves round(val_fraction · n) (at least 1) of the
  training samples, chosen by a seeded permutation of their sorted ids, into val."""
  unknown = sorted(set(folders) - set(ROLES))
  if unknown:
    raise ValueError(f"split folders: unknown role(s) {unknown}; roles: {list(ROLES)}")
  for role in ("train", "test"):
    if not folders.get(role):
      raise ValueError(f"split folders: the {role!r} role needs a folder name")
  out = {role: split_folders(root, folders[role]) for role in ROLES if folders.get(role)}
  if "val" not in out:
    if not 0.0 < float(val_fraction) < 1.0:
      raise ValueError(f"val_fraction must be in (0, 1) to carve validation from training, "
                       f"got {val_fraction}")
    train = out["train"]
    if len(train) < 2:
      raise DataFormatError(pathlib.Path(root) / "data" / folders["train"],
                            "fewer than 2 training samples: no validation can be carved")
    k = max(1, int(round(float(val_fraction) * len(train))))
    perm = np.random.default_rng([int(seed), 41]).permutation(len(train))
    val = set(perm[:k].tolist())
    out["val"] = [f for i, f in enumerate(train) if i in val]
    out["train"] = [f for i, f in enumerate(train) if i not in val]
  return {role: out[role] for role in ROLES}


def read_ground_truth(root, required: bool = True) -> dict[str, dict]:
  """ground_truth.json subjects keyed by id (RV insertion angle in degrees, Ecc curves);
  {} when the file is absent and not `required` (StrainNet's layout has none)."""
  path = pathlib.Path(root) / "ground_truth.json"
  if not path.is_file():
    if not required:
      return {}
    raise DataFormatError(path, "missing (the RV insertion angle per subject comes from it)")
  try:
    rows = json.loads(path.read_text())["subjects"]
  except (ValueError, KeyError) as e:
    raise DataFormatError(path, f"not a ground-truth file with a 'subjects' list ({e})") from e
  out = {}
  for i, row in enumerate(rows):
    for key in ("subject", "rv_insertion_deg"):
      if key not in row:
        raise DataFormatError(path, f"subject entry {i} lacks {key!r}")
    out[str(row["subject"])] = row
  return out
