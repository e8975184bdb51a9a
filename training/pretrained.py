"""`config.model.pretrained`: initialise a model's video encoder from converted published
weights or from another run.

The source is a folder, either
  * converted weights (`python -m launch.import_weights`): `params.npz` (the encoder's
    Flax variables, `params/...` and `batch_stats/...`, '/'-joined paths) and
    `import.json` (the format, and the encoder options the weights need); or
  * a training workdir: the encoder under its best checkpoint's parameters (else its
    last; the EMA when the run kept one).
The encoder is the unique submodule named `encoder` (backbones.video.make_video_encoder)
in each variable collection. Every source leaf must exist in the model with the same
shape (else ValueError naming each mismatch); model leaves the source lacks (a new
projection `proj`, say) keep their random initialisation and are logged.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from backbones import torch_import
from training import checkpoint as checkpoint_lib

ENCODER = "encoder"
CONVERTED = "params.npz"
IMPORT_INFO = "import.json"
INPUT_SCALING = ("pixel_mean", "pixel_std")


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  return torch_import.flatten(tree, prefix) if tree else {}


def encoder_paths(variables: Mapping[str, Any]) -> dict[str, str]:
  """{collection: '/'-path of the unique `encoder` submodule in it} of a variables dict."""
  out = {}
  for collection, tree in variables.items():
    found = []

    def walk(node, path):
      if not isinstance(node, Mapping):
        return
      for k, v in node.items():
        if k == ENCODER:
          found.append(path + [k])
        else:
          walk(v, path + [k])
    walk(tree, [])
    if len(found) > 1:
      raise ValueError(f"config.model.pretrained: several '{ENCODER}' submodules in "
                       f"{collection}: {['/'.join(f) for f in found]}")
    if found:
      out[collection] = "/".join(found[0])
  return out


def _subtree(tree, path: str):
  for part in path.split("/"):
    tree = tree[part]
  return tree


def read_source(source: str) -> tuple[dict[str, np.ndarray], dict]:
  """(flat encoder variables {'params/...': array, 'batch_stats/...': array}, info) of a
  converted-weights folder or a workdir."""
  source = os.path.expanduser(source)
  if not os.path.isdir(source):
    raise FileNotFoundError(f"config.model.pretrained={source!r}: no such folder (converted "
                            "weights from `python -m launch.import_weights`, or a workdir)")
  converted = os.path.join(source, CONVERTED)
  if os.path.isfile(converted):
    with np.load(converted, allow_pickle=False) as z:
      flat = {k: z[k] for k in z.files}
    info_path = os.path.join(source, IMPORT_INFO)
    info = {}
    if os.path.isfile(info_path):
      with open(info_path) as f:
        info = json.load(f)
    return flat, dict(info, source="converted weights")
  if not os.path.isdir(os.path.join(source, "checkpoints")):
    raise FileNotFoundError(f"config.model.pretrained={source!r}: neither {CONVERTED} "
                            "(converted weights) nor checkpoints/ (a workdir) in it")
  params, meta, used = checkpoint_lib.read_run(source)
  which = used["which"]
  variables = jax.tree.map(np.asarray, params)
  paths = encoder_paths(variables)
  if "params" not in paths:
    raise ValueError(f"config.model.pretrained={source!r}: its {which} checkpoint has no "
                     f"'{ENCODER}' submodule")
  flat = {}
  for collection, path in paths.items():
    flat.update(_flat(_subtree(variables[collection], path), collection))
  encoder_cfg = {k: meta["config"]["model"][k] for k in ("encoder", "encoder_kwargs",
                                                          "features")
                 if k in meta.get("config", {}).get("model", {})}
  return flat, {"source": f"{which} checkpoint of a run", **encoder_cfg}


def _same(a, b) -> bool:
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
    return np.isclose(float(a), float(b), rtol=1e-6, atol=0.0)
  return a == b


def check_options(model_cfg, info: Mapping[str, Any], source: str) -> None:
  """Raises ValueError naming each encoder option (config.model.encoder, features,
  encoder_kwargs.*) where the config differs from what the source's weights need (the
  layers); a different input standardisation (`INPUT_SCALING`) is logged as a warning,
  since a config may depart from it on purpose."""
  if "encoder" not in info:
    return
  diffs = []
  for field in ("encoder", "features"):
    if field in info and not _same(model_cfg[field], info[field]):
      diffs.append(f"config.model.{field}: {model_cfg[field]!r}, the weights need "
                   f"{info[field]!r}")
  kwargs = model_cfg.encoder_kwargs
  for key, want in dict(info.get("encoder_kwargs", {})).items():
    have = kwargs[key] if key in kwargs else None
    if key == "norm_stats" or _same(have, want):   # Frozen or trained: the user's choice.
      continue
    if key in INPUT_SCALING:
      logging.warning("config.model.encoder_kwargs.%s is %r; the weights %s were trained "
                      "with %r. The config's is used (the published EchoNet, AdaCon and "
                      "MCSDR codes also depart from their weights' input standardisation)",
                      key, have, source, want)
      continue
    diffs.append(f"config.model.encoder_kwargs.{key}: {have!r}, the weights need {want!r}")
  if diffs:
    raise ValueError(f"config.model.pretrained={source!r} ({info.get('format', info.get('source'))}"
                     f"): " + "; ".join(diffs))


def load_encoder(variables: Mapping[str, Any], source: str, model_cfg=None) -> dict:
  """`variables` (a Flax variables dict) with its encoder replaced by `source`'s; with
  `model_cfg` (config.model), its encoder options are checked against the source's."""
  flat_src, info = read_source(source)
  if model_cfg is not None:
    check_options(model_cfg, info, source)
  paths = encoder_paths(variables)
  if "params" not in paths:
    raise ValueError(f"config.model.pretrained is set but the model has no '{ENCODER}' "
                     "submodule")
  model_flat = {}
  for collection, path in paths.items():
    model_flat.update(_flat(_subtree(variables[collection], path), collection))
  hint = ""
  if "encoder_kwargs" in info:
    hint = (f" The source was made with encoder {info.get('encoder')!r}, encoder_kwargs "
            f"{info['encoder_kwargs']}: set config.model.encoder / encoder_kwargs to match.")
  unknown = sorted(set(flat_src) - set(model_flat))
  mismatched = [f"{k}: source {flat_src[k].shape} vs model {tuple(model_flat[k].shape)}"
                for k in sorted(set(flat_src) & set(model_flat))
                if tuple(flat_src[k].shape) != tuple(model_flat[k].shape)]
  if unknown or mismatched:
    raise ValueError(f"config.model.pretrained={source!r} does not fit the model's encoder: "
                     + "; ".join(mismatched[:6] + [f"{k}: not in the model" for k in unknown[:6]])
                     + ("; …" if len(unknown) + len(mismatched) > 12 else "") + "." + hint)
  fresh = sorted(set(model_flat) - set(flat_src))
  if fresh:
    logging.info("config.model.pretrained: %d encoder leaves keep their random "
                 "initialisation (not in the source): %s", len(fresh), ", ".join(fresh[:6]))
  logging.info("config.model.pretrained: encoder initialised from %s (%s, %d arrays)",
               source, info.get("source"), len(flat_src))

  def replace(collection, path, tree):
    if isinstance(tree, Mapping):
      return {k: replace(collection, f"{path}/{k}" if path else k, v) for k, v in tree.items()}
    key = f"{collection}/{path}"
    return flat_src[key].astype(tree.dtype) if key in flat_src else tree

  out = dict(variables)
  for collection, path in paths.items():
    sub = replace(collection, "", _subtree(variables[collection], path))
    out[collection] = _set(variables[collection], path.split("/"), sub)
  return out


def _set(tree, parts, value):
  if not parts:
    return value
  return {**tree, parts[0]: _set(tree[parts[0]], parts[1:], value)}


def source_of(config) -> str:
  """config.model.pretrained, or '' where the config has no such field (LaMoD, ...)."""
  if "model" in config and "pretrained" in config.model:
    return str(config.model.pretrained)
  return ""


def apply_to_state(state: dict, config, shardings) -> dict:
  """The initial training state with the encoder of `params` (and `ema`) from
  config.model.pretrained, placed with `shardings` (the optimiser state does not depend
  on the values)."""
  params = load_encoder(jax.device_get(state["params"]), source_of(config), config.model)
  state = dict(state, params=params)
  if "ema" in state:
    state["ema"] = params
  return jax.device_put(state, shardings)
