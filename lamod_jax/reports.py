"""LaMoD figures (as the paper's Figs. 2, 4 and 5), PNG via matplotlib (Agg).

  <split>_es_motion.png     end-systolic displacement (quiver) and Ecc maps, truth beside
                            LaMoD and both baselines, for one healthy and one LBBB case (Fig. 2)
  <split>_errors.png        EPE and segmental Ecc error per method (Fig. 4)
  <split>_segment_curves.png  segmental Ecc over the cycle, predicted vs true (Fig. 5)
  <split>_diagnosis.png     with config.diagnosis: EPE and Ecc errors of the three methods
                            and of every diagnosis group (lamod_jax.task.Diagnosis)
"""
from __future__ import annotations

import os

import numpy as np

from evaluation import plots as plots_lib
from lamod_jax import strain

plt = plots_lib.plt
NAMES = {"truth": "DENSE truth", "lamod": "LaMoD", "registration": "registration only",
         "regression": "regression (StrainNet-like)"}


def _examples(patterns: list[str]) -> list[int]:
  """First healthy and first LBBB case (or the first one or two cases)."""
  picks = [patterns.index(p) for p in ("healthy", "lbbb") if p in patterns]
  return picks or list(range(min(2, len(patterns))))


def es_motion_plot(path, arr, preds, true_seg, patterns) -> None:
  methods = ["truth", *preds]
  cases = _examples(patterns)
  fig, axes = plt.subplots(2 * len(cases), len(methods),
                           figsize=(2.4 * len(methods), 4.6 * len(cases)), squeeze=False)
  for row, i in enumerate(cases):
    es = int(np.argmin(np.nanmean(true_seg[i], axis=-1)))
    support = arr["support"][i]
    ys, xs = np.nonzero(support)
    for col, m in enumerate(methods):
      u = (arr["disp"] if m == "truth" else preds[m])[i, es] * support
      ecc, _ = strain.polar_strain(u, support)
      ax = axes[2 * row, col]
      ax.imshow(arr["masks"][i, 0], cmap="gray", vmin=0, vmax=2)
      ax.quiver(xs, ys, u[0, ys, xs], u[1, ys, xs], angles="xy", scale_units="xy", scale=0.5,
                color="tab:red", width=0.004)
      ax.set_title(f"{NAMES[m]}\n{patterns[i] or 'case'} {i}, ES (pair {es + 1})", fontsize=7)
      axes[2 * row + 1, col].imshow(np.where(support > 0, np.asarray(ecc), np.nan),
                                    cmap="RdBu_r", vmin=-0.3, vmax=0.3)
      axes[2 * row + 1, col].set_title("Ecc (blue −0.3 … red +0.3)", fontsize=7)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  plots_lib.save_figure(fig, path)


def error_bars_plot(path, metrics: dict, groups=None) -> None:
  """Bars of the three scores per method (`groups` None), or per given group name (the
  methods and diagnosis groups of a final evaluation)."""
  methods = [m for m in NAMES if f"{m}/epe" in metrics] if groups is None else list(groups)
  fig, axes = plt.subplots(1, 3, figsize=(max(9.5, 1.5 * len(methods)), 3.2))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, key, label in zip(axes, ("epe", "segmental_ecc_mae", "global_peak_ecc_error"),
                            ("EPE (px)", "segmental Ecc MAE", "global peak Ecc error")):
    vals = [metrics[f"{m}/{key}"] for m in methods]
    ax.bar(range(len(methods)), vals, color=[colors[j % len(colors)] for j in range(len(vals))])
    ax.set_xticks(range(len(methods)), [NAMES.get(m, m).split(" (")[0] for m in methods],
                  fontsize=7, rotation=30 if groups is not None else 15)
    ax.set_ylabel(label)
    for j, v in enumerate(vals):
      ax.text(j, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
  plots_lib.save_figure(fig, path)


def segment_curves_plot(path, curves: dict, true_seg, patterns) -> None:
  cases = _examples(patterns)
  fig, axes = plt.subplots(len(cases), 6, figsize=(15, 2.4 * len(cases)), squeeze=False,
                           sharey=True)
  frames = np.arange(1, true_seg.shape[1] + 1)
  styles = {"lamod": "tab:blue", "registration": "tab:orange", "regression": "tab:green"}
  for row, i in enumerate(cases):
    for k in range(6):
      ax = axes[row, k]
      ax.plot(frames, true_seg[i, :, k], "k-", lw=1.6, label=NAMES["truth"])
      for m, c in curves.items():
        ax.plot(frames, c[i, :, k], "--", color=styles.get(m), lw=1.0, label=NAMES[m])
      ax.set_title(f"{patterns[i] or 'case'} {i}: {strain.SEGMENT_NAMES[k]}", fontsize=7)
      ax.axhline(0, color="0.8", lw=0.5)
  axes[0, 0].set_ylabel("Ecc")
  axes[0, 0].legend(fontsize=6, frameon=False)
  plots_lib.save_figure(fig, path)


def write_plots(folder, split, arr, preds, curves, true_seg, metrics, patterns,
                diagnosis=()) -> None:
  """The three figures of `split`; with `diagnosis` (group names scored in `metrics`) also
  <split>_diagnosis.png, the methods' and those groups' scores side by side."""
  os.makedirs(folder, exist_ok=True)
  if diagnosis:
    error_bars_plot(os.path.join(folder, f"{split}_diagnosis.png"), metrics,
                    groups=("registration", *diagnosis, "lamod", "regression"))
  es_motion_plot(os.path.join(folder, f"{split}_es_motion.png"), arr, preds, true_seg, patterns)
  error_bars_plot(os.path.join(folder, f"{split}_errors.png"), metrics)
  segment_curves_plot(os.path.join(folder, f"{split}_segment_curves.png"), curves, true_seg,
                      patterns)
