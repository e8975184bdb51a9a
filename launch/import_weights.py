"""Converts a published PyTorch checkpoint to Flax weights that `config.model.pretrained`
loads (and, for EchoNet's EF model, to a model `launch.predict` scores with no training).

  python -m launch.import_weights --format=torchvision_r2plus1d --src=r2plus1d_18-91a641e6.pth \\
      --out=weights/kinetics_r2plus1d
  python -m launch.import_weights --format=echonet_r2plus1d --src=r2plus1d_18_32_2_pretrained.pt \\
      --out=weights/echonet_r2plus1d --trust_pickle
  python -m launch.import_weights --format=coreecho_uniformer --src=best.pth --out=weights/coreecho

Formats (backbones.torch_import.FORMATS):
  torchvision_r2plus1d  torchvision's r2plus1d_18 state dict (Kinetics-400; [0, 1] RGB
                        frames standardised by the Kinetics mean/std).
  echonet_r2plus1d      EchoNet-Dynamic's EF checkpoint ({'state_dict': ...} with
                        DataParallel's `module.` prefixes, fc = Linear(512, 1)); input
                        0..255 frames standardised per channel by --pixel_mean/--pixel_std
                        (EchoNet computes them from its training split and does not store
                        them; default: the values CoReEcho uses, ≈ 32.5 / ≈ 49.9).
  coreecho_uniformer    CoReEcho's UniFormer-S ({'model': ..., 'regressor': ...} or a
                        flat UniFormer state dict such as Sense-X's Kinetics file).

--src is a PyTorch file (.pt, .pth, .pth.tar: needs torch, `pip install -r
requirements-import.txt`) or a `.npz` of the state dict's arrays under their PyTorch key
names (no torch needed). torch.load runs with weights_only=True; checkpoints that pickle
other objects (EchoNet's stores numpy scalars) need --trust_pickle, for files you trust.

Writes into --out: params.npz (the encoder's Flax variables), import.json (format, source
SHA-256, the encoder options the weights need); for echonet_r2plus1d also a scoring-ready
model: config.json (configs/adacon_dynamic.py:full,mse with this encoder), model.npz and
meta.json (EF standardisation mean 0 / SD 1: the network outputs EF in percent).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from typing import Any, Mapping

from absl import app
from absl import flags
from absl import logging
import numpy as np

from backbones import torch_import
from launch import logs

MODEL_FILE = "model.npz"
META_FILE = "meta.json"


def _define_flags():
  flags.DEFINE_enum("format", None, list(torch_import.FORMATS), "Checkpoint format.")
  flags.DEFINE_string("src", None, "The PyTorch checkpoint (.pt/.pth) or a .npz state dict.")
  flags.DEFINE_string("out", None, "Output folder (config.model.pretrained=OUT).")
  flags.DEFINE_list("pixel_mean", None, "Per-channel input mean, 0..255 units (default: "
                    "the format's published normalisation).")
  flags.DEFINE_list("pixel_std", None, "Per-channel input SD, 0..255 units.")
  flags.DEFINE_bool("trust_pickle", False, "torch.load with weights_only=False (trusted "
                    "files only: a pickle can run code).")
  flags.mark_flags_as_required(["format", "src", "out"])


def _to_numpy(obj):
  if hasattr(obj, "detach"):                  # a torch tensor
    return obj.detach().cpu().numpy()
  if isinstance(obj, Mapping):
    return {k: _to_numpy(v) for k, v in obj.items()}
  return obj


def optional_torch(package: str = "torch", purpose: str = "reading a PyTorch file"):
  """The optional PyTorch package `package` ('torch', 'torchvision'), imported here only:
  the one place the codebase imports PyTorch (the weight import, and the scripts that
  made its test references); training, sampling and prediction never call it."""
  try:
    return importlib.import_module(package)
  except ImportError:
    raise ImportError(f"{purpose} needs {package} (`pip install -r requirements-import.txt`"
                      f"{', and torchvision' if package == 'torchvision' else ''})") from None


def read_checkpoint(path: str, *, trust_pickle: bool = False) -> dict[str, Any]:
  """The checkpoint at `path` as nested dicts of numpy arrays (torch only for .pt/.pth)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--src={path}: no such file")
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  torch = optional_torch(purpose=f"--src={path}: reading a PyTorch file (or pass the state "
                                "dict as .npz)")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
  except Exception as e:  # pylint: disable=broad-except
    if trust_pickle or "weights_only" not in str(e):
      raise
    raise ValueError(f"--src={path}: this checkpoint pickles objects besides tensors; if "
                     "you trust the file, add --trust_pickle") from None
  return _to_numpy(obj)


