"""Scores of posterior sample ensembles (MCSDR: K samples of EF per case).

The point estimate and its uncertainty are the sample mean and standard
deviation (MCSDR Eq. 7); the distributional score is the CRPS of the empirical
ensemble (MCSDR Sec. IV, "CRPS generalizes MAE to probabilistic forecasts").
Everything here is float64 numpy; `samples` is (N, K), `y` / `truth` is (N,).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluation.regression import regression_metrics

CRPS_FORMS = ("fair", "all_pairs")


def _check(samples, y=None, *, name: str = "samples") -> tuple[np.ndarray, np.ndarray | None]:
  """float64 (N, K) samples with K >= 2 and, if given, float64 (N,) y; no NaN."""
  x = np.asarray(samples, np.float64)
  if x.ndim != 2:
    raise ValueError(f"{name} must be (N, K), got shape {x.shape}")
  if x.shape[1] < 2:
    raise ValueError(f"{name}: need K >= 2 samples per case, got K={x.shape[1]}")
  if not np.isfinite(x).all():
    raise ValueError(f"{name} contains NaN or inf")
  if y is None:
    return x, None
  t = np.asarray(y, np.float64)
  if t.shape != (x.shape[0],):
    raise ValueError(f"y must have shape ({x.shape[0]},) to match {name} {x.shape}, got {t.shape}")
  if not np.isfinite(t).all():
    raise ValueError("y contains NaN or inf")
  return x, t


def _pair_sum(x: np.ndarray) -> np.ndarray:
  """Σ_{j<k} |x_j − x_k| per row in O(K log K): Σ_i (2i − K + 1) x_(i), x sorted ascending."""
  k = x.shape[1]
  w = 2.0 * np.arange(k) - (k - 1)
  return np.sort(x, axis=1) @ w


def crps_ensemble(samples, y, *, form: str = "fair") -> np.ndarray:
  """Per-item CRPS (N,) of the K-sample ensemble against y.

  CRPS = mean_k |x_k − y| − spread, with spread
    "all_pairs": ½·mean over all K² pairs |x_j − x_k| (V-statistic, the published
                 MCSDR code; biased upward by E|X − X'|/(2K));
    "fair":      Σ_{j≠k} |x_j − x_k| / (2K(K−1))  (unbiased for the CRPS of the
                 sampled distribution, Ferro 2014).
  The pair sum is taken from sorted samples, so memory is O(N K), not O(N K²).
  """
  if form not in CRPS_FORMS:
    raise ValueError(f"form must be one of {CRPS_FORMS}, got {form!r}")
  x, t = _check(samples, y)
  k = x.shape[1]
  skill = np.mean(np.abs(x - t[:, None]), axis=1)
  pairs = _pair_sum(x)  # Σ_{j<k}; Σ_{j≠k} = 2·pairs
  denom = k * k if form == "all_pairs" else k * (k - 1)
  return skill - pairs / denom


def posterior_summary(samples) -> tuple[np.ndarray, np.ndarray]:
  """Posterior mean and standard deviation (ddof=1) per case (MCSDR Eq. 7)."""
  x, _ = _check(samples)
  return x.mean(axis=1), x.std(axis=1, ddof=1)


def interval_coverage(samples, y, level: float) -> float:
  """Fraction of y inside the central `level` prediction interval of its K samples.

  Quantiles use the plotting position p(K + 1) (np.quantile method 'weibull'): if y
  and the K samples are exchangeable, y falls below the j-th order statistic with
  probability j/(K + 1), so the interval covers `level` whenever (1 − level)/2·(K + 1) ≥ 1
  (K ≥ 19 for 90 %; below, it is the sample range, (K − 1)/(K + 1)). (The 'linear'
  default covers (K − 1)/(K + 1)·level: 0.86 instead of 0.90 at K = 40.)
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must lie in (0, 1), got {level}")
  x, t = _check(samples, y)
  lo, hi = np.quantile(x, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=1,
                       method="weibull")
  return float(np.mean((t >= lo) & (t <= hi)))


def pit_values(samples, y, rng: np.random.Generator) -> np.ndarray:
  """Randomised probability integral transform (N,) of y within its ensemble.

  PIT = (#{x_k < y} + U·(#{x_k == y} + 1)) / (K + 1),  U ~ Uniform(0, 1).
  If y and the K samples are exchangeable, the rank of y among the K + 1 values
  is uniform on {0..K} (ties spread uniformly), so the PIT is Uniform(0, 1).
  """
  x, t = _check(samples, y)
  below = np.sum(x < t[:, None], axis=1)
  equal = np.sum(x == t[:, None], axis=1)
  u = rng.uniform(size=t.shape)
  return (below + u * (equal + 1)) / (x.shape[1] + 1)


def spearman(a, b) -> float:
  """Spearman rank correlation; nan for fewer than 3 items, constant input or NaN."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"spearman: shapes {a.shape} and {b.shape}")
  if a.size < 3 or np.isnan(a).any() or np.isnan(b).any() or np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")
  from scipy import stats  # pylint: disable=g-import-not-at-top  (2 s to import; used here only)
  return float(stats.spearmanr(a, b).statistic)


def probabilistic_metrics(truth, samples, *, clip: tuple[float, float] = (0.0, 100.0)) -> dict:
  """Point metrics of the clipped posterior mean plus ensemble scores (plain floats).

  Keys: mae, rmse, r2, crps (fair), crps_all_pairs, coverage50, coverage90,
  sigma_mean, sigma_error_spearman (σ vs |point − truth|), frac_samples_outside
  (samples outside clip), pit_hist (10 counts, rng seed 0), n.
  """
  x, t = _check(samples, truth)
  lo, hi = clip
  mean, sigma = posterior_summary(x)
  point = np.clip(mean, lo, hi)
  reg = regression_metrics(t, point)
  pit = pit_values(x, t, np.random.default_rng(0))
  return {
      "mae": reg["mae"],
      "rmse": reg["rmse"],
      "r2": reg["r2"],
      "crps": float(np.mean(crps_ensemble(x, t, form="fair"))),
      "crps_all_pairs": float(np.mean(crps_ensemble(x, t, form="all_pairs"))),
      "coverage50": interval_coverage(x, t, 0.5),
      "coverage90": interval_coverage(x, t, 0.9),
      "sigma_mean": float(np.mean(sigma)),
      "sigma_error_spearman": spearman(sigma, np.abs(point - t)),
      "frac_samples_outside": float(np.mean((x < lo) | (x > hi))),
      "pit_hist": [int(c) for c in np.histogram(pit, bins=10, range=(0.0, 1.0))[0]],
      "n": int(t.size),
  }


def scale_spread(samples, scale: float) -> np.ndarray:
  """Samples moved about their per-case mean by `scale`: mean + scale·(x − mean)."""
  x, _ = _check(samples)
  mean = x.mean(axis=1, keepdims=True)
  return mean + float(scale) * (x - mean)


def fit_spread_scale(truth, samples, *, lo: float = 0.25, hi: float = 4.0,
                     num: int = 161) -> float:
  """σ-scaling (Laves et al., MIDL 2020; Kuleshov et al., ICML 2018 recalibrate the
  same way): the factor s on a log grid in [lo, hi] that minimises the mean fair CRPS
  of `scale_spread(samples, s)` on held-out cases. The point estimate is unchanged.

  The pairwise term of the CRPS scales exactly with s, so only E|X_s − y| is recomputed.
  """
  x, t = _check(samples, truth)
  mean = x.mean(axis=1, keepdims=True)
  dev = x - mean
  k = x.shape[1]
  half_spread = _pair_sum(x) / (k * (k - 1))    # ½·E|X − X'| over distinct pairs (fair)
  grid = np.exp(np.linspace(np.log(lo), np.log(hi), num))
  scores = [np.mean(np.mean(np.abs(mean + g * dev - t[:, None]), axis=1) - g * half_spread)
            for g in grid]
  return float(grid[int(np.argmin(scores))])


GROUP_KEYS = ("n", "mae", "rmse", "crps", "coverage90", "sigma_mean")


def grouped_metrics(groups: Sequence[str], truth, samples) -> dict[str, dict]:
  """{group: {n, mae, rmse, crps, coverage90, sigma_mean}} per group label, sorted by label."""
  x, t = _check(samples, truth)
  g = np.asarray([str(v) for v in groups], dtype=object)
  if g.shape != t.shape:
    raise ValueError(f"groups must have one label per case ({t.size}), got {g.size}")
  out = {}
  for name in sorted(set(g)):
    m = probabilistic_metrics(t[g == name], x[g == name])
    out[name] = {k: m[k] for k in GROUP_KEYS}
  return out


def age_band(ages, edges: Sequence[float] = (1, 5, 10, 18)) -> list[str]:
  """Age labels on half-open bands [lo, hi): "<1", "1-5", "5-10", "10-18", "≥18".

  An age equal to an edge falls in the band that starts there (5 -> "5-10",
  18 -> "≥18"); NaN -> "unknown". Edges must increase strictly.
  """
  e = [float(v) for v in edges]
  if not e or any(b <= a for a, b in zip(e, e[1:])):
    raise ValueError(f"edges must be non-empty and strictly increasing, got {tuple(edges)}")
  fmt = lambda v: f"{v:g}"  # noqa: E731
  labels = ([f"<{fmt(e[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(e, e[1:])]
            + [f"≥{fmt(e[-1])}"])
  a = np.asarray(ages, np.float64).ravel()
  idx = np.searchsorted(e, a, side="right")
  return ["unknown" if np.isnan(v) else labels[i] for v, i in zip(a, idx)]
