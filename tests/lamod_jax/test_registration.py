"""Tests for lamod_jax.registration: gradients, recovery of a known deformation, batching."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamod_jax import diagnostics
from lamod_jax import epdiff
from lamod_jax import registration
from lamod_jax.metric import Metric

N = 32


def blob(cx, cy, s, n=N):
  y, x = np.mgrid[:n, :n].astype(np.float64)
  return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))


def ring(n=N, r_in=5.0, r_out=9.0):
  y, x = np.mgrid[:n, :n].astype(np.float64)
  r = np.hypot(x - n / 2 + 0.5, y - n / 2 + 0.5)
  return ((r >= r_in) & (r <= r_out)).astype(np.float32)


def dice(a, b):
  return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.mark.parametrize("form,integrator", [("eulerian", "rk4"), ("lagomorph", "euler")])
def test_grad_matches_finite_differences(x64, form, integrator):
  cfg = registration.RegistrationConfig(form=form, integrator=integrator, n_steps=6,
                                        sigma=0.2)
  source = jnp.asarray(blob(15.0, 16.0, 4.0))
  target = jnp.asarray(blob(17.0, 15.0, 4.5))
  rng = np.random.default_rng(0)
  smooth = Metric(alpha=2.0, gamma=1.0, s=1)      # any smoothing will do for test fields
  v0 = 3.0 * smooth.sharp(jnp.asarray(rng.normal(size=(2, N, N))))
  h = smooth.sharp(jnp.asarray(rng.normal(size=(2, N, N))))
  energy = jax.jit(lambda v: registration.objective(v, source, target, cfg))
  grad = jax.jit(jax.grad(lambda v: registration.objective(v, source, target, cfg)))(v0)
  eps = 1e-5
  fd = (float(energy(v0 + eps * h)) - float(energy(v0 - eps * h))) / (2 * eps)
  an = float(jnp.sum(grad * h))
  assert abs(an) > 1e-3
  assert abs(fd - an) < 1e-6 * abs(an) + 1e-9, (fd, an)


def test_registration_recovers_known_deformations_batch_equals_loop():
  source = ring()
  y, x = np.mgrid[:N, :N].astype(np.float64)
  g1, g2 = blob(12.0, 16.0, 5.0), blob(20.0, 14.0, 5.0)
  true_v0 = np.stack([np.stack([2.0 * g1 - 1.0 * g2, 1.5 * g1 + 1.0 * g2]),
                      np.stack([-1.5 * g2, 2.0 * g1 - 1.5 * g2])]).astype(np.float32)
  targets, masks = [], []
  for v in true_v0:
    phi_inv = epdiff.shoot(jnp.asarray(v), n_steps=20, compute_phi=False).phi_inv
    mask = np.asarray(epdiff.warp(jnp.asarray(source), phi_inv)) > 0.5
    masks.append(mask)
    targets.append(mask.astype(np.float32))
  sources = np.stack([source, source])
  cfg = registration.RegistrationConfig(n_iter=60, integrator="euler")
  res = registration.register_batch(sources, np.stack(targets), cfg)
  assert res.v0.shape == (2, 2, N, N) and res.loss.shape == (2, 61)
  for i in range(2):
    before = dice(source > 0.5, masks[i])
    after = dice(np.asarray(res.warped[i]) > 0.5, masks[i])
    assert before < 0.9 and after > 0.97, (i, before, after)
    ssd0 = np.sum((source - targets[i]) ** 2)
    assert np.sum((np.asarray(res.warped[i]) - targets[i]) ** 2) < 0.1 * ssd0
    loss = np.asarray(res.loss[i])
    assert loss[-1] < 0.2 * loss[0]
    jac = diagnostics.jacobian_summary(res.phi[i])
    assert float(jac["frac_nonpositive"]) == 0.0 and float(jac["min"]) > 0.2
    np.testing.assert_allclose(float(res.regularity[i] + res.data[i]), loss[-1], rtol=1e-5)
  single = registration.register(sources[1], targets[1], cfg)
  np.testing.assert_allclose(np.asarray(single.v0), np.asarray(res.v0[1]), atol=2e-3)
  np.testing.assert_allclose(np.asarray(single.loss), np.asarray(res.loss[1]), rtol=1e-3)


def test_bad_input_raises_naming_argument():
  img = np.zeros((16, 16), np.float32)
  bad = img.copy()
  bad[2, 3] = np.nan
  with pytest.raises(ValueError, match="source.*NaN"):
    registration.register(bad, img)
  with pytest.raises(ValueError, match="target.*NaN"):
    registration.register(img, bad)
  with pytest.raises(ValueError, match="target"):
    registration.register(img, np.zeros((16, 18), np.float32))
  with pytest.raises(ValueError, match="source"):
    registration.register(np.zeros((16,), np.float32), np.zeros((16,), np.float32))
  with pytest.raises(ValueError, match="source"):
    registration.register_batch(img, img)                 # a batch needs a leading axis
  with pytest.raises(ValueError, match="v0_init"):
    registration.register(img, img, v0_init=np.zeros((2, 8, 8), np.float32))
  with pytest.raises(ValueError, match="sigma"):
    registration.RegistrationConfig(sigma=0.0)
  with pytest.raises(ValueError, match="form"):
    registration.RegistrationConfig(form="svf")
