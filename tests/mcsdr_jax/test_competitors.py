"""The uncertainty competitors of MCSDR (mcsdr_jax/competitors.py): losses against
independent float64 references, the ensemble as independent regressors, MC dropout's
readout, and each kind trained for a few steps through the real loop."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sp_special
from scipy import stats

from configs import pediatric
from evaluation import probabilistic
from mcsdr_jax import competitors
from mcsdr_jax import model as model_lib
from mcsdr_jax import task as task_lib


def _batch(b=3, t=4, hw=16, n_cont=2, seed=0):
  rng = np.random.default_rng(seed)
  return {"video": rng.random((b, t, hw, hw, 1)).astype(np.float32),
          "attr_cont": rng.standard_normal((b, n_cont)).astype(np.float32),
          "attr_cont_missing": np.zeros((b, n_cont), bool),
          "attr_cat": rng.integers(0, 2, (b, 1)).astype(np.int32)}


COND = dict(encoder="small", encoder_kwargs=dict(widths=(4, 8), patch=(2, 4, 4)), features=8,
            hidden=16, attr_features=8, video_grid=(2, 2, 2))


def _regressor(**kw):
  return model_lib.DeterministicRegressor((2,), conditioner_kwargs=COND, hidden=16, **kw)


def test_gaussian_nll_matches_scipy(x64):
  rng = np.random.default_rng(0)
  mu, y = rng.normal(size=50), rng.normal(size=50) * 3
  sigma = rng.uniform(0.05, 4.0, 50)
  got = np.asarray(competitors.gaussian_nll(jnp.asarray(mu), jnp.asarray(sigma), jnp.asarray(y)))
  np.testing.assert_allclose(got, -stats.norm.logpdf(y, mu, sigma), rtol=1e-12)


def test_beta_nll_has_the_mse_gradient_in_mu_and_the_nll_gradient_direction_in_sigma(x64):
  """β-NLL (β = 1): ∂/∂μ = μ − y (the MSE's half-gradient) for any σ; ∂/∂σ = σ²·∂NLL/∂σ;
  its value is σ²·NLL."""
  mu, sigma, y = jnp.array([0.3, -1.0]), jnp.array([0.5, 2.0]), jnp.array([1.0, 0.5])
  g_mu, g_sigma = jax.grad(lambda m, s: jnp.sum(competitors.beta_nll(m, s, y)),
                           argnums=(0, 1))(mu, sigma)
  np.testing.assert_allclose(g_mu, mu - y, rtol=1e-12)
  nll_sigma = 1 / sigma - (y - mu) ** 2 / sigma ** 3
  np.testing.assert_allclose(g_sigma, sigma ** 2 * nll_sigma, rtol=1e-12)
  np.testing.assert_allclose(competitors.beta_nll(mu, sigma, y),
                             sigma ** 2 * -stats.norm.logpdf(y, mu, sigma), rtol=1e-12)


def test_gaussian_crps_matches_the_integral_of_the_squared_cdf_difference(x64):
  """CRPS = ∫_{−∞}^{y} F² dx + ∫_{y}^{∞} (1 − F)² dx, trapezoid rule on fine float64 grids
  that meet at y (where the integrand jumps)."""
  trapezoid = getattr(np, "trapezoid", None) or np.trapz
  rng = np.random.default_rng(1)
  for mu, sigma, y in zip(rng.normal(size=6), rng.uniform(0.1, 3.0, 6), rng.normal(size=6) * 2):
    below = np.linspace(min(mu, y) - 14 * sigma, y, 200_001)
    above = np.linspace(y, max(mu, y) + 14 * sigma, 200_001)
    brute = (trapezoid(sp_special.ndtr((below - mu) / sigma) ** 2, below)
             + trapezoid(sp_special.ndtr(-(above - mu) / sigma) ** 2, above))
    got = float(competitors.gaussian_crps(jnp.float64(mu), jnp.float64(sigma), jnp.float64(y)))
    assert got == pytest.approx(brute, rel=1e-6, abs=1e-9)


def test_quantile_samples_are_the_gaussian_mid_quantiles_and_score_like_it(x64):
  mu, sigma = jnp.array([0.3, -2.0]), jnp.array([1.5, 0.2])
  got = np.asarray(competitors.quantile_samples(mu, sigma, 40))
  levels = (np.arange(40) + 0.5) / 40
  np.testing.assert_allclose(got, stats.norm.ppf(levels[None], np.asarray(mu)[:, None],
                                                 np.asarray(sigma)[:, None]), rtol=1e-10)
  # Many mid-quantile samples: the sample CRPS (the evaluation's) → the closed form.
  y = np.array([1.1, -2.5])
  dense = np.asarray(competitors.quantile_samples(mu, sigma, 4000))
  closed = np.asarray(competitors.gaussian_crps(mu, sigma, jnp.asarray(y)))
  np.testing.assert_allclose(probabilistic.crps_ensemble(dense, y), closed, rtol=2e-3)


def test_sigma_from_raw_is_positive_with_a_floor():
  s = np.asarray(competitors.sigma_from_raw(jnp.array([-50.0, 0.0, 3.0])))
  assert s[0] == pytest.approx(competitors.SIGMA_FLOOR) and s[1] == pytest.approx(np.log(2) + 1e-3)
  assert s[2] == pytest.approx(np.log1p(np.exp(3.0)) + 1e-3, rel=1e-6)


def test_ensemble_members_are_independent_regressors():
  batch = _batch()
  kw = dict(num_categories=(2,), conditioner_kwargs=COND, hidden=16)
  ens = competitors.Ensemble(3, kw)
  # One jitted init with an 'rbg' key: XLA:CPU compiles threefry's truncated normals for
  # each kernel shape, 13 s here against 1 s.
  params = jax.jit(ens.init)(jax.random.key(0, impl="rbg"), batch)
  out = jax.jit(ens.apply)(params, batch)
  assert out.shape == (3, 3)
  single = jax.jit(model_lib.DeterministicRegressor(**kw).apply)
  for m in range(3):
    member = params["params"][f"member{m}"]
    np.testing.assert_allclose(out[m], single({"params": member}, batch), rtol=1e-5,
                               atol=1e-6)
  assert float(jnp.std(out, axis=0).mean()) > 1e-4          # Different initialisations.
  # The task's loss, the members' mean MSE: member m's gradient is its own MSE's / M.
  target = jnp.array([0.5, -1.0, 0.2])
  grads = jax.jit(jax.grad(lambda p: jnp.mean((ens.apply(p, batch) - target) ** 2)))(params)
  alone = jax.jit(jax.grad(lambda p: jnp.mean((single({"params": p}, batch) - target) ** 2)))(
      params["params"]["member1"])
  jax.tree.map(lambda g, a: np.testing.assert_allclose(g, a / 3, rtol=1e-4, atol=1e-7),
               grads["params"]["member1"], alone)
  mean, sd = competitors.ensemble_moments(out)
  np.testing.assert_allclose(sd, np.std(np.asarray(out), axis=0, ddof=1), rtol=1e-5)
  np.testing.assert_allclose(mean, np.mean(np.asarray(out), axis=0), rtol=1e-5, atol=1e-7)


def test_mc_dropout_readout_splits_the_call_and_drops_only_in_train():
  batch = _batch()
  model = _regressor(dropout=0.5)
  params = model.init(jax.random.key(0), batch)
  h = model.apply(params, batch, method=model.features)
  np.testing.assert_allclose(model.apply(params, h, method=model.readout),
                             model.apply(params, batch), rtol=1e-6)
  a, b = (model.apply(params, h, train=True, method=model.readout,
                      rngs={"dropout": jax.random.key(i)}) for i in (1, 2))
  assert not np.allclose(a, b)
  no_drop = _regressor(dropout=0.0)
  np.testing.assert_allclose(no_drop.apply(params, h, train=True, method=no_drop.readout),
                             model.apply(params, h, method=model.readout), rtol=1e-6)
  two = _regressor(outputs=2)
  assert two.apply(two.init(jax.random.key(0), batch), batch).shape == (3, 2)


def test_config_variants_and_errors():
  assert pediatric.get_config("smoke,ensemble").model.kind == "ensemble"
  c = pediatric.get_config("mc_dropout")
  assert (c.model.kind, c.model.dropout) == ("mc_dropout", 0.2)
  assert pediatric.get_config("heteroscedastic").model.het_loss == "gaussian_nll"
  with pytest.raises(ValueError, match="at most one"):
    pediatric.get_config("ensemble,mc_dropout")
  for field, value, kind in (("het_loss", "mse", "heteroscedastic"), ("ensemble_size", 1, "ensemble"),
                             ("dropout", 0.0, "mc_dropout")):
    c = pediatric.get_config("smoke")
    c.model.kind, c.model[field] = kind, value
    with pytest.raises(ValueError, match=f"config.model.{field}"):
      task_lib.build_model(c.model, (2,))


def _scoring_rule_reference(name, out, y):
  """Float64 numpy: the mean scoring rule of a (μ, raw σ) head's output (B, 2)."""
  out, y = np.asarray(out, np.float64), np.asarray(y, np.float64)
  mu, sigma = out[:, 0], np.logaddexp(0.0, out[:, 1]) + competitors.SIGMA_FLOOR
  z = (y - mu) / sigma
  nll = -stats.norm.logpdf(y, mu, sigma)
  values = {"gaussian_nll": nll, "beta_nll": sigma ** 2 * nll,
            "crps": sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z)
                             - 1 / np.sqrt(np.pi))}
  return float(np.mean(values[name]))


