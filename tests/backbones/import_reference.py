"""Torch-free pieces of the weight-import equivalence tests.

A reference file `tests/backbones/data/<name>.npz` is written once by a committed script
that runs the published PyTorch model (tests/backbones/make_*_references.py, needs torch).
It stores the state-dict key names and shapes, the seeds, and the PyTorch outputs, never
the weights: the weights are regenerated here from the seed with numpy's legacy
`RandomState`, whose stream numpy keeps stable across versions, so the test runs in CI
without torch and without downloading anything.
"""
from __future__ import annotations

import pathlib

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent / "data"


def random_state_dict(names, shapes, seed: int) -> dict[str, np.ndarray]:
  """Plausible float32 weights in PyTorch layout, by key name: conv/linear weights
  normal·√(2 / fan_in); biases normal·0.05; norm scales uniform(0.8, 1.2); running
  means normal·0.1, running variances uniform(0.5, 1.5); `num_batches_tracked` 0."""
  rng = np.random.RandomState(seed)
  out = {}
  for name, shape in zip(names, shapes):
    shape = tuple(int(s) for s in shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
      out[name] = np.zeros(shape, np.int64)
    elif leaf == "running_mean":
      out[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    elif leaf == "running_var":
      out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    elif leaf == "weight" and len(shape) == 1:          # a norm's scale
      out[name] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
    elif leaf == "weight":
      fan_in = int(np.prod(shape[1:]))
      out[name] = (np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)).astype(np.float32)
    else:                                                 # biases
      out[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
  return out


def grey_clip(batch: int, frames: int, height: int, width: int, seed: int) -> np.ndarray:
  """A smooth random grey clip (B, T, H, W), 0..255 integers as float32: an echo-like
  dark background with bright blobs, so the networks see structure, not white noise."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
  out = np.zeros((batch, frames, height, width))
  for b in range(batch):
    for _ in range(4):
      cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
      amp, phase = rng.uniform(80, 200), rng.uniform(0, 2 * np.pi)
      for t in range(frames):
        rt = r * (1 + 0.2 * np.sin(phase + 2 * np.pi * t / frames))
        out[b, t] += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rt ** 2))
  out += rng.uniform(0, 20, out.shape)
  return np.clip(np.round(out), 0, 255).astype(np.float32)


def relative_error(actual, expected) -> float:
  """max |actual − expected| / max |expected|."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def load(name: str) -> dict[str, np.ndarray]:
  with np.load(DATA / f"{name}.npz", allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def save(name: str, **arrays) -> pathlib.Path:
  DATA.mkdir(parents=True, exist_ok=True)
  path = DATA / f"{name}.npz"
  np.savez_compressed(path, **arrays)
  return path