def default_normalisation(fmt: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
  if fmt == "torchvision_r2plus1d":
    return torch_import.KINETICS_MEAN, torch_import.KINETICS_STD
  return torch_import.ECHONET_MEAN, torch_import.ECHONET_STD


def encoder_options(fmt: str, mean, std) -> dict[str, Any]:
  """config.model.encoder / encoder_kwargs / features the converted weights need."""
  common = dict(norm_stats="frozen", project=False, in_channels=3, pixel_mean=list(mean),
                pixel_std=list(std))
  if fmt == "coreecho_uniformer":
    return dict(encoder="uniformer", features=512, encoder_kwargs=common)
  return dict(encoder="r2plus1d", features=512,
              encoder_kwargs=dict(width=1.0, norm="batch", **common))


def convert(fmt: str, checkpoint: Mapping[str, Any]) -> tuple[dict, dict | None]:
  """(encoder variables {'params', 'batch_stats'}, the EF head {'kernel', 'bias'} or None)."""
  if fmt == "coreecho_uniformer":
    from backbones import uniformer_import  # pylint: disable=g-import-not-at-top
    sd = torch_import.checkpoint_state_dict(checkpoint, part="model")
    return uniformer_import.variables_from_torch(sd), None
  variables, fc = torch_import.r2plus1d_variables(torch_import.checkpoint_state_dict(checkpoint))
  if fmt == "echonet_r2plus1d":
    if fc is None or fc["kernel"].shape != (512, 1):
      raise ValueError(f"echonet_r2plus1d: expected fc = Linear(512, 1), got "
                       f"{None if fc is None else fc['kernel'].shape[::-1]}")
    return variables, fc
  return variables, None


def echonet_config(options: Mapping[str, Any]):
  """The config of the scoring-ready EchoNet model: AdaCon's regression-only arm (what
  EchoNet trains: MSE on EF) with the imported encoder, 32 frames every 2nd at 112²."""
  from configs import adacon_dynamic  # pylint: disable=g-import-not-at-top
  c = adacon_dynamic.get_config("full,mse")
  c.model.encoder = options["encoder"]
  c.model.features = options["features"]
  c.model.encoder_kwargs = dict(options["encoder_kwargs"])
  c.model.dtype = "float32"
  c.model.pretrained = ""             # The weights are in model.npz already.
  c.data.sampling = "clip"
  return c


def scoring_variables(config, encoder: Mapping[str, Any], fc: Mapping[str, Any]) -> dict:
  """Variables of the AdaCon network of `config` with the imported encoder and EF head;
  the projection head (unused for EF) is drawn at random (seed 0)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from adacon_jax import task as adacon_task  # pylint: disable=g-import-not-at-top
  model = adacon_task.build_model(config.model)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4, 32, 32, 1)))
  rng = np.random.RandomState(0)
  proj = jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(np.float32),
                      shapes["params"]["projection"])
  out = {"params": {"encoder": encoder["params"], "regression": dict(fc), "projection": proj},
         "batch_stats": {"encoder": encoder["batch_stats"]}}
  got = jax.tree.map(np.shape, out)
  want = jax.tree.map(lambda s: s.shape, shapes)
  if got != want:
    raise ValueError("echonet_r2plus1d: the converted tree does not fit the scoring model")
  return out


def import_weights(fmt: str, src: str, out: str, *, pixel_mean=None, pixel_std=None,
                   trust_pickle: bool = False) -> dict[str, Any]:
  """Converts `src` into `out` (see the module doc); returns import.json's content."""
  if fmt not in torch_import.FORMATS:
    raise ValueError(f"--format={fmt!r}: choose one of {torch_import.FORMATS}")
  mean, std = default_normalisation(fmt)
  if pixel_mean is not None:
    mean = tuple(float(v) for v in pixel_mean)
  if pixel_std is not None:
    std = tuple(float(v) for v in pixel_std)
  if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
    raise ValueError(f"--pixel_mean/--pixel_std: need 3 values each (RGB, 0..255 units), SD "
                     f"> 0; got {mean} / {std}")
  checkpoint = read_checkpoint(src, trust_pickle=trust_pickle)
  encoder, fc = convert(fmt, checkpoint)
  options = encoder_options(fmt, mean, std)
  os.makedirs(out, exist_ok=True)
  with open(src, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  info = dict(format=fmt, source_file=os.path.basename(src), source_sha256=digest, **options,
              num_arrays=len(torch_import.flatten(encoder)))
  _atomic_savez(os.path.join(out, "params.npz"), torch_import.flatten(encoder))
  if fc is not None:
    config = echonet_config(options)
    _atomic_savez(os.path.join(out, MODEL_FILE),
                  torch_import.flatten(scoring_variables(config, encoder, fc)))
    _write_json(os.path.join(out, META_FILE),
                {"ef_mean": 0.0, "ef_std": 1.0, "model": config.model.to_dict(),
                 "dataset": config.data.dataset, "imported": fmt})
    _write_json(os.path.join(out, "config.json"), config.to_dict())
    info["scoring_model"] = MODEL_FILE
  _write_json(os.path.join(out, "import.json"), info)
  logging.info("wrote %s (%d arrays) from %s", out, info["num_arrays"], src)
  return info


def _atomic_savez(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_libraries()
  f = flags.FLAGS
  info = import_weights(f.format, f.src, f.out, pixel_mean=f.pixel_mean, pixel_std=f.pixel_std,
                        trust_pickle=f.trust_pickle)
  print(f"Wrote {f.out}. Train from it with --config.model.pretrained={f.out} and a config "
        f"whose encoder matches (the 'full' variants do; checked when training starts):\n"
        f"  model.encoder={info['encoder']!r}, model.features={info['features']}, "
        f"model.encoder_kwargs={info['encoder_kwargs']}")
  if "scoring_model" in info:
    print(f"Score videos with it:\n  python -m launch.predict --workdir={f.out} "
          "--videos=DIR --out=predictions.csv")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
