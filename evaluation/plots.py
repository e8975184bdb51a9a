"""Figures a researcher would put in a paper (matplotlib, Agg backend, PNG)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def scatter_plot(path: str, y_true, y_pred, *, yerr=None, color=None, color_label: str = "",
                 title: str = "", label: str = "EF (%)") -> None:
  """Predicted vs reference with the identity line and MAE/R² in the legend."""
  from evaluation.regression import regression_metrics
  y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
  m = regression_metrics(y_true, y_pred)
  fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=150)
  lo = float(min(y_true.min(), y_pred.min())) - 3
  hi = float(max(y_true.max(), y_pred.max())) + 3
  ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="identity")
  if yerr is not None:
    ax.errorbar(y_true, y_pred, yerr=yerr, fmt="none", ecolor="0.7", elinewidth=0.6, zorder=1)
  sc = ax.scatter(y_true, y_pred, s=9, c=color, cmap="viridis" if color is not None else None,
                  zorder=2,
                  label=f"MAE {m['mae']:.2f}, R² {m['r2']:.2f} (n={m['n']})")
  if color is not None:
    fig.colorbar(sc, ax=ax, label=color_label)
  ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"reference {label}", ylabel=f"predicted {label}",
         title=title)
  ax.set_aspect("equal")
  ax.legend(loc="upper left", fontsize=7, frameon=False)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


# Posterior figures (MCSDR Figs. 5–10). Each writes one PNG at `path`.

_TRUTH, _PRED = "tab:red", "tab:blue"


def save_figure(fig, path, dpi: int = 150) -> None:
  """tight_layout, create the parent folder, write the PNG, close the figure."""
  import pathlib
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def _kde_line(ax, values, grid, color, label) -> None:
  """Gaussian KDE of `values` on `grid`; a vertical line if the values are degenerate."""
  from scipy import stats
  v = np.asarray(values, float).ravel()
  v = v[np.isfinite(v)]
  try:
    dens = stats.gaussian_kde(v)(grid)
    ax.plot(grid, dens, color=color, lw=1.6, label=f"{label} (n={v.size})")
    ax.fill_between(grid, dens, color=color, alpha=0.15)
  except (np.linalg.LinAlgError, ValueError):
    ax.axvline(float(np.mean(v)) if v.size else 0.0, color=color, lw=1.6,
               label=f"{label} (n={v.size})")


def density_plot(path: str, truth, pred, title: str = "", label: str = "EF (%)") -> None:
  """KDE of the predictions (blue) against the ground truth (red) (MCSDR Fig. 5 right)."""
  truth, pred = np.asarray(truth, float).ravel(), np.asarray(pred, float).ravel()
  both = np.concatenate([truth, pred])
  pad = 0.1 * max(float(np.ptp(both)), 1.0)
  grid = np.linspace(both.min() - pad, both.max() + pad, 400)
  fig, ax = plt.subplots(figsize=(4.2, 3.2))
  _kde_line(ax, truth, grid, _TRUTH, "ground truth")
  _kde_line(ax, pred, grid, _PRED, "prediction")
  ax.set(xlabel=label, ylabel="density", title=title or "Distribution of predictions")
  ax.set_ylim(bottom=0)
  ax.legend(fontsize=7, frameon=False)
  save_figure(fig, path)


def posterior_histograms(path: str, samples, truth, *, n: int = 3, ids=None,
                         label: str = "EF (%)") -> None:
  """Histograms of the K posterior samples: top row the n sharpest cases (smallest σ),
  bottom row the n widest (MCSDR Fig. 8). Lines mark the truth and the posterior mean."""
  x = np.asarray(samples, float)
  truth = np.asarray(truth, float).ravel()
  mean, sigma = x.mean(axis=1), x.std(axis=1, ddof=1)
  order = np.argsort(sigma, kind="stable")
  n = max(1, min(n, x.shape[0]))
  rows = [("sharpest", order[:n]), ("widest", order[::-1][:n])]
  fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 5.2), squeeze=False)
  lo, hi = float(min(x.min(), truth.min())), float(max(x.max(), truth.max()))
  for r, (kind, cases) in enumerate(rows):
    for c, i in enumerate(cases):
      ax = axes[r, c]
      ax.hist(x[i], bins=min(20, max(5, x.shape[1] // 3)), color=_PRED, alpha=0.6,
              label=f"K={x.shape[1]} samples")
      ax.set_xlim(lo - 2, hi + 2)  # shared range so widths compare across panels
      ax.axvline(truth[i], color=_TRUTH, lw=1.5, label=f"truth {truth[i]:.1f}")
      ax.axvline(mean[i], color="k", ls="--", lw=1.2, label=f"mean {mean[i]:.1f}")
      name = f"case {ids[i]}" if ids is not None else f"case {i}"
      ax.set_title(f"{kind}: {name}\nσ = {sigma[i]:.2f}", fontsize=8)
      ax.set_xlabel(label, fontsize=8)
      if c == 0:
        ax.set_ylabel("count", fontsize=8)
      ax.tick_params(labelsize=7)
      ax.legend(fontsize=6, frameon=False)
  fig.suptitle("Posterior samples: sharpest (top) and widest (bottom)", fontsize=9)
  save_figure(fig, path)


def trajectory_plot(path: str, ts, trajectories, truth, *, titles=None,
                    label: str = "EF (%)") -> None:
  """Sampler paths y_t of K samples per case against diffusion time t, t decreasing
  left to right, truth dashed (MCSDR Figs. 6, 9, 10). trajectories: (cases, K, S)."""
  ts = np.asarray(ts, float).ravel()
  tr = np.asarray(trajectories, float)
  if tr.ndim != 3 or tr.shape[2] != ts.size:
    raise ValueError(f"trajectories must be (cases, K, S={ts.size}), got {tr.shape}")
  truth = np.asarray(truth, float).ravel()
  m = tr.shape[0]
  fig, axes = plt.subplots(1, m, figsize=(3.4 * m, 3.0), squeeze=False, sharey=True)
  for i, ax in enumerate(axes[0]):
    ax.plot(ts, tr[i].T, color=_PRED, lw=0.5, alpha=0.45)
    ax.plot([], [], color=_PRED, lw=0.8, label=f"K={tr.shape[1]} paths")
    ax.axhline(truth[i], color=_TRUTH, ls="--", lw=1.3, label=f"truth {truth[i]:.1f}")
    final = tr[i, :, -1]
    ax.set_title(titles[i] if titles is not None else
                 f"case {i}: final mean {final.mean():.1f}, σ {final.std(ddof=1):.1f}", fontsize=8)
    ax.set_xlim(ts.max(), ts.min())  # t runs T -> 0 left to right
    ax.set_xlabel("diffusion time t", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False, loc="best")
  axes[0, 0].set_ylabel(label, fontsize=8)
  save_figure(fig, path)


def pit_histogram(path: str, pit, bins: int = 10, title: str = "") -> None:
  """Density histogram of PIT values with the Uniform(0, 1) reference."""
  pit = np.asarray(pit, float).ravel()
  fig, ax = plt.subplots(figsize=(4.0, 3.0))
  ax.hist(pit, bins=bins, range=(0, 1), density=True, color=_PRED, alpha=0.7, edgecolor="white",
          label=f"PIT (n={pit.size})")
  ax.axhline(1.0, color="k", ls="--", lw=1.0, label="uniform (calibrated)")
  ax.set(xlim=(0, 1), xlabel="PIT", ylabel="density", title=title or "PIT histogram")
  ax.legend(fontsize=7, frameon=False, loc="lower center")
  save_figure(fig, path)


def calibration_plot(path: str, samples, truth) -> None:
  """Left: observed coverage of central intervals vs nominal level with the diagonal.
  Right: posterior σ vs |error| of the posterior mean, Spearman ρ in the title."""
  from evaluation.probabilistic import interval_coverage, posterior_summary, spearman
  levels = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
  observed = [interval_coverage(samples, truth, lv) for lv in levels]
  mean, sigma = posterior_summary(samples)
  err = np.abs(mean - np.asarray(truth, float))
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(8.0, 3.6))
  a0.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
  a0.plot(levels, observed, "o-", color=_PRED, ms=4, label="observed")
  a0.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal central-interval level",
         ylabel="observed coverage", title="Interval calibration")
  a0.set_aspect("equal")
  a0.legend(fontsize=7, frameon=False, loc="upper left")
  a1.scatter(sigma, err, s=8, color=_PRED, alpha=0.6, label=f"cases (n={err.size})")
  a1.set(xlabel="posterior σ (EF %)", ylabel="|mean − truth| (EF %)",
         title=f"Uncertainty vs error, Spearman ρ = {spearman(sigma, err):.2f}")
  a1.legend(fontsize=7, frameon=False, loc="upper left")
  save_figure(fig, path)


def _finite(entry: dict, key: str) -> bool:
  v = entry.get(key)
  return isinstance(v, (int, float, np.number)) and np.isfinite(v)


def _metric_lines(ax, entries: list, xkey: str, metrics: tuple[str, ...], styles: dict) -> None:
  """One line per metric over entries sorted by xkey, skipping missing values."""
  for metric in metrics:
    pts = sorted((e[xkey], e[metric]) for e in entries if _finite(e, xkey) and _finite(e, metric))
    if pts:
      xs, ys = zip(*pts)
      ax.plot(xs, ys, styles[metric], ms=4, label=metric.upper())


def log_axis_at(axis, values, *, min_gap: float = 0.06) -> list[float]:
  """Log scale on `axis` (ax.xaxis / ax.yaxis) with major ticks at the positive
  `values`, labelled plainly ('5', '10', '40'), no minor ticks.

  The default log ticks label decades and minor ticks ('3×10¹4×10¹' overlapping), not
  the values studied. A value closer than `min_gap` of the span in decades to the
  previous labelled one keeps its tick but no label. Returns the labelled values.
  """
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  ticks = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
  axis.axes.set(**{f"{axis.axis_name}scale": "log"})
  if not ticks:
    return []
  gap = min_gap * max(np.log10(ticks[-1] / ticks[0]), 1.0)
  labelled = [ticks[0]]
  for v in ticks[1:]:
    if np.log10(v / labelled[-1]) >= gap:
      labelled.append(v)
  shown = set(labelled)
  axis.set_major_locator(ticker.FixedLocator(ticks))
  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if v in shown else ""))
  axis.set_minor_locator(ticker.NullLocator())
  return labelled


def sampling_study_plot(path: str, study: dict) -> None:
  """MCSDR Fig. 7. Left: MAE/CRPS vs DDIM steps, other samplers (DDPM, ODE) as labelled
  horizontal lines. Right: MAE/RMSE/CRPS vs posterior sample count K (log x).
  Missing keys or entries are skipped."""
  styles = {"mae": "o-C0", "rmse": "s-C1", "crps": "^-C2"}
  colors = {"mae": "C0", "crps": "C2"}
  samplers = [e for e in study.get("samplers", []) if isinstance(e, dict)]
  ddim = [e for e in samplers if str(e.get("name", "")).lower().startswith("ddim")]
  others = [e for e in samplers if e not in ddim]
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.0, 4.2))
  _metric_lines(a0, ddim, "steps", ("mae", "crps"), styles)
  for j, e in enumerate(others):
    for metric in ("mae", "crps"):
      if _finite(e, metric):
        a0.axhline(e[metric], color=colors[metric], ls=(":", "-.", "--")[j % 3], lw=1.0,
                   label=f"{e.get('name', 'sampler')} {metric.upper()}")
  a0.set(xlabel="DDIM sampling steps", ylabel="EF points", title="Sampler and step count")
  steps = [e["steps"] for e in ddim if _finite(e, "steps")]
  if steps:
    log_axis_at(a0.xaxis, steps)
  k_sweep = [e for e in study.get("k_sweep", []) if isinstance(e, dict)]
  _metric_lines(a1, k_sweep, "k", ("mae", "rmse", "crps"), styles)
  a1.set(xlabel="posterior samples K", ylabel="EF points", title="Posterior sample count")
  ks = [e["k"] for e in k_sweep if _finite(e, "k")]
  if ks:
    log_axis_at(a1.xaxis, ks)
  for ax in (a0, a1):
    if ax.get_legend_handles_labels()[0]:  # Below the axes: the sampler lines span it.
      ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                ncol=3)
    ax.grid(alpha=0.3)
  save_figure(fig, path)


def group_bar_plot(path: str, table: dict, metric: str = "mae", reference: dict | None = None,
                   title: str = "", reference_label: str = "reference", order=None) -> None:
  """Bar per group of `table[group][metric]` (from grouped_metrics), n at each bar's foot;
  optional `reference` {group: value} drawn as markers on the bars. `order` (group
  names) replaces the table's (sorted) order, e.g. age bands youngest first."""
  names = [g for g in order if g in table] if order is not None else list(table)
  vals = [float(table[g].get(metric, np.nan)) for g in names]
  pos = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(names) + 1.5), 3.4))
  bars = ax.bar(pos, vals, color=_PRED, alpha=0.75, label=metric)
  for b, g in zip(bars, names):
    if "n" in table[g]:
      ax.annotate(f"n={int(table[g]['n'])}", (b.get_x() + b.get_width() / 2, 0), ha="center",
                  va="bottom", fontsize=6, color="white", xytext=(0, 2), textcoords="offset points")
  if reference:
    ref = [(p, float(reference[g])) for p, g in zip(pos, names) if g in reference]
    if ref:
      ax.plot(*zip(*ref), "D", color="k", ms=5, label=reference_label)
  many = len(names) > 5
  ax.set_xticks(pos, names, rotation=30 if many else 0, ha="right" if many else "center")
  ax.set(ylabel=metric, xlabel="group", title=title or f"{metric} per group")
  ax.margins(y=0.15)
  ax.legend(fontsize=7, frameon=False)
  save_figure(fig, path)
