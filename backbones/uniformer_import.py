"""PyTorch UniFormer-S weights (Sense-X K400, CoReEcho) → Flax variables for `UniFormerS`.

Torch-free: the state dict arrives as a flat mapping of numpy arrays (a caller that
holds torch tensors converts them with `.numpy()` first), keys as in the published code
(`patch_embed1.proj.weight`, `blocks3.0.attn.qkv.weight`, `norm.running_var`, ...).

The state dict inside a checkpoint file comes from
`backbones.torch_import.checkpoint_state_dict`: CoReEcho's `best.pth` / `last.pth`
({'epoch', 'model', 'regressor', 'best_error'}; part 'model', the regressor is not
converted) or Sense-X's `uniformer_small_k400_16x8.pth` (the flat dict itself).

`variables_from_torch` strips a DataParallel `module.` prefix and converts: Conv3d weight
(O, I/g, kT, kH, kW) → kernel (kT, kH, kW, I/g, O); Linear weight (out, in) → kernel
(in, out); LayerNorm/BatchNorm weight → scale; BatchNorm running_mean/var → batch_stats
mean/var; `num_batches_tracked` dropped. The classification `head.*` (400 classes for
Kinetics, 1 for CoReEcho) is ignored: the EF models read the pooled 512-d feature.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from backbones.torch_import import conv_kernel, dense_kernel, strip_prefix
from backbones.uniformer import UniFormerS

IGNORED_PREFIXES = ("head.",)


def expected_variables(model: UniFormerS | None = None) -> dict[str, Any]:
  """Shapes (jax.ShapeDtypeStruct) of `model`'s variables, by jax.eval_shape (no compute)."""
  model = model or UniFormerS(project=False)
  clip = jax.ShapeDtypeStruct((1, 2, 32, 32, model.in_channels), jnp.float32)
  return jax.eval_shape(lambda c: model.init(jax.random.PRNGKey(0), c), clip)


def _flax_location(key: str) -> tuple[tuple[str, ...], str]:
  """'blocks3.0.attn.qkv.weight' → (('blocks3_0', 'attn', 'qkv'), 'weight')."""
  parts = key.split(".")
  path = []
  i = 0
  while i < len(parts) - 1:
    if parts[i].startswith("blocks") and i + 1 < len(parts) - 1 and parts[i + 1].isdigit():
      path.append(f"{parts[i]}_{parts[i + 1]}")
      i += 2
    else:
      path.append(parts[i])
      i += 1
  return tuple(path), parts[-1]


def _lookup(tree: Mapping[str, Any], path: tuple[str, ...]):
  for p in path:
    if not isinstance(tree, Mapping) or p not in tree:
      return None
    tree = tree[p]
  return tree if isinstance(tree, Mapping) else None


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  """PyTorch layout of a Flax kernel shape (inverse of `_to_flax`)."""
  if len(flax_shape) == 5:
    return tuple(flax_shape[i] for i in (4, 3, 0, 1, 2))
  if len(flax_shape) == 2:
    return flax_shape[::-1]
  return flax_shape


def _to_flax(array: np.ndarray) -> np.ndarray:
  if array.ndim == 5:   # Conv3d (O, I/g, kT, kH, kW) → (kT, kH, kW, I/g, O)
    return conv_kernel(array)
  if array.ndim == 2:   # Linear (out, in) → (in, out)
    return dense_kernel(array)
  return array


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def variables_from_torch(state_dict: Mapping[str, Any], *, project: bool = False,
                         model: UniFormerS | None = None) -> dict[str, dict]:
  """{'params': ..., 'batch_stats': ...} (nested dicts of float32 numpy arrays) for
  `UniFormerS(project=project)` from a flat PyTorch UniFormer state dict.

  A 'module.' prefix is stripped; `num_batches_tracked` and `head.*` are ignored. With
  `project=True` the Dense 'proj' has no PyTorch counterpart and is left out: take it
  from the model's own init. `model` gives other dims/depths (default UniFormer-S, 3
  input channels). Raises ValueError naming every missing or unexpected key, and a
  shape mismatch naming the key with the given and the expected PyTorch shapes.
  """
  del project  # the converted tree is the same; with project=True 'proj' comes from init
  model = model or UniFormerS(project=False)
  expected = expected_variables(model.clone(project=False, features=model.dims[-1]))
  params_shape, stats_shape = expected["params"], expected.get("batch_stats", {})
  out = {"params": {}, "batch_stats": {}}
  unexpected, mismatched, mismatched_keys = [], [], set()
  for key, value in strip_prefix(state_dict).items():
    if key.endswith(".num_batches_tracked") or key.startswith(IGNORED_PREFIXES):
      continue
    path, leaf = _flax_location(key)
    if leaf in ("running_mean", "running_var"):
      collection, module = "batch_stats", _lookup(stats_shape, path)
      name = "mean" if leaf == "running_mean" else "var"
    else:
      collection, module = "params", _lookup(params_shape, path)
      if leaf == "weight":
        name = "kernel" if module is not None and "kernel" in module else "scale"
      else:
        name = leaf
    if module is None or name not in module:
      unexpected.append(key)
      continue
    array = np.asarray(value, dtype=np.float32)
    want = tuple(module[name].shape)
    if array.ndim != len(want) or _to_flax(array).shape != want:
      mismatched.append(f"{key}: got {tuple(array.shape)}, expected {_torch_shape(want)}")
      mismatched_keys.add(key)
      continue
    _set(out[collection], path + (name,), np.ascontiguousarray(_to_flax(array)))
  missing = []
  for collection, shapes in (("params", params_shape), ("batch_stats", stats_shape)):
    got = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(out[collection])}
    for p, _ in jax.tree_util.tree_leaves_with_path(shapes):
      torch_key = _torch_key([k.key for k in p])
      if jax.tree_util.keystr(p) not in got and torch_key not in mismatched_keys:
        missing.append(torch_key)
  problems = []
  if mismatched:
    problems.append("shape mismatch: " + "; ".join(mismatched))
  if missing:
    problems.append(f"missing keys: {sorted(missing)}")
  if unexpected:
    problems.append(f"unexpected keys: {sorted(unexpected)}")
  if problems:
    raise ValueError("UniFormer state dict does not fit UniFormerS: " + " | ".join(problems))
  return out


def _torch_key(path: list[str]) -> str:
  """The PyTorch key of a Flax leaf, for messages: ('blocks1_0', 'norm1', 'scale') →
  'blocks1.0.norm1.weight'."""
  *modules, leaf = path
  names = [m.replace("_", ".") if m.startswith("blocks") else m for m in modules]
  leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
          "var": "running_var"}.get(leaf, leaf)
  return ".".join(names + [leaf])
