"""Writes tests/backbones/data/{torchvision_r2plus1d,echonet_r2plus1d}.npz: outputs of
torchvision's own `r2plus1d_18` (PyTorch, float32, eval mode) on a seeded grey clip with
seeded random weights, for the torch-free equivalence tests of the weight import
(tests/backbones/test_torch_import.py). Run once, with torch and torchvision installed:

  python tests/backbones/make_r2plus1d_references.py

Only key names, shapes, seeds and outputs are stored (a few kB); the tests regenerate
the weights and the clip from the seeds (import_reference.py).
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from launch import import_weights  # pylint: disable=wrong-import-position
from tests.backbones import import_reference as ref  # pylint: disable=wrong-import-position

torch = import_weights.optional_torch(purpose="making the R(2+1)D references")
torchvision = import_weights.optional_torch("torchvision", "making the R(2+1)D references")

KINETICS_MEAN = np.array([0.43216, 0.394666, 0.37645]) * 255
KINETICS_STD = np.array([0.22803, 0.22145, 0.216989]) * 255
ECHONET_MEAN = np.array([0.12741163, 0.1279413, 0.12912785]) * 255
ECHONET_STD = np.array([0.19557191, 0.19562256, 0.1965878]) * 255
CLIP = (2, 8, 64, 64)       # B, T, H, W (grey)


def names_and_shapes(model):
  sd = model.state_dict()
  names = list(sd)
  shapes = np.full((len(names), 5), -1, np.int64)
  for i, n in enumerate(names):
    shapes[i, :sd[n].dim()] = tuple(sd[n].shape)
  return names, shapes


def load(model, names, shapes, seed, **overrides):
  weights = ref.random_state_dict(names, [s[s >= 0] for s in shapes], seed)
  weights.update(overrides)
  model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()},
                        strict=True)
  return model.eval()


def run(model, clip_255, mean, std):
  """(pooled 512-d feature, head output) of a grey 0..255 clip (B, T, H, W) replicated to
  RGB and standardised per channel, as (B, 3, T, H, W)."""
  x = np.repeat(clip_255[:, None], 3, axis=1)
  x = (x - mean[None, :, None, None, None]) / std[None, :, None, None, None]
  x = torch.from_numpy(x.astype(np.float32))
  with torch.no_grad():
    h = model.stem(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
      h = layer(h)
    pooled = model.avgpool(h).flatten(1)
    out = model.fc(pooled)
    np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
  return pooled.numpy(), out.numpy()


def main():
  torch.set_num_threads(2)
  clip_seed = 7
  clip = ref.grey_clip(*CLIP, seed=clip_seed)
  common = dict(clip_seed=clip_seed, clip_shape=np.array(CLIP), torch_version=torch.__version__,
                torchvision_version=torchvision.__version__)

  tv = torchvision.models.video.r2plus1d_18(weights=None)
  names, shapes = names_and_shapes(tv)
  load(tv, names, shapes, seed=1)
  pooled, logits = run(tv, clip, KINETICS_MEAN, KINETICS_STD)
  print("torchvision_r2plus1d:", ref.save("torchvision_r2plus1d", names=np.array(names),
        shapes=shapes, weight_seed=1, pixel_mean=KINETICS_MEAN, pixel_std=KINETICS_STD,
        pooled=pooled, logits=logits, **common))

  en = torchvision.models.video.r2plus1d_18(weights=None)
  en.fc = torch.nn.Linear(en.fc.in_features, 1)
  names, shapes = names_and_shapes(en)
  load(en, names, shapes, seed=2, **{"fc.bias": np.array([55.6], np.float32)})
  pooled, ef = run(en, clip, ECHONET_MEAN, ECHONET_STD)
  print("echonet_r2plus1d:", ref.save("echonet_r2plus1d", names=np.array(names),
        shapes=shapes, weight_seed=2, pixel_mean=ECHONET_MEAN, pixel_std=ECHONET_STD,
        pooled=pooled, ef=ef[:, 0], **common))
  print("EchoNet EF on the clip:", ef[:, 0])


if __name__ == "__main__":
  main()
