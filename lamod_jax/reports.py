"""LaMoD figures (as the paper's Figs. 2, 4 and 5), PNG via matplotlib (Agg).

  <split>_es_motion.png     end-systolic displacement (quiver) and Ecc maps, truth beside
                            LaMoD and both baselines, for one healthy and one LBBB case (Fig. 2)
  <split>_errors.png        EPE and segmental Ecc error per method (Fig. 4)
  <split>_segment_curves.png  segmental Ecc over the cycle, predicted vs true (Fig. 5)
  <split>_diagnosis.png     with config.diagnosis: EPE and Ecc errors of the three methods
                            and of every diagnosis group (lamod_jax.task.Diagnosis)
  <split>_fig3.png          Fig. 3 layout (the paper's cine figure; any split): rows DENSE
                            truth, LaMoD, registration, regression; per case (one healthy,
                            one LBBB-like, by ground_truth.json's pattern) the end-systolic
                            displacement (|u| colour + arrows) and the pixelwise Ecc at ES.
                            Truth on the label's support, predictions on the strain mask
                            (config.data.strain_mask: the cine contour under the cine
                            protocol, with the DENSE contour outlined in white)
"""
from __future__ import annotations

import os
import pathlib

from absl import logging
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
    for col, m in enumerate(methods):
      # Truth on the label's support; predictions where they are strained and scored
      # (`strain_support`: the cine mask under the cine protocol).
      support = (arr["support"] if m == "truth"
                 else arr.get("strain_support", arr["support"]))[i]
      ys, xs = np.nonzero(support)
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


FIG3_ROWS = ("truth", "lamod", "registration", "regression")


def fig3_cases(patterns: list[str]) -> list[int]:
  """[first healthy, first LBBB-like] case indices, leaving out a pattern with no case."""
  return [patterns.index(p) for p in ("healthy", "lbbb") if p in patterns]


def fig3_plot(path, arr, preds, true_seg, patterns, split: str = "") -> bool:
  """Fig. 3-style figure at `path` (see the module docstring); ES = the pair with the
  lowest true global Ecc of that case. Returns False, writing nothing, when no case has a
  'healthy' or 'lbbb' pattern (no ground_truth.json: logged)."""
  cases = fig3_cases(patterns)
  missing = [p for p in ("healthy", "lbbb") if p not in patterns]
  if not cases:
    logging.info("LaMoD %s: no healthy or LBBB case (patterns come from ground_truth.json): "
                 "%s not written", split, os.path.basename(path))
    return False
  if missing:
    logging.info("LaMoD %s: no %s case for %s", split, " or ".join(missing),
                 os.path.basename(path))
  rows = [m for m in FIG3_ROWS if m == "truth" or m in preds]
  fig, axes = plt.subplots(len(rows), 2 * len(cases), squeeze=False, layout="constrained",
                           figsize=(5.2 * len(cases), 2.4 * len(rows) + 0.6))
  for c, i in enumerate(cases):
    es = int(np.argmin(np.nanmean(true_seg[i], axis=-1)))
    label_support = arr["support"][i]
    fields, eccs, masks = [], [], []
    for m in rows:
      mask = label_support if m == "truth" else arr.get("strain_support", arr["support"])[i]
      u = (arr["disp"] if m == "truth" else preds[m])[i, es] * mask
      ecc, _ = strain.polar_strain(u, mask)
      fields.append(u)
      eccs.append(np.where(mask > 0, np.asarray(ecc), np.nan))
      masks.append(mask)
    ys, xs = np.nonzero(np.max(masks, axis=0))     # view: the myocardia + 3 px
    h, w = label_support.shape
    ylim = (min(ys.max() + 3.5, h - 0.5), max(ys.min() - 3.5, -0.5))
    xlim = (max(xs.min() - 3.5, -0.5), min(xs.max() + 3.5, w - 0.5))
    u_max = max(float(np.max(np.hypot(*fields[0]))), 1e-3)
    e_lim = max(float(np.nanmax(np.abs(eccs[0]))) if np.isfinite(eccs[0]).any() else 0.0, 0.05)
    for r, m in enumerate(rows):
      ax_u, ax_e = axes[r, 2 * c], axes[r, 2 * c + 1]
      mask, u = masks[r], fields[r]
      ys, xs = np.nonzero(mask)
      mag = np.where(mask > 0, np.hypot(u[0], u[1]), np.nan)
      im_u = ax_u.imshow(mag, cmap="viridis", vmin=0, vmax=u_max)
      ax_u.quiver(xs, ys, u[0, ys, xs], u[1, ys, xs], angles="xy", scale_units="xy",
                  scale=0.5, color="k", width=0.003)
      im_e = ax_e.imshow(eccs[r], cmap="RdBu_r", vmin=-e_lim, vmax=e_lim)
      for ax in (ax_u, ax_e):
        if m != "truth" and not np.array_equal(mask, label_support):
          ax.contour(label_support, levels=[0.5], colors="w", linewidths=0.6)
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_xticks([])
        ax.set_yticks([])
      ax_u.set_ylabel(NAMES[m].replace(" (", "\n("), fontsize=7)
      if r == 0:
        case = f"{'AB'[c]}: {patterns[i]} (case {i}), ES = pair {es + 1}"
        ax_u.set_title(f"{case}\nES displacement |u| (px)", fontsize=7)
        ax_e.set_title("Ecc at ES (blue: contraction)", fontsize=7)
    fig.colorbar(im_u, ax=axes[:, 2 * c], shrink=0.6, location="bottom")
    fig.colorbar(im_e, ax=axes[:, 2 * c + 1], shrink=0.6, location="bottom")
  fig.suptitle(f"{split}: end-systolic displacement and Ecc (LaMoD Fig. 3 layout)", fontsize=9)
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=150)
  plt.close(fig)
  return True


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
  """The figures of `split` (<split>_fig3.png only when a case has a healthy or LBBB
  pattern); with `diagnosis` (group names scored in `metrics`) also
  <split>_diagnosis.png, the methods' and those groups' scores side by side."""
  os.makedirs(folder, exist_ok=True)
  if diagnosis:
    error_bars_plot(os.path.join(folder, f"{split}_diagnosis.png"), metrics,
                    groups=("registration", *diagnosis, "lamod", "regression"))
  es_motion_plot(os.path.join(folder, f"{split}_es_motion.png"), arr, preds, true_seg, patterns)
  error_bars_plot(os.path.join(folder, f"{split}_errors.png"), metrics)
  segment_curves_plot(os.path.join(folder, f"{split}_segment_curves.png"), curves, true_seg,
                      patterns)
  fig3_plot(os.path.join(folder, f"{split}_fig3.png"), arr, preds, true_seg, patterns, split)
