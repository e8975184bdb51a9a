"""config.model.latent_norm: E_R's standardisation of z against a float64 numpy one."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import lamod_dense
from lamod_jax import networks
from lamod_jax import task as task_lib


def encode(norm, params=None, seed=0):
  enc = networks.Encoder(widths=(8,), latent=4, norm=norm)
  x = np.random.default_rng(seed).uniform(size=(2, 3, 8, 8, 2)).astype(np.float32)
  if params is None:
    params = enc.init(jax.random.key(seed), x)
  return np.asarray(enc.apply(params, x), np.float64), params


@pytest.mark.parametrize("norm,axes", [("frame", (2, 3, 4)), ("position", (4,))])
def test_latent_norm_standardises_over_its_axes(norm, axes):
  raw, params = encode("none")
  z, _ = encode(norm, params)     # LayerNorm without scale/bias: the same parameters.
  mean = raw.mean(axis=axes, keepdims=True)
  var = raw.var(axis=axes, keepdims=True)
  np.testing.assert_allclose(z, (raw - mean) / np.sqrt(var + 1e-6), rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(z.mean(axis=axes), 0.0, atol=1e-5)
  # 'frame' keeps the positions' relative norms; 'position' makes every norm the same.
  norms = np.linalg.norm(z, axis=-1)
  raw_norms = np.linalg.norm(raw - raw.mean(axis=axes, keepdims=True), axis=-1)
  if norm == "frame":
    ratio = norms / raw_norms
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :, :1, :1], ratio.shape),
                               rtol=1e-4)
    assert np.std(norms) > 0.1
  else:
    np.testing.assert_allclose(norms, 2.0, rtol=1e-4)    # √C, C = 4 channels.


def test_unknown_latent_norm_is_named(tmp_path, monkeypatch):
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(tmp_path / "cache"))
  config = lamod_dense.get_config("smoke")
  config.model.latent_norm = "global"
  with pytest.raises(ValueError, match="config.model.latent_norm"):
    task_lib.LaMoDTask(config, str(tmp_path / "wd"), make_optimizer=lambda *a: None)
