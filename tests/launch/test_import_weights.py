"""`launch.import_weights`: a checkpoint in EchoNet-Dynamic's published layout becomes
converted encoder weights and a scoring-ready model whose EF equals the PyTorch EF
stored by tests/backbones/make_r2plus1d_references.py (weights regenerated from the seed,
written as the `.npz` state dict the command reads without torch; the PyTorch-file path
is tested where torch is installed)."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from adacon_jax import task as adacon_task
from backbones import torch_import
from launch import import_weights
from tests.backbones import import_reference as ref


def echonet_state_dict():
  data = ref.load("echonet_r2plus1d")
  weights = ref.random_state_dict([str(n) for n in data["names"]],
                                  [s[s >= 0] for s in data["shapes"]], int(data["weight_seed"]))
  weights["fc.bias"] = np.array([torch_import.ECHONET_FC_BIAS], np.float32)
  return data, {f"module.{k}": v for k, v in weights.items()}     # DataParallel's prefix


def scored_ef(out, data):
  config = import_weights.echonet_config(json.loads((out / "import.json").read_text()))
  model = adacon_task.build_model(config.model)
  with np.load(out / import_weights.MODEL_FILE) as z:
    variables = torch_import.unflatten({k: z[k] for k in z.files})
  clip = ref.grey_clip(*data["clip_shape"], seed=int(data["clip_seed"]))[..., None] / 255.0
  pred, _ = jax.jit(lambda v, x: model.apply(v, x))(variables, clip)
  meta = json.loads((out / import_weights.META_FILE).read_text())
  return np.asarray(pred) * meta["ef_std"] + meta["ef_mean"]


def test_echonet_npz_imports_and_scores_like_pytorch(tmp_path):
  data, sd = echonet_state_dict()
  src = tmp_path / "echonet.npz"
  np.savez(src, **sd)
  out = tmp_path / "weights"
  info = import_weights.import_weights("echonet_r2plus1d", str(src), str(out),
                                       pixel_mean=list(data["pixel_mean"]),
                                       pixel_std=list(data["pixel_std"]))
  assert info["encoder"] == "r2plus1d" and info["encoder_kwargs"]["norm"] == "batch"
  for name in ("params.npz", "import.json", "config.json", "meta.json", "model.npz"):
    assert (out / name).is_file()
  ef = scored_ef(out, data)
  err = ref.relative_error(ef, data["ef"])
  print(f"imported EchoNet model: EF {ef} vs PyTorch {data['ef']} (rel. error {err:.1e})")
  assert err <= 1e-4


def test_default_normalisation_is_documented_and_bad_flags_are_named(tmp_path):
  _, sd = echonet_state_dict()
  src = tmp_path / "echonet.npz"
  np.savez(src, **sd)
  info = import_weights.import_weights("echonet_r2plus1d", str(src), str(tmp_path / "w"))
  np.testing.assert_allclose(info["encoder_kwargs"]["pixel_mean"], torch_import.ECHONET_MEAN)
  assert 32 < info["encoder_kwargs"]["pixel_mean"][0] < 33
  with pytest.raises(ValueError, match="pixel_mean"):
    import_weights.import_weights("echonet_r2plus1d", str(src), str(tmp_path / "x"),
                                  pixel_mean=["33"])
  with pytest.raises(ValueError, match=r"expected fc = Linear\(512, 1\)"):
    import_weights.convert("echonet_r2plus1d", {k: v for k, v in sd.items() if "fc" not in k})
  with pytest.raises(FileNotFoundError, match="no such file"):
    import_weights.read_checkpoint(str(tmp_path / "missing.pt"))


def test_pytorch_file_with_weights_only_load(tmp_path):
  torch = pytest.importorskip("torch")
  data, sd = echonet_state_dict()
  src = tmp_path / "r2plus1d_18_32_2_pretrained.pt"
  torch.save({"epoch": 45, "state_dict": {k: torch.from_numpy(v) for k, v in sd.items()},
              "best_loss": 30.0}, src)
  out = tmp_path / "weights"
  import_weights.import_weights("echonet_r2plus1d", str(src), str(out),
                                pixel_mean=list(data["pixel_mean"]),
                                pixel_std=list(data["pixel_std"]))
  assert ref.relative_error(scored_ef(out, data), data["ef"]) <= 1e-4