@pytest.mark.parametrize("field", ["model.het_loss", "diffusion.aux_loss"])
def test_the_configured_scoring_rule_is_the_loss_the_task_trains(field, tmp_path, smoke_cache,
                                                                 monkeypatch):
  """config.model.het_loss (the heteroscedastic competitor) and config.diffusion.aux_loss
  (MCSDR's auxiliary (μ, σ) head) each select the loss the task's step minimises: with
  attribute dropout off, the task's loss (minus the ε-loss for MCSDR) equals the named
  rule, in float64 numpy, on the head's own outputs for the same batch, and each rule
  gives a different value."""
  from training import tasks  # pylint: disable=g-import-not-at-top
  from backbones import video as video_backbones  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(smoke_cache))
  config = pediatric.get_config("smoke")
  config.model.attr_dropout = 0.0
  section, name = field.split(".")
  if section == "model":
    config.model.kind = "heteroscedastic"
  config[section][name] = "gaussian_nll"
  task = tasks.make_task(config, str(tmp_path))
  batch = next(task.train_batches(0))
  params = task.init(jax.random.key(0), batch)
  inputs = {k: batch[k] for k in task_lib.MODEL_KEYS}
  rngs = {"attr_dropout": jax.random.key(1), "dropout": jax.random.key(2)}
  if section == "model":
    out, _ = video_backbones.apply_train(task.model, params, inputs, train=True, rngs=rngs)
  else:
    (_, out), _ = video_backbones.apply_train(task.model, params, inputs, train=True, rngs=rngs,
                                              method=task.model.condition_and_aux)
  target = task.standardise(batch["ef"])
  got = {}
  for rule in competitors.GAUSSIAN_LOSSES:
    config[section][name] = rule
    loss, metrics = task.loss(params, batch, jax.random.key(3))
    got[rule] = float(loss) - (float(metrics["eps_loss"]) if section == "diffusion" else 0.0)
    weight = config.diffusion.aux_weight if section == "diffusion" else 1.0
    np.testing.assert_allclose(got[rule], weight * _scoring_rule_reference(rule, out, target),
                               rtol=1e-4, atol=1e-5, err_msg=rule)
  assert len({round(v, 5) for v in got.values()}) == 3, got


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["heteroscedastic", "ensemble", "mc_dropout"])
def test_competitor_trains_and_is_scored_as_a_posterior(kind, tmp_path, smoke_cache, monkeypatch):
  """configs/pediatric.py:smoke,KIND through the real loop (4 steps): the same metrics as
  MCSDR's (coverage, σ–error rank correlation, σ-scaling fitted on val) and K samples."""
  from training import loop  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(smoke_cache))
  config = pediatric.get_config(f"smoke,{kind}")
  config.num_steps, config.eval_every, config.checkpoint.save_every = 4, 4, 4
  config.model.ensemble_size = 2
  loop.train_and_evaluate(config, str(tmp_path))
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  for name in ("mae", "crps", "coverage90", "raw_coverage90", "sigma_error_spearman",
               "spread_scale"):
    assert np.isfinite(metrics[f"test/{name}"]), name
  assert metrics["test/sigma_mean"] > 0
  pred = np.load(tmp_path / "predictions.npz")
  assert pred["samples"].shape == (metrics["test/n"], config.sampling.num_samples)
  # The missing-attribute study takes a competitor's run as it takes MCSDR's.
  from launch import sample  # pylint: disable=g-import-not-at-top
  study = sample.run_missing_study(config, str(tmp_path))
  assert [e["name"] for e in study["settings"]] == ["none", "Age", "Weight", "Height", "Sex",
                                                    "all"]
  np.testing.assert_allclose(study["settings"][0]["raw_mae"], metrics["test/mae"], rtol=1e-5)
  assert all(np.isfinite(e["raw_crps"]) for e in study["settings"])
