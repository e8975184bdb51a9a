"""PyTorch state dicts of published video networks → Flax variables (torch-free).

`launch.import_weights` reads a checkpoint with torch (or a `.npz` of its state dict)
and calls the functions here, which take numpy arrays keyed as in PyTorch:

* `r2plus1d_variables`: torchvision's `r2plus1d_18` (Kinetics-400) and EchoNet-Dynamic's
  EF model (the same network, `fc` replaced by Linear(512, 1)) → variables of
  `backbones.r2plus1d.R2Plus1D18(norm='batch', project=False)` and the `fc` as a Dense.
* `checkpoint_state_dict`: the state dict inside a published checkpoint file
  (EchoNet's {'state_dict': ...} saved from `torch.nn.DataParallel` with `module.`
  prefixes, CoReEcho's {'model': ..., 'regressor': ...}, or a flat dict).

Layouts: PyTorch Conv3d (O, I, kT, kH, kW) → Flax (kT, kH, kW, I, O); Linear (out, in) →
Dense (in, out); BatchNorm weight/bias/running_mean/running_var → params scale/bias and
batch_stats mean/var (`num_batches_tracked` dropped). Missing or unexpected keys and
shape mismatches raise ValueError naming them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

FORMATS = ("torchvision_r2plus1d", "echonet_r2plus1d", "coreecho_uniformer")

#: Kinetics-400 input of torchvision's video models: [0, 1] frames, this mean / std
#: (torchvision/transforms/_presets.py), given here in 0..255 units.
KINETICS_MEAN = tuple(255.0 * m for m in (0.43216, 0.394666, 0.37645))
KINETICS_STD = tuple(255.0 * s for s in (0.22803, 0.22145, 0.216989))
#: EchoNet-Dynamic's per-channel statistics are computed from its training split at run
#: time and not stored in the checkpoint; these (0..255 units) are the values CoReEcho
#: hard-codes for EchoNet-Dynamic (coreecho/dataset.py), the ones users of the published
#: model report (≈ 32.5 / ≈ 49.9). `launch.import_weights --pixel_mean/--pixel_std`.
ECHONET_MEAN = tuple(255.0 * m for m in (0.12741163, 0.1279413, 0.12912785))
ECHONET_STD = tuple(255.0 * s for s in (0.19557191, 0.19562256, 0.1965878))
#: EchoNet-Dynamic initialises its 512 → 1 EF head's bias to this (echonet/utils/video.py).
ECHONET_FC_BIAS = 55.6


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
  """`state_dict` with `prefix` removed from every key that has it (DataParallel)."""
  return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def checkpoint_state_dict(obj: Mapping[str, Any], part: str = "model") -> dict[str, Any]:
  """The network's state dict inside a loaded checkpoint, `module.` stripped.

  EchoNet: {'state_dict': ..., 'epoch', 'period', 'frames', ...}; CoReEcho: {'model':
  encoder, 'regressor': head, ...} (`part` picks one); anything whose values are arrays is
  a flat state dict already (torchvision, Sense-X)."""
  if not isinstance(obj, Mapping):
    raise ValueError(f"checkpoint: expected a dict, got {type(obj).__name__}")
  for key in ("state_dict", part):
    if key in obj and isinstance(obj[key], Mapping):
      return strip_prefix(obj[key])
  if obj and all(hasattr(v, "shape") for v in obj.values()):
    return strip_prefix(obj)
  raise ValueError(f"checkpoint: no state dict found (keys: {sorted(obj)[:12]}); expected "
                   f"'state_dict' (EchoNet), '{part}' (CoReEcho) or a flat state dict")


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Conv3d weight (O, I, kT, kH, kW) → Flax kernel (kT, kH, kW, I, O)."""
  return np.transpose(np.asarray(w, np.float32), (2, 3, 4, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Linear weight (out, in) → Flax Dense kernel (in, out)."""
  return np.transpose(np.asarray(w, np.float32))


class _Reader:
  """Takes keys out of a state dict, recording which were used and checking shapes."""

  def __init__(self, state_dict: Mapping[str, Any], what: str):
    self.sd = {k: np.asarray(v) for k, v in state_dict.items()
               if not k.endswith("num_batches_tracked")}
    self.what = what
    self.used: set[str] = set()
    self.missing: list[str] = []

  def get(self, key: str, ndim: int) -> np.ndarray | None:
    if key not in self.sd:
      self.missing.append(key)
      return None
    self.used.add(key)
    value = self.sd[key]
    if value.ndim != ndim:
      raise ValueError(f"{self.what}: {key} has shape {value.shape}, expected {ndim} dims")
    return value

  def check(self, ignore: tuple[str, ...] = ()) -> None:
    unexpected = sorted(k for k in set(self.sd) - self.used if not k.startswith(ignore))
    if self.missing or unexpected:
      raise ValueError(f"{self.what}: state dict does not match: missing "
                       f"{self.missing[:8]}{' …' if len(self.missing) > 8 else ''}, "
                       f"unexpected {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")


def _conv(r: _Reader, key: str):
  w = r.get(f"{key}.weight", 5)
  return None if w is None else {"kernel": conv_kernel(w)}


def _bn(r: _Reader, key: str, params: dict, stats: dict, name: str) -> None:
  scale, bias = r.get(f"{key}.weight", 1), r.get(f"{key}.bias", 1)
  mean, var = r.get(f"{key}.running_mean", 1), r.get(f"{key}.running_var", 1)
  if any(x is None for x in (scale, bias, mean, var)):
    return
  params[name] = {"scale": scale.astype(np.float32), "bias": bias.astype(np.float32)}
  stats[name] = {"mean": mean.astype(np.float32), "var": var.astype(np.float32)}


def r2plus1d_variables(state_dict: Mapping[str, Any], stage_blocks=(2, 2, 2, 2)
                       ) -> tuple[dict, dict | None]:
  """torchvision `r2plus1d_18` keys → ({'params', 'batch_stats'} of
  `R2Plus1D18(norm='batch', project=False)`, the `fc` as {'kernel', 'bias'} or None).

  Key map: stem.0/1/3/4 → stem_spatial, stem_norm1, stem_temporal, stem_norm2;
  layerL.B.conv{1,2}.0.{0,1,3} → layerL_(B)/conv{1,2}/{spatial, mid_norm, temporal};
  layerL.B.conv{1,2}.1 → norm{1,2}; layerL.B.downsample.{0,1} → down_conv, down_norm.
  """
  r = _Reader(state_dict, "r2plus1d_18 state dict")
  params: dict = {}
  stats: dict = {}

  def conv(key, name, into):
    c = _conv(r, key)
    if c is not None:
      into[name] = c

  conv("stem.0", "stem_spatial", params)
  _bn(r, "stem.1", params, stats, "stem_norm1")
  conv("stem.3", "stem_temporal", params)
  _bn(r, "stem.4", params, stats, "stem_norm2")
  for layer, n_blocks in enumerate(stage_blocks, start=1):
    for b in range(n_blocks):
      src, name = f"layer{layer}.{b}", f"layer{layer}_{b}"
      p, s = params.setdefault(name, {}), stats.setdefault(name, {})
      for i in (1, 2):
        cp, cs = p.setdefault(f"conv{i}", {}), s.setdefault(f"conv{i}", {})
        conv(f"{src}.conv{i}.0.0", "spatial", cp)
        _bn(r, f"{src}.conv{i}.0.1", cp, cs, "mid_norm")
        conv(f"{src}.conv{i}.0.3", "temporal", cp)
        _bn(r, f"{src}.conv{i}.1", p, s, f"norm{i}")
      if f"{src}.downsample.0.weight" in r.sd:
        conv(f"{src}.downsample.0", "down_conv", p)
        _bn(r, f"{src}.downsample.1", p, s, "down_norm")
  fc = None
  if "fc.weight" in r.sd:
    fc = {"kernel": dense_kernel(r.get("fc.weight", 2)), "bias": np.asarray(
        r.get("fc.bias", 1), np.float32)}
  r.check()
  return {"params": params, "batch_stats": stats}, fc


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  """{'a/b/c': array} of a nested dict (the `.npz` layout of converted weights)."""
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, path))
    else:
      out[path] = np.asarray(v)
  return out


def unflatten(flat: Mapping[str, Any]) -> dict:
  """Inverse of `flatten`."""
  out: dict = {}
  for path, v in flat.items():
    node = out
    parts = path.split("/")
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = v
  return out
