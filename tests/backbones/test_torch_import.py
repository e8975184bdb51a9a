"""Weight import from PyTorch (backbones.torch_import): torchvision's r2plus1d_18 and
EchoNet-Dynamic's EF model give the same outputs in Flax as in PyTorch.

The PyTorch outputs were computed once by tests/backbones/make_r2plus1d_references.py
(torchvision 0.29 / torch 2.14) with seeded random weights on a seeded grey clip; here the
weights and the clip are regenerated from the seeds (no torch, no download)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backbones import r2plus1d
from backbones import torch_import
from tests.backbones import import_reference as ref

TOLERANCE = 2e-5     # relative, float32; tighter than the 1e-4 (measured ≤ 4e-7 on CPU)


def reference(name):
  data = ref.load(name)
  shapes = [s[s >= 0] for s in data["shapes"]]
  weights = ref.random_state_dict([str(n) for n in data["names"]], shapes,
                                  int(data["weight_seed"]))
  clip = ref.grey_clip(*data["clip_shape"], seed=int(data["clip_seed"]))
  return data, weights, clip


def flax_r2plus1d(variables, clip_255, data):
  model = r2plus1d.R2Plus1D18(features=512, norm="batch", project=False, in_channels=3,
                              pixel_mean=tuple(data["pixel_mean"]),
                              pixel_std=tuple(data["pixel_std"]))
  video = jnp.asarray(clip_255[..., None] / 255.0)      # the pipeline's grey x/255 clip
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, video))


@pytest.fixture(scope="module")
def torchvision_case():
  data, weights, clip = reference("torchvision_r2plus1d")
  variables, fc = torch_import.r2plus1d_variables(weights)
  return data, variables, fc, flax_r2plus1d(variables, clip, data)


def test_torchvision_r2plus1d_features_and_logits_match_pytorch(torchvision_case):
  data, _, fc, pooled = torchvision_case
  err = ref.relative_error(pooled, data["pooled"])
  logits = pooled @ fc["kernel"] + fc["bias"]
  err_logits = ref.relative_error(logits, data["logits"])
  print(f"torchvision r2plus1d_18: pooled rel. error {err:.2e}, logits {err_logits:.2e}")
  assert err <= TOLERANCE and err_logits <= TOLERANCE
  assert np.std(data["pooled"]) > 1e-3        # the reference is not degenerate


def test_converted_tree_matches_the_flax_module(torchvision_case):
  _, variables, _, _ = torchvision_case
  model = r2plus1d.R2Plus1D18(features=512, norm="batch", project=False, in_channels=3)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4, 32, 32, 1)))
  got = jax.tree.map(lambda a: a.shape, variables)
  want = jax.tree.map(lambda s: s.shape, shapes)
  assert got == want
  n = sum(a.size for a in jax.tree.leaves(variables["params"]))
  # torchvision's published count less the 400-class fc (512·400 + 400).
  assert n == 31_505_325 - (512 * 400 + 400)


def test_echonet_checkpoint_reproduces_echonet_ef():
  data, weights, clip = reference("echonet_r2plus1d")
  weights["fc.bias"] = np.array([torch_import.ECHONET_FC_BIAS], np.float32)   # as the script
  # As released: {'state_dict': ...} saved from DataParallel ('module.' prefixes).
  checkpoint = {"epoch": 45, "state_dict": {f"module.{k}": v for k, v in weights.items()}}
  variables, fc = torch_import.r2plus1d_variables(torch_import.checkpoint_state_dict(checkpoint))
  pooled = flax_r2plus1d(variables, clip, data)
  ef = pooled @ fc["kernel"][:, 0] + fc["bias"][0]
  err_pooled = ref.relative_error(pooled, data["pooled"])
  err_ef = ref.relative_error(ef, data["ef"])
  print(f"EchoNet r2plus1d_18: pooled rel. error {err_pooled:.2e}, EF {err_ef:.2e} "
        f"(EF {ef} vs {data['ef']})")
  assert err_pooled <= TOLERANCE and err_ef <= TOLERANCE
  np.testing.assert_allclose(ef, data["ef"], atol=1e-3)


def test_bad_state_dicts_are_named():
  _, weights, _ = reference("torchvision_r2plus1d")
  missing = dict(weights)
  del missing["layer3.1.conv2.0.3.weight"]
  with pytest.raises(ValueError, match="layer3.1.conv2.0.3.weight"):
    torch_import.r2plus1d_variables(missing)
  extra = dict(weights, **{"layer5.0.weight": np.zeros((3,), np.float32)})
  with pytest.raises(ValueError, match="unexpected.*layer5.0.weight"):
    torch_import.r2plus1d_variables(extra)
  with pytest.raises(ValueError, match="no state dict found"):
    torch_import.checkpoint_state_dict({"epoch": 3, "loss": 1.0})


def test_flatten_round_trip():
  tree = {"params": {"a": {"kernel": np.ones((2, 3))}}, "batch_stats": {"a": {"mean": np.zeros(3)}}}
  flat = torch_import.flatten(tree)
  assert sorted(flat) == ["batch_stats/a/mean", "params/a/kernel"]
  back = torch_import.unflatten(flat)
  assert jax.tree.map(np.shape, back) == jax.tree.map(np.shape, tree)
