"""Ensemble scores against closed forms, brute-force loops and calibration
properties; every posterior plot writes a PNG."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evaluation import plots
from evaluation import probabilistic as pr

PNG = b"\x89PNG\r\n\x1a\n"


def gaussian_crps(mu, sigma, y):
  """CRPS(N(μ, σ²), y) = σ[z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ
  (Gneiting and Raftery 2007)."""
  z = (y - mu) / sigma
  return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))


def brute_crps(x, y, form):
  """Double loops in float64, straight from the definitions."""
  k = len(x)
  skill = sum(abs(float(v) - y) for v in x) / k
  pairs = sum(abs(float(a) - float(b)) for a in x for b in x)  # j == k terms are 0
  return skill - (pairs / (2 * k * k) if form == "all_pairs" else pairs / (2 * k * (k - 1)))


@pytest.mark.parametrize("form", ["fair", "all_pairs"])
def test_large_gaussian_ensemble_matches_closed_form(form):
  rng = np.random.default_rng(0)
  n, k = 12, 4000
  mu, sigma = rng.uniform(20, 70, n), rng.uniform(2, 10, n)
  y = mu + sigma * rng.normal(0, 1.5, n)
  x = mu[:, None] + sigma[:, None] * rng.standard_normal((n, k))
  got, want = pr.crps_ensemble(x, y, form=form), gaussian_crps(mu, sigma, y)
  np.testing.assert_allclose(got, want, rtol=0.04, atol=0.01 * sigma.max())
  assert abs(got.mean() / want.mean() - 1) < 0.02


@pytest.mark.parametrize("form", ["fair", "all_pairs"])
def test_small_k_matches_brute_force_with_ties(form):
  rng = np.random.default_rng(1)
  for k in range(2, 8):
    x = rng.normal(50, 8, (6, k))
    x[0] = 40.0  # all tied
    x[1, : k // 2 + 1] = x[1, 0]  # partly tied
    x = np.round(x, 0) if k % 2 else x  # integer values: ties and y == sample
    y = np.array([40.0, x[1, 0], *rng.normal(50, 8, 3), x[5, -1]])
    want = [brute_crps(row, float(t), form) for row, t in zip(x, y)]
    np.testing.assert_allclose(pr.crps_ensemble(x, y, form=form), want, rtol=1e-10, atol=1e-12)


def test_fair_is_unbiased_and_all_pairs_biased_by_spread_over_2k():
  rng = np.random.default_rng(2)
  m, k, y = 200_000, 3, 0.7
  x = rng.standard_normal((m, k))
  t = np.full(m, y)
  fair, allp = pr.crps_ensemble(x, t, form="fair"), pr.crps_ensemble(x, t, form="all_pairs")
  want = gaussian_crps(0.0, 1.0, y)
  se = fair.std() / math.sqrt(m)
  assert abs(fair.mean() - want) < 4 * se
  bias = (2 / math.sqrt(math.pi)) / (2 * k)  # E|X − X'| = 2/√π for N(0, 1)
  assert abs(allp.mean() - want - bias) < 4 * allp.std() / math.sqrt(m)
  assert abs(fair.mean() - want) < abs(allp.mean() - want)


def _true_predictive(rng, n, k, spread=1.0):
  mu, sigma = rng.uniform(20, 70, n), rng.uniform(2, 8, n)
  y = mu + sigma * rng.standard_normal(n)
  x = mu[:, None] + spread * sigma[:, None] * rng.standard_normal((n, k))
  return x, y


@pytest.mark.parametrize("k", [20, 40])  # K ≥ 19: (1 − 0.9)/2·(K+1) ≥ 1
def test_coverage_is_nominal_for_small_ensembles(k):
  # With the p(K+1) plotting position a calibrated K-sample ensemble covers the
  # nominal level; np.quantile's default would give (K−1)/(K+1)·0.9 (0.86 at K = 40).
  x, y = _true_predictive(np.random.default_rng(k), 20000, k)
  assert pr.interval_coverage(x, y, 0.9) == pytest.approx(0.9, abs=0.01)
  assert pr.interval_coverage(x, y, 0.5) == pytest.approx(0.5, abs=0.015)


def test_coverage_and_pit_of_calibrated_and_overconfident_samples():
  rng = np.random.default_rng(3)
  x, y = _true_predictive(rng, 5000, 200)
  assert pr.interval_coverage(x, y, 0.9) == pytest.approx(0.9, abs=0.02)
  assert pr.interval_coverage(x, y, 0.5) == pytest.approx(0.5, abs=0.03)
  pit = pr.pit_values(x, y, np.random.default_rng(0))
  assert pit.min() > 0 and pit.max() < 1
  counts = np.histogram(pit, bins=10, range=(0, 1))[0]
  assert stats.chisquare(counts).pvalue > 1e-3
  m = pr.probabilistic_metrics(y, x)
  assert m["pit_hist"] == [int(c) for c in counts] and sum(m["pit_hist"]) == 5000
  x_narrow, y_narrow = _true_predictive(np.random.default_rng(3), 5000, 200, spread=0.5)
  assert pr.interval_coverage(x_narrow, y_narrow, 0.9) < 0.7  # ≈ P(|Z| < 0.82) = 0.59
  narrow = pr.pit_values(x_narrow, y_narrow, np.random.default_rng(0))
  narrow_pit = np.histogram(narrow, 10, (0, 1))[0]
  assert narrow_pit[0] + narrow_pit[-1] > 3 * (counts[0] + counts[-1]) / 2  # U-shaped


@pytest.mark.parametrize("spread", [0.5, 1.0, 2.0])
def test_spread_scale_recovers_the_true_width(spread):
  # The CRPS is proper: it is minimised by the true predictive width, so samples drawn
  # `spread` times too wide are scaled back by ≈ 1/spread (K = 200: sample-mean error
  # adds a factor √(1 + 1/K) ≈ 1.0025).
  x, y = _true_predictive(np.random.default_rng(11), 6000, 200, spread=spread)
  s = pr.fit_spread_scale(y, x)
  assert s == pytest.approx(1.0 / spread, rel=0.05)
  scaled = pr.scale_spread(x, s)
  np.testing.assert_allclose(scaled.mean(1), x.mean(1), atol=1e-9)
  np.testing.assert_allclose(scaled.std(1), s * x.std(1), rtol=1e-9)
  assert pr.interval_coverage(scaled, y, 0.9) == pytest.approx(0.9, abs=0.02)


def test_spread_scale_objective_is_the_fair_crps():
  rng = np.random.default_rng(5)
  x, y = rng.normal(0, 1, (30, 7)), rng.normal(0, 1.5, 30)
  grid_best = min(np.exp(np.linspace(np.log(0.25), np.log(4.0), 161)),
                  key=lambda g: np.mean(pr.crps_ensemble(pr.scale_spread(x, g), y)))
  assert pr.fit_spread_scale(y, x) == pytest.approx(grid_best, rel=1e-12)


def test_randomised_pit_is_uniform_with_discrete_ties():
  rng = np.random.default_rng(4)
  n, k = 20_000, 5
  x = rng.integers(0, 4, (n, k)).astype(float)  # heavy ties, exchangeable with y
  y = rng.integers(0, 4, n).astype(float)
  pit = pr.pit_values(x, y, np.random.default_rng(0))
  counts = np.histogram(pit, bins=10, range=(0, 1))[0]
  assert stats.chisquare(counts).pvalue > 1e-3


def test_bad_input_is_a_value_error():
  with pytest.raises(ValueError, match="K=1"):
    pr.crps_ensemble(np.ones((3, 1)), np.ones(3))
  with pytest.raises(ValueError, match="NaN"):
    pr.crps_ensemble(np.array([[1.0, np.nan]]), np.ones(1))
  with pytest.raises(ValueError, match="NaN"):
    pr.probabilistic_metrics(np.array([np.nan]), np.ones((1, 3)))
  with pytest.raises(ValueError, match="shape"):
    pr.crps_ensemble(np.ones((3, 4)), np.ones(2))
  with pytest.raises(ValueError, match="form"):
    pr.crps_ensemble(np.ones((3, 4)), np.ones(3), form="energy")
  with pytest.raises(ValueError, match="level"):
    pr.interval_coverage(np.ones((3, 4)), np.ones(3), 1.5)


def test_summary_spearman_and_metric_dict():
  rng = np.random.default_rng(5)
  x, y = _true_predictive(rng, 300, 30)
  x[:5] += 200.0  # pushes some samples (and means) above the clip
  mean, std = pr.posterior_summary(x)
  np.testing.assert_allclose(mean, [np.mean(r) for r in x])
  np.testing.assert_allclose(std, [np.sqrt(np.sum((r - r.mean()) ** 2) / 29) for r in x])
  m = pr.probabilistic_metrics(y, x)
  point = np.clip(mean, 0, 100)
  assert m["mae"] == pytest.approx(np.mean(np.abs(point - y)))
  assert m["rmse"] == pytest.approx(np.sqrt(np.mean((point - y) ** 2)))
  assert m["crps"] == pytest.approx(pr.crps_ensemble(x, y).mean())
  assert m["crps_all_pairs"] > m["crps"]
  assert m["frac_samples_outside"] == pytest.approx(np.mean((x < 0) | (x > 100)))
  assert m["sigma_mean"] == pytest.approx(std.mean())
  assert m["sigma_error_spearman"] > 0.1  # errors scale with σ
  assert m["n"] == 300 and all(type(v) in (float, int, list) for v in m.values())
  assert math.isnan(pr.spearman([1, 2], [3, 4])) and math.isnan(pr.spearman([1, 1, 1], [1, 2, 3]))
  assert pr.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)


def test_grouped_metrics_equal_subset_metrics_and_age_bands():
  rng = np.random.default_rng(6)
  x, y = _true_predictive(rng, 60, 20)
  groups = ["b"] * 30 + ["a"] * 29 + ["c"]
  table = pr.grouped_metrics(groups, y, x)
  assert list(table) == ["a", "b", "c"]
  for name, sel in [("a", slice(30, 59)), ("b", slice(0, 30)), ("c", slice(59, 60))]:
    full = pr.probabilistic_metrics(y[sel], x[sel])
    keys = ("n", "mae", "rmse", "crps", "coverage90", "sigma_mean")
    assert table[name] == {key: full[key] for key in keys}
  assert table["c"]["n"] == 1
  ages = [0.0, 0.99, 1, 4.99, 5, 9.5, 10, 17.9, 18, 40, float("nan")]
  assert pr.age_band(ages) == ["<1", "<1", "1-5", "1-5", "5-10", "5-10", "10-18", "10-18",
                               "≥18", "≥18", "unknown"]
  assert pr.age_band([2.5], edges=(0.5, 2.5)) == ["≥2.5"]


def test_every_plot_writes_a_png(tmp_path):
  rng = np.random.default_rng(7)
  x, y = _true_predictive(rng, 40, 32)
  mean = x.mean(axis=1)
  ts = np.array([999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1])
  traj = y[:3, None, None] + rng.normal(0, 1, (3, 32, 1)) * np.linspace(30, 1, ts.size)
  study = {"samplers": [{"name": "ddim10", "steps": 10, "mae": 4.1, "crps": 3.0},
                        {"name": "ddim50", "steps": 50, "mae": 4.2, "crps": 3.1},
                        {"name": "ddim100", "steps": 100, "mae": 4.2},
                        {"name": "ddpm", "steps": 1000, "mae": 4.2, "crps": 3.04},
                        {"name": "ode", "steps": None, "mae": 4.3, "crps": 3.2}],
           "k_sweep": [{"k": k, "mae": 4 + 2 / k, "rmse": 5.5 + 2 / k, "crps": 3 + 1 / k}
                       for k in (1, 5, 10, 40, 100)] + [{"k": 200}]}
  table = pr.grouped_metrics(["good"] * 20 + ["poor"] * 20, y, x)
  calls = {
      "density": lambda p: plots.density_plot(p, y, mean, title="test"),
      "posterior": lambda p: plots.posterior_histograms(p, x, y, n=3,
                                                        ids=[f"#{i}" for i in range(40)]),
      "trajectory": lambda p: plots.trajectory_plot(p, ts, traj, y[:3]),
      "pit": lambda p: plots.pit_histogram(p, pr.pit_values(x, y, rng)),
      "calibration": lambda p: plots.calibration_plot(p, x, y),
      "sampling": lambda p: plots.sampling_study_plot(p, study),
      "sampling_empty": lambda p: plots.sampling_study_plot(p, {}),
      "density_constant": lambda p: plots.density_plot(p, y, np.full_like(y, 50.0)),
      "groups": lambda p: plots.group_bar_plot(p, table, "sigma_mean",
                                               reference={"good": 4.0, "poor": 6.0},
                                               order=["poor", "good"]),
  }
  for name, call in calls.items():
    path = tmp_path / "figs" / f"{name}.png"  # parent folder does not exist yet
    call(str(path))
    assert path.read_bytes()[:8] == PNG, name
