"""Multi-source data for partial-label segmentation (Islam et al., MELBA 2026, §4.4, §5).

The images come from `cardiac_data.seg_frames.load_domains` (the datasets' layouts).

* `assign_label_sets`: per-image label sets: the set its reader gives the image, less
  the structures withheld in training/validation (all images of the domain, or a
  seeded fraction of its patients: §5.2 removes LVM from 50 % of CAMUS).
* `MultiSourceSampler`: batch indices for step t from default_rng([seed, t]), so a
  resumed run sees the same batches; mixing 'natural' (uniform over all training
  images) or 'balanced' (a source uniformly, then an image of it).
* `augment`: on-the-fly augmentation in JAX, per image (vmap): scaling and rotation
  about the centre (bilinear image, nearest labels), Gaussian blur, brightness and
  contrast (§4.4), and optionally a gamma curve u ↦ u^γ, log γ ~ U(±log(1 + gamma))
  (nnU-Net's intensity augmentation; cfg 'gamma', 0 = off).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from segmentation import labels as labels_lib

MIXING = ("natural", "balanced")


def assign_label_sets(data: dict, data_cfg, seed: int) -> dict:
  """{split: bool (N, C)}: the label set of each image when used in that split.

  Test images keep their reader's set (`data['label_set']`); train/val images lose
  data_cfg.withheld[domain] on a fraction data_cfg.withheld_fraction[domain] (default
  1) of their patients (seeded, so ED and ES of a patient agree). Domains are
  `data['domains']` (names), indexed by `data['domain']`.
  """
  full = np.asarray(data["label_set"], bool)
  partial = full.copy()
  names = list(data["domains"])
  withheld = dict(data_cfg.withheld)
  fractions = dict(data_cfg.withheld_fraction)
  unknown = [d for d in list(withheld) + list(fractions) if d not in data_cfg.sources]
  if unknown:
    raise ValueError(f"config.data.withheld: unknown domain(s) {unknown}; known: "
                     f"{sorted(data_cfg.sources)}")
  for name, drop in withheld.items():
    if not drop or name not in names:
      continue
    d = names.index(name)
    rows = data["domain"] == d
    keep = labels_lib.label_set([s for s in labels_lib.STRUCTURES if s not in tuple(drop)])
    frac = float(fractions.get(name, 1.0))
    if not 0.0 <= frac <= 1.0:
      raise ValueError(f"config.data.withheld_fraction[{name!r}] must be in [0, 1], got {frac}")
    patients = np.unique(data["patient"][rows])
    rng = np.random.default_rng([seed, 17, d])
    chosen = patients[rng.permutation(len(patients))[:int(round(frac * len(patients)))]]
    hit = rows & np.isin(data["patient"], chosen)
    partial[hit] &= keep
  return {"train": partial, "val": partial, "test": full}


class MultiSourceSampler:
  """Batch indices per step (module docstring); `sources` are index arrays."""

  def __init__(self, sources, batch_size: int, mixing: str, seed: int):
    if mixing not in MIXING:
      raise ValueError(f"config.data.mixing: {mixing!r} is not one of {MIXING}")
    self.sources = [np.asarray(s) for s in sources if len(s)]
    if not self.sources:
      raise ValueError("no training images in any source")
    self.all = np.concatenate(self.sources)
    self.batch_size, self.mixing, self.seed = int(batch_size), mixing, int(seed)

  def indices(self, step: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, 29, int(step)])
    if self.mixing == "natural":
      return self.all[rng.integers(0, len(self.all), self.batch_size)]
    which = rng.integers(0, len(self.sources), self.batch_size)
    return np.array([self.sources[k][rng.integers(0, len(self.sources[k]))] for k in which])


def affine_coords(h: int, w: int, scale, angle):
  """Source (row, col) coordinates of an output grid rotated by `angle` and zoomed by
  `scale` about the image centre."""
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  y, x = (yy - cy) / scale, (xx - cx) / scale
  c, s = jnp.cos(angle), jnp.sin(angle)
  return jnp.stack([c * y - s * x + cy, s * y + c * x + cx])


def _blur(img, sigma):
  """Separable Gaussian blur (7 taps) of an (H, W) image; sigma ≥ 1e-3."""
  t = jnp.arange(-3, 4, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (t / jnp.maximum(sigma, 1e-3))**2)
  k = k / k.sum()
  pad = jnp.pad(img, 3, mode="edge")
  rows = jax.vmap(lambda r: jnp.convolve(r, k, mode="valid"))(pad)
  return jax.vmap(lambda col: jnp.convolve(col, k, mode="valid"), in_axes=1, out_axes=1)(rows)


def augment_one(rng, image, label, cfg):
  """One image (H, W) in [0, 1] and its labels (H, W)."""
  ks = jax.random.split(rng, 6)
  h, w = image.shape
  scale = jnp.exp(jax.random.uniform(ks[0], (), minval=-1, maxval=1) * jnp.log(1 + cfg["scale"]))
  angle = jnp.deg2rad(jax.random.uniform(ks[1], (), minval=-1, maxval=1) * cfg["rotation_deg"])
  coords = affine_coords(h, w, scale, angle)
  image = jax.scipy.ndimage.map_coordinates(image, list(coords), order=1, mode="constant")
  label = jax.scipy.ndimage.map_coordinates(label, list(coords), order=0, mode="constant")
  sigma = jax.random.uniform(ks[2], (), minval=0.0, maxval=cfg["blur_sigma"])
  blurred = _blur(image, sigma)
  image = jnp.where(jax.random.bernoulli(ks[3], cfg["blur_prob"]), blurred, image)
  g = float(cfg["gamma"])
  if g > 0:            # its own key (fold_in), so the other draws do not depend on it
    log_gamma = jax.random.uniform(jax.random.fold_in(rng, 7), (), minval=-1, maxval=1)
    image = jnp.maximum(image, 0.0)**jnp.exp(log_gamma * jnp.log1p(g))
  bright = jax.random.uniform(ks[4], (), minval=-1, maxval=1) * cfg["brightness"]
  contrast = 1.0 + jax.random.uniform(ks[5], (), minval=-1, maxval=1) * cfg["contrast"]
  mean = jnp.mean(image)
  image = jnp.clip((image - mean) * contrast + mean + bright, 0.0, 1.0)
  return image, label


def augment(rng, images, labels, cfg: dict):
  """Batch augmentation: images (B, H, W) in [0, 1], labels (B, H, W) int."""
  keys = jax.random.split(rng, images.shape[0])
  return jax.vmap(lambda k, x, y: augment_one(k, x, y, cfg))(keys, images, labels)
