"""LaMoD's diffusion pieces: smoothed noise K(ε) (covariance against the brute-force
convolution matrix), SDEdit starts of the shared samplers, and the phase-gated optimiser."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffusion import losses, noise, samplers, schedule as schedule_lib
from lamod_jax import phases


def _conv_matrix(n, w):
  """(n, n) matrix of the 1-D kernel with reflect padding (no edge repeat), by hand."""
  r = len(w) // 2
  a = np.zeros((n, n))
  for i in range(n):
    for k, wk in enumerate(w):
      j = i + k - r
      j = -j if j < 0 else 2 * (n - 1) - j if j > n - 1 else j
      a[i, j] += wk
  return a


@pytest.mark.parametrize("unit_variance", [False, True])
def test_smoothed_noise_covariance(unit_variance):
  shape, size, sigma = (4, 5, 3), 3, 1.5
  fn = noise.smoothed_noise(size, sigma, axes=(-4, -3, -2), unit_variance=unit_variance)
  x = np.asarray(fn(jax.random.key(0), (30000, *shape, 1)))[..., 0].reshape(30000, -1)
  w = np.exp(-0.5 * ((np.arange(size) - 1) / sigma) ** 2)
  w /= w.sum()
  a = np.kron(np.kron(_conv_matrix(4, w), _conv_matrix(5, w)), _conv_matrix(3, w))
  cov = a @ a.T / (np.sum(w ** 2) ** 3 if unit_variance else 1.0)
  emp = np.cov(x, rowvar=False)
  assert np.max(np.abs(emp - cov)) < 6 * np.sqrt(2.0 / 30000) * cov.max()
  interior = np.ravel_multi_index((1, 2, 1), shape)
  expected = 1.0 if unit_variance else np.sum(w ** 2) ** 3
  assert cov[interior, interior] == pytest.approx(expected)
  assert np.mean(x[:, interior] ** 2) == pytest.approx(expected, rel=0.05)


def test_published_kernel_weights_and_std():
  w = noise.gaussian_weights(3, 3.0)
  np.testing.assert_allclose(w, [0.3271, 0.3458, 0.3271], atol=1e-4)
  assert np.sqrt(np.sum(w ** 2) ** 3) == pytest.approx(0.1927, abs=1e-4)  # note: ≈ 0.193
  with pytest.raises(ValueError, match="odd size"):
    noise.gaussian_weights(4, 3.0)


def test_ddim_timesteps_from_a_start_step():
  np.testing.assert_array_equal(samplers.ddim_timesteps(100, 5, t_start=49),
                                [49, 39, 29, 19, 9, -1])
  with pytest.raises(ValueError, match="t_start"):
    samplers.ddim_timesteps(100, 5, t_start=100)


def test_samplers_started_at_a_step():
  sched = schedule_lib.VPSchedule(50, 1e-3, 0.05)
  y = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
  eps = lambda v, t: 0.3 * v + 0.1  # noqa: E731  (any fixed predictor)
  # DDPM from t_start = 0 is one deterministic step (β̃_0 = 0).
  out, _ = samplers.ddpm_sample(eps, sched, jax.random.key(0), y.shape, y_start=y, t_start=0)
  b0, ab0 = float(sched.betas[0]), float(sched.alphas_cumprod[0])
  ref = (np.asarray(y) - b0 / np.sqrt(1 - ab0) * (0.3 * np.asarray(y) + 0.1)) / np.sqrt(1 - b0)
  np.testing.assert_allclose(out, ref, rtol=1e-5)
  # DDIM (η = 0) with one step from t is the x̂0 estimate of losses.predict_x0.
  t = 20
  out, _ = samplers.ddim_sample(eps, sched, jax.random.key(0), y.shape, num_steps=1,
                                y_start=y, t_start=t)
  x0 = losses.predict_x0(sched, y, jnp.full((2,), t), eps(y, t))
  np.testing.assert_allclose(out, x0, rtol=1e-5)
  with pytest.raises(ValueError, match="y_start and t_start"):
    samplers.ddim_sample(eps, sched, jax.random.key(0), y.shape, y_start=y)


def test_registry_from_a_start_state_and_the_paper_code_shortcut():
  """LaMoD's samplers through the registry: 'ddim' and 'ddpm' from (y_start, t_start) are
  the direct calls; 'paper_code' is DDPM with the ε̂ of the start state frozen."""
  sched = schedule_lib.VPSchedule(50, 1e-3, 0.05)
  y = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
  eps = lambda v, t: 0.3 * v + 0.01 * t  # noqa: E731
  key, t = jax.random.key(1), 20
  noise_fn = noise.smoothed_noise(3, 1.0, axes=(-1,))

  def run(name, **kw):
    cfg = samplers.SamplerConfig(name, t_start=t, **kw)
    return samplers.get_sampler(cfg)(eps, sched, key, y.shape, noise_fn=noise_fn,
                                     y_start=y)[0]

  direct = dict(y_start=y, t_start=t, noise_fn=noise_fn)
  np.testing.assert_array_equal(run("ddim", steps=4, eta=0.3), samplers.ddim_sample(
      eps, sched, key, y.shape, num_steps=4, eta=0.3, **direct)[0])
  np.testing.assert_array_equal(run("ddpm"), samplers.ddpm_sample(eps, sched, key, y.shape,
                                                                   **direct)[0])
  frozen = eps(y, t)
  np.testing.assert_array_equal(run("paper_code"), samplers.ddpm_sample(
      lambda v, s: frozen, sched, key, y.shape, **direct)[0])
  with pytest.raises(ValueError, match="y_start and t_start"):
    samplers.get_sampler(samplers.SamplerConfig("ddpm", t_start=t))(eps, sched, key, y.shape)


def test_phase_gate_freezes_and_starts_fresh():
  params = {"params": {"reg_encoder": {"k": jnp.ones(3)}, "eps_net": {"k": jnp.ones(2)}}}
  grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
  tx = phases.two_phase(optax.adam(0.1), optax.adamw(0.01, weight_decay=0.5), 3)
  state = tx.init(params)
  history = []
  for _ in range(6):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(jax.tree.map(np.asarray, params["params"]))
  reg = [h["reg_encoder"]["k"][0] for h in history]
  joint = [h["eps_net"]["k"][0] for h in history]
  # Registration: Adam's first steps move by lr·sign(g); frozen exactly after step 3.
  np.testing.assert_allclose(reg[:3], [0.9, 0.8, 0.7], rtol=1e-5)
  assert reg[3] == reg[2] == reg[5]
  # Joint: untouched (no weight decay) before step 3, then a fresh AdamW first step:
  # −lr·(1 + wd·p) with bias-corrected moments, i.e. 1 − 0.01·(1 + 0.5).
  assert joint[0] == joint[2] == 1.0
  assert joint[3] == pytest.approx(1 - 0.01 * 1.5, rel=1e-5)
  assert joint[5] < joint[4] < joint[3]
  labels = phases.group_labels(params)
  assert labels["params"]["reg_encoder"]["k"] == "registration"
  assert labels["params"]["eps_net"]["k"] == "joint"
