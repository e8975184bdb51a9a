"""Segmentation networks (shapes, gates, Swin windows), sampler, augmentation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segmentation import data as data_lib
from segmentation import models


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_models_output_logits_per_pixel(arch):
  cfg = ml_collections.ConfigDict(dict(arch=arch, width=0.0625, depth=2, window=4,
                                       depths=(2, 2), heads=(1, 2), dtype="float32"))
  net = models.build_model(cfg)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 1))
  both = jnp.concatenate([x, x[::-1]])
  # One compile: init (an 'rbg' key: XLA:CPU compiles threefry's several times slower)
  # and apply on the images and on the same images swapped.
  y = jax.jit(lambda k, b: net.apply(net.init(k, b), b))(jax.random.key(1, impl="rbg"), both)
  assert y.shape == (4, 32, 32, 4)
  assert bool(jnp.all(jnp.isfinite(y)))
  # Per-sample independence (no batch statistics): swapping the images swaps the logits.
  np.testing.assert_allclose(y[2:], y[:2][::-1], rtol=1e-4, atol=1e-5)


def test_width_multiplier_scales_parameters():
  count = lambda w: sum(v.size for v in jax.tree.leaves(jax.eval_shape(
      models.UNet(width=w, depth=2).init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)))))
  # Convolutions dominate: parameters grow about quadratically with the width.
  assert 3.0 < count(0.25) / count(0.125) < 4.5


def test_swin_rejects_indivisible_windows():
  net = models.SwinUNet(width=0.0625, window=7, depths=(2, 2), heads=(1, 2))
  with pytest.raises(ValueError, match="window 7"):
    net.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))   # 16 tokens, window 7


def test_window_partition_roundtrip_and_shift_mask():
  x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
  w = models.window_partition(x, 4)
  assert w.shape == (8, 16, 3)
  np.testing.assert_array_equal(models.window_reverse(w, 4, 8, 8), x)
  np.testing.assert_array_equal(w[0].reshape(4, 4, 3), x[0, :4, :4])
  mask = models.shift_attention_mask(8, 8, 4, 2)
  assert mask.shape == (4, 16, 16)
  assert np.all(mask[0] == 0)              # the top-left window holds one region only
  assert np.any(mask[-1] < 0)              # the wrapped corner window mixes regions
  idx = models.relative_position_index(2)
  np.testing.assert_array_equal(idx, [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])


def test_attention_gate_scales_the_skip():
  gate = models.AttentionGate(4)
  g = jax.random.normal(jax.random.key(0), (1, 8, 8, 6))
  x = jax.random.normal(jax.random.key(1), (1, 8, 8, 6))
  out = jax.jit(lambda k: gate.apply(gate.init(k, g, x), g, x))(jax.random.key(2))
  ratio = out / x
  # One coefficient ψ ∈ (0, 1) per pixel, shared by the channels.
  np.testing.assert_allclose(ratio, jnp.broadcast_to(ratio[..., :1], ratio.shape), rtol=1e-4)
  assert bool(jnp.all((ratio > 0) & (ratio < 1)))


def test_sampler_is_deterministic_and_mixes():
  a, b = np.arange(0, 90), np.arange(90, 100)
  nat = data_lib.MultiSourceSampler([a, b], 8, "natural", 3)
  bal = data_lib.MultiSourceSampler([a, b], 8, "balanced", 3)
  np.testing.assert_array_equal(nat.indices(5), nat.indices(5))
  assert not np.array_equal(nat.indices(5), nat.indices(6))
  frac_nat = np.mean(np.concatenate([nat.indices(t) for t in range(400)]) >= 90)
  frac_bal = np.mean(np.concatenate([bal.indices(t) for t in range(400)]) >= 90)
  assert abs(frac_nat - 0.1) < 0.03                 # proportional to source size
  assert abs(frac_bal - 0.5) < 0.04                 # each source equally often
  with pytest.raises(ValueError, match="config.data.mixing"):
    data_lib.MultiSourceSampler([a], 8, "weighted", 0)


def test_augment_identity_and_label_values():
  rng = np.random.default_rng(0)
  img = jnp.asarray(rng.random((2, 16, 16)), jnp.float32)
  lab = jnp.asarray(rng.integers(0, 4, (2, 16, 16)), jnp.int32)
  off = dict(scale=0.0, rotation_deg=0.0, blur_sigma=0.0, blur_prob=0.0, brightness=0.0, gamma=0.0,
             contrast=0.0)
  x, y = data_lib.augment(jax.random.key(0), img, lab, off)
  np.testing.assert_allclose(x, img, atol=1e-5)
  np.testing.assert_array_equal(y, lab)
  on = dict(scale=0.2, rotation_deg=20.0, blur_sigma=1.0, blur_prob=1.0, brightness=0.1, gamma=0.0,
            contrast=0.2)
  x, y = data_lib.augment(jax.random.key(1), img, lab, on)
  assert set(np.unique(np.asarray(y))) <= {0, 1, 2, 3}    # nearest: no mixed labels
  assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
  # Gamma alone: x = img^γ with one γ per image, 1/1.5 ≤ γ ≤ 1.5, and distinct images' γ differ.
  gam = dict(off, gamma=0.5)
  img_in = jnp.clip(img, 0.05, 0.95)
  x, y = data_lib.augment(jax.random.key(2), img_in, lab, gam)
  np.testing.assert_array_equal(y, lab)
  ratio = np.log(np.asarray(x, np.float64)) / np.log(np.asarray(img_in, np.float64))
  gammas = ratio.reshape(2, -1).mean(1)
  np.testing.assert_allclose(ratio, gammas[:, None, None] * np.ones_like(ratio), rtol=1e-4)
  assert np.all((gammas >= 1 / 1.5 - 1e-6) & (gammas <= 1.5 + 1e-6))
  assert abs(gammas[0] - gammas[1]) > 1e-4
  # A 90° rotation of a centred grid permutes the pixels exactly (clockwise here).
  coords = data_lib.affine_coords(5, 5, 1.0, jnp.pi / 2)
  rot = jax.scipy.ndimage.map_coordinates(jnp.arange(25.0).reshape(5, 5), list(coords), order=0)
  np.testing.assert_array_equal(rot, np.rot90(np.arange(25.0).reshape(5, 5), k=-1))
