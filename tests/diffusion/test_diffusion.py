"""Diffusion core against closed forms: Gaussian data has an exact ε-predictor,
under which DDIM and the probability-flow ODE are affine maps known in closed form."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import losses, samplers, schedule as schedule_lib

MU, SD = 0.7, 0.5
SCHED = schedule_lib.VPSchedule()
AB = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))  # float64 reference


def exact_eps_discrete(y, t):
  """E[ε | y_t] for y0 ~ N(MU, SD²) at integer t."""
  ab = SCHED.alphas_cumprod[t]
  v = ab * SD ** 2 + 1 - ab
  return jnp.sqrt(1 - ab) * (y - jnp.sqrt(ab) * MU) / v


def exact_eps_continuous(y, label):
  ab = SCHED.alpha_bar_continuous(label / 999.0)
  v = ab * SD ** 2 + 1 - ab
  return jnp.sqrt(1 - ab) * (y - jnp.sqrt(ab) * MU) / v


def test_schedule_values_and_continuous_form():
  np.testing.assert_allclose(SCHED.alphas_cumprod, AB, rtol=1e-5)
  assert np.sqrt(AB[-1]) == pytest.approx(0.00635, rel=2e-3)  # Reference note: √ᾱ_999.
  assert float(SCHED.beta_continuous(0.0)) == pytest.approx(0.1)
  assert float(SCHED.beta_continuous(1.0)) == pytest.approx(20.0)
  s = (np.arange(1000) + 1) / 1000
  np.testing.assert_allclose(np.log(SCHED.alpha_bar_continuous(s)), np.log(AB), rtol=0.02, atol=3e-4)


def test_ddim_timesteps():
  np.testing.assert_array_equal(samplers.ddim_timesteps(1000, 10),
                                [999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1])
  np.testing.assert_array_equal(samplers.ddim_timesteps(1000, 10, "leading"),
                                [900, 800, 700, 600, 500, 400, 300, 200, 100, 0, -1])
  with pytest.raises(ValueError, match="spacing"):
    samplers.ddim_timesteps(1000, 10, "middle")


def test_ddim_equals_closed_form_affine_map():
  """With η = 0 and the exact predictor each step is affine; compare to float64 numpy."""
  key = jax.random.key(0)
  y0, traj = samplers.ddim_sample(exact_eps_discrete, SCHED, key, (64,), num_steps=10,
                                  return_trajectory=True)
  y = np.asarray(traj[0], np.float64)
  ts = samplers.ddim_timesteps(1000, 10)
  for t, tp in zip(ts[:-1], ts[1:]):
    ab, abp = AB[t], (AB[tp] if tp >= 0 else 1.0)
    v = ab * SD ** 2 + 1 - ab
    c = (np.sqrt(abp * ab) * SD ** 2 + np.sqrt((1 - abp) * (1 - ab))) / v
    y = np.sqrt(abp) * MU + c * (y - np.sqrt(ab) * MU)
  np.testing.assert_allclose(y0, y, rtol=1e-4, atol=1e-4)
  assert traj.shape == (11, 64)


def test_samplers_reproduce_gaussian_mean_and_variance():
  n = 4000
  key = jax.random.key(1)
  ddpm = jax.jit(lambda k: samplers.ddpm_sample(exact_eps_discrete, SCHED, k, (n,))[0])(key)
  ode = samplers.pf_ode_sample(exact_eps_continuous, SCHED, key, (n,))[0]
  ddim100 = samplers.ddim_sample(exact_eps_discrete, SCHED, key, (n,), num_steps=100)[0]
  se_mean, se_sd = SD / np.sqrt(n), SD / np.sqrt(2 * n)
  for name, y in [("ddpm", ddpm), ("pf_ode", ode), ("ddim100", ddim100)]:
    assert abs(float(jnp.mean(y)) - MU) < 4 * se_mean, name
    assert abs(float(jnp.std(y)) - SD) < 4 * se_sd + 0.01, name


def test_pf_ode_matches_closed_form_flow_and_euler_converges():
  """For Gaussian data the PF-ODE flow is y(s) = √ᾱ(s)μ + √(v(s)/v(1))·(y(1) − √ᾱ(1)μ)."""
  key = jax.random.key(2)
  y1 = jax.random.normal(key, (32,))
  def closed(s):
    ab = lambda u: float(SCHED.alpha_bar_continuous(u))
    v = lambda u: ab(u) * SD ** 2 + 1 - ab(u)
    return np.sqrt(ab(s)) * MU + np.sqrt(v(s) / v(1.0)) * (np.asarray(y1) - np.sqrt(ab(1.0)) * MU)
  s_end = 1e-2
  adaptive = samplers.pf_ode_sample(exact_eps_continuous, SCHED, key, (32,), s_end=s_end,
                                    denoise=False)[0]
  np.testing.assert_allclose(adaptive, closed(s_end), atol=2e-4)
  errs = [float(jnp.max(jnp.abs(samplers.pf_ode_sample(
      exact_eps_continuous, SCHED, key, (32,), solver="euler", num_steps=n, s_end=s_end,
      denoise=False)[0] - closed(s_end)))) for n in (50, 100, 200)]
  orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
  assert np.all(orders > 0.8) and np.all(orders < 1.3), (errs, orders)  # First order.


def test_eps_loss_of_exact_predictor_is_posterior_variance():
  """With the exact predictor the loss equals E[Var(ε|y_t)], a closed form."""
  y0 = MU + SD * jax.random.normal(jax.random.key(3), (20000,))
  loss = losses.eps_loss(SCHED, exact_eps_discrete, y0, jax.random.key(4))
  # Var(ε | y_t) = 1 − (1−ᾱ)/(ᾱs² + 1 − ᾱ), averaged over uniform t.
  expected = np.mean(1 - (1 - AB) / (AB * SD ** 2 + 1 - AB))
  assert float(loss) == pytest.approx(expected, rel=0.05)


def test_vmapped_samples_equal_loop_and_noise_fn_is_used():
  keys = jax.random.split(jax.random.key(5), 4)
  f = lambda k: samplers.ddim_sample(exact_eps_discrete, SCHED, k, (3,), eta=0.5)[0]
  batched = jax.jit(jax.vmap(f))(keys)
  looped = jnp.stack([f(k) for k in keys])
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)
  zeros = lambda key, shape, dtype: jnp.zeros(shape, dtype)
  y, _ = samplers.ddim_sample(exact_eps_discrete, SCHED, keys[0], (3,), noise_fn=zeros)
  y_ref, _ = samplers.ddim_sample(exact_eps_discrete, SCHED, keys[1], (3,), noise_fn=zeros)
  np.testing.assert_array_equal(y, y_ref)  # Prior from noise_fn: key no longer matters.


def test_schedule_is_one_static_hashable_object():
  assert SCHED == schedule_lib.VPSchedule(1000, 1e-4, 0.02) == schedule_lib.VPSchedule()
  assert hash(SCHED) == hash(schedule_lib.VPSchedule())
  assert SCHED != schedule_lib.VPSchedule(50, 1e-3, 0.05)
  assert jax.tree.leaves(SCHED) == []   # a static pytree: a plain argument of jit
  f = jax.jit(lambda sched, t: sched.alpha_bar(t))
  assert float(f(SCHED, jnp.int32(-1))) == 1.0
  assert float(f(SCHED, jnp.int32(3))) == float(SCHED.alphas_cumprod[3])
  # MCSDR's preconditioning: the continuous ᾱ at s = (t + 1)/T, in float32.
  t = jnp.array([0.0, 37.25, 999.0])
  np.testing.assert_array_equal(SCHED.alpha_bar_at_step(t),
                                SCHED.alpha_bar_continuous((t + 1.0) / 1000))
  with pytest.raises(ValueError, match="config.diffusion.num_steps"):
    schedule_lib.VPSchedule(1000, 0.02, 1e-4)


def test_x0_from_eps_inverts_q_sample():
  y0 = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)
  eps = jnp.cos(3.0 * y0)
  t = jnp.array([10, 900])
  y_t = losses.q_sample(SCHED, y0, t, eps)
  np.testing.assert_allclose(losses.predict_x0(SCHED, y_t, t, eps), y0, atol=2e-4)


REGISTRY_CASES = [
    (samplers.SamplerConfig("ddim", 7, eta=0.5, spacing="leading"),
     lambda k: samplers.ddim_sample(exact_eps_discrete, SCHED, k, (5,), num_steps=7, eta=0.5,
                                    spacing="leading", return_trajectory=True)),
    (samplers.SamplerConfig("ddpm", None),
     lambda k: samplers.ddpm_sample(exact_eps_discrete, SCHED, k, (5,),
                                    return_trajectory=True)),
    (samplers.SamplerConfig("pf_ode", 8, solver="heun"),
     lambda k: (samplers.pf_ode_sample(exact_eps_continuous, SCHED, k, (5,), solver="heun",
                                       num_steps=8, rtol=1e-4, atol=1e-4)[0], None)),
]


@pytest.mark.parametrize("cfg,direct", REGISTRY_CASES, ids=lambda c: getattr(c, "label", ""))
def test_registered_sampler_is_the_direct_call(cfg, direct):
  key = jax.random.key(6)
  eps_fn = exact_eps_continuous if cfg.name == "pf_ode" else exact_eps_discrete
  y, traj = samplers.get_sampler(cfg)(eps_fn, SCHED, key, (5,), return_trajectory=True)
  y_ref, traj_ref = direct(key)
  np.testing.assert_array_equal(y, y_ref)
  if traj_ref is None:
    assert traj is None
  else:
    np.testing.assert_array_equal(traj, traj_ref)
    assert len(samplers.sampler_times(cfg, SCHED)) == traj.shape[0]


def test_sampler_registry_names_and_validation():
  assert samplers.sampler_names() == ("ddim", "ddpm", "pf_ode", "paper_code")
  with pytest.raises(ValueError, match=r"'euler' is not one of \('ddim', 'ddpm', 'pf_ode', "
                                       r"'paper_code'\)"):
    samplers.SamplerConfig("euler")
  with pytest.raises(ValueError, match="already registered"):
    samplers.register_sampler("ddim")(lambda *a, **k: None)
  with pytest.raises(ValueError, match="needs t_start"):
    samplers.SamplerConfig("paper_code")
  with pytest.raises(ValueError, match="t_start must be None"):
    samplers.SamplerConfig("pf_ode", t_start=5)
  with pytest.raises(ValueError, match="steps"):
    samplers.SamplerConfig("ddim", None)
  assert samplers.SamplerConfig("ddim", 10).label == "ddim10"
  assert samplers.SamplerConfig("ddim", 3, eta=0.5, t_start=49).label == "ddim3_eta0.5_from49"
  assert samplers.SamplerConfig("pf_ode", None).label == "pf_ode_tsit5_adaptive"
  assert samplers.SamplerConfig("paper_code", t_start=9).label == "paper_code_from9"
  np.testing.assert_array_equal(
      samplers.sampler_times(samplers.SamplerConfig("ddpm", t_start=3), SCHED), [3, 2, 1, 0, -1])
  assert samplers.sampler_times(samplers.SamplerConfig("pf_ode"), SCHED) is None


def test_few_step_ddim_narrows_a_narrow_posterior_and_the_ode_does_not():
  """A posterior of SD 0.25 (an EF posterior of ~3 points, standardised): DDIM-10's last
  step returns E[y0 | y_99], dropping the variance left at t = 99 (noise SD ≈ 0.33 in
  y0 units), so its samples' SD is the closed-form product of its affine steps, ≈ 0.55 ×
  the truth; DDPM-1000 and the adaptive probability-flow ODE keep it (why
  configs/pediatric.py samples with 'pf_ode')."""
  sd, n = 0.25, 4000

  def eps_d(y, t):
    ab = SCHED.alphas_cumprod[t]
    return jnp.sqrt(1 - ab) * (y - jnp.sqrt(ab) * MU) / (ab * sd ** 2 + 1 - ab)

  def eps_c(y, label):
    ab = SCHED.alpha_bar_continuous(label / 999.0)
    return jnp.sqrt(1 - ab) * (y - jnp.sqrt(ab) * MU) / (ab * sd ** 2 + 1 - ab)

  key = jax.random.key(7)
  ts = samplers.ddim_timesteps(1000, 10)
  gain = np.sqrt(AB[ts[0]] * sd ** 2 + 1 - AB[ts[0]])    # SD of y at the first step
  for t, tp in zip(ts[:-1], ts[1:]):
    ab, abp = AB[t], (AB[tp] if tp >= 0 else 1.0)
    gain *= (np.sqrt(abp * ab) * sd ** 2 + np.sqrt((1 - abp) * (1 - ab))) / (ab * sd ** 2 + 1 - ab)
  assert 0.5 < gain / sd < 0.6
  ddim = samplers.ddim_sample(eps_d, SCHED, key, (n,), num_steps=10)[0]
  se = 1 / np.sqrt(2 * n)                                 # relative SE of a sample SD
  assert float(jnp.std(ddim)) == pytest.approx(gain, rel=4 * se)
  ddpm = jax.jit(lambda k: samplers.ddpm_sample(eps_d, SCHED, k, (n,))[0])(key)
  ode = samplers.pf_ode_sample(eps_c, SCHED, key, (n,))[0]
  for name, y in (("ddpm", ddpm), ("pf_ode", ode)):
    assert float(jnp.std(y)) == pytest.approx(sd, rel=4 * se + 0.02), name
