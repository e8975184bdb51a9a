"""Segmentation figures (PNG): example predictions, Dice per structure (MELBA Figs. 3, 5–7)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evaluation import plots as eval_plots  # noqa: E402
from segmentation import labels as labels_lib  # noqa: E402

# Blue LV, green LVM, yellow LA (the paper's Fig. 1 colours).
_COLOURS = np.array([[0, 0, 0, 0], [0.1, 0.35, 1, 0.55], [0.1, 0.8, 0.2, 0.55],
                     [1, 0.85, 0.1, 0.55]])


def examples_plot(path, images, ref, pred, domain, domains, per_domain: int = 2) -> None:
  """Rows: a few images of each domain; columns: image, reference, prediction.
  `domain` indexes the names `domains`."""
  rows = []
  for k, name in enumerate(domains):
    idx = np.nonzero(domain == k)[0][:per_domain]
    rows += [(name, i) for i in idx]
  if not rows:
    return
  fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2 * len(rows)), squeeze=False)
  for r, (name, i) in enumerate(rows):
    for c, (title, lab) in enumerate((("image", None), ("reference", ref[i]),
                                      ("prediction", pred[i]))):
      ax = axes[r, c]
      ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
      if lab is not None:
        ax.imshow(_COLOURS[lab])
      ax.set_axis_off()
      ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=8)
  eval_plots.save_figure(fig, path, dpi=120)


def dice_bars(path, metrics: dict, domains, title: str = "") -> None:
  """Grouped bars: Dice per structure for each domain (missing = not evaluated)."""
  fig, ax = plt.subplots(figsize=(5, 3))
  width = 0.8 / max(1, len(domains))
  x = np.arange(len(labels_lib.STRUCTURES))
  for k, name in enumerate(domains):
    vals = [metrics.get(f"{name}/dice_{s}", np.nan) for s in labels_lib.STRUCTURES]
    ax.bar(x + k * width, vals, width, label=name)
  ax.set_xticks(x + 0.4 - width / 2, [s.upper() for s in labels_lib.STRUCTURES])
  ax.set(ylim=(0, 1), ylabel="Dice", title=title)
  ax.legend(fontsize=7, frameon=False)
  eval_plots.save_figure(fig, path, dpi=120)


def _with_withheld(r: dict, key: str, withheld_key: str) -> dict:
  """r[key] ({label: value}) plus {r['withheld']: r[withheld_key]} if the row has both,
  as floats (metrics.json stores non-finite values as strings)."""
  values = dict(r.get(key) or {})
  if r.get("withheld") and r.get(withheld_key) is not None:
    values[r["withheld"]] = r[withheld_key]
  return {k: np.nan if v is None else float(v) for k, v in values.items()}


def summary_plot(path, rows, structures_key: str = "dice", title: str = "") -> None:
  """Dice per structure per loss, one panel per architecture (like MELBA Figs. 3, 6).

  rows: dicts with 'arch', 'loss' and '<structures_key>' = {label: value}; a row's
  'withheld'/'withheld_dice' (the withheld structure in its domain) adds a group.
  Rows of launch.seg_summary.aggregate (means over seeds) also carry
  '<structures_key>_sd' and 'withheld_dice_sd' (SDs) and 'n': the bars are the means
  with ± SD error bars, the legend gives n. Single-run rows draw plain bars.
  """
  sd_key = f"{structures_key}_sd"
  archs = sorted({r["arch"] for r in rows})
  fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 3.2), squeeze=False)
  for ax, arch in zip(axes[0], archs):
    sub = [r for r in rows if r["arch"] == arch]
    names = list(dict.fromkeys(n for r in sub
                               for n in _with_withheld(r, structures_key, "withheld_dice")))
    width = 0.8 / max(1, len(sub))
    x = np.arange(len(names))
    for k, r in enumerate(sub):
      means = _with_withheld(r, structures_key, "withheld_dice")
      sds = _with_withheld(r, sd_key, "withheld_dice_sd")
      yerr = [sds.get(n, np.nan) for n in names] if sd_key in r else None
      label = r["loss"] if "n" not in r else f"{r['loss']} (n={r['n']})"
      ax.bar(x + k * width, [means.get(n, np.nan) for n in names], width, yerr=yerr,
             capsize=2, error_kw=dict(lw=0.8), label=label)
    ax.set_xticks(x + 0.4 - width / 2, names, fontsize=7)
    ax.set(ylim=(0, 1), ylabel="test Dice" + (" (mean ± SD)" if sd_key in sub[0] else ""),
           title=f"{arch} {title}".strip())
    ax.legend(fontsize=7, frameon=False)
  eval_plots.save_figure(fig, path, dpi=120)


def sweep_plot(path, rows, title: str = "") -> None:
  """Dice on the withheld structure vs label-dropout p, one line per loss (Fig. 6).

  rows: dicts with 'loss', 'p' and 'withheld_dice'; with 'withheld_dice_sd' (rows of
  launch.seg_summary.aggregate: means over seeds) the points get ± SD error bars.
  """
  fig, ax = plt.subplots(figsize=(5, 3.2))
  with_sd = any("withheld_dice_sd" in r for r in rows)
  for loss in sorted({r["loss"] for r in rows}):
    sub = sorted((r for r in rows if r["loss"] == loss), key=lambda r: r["p"])
    yerr = [r.get("withheld_dice_sd", np.nan) for r in sub] if with_sd else None
    ax.errorbar([r["p"] for r in sub], [r["withheld_dice"] for r in sub], yerr=yerr,
                fmt="o-", capsize=3, label=loss)
  ax.set(xlabel="label dropout p",
         ylabel="withheld-structure Dice" + (" (mean ± SD)" if with_sd else ""),
         ylim=(0, 1), title=title)
  ax.legend(fontsize=7, frameon=False)
  eval_plots.save_figure(fig, path, dpi=120)
