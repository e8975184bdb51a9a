"""Segmentation figures (PNG): example predictions, Dice per structure (MELBA Figs. 3, 5–7)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cardiac_data import seg_scenario  # noqa: E402
from evaluation import plots as eval_plots  # noqa: E402
from segmentation import labels as labels_lib  # noqa: E402

# Blue LV, green LVM, yellow LA (the paper's Fig. 1 colours).
_COLOURS = np.array([[0, 0, 0, 0], [0.1, 0.35, 1, 0.55], [0.1, 0.8, 0.2, 0.55],
                     [1, 0.85, 0.1, 0.55]])


def examples_plot(path, images, ref, pred, domain, domains, per_domain: int = 2) -> None:
  """Rows: a few images of each domain; columns: image, reference, prediction."""
  rows = []
  for name in domains:
    idx = np.nonzero(domain == seg_scenario.DOMAINS.index(name))[0][:per_domain]
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


def summary_plot(path, rows, structures_key: str = "dice", title: str = "") -> None:
  """Dice per structure per loss, one panel per architecture (like MELBA Figs. 3, 6).

  rows: dicts with 'arch', 'loss' and '<structures_key>' = {label: value}; a row's
  'withheld'/'withheld_dice' (the withheld structure in its domain) adds a group.
  """
  rows = [dict(r, **{structures_key: dict(r[structures_key], **(
      {r["withheld"]: r["withheld_dice"]} if r.get("withheld") else {}))}) for r in rows]
  archs = sorted({r["arch"] for r in rows})
  fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 3.2), squeeze=False)
  for ax, arch in zip(axes[0], archs):
    sub = [r for r in rows if r["arch"] == arch]
    names = list(sub[0][structures_key])
    width = 0.8 / max(1, len(sub))
    x = np.arange(len(names))
    for k, r in enumerate(sub):
      ax.bar(x + k * width, [r[structures_key][n] for n in names], width, label=r["loss"])
    ax.set_xticks(x + 0.4 - width / 2, names, fontsize=7)
    ax.set(ylim=(0, 1), ylabel="test Dice", title=f"{arch} {title}".strip())
    ax.legend(fontsize=7, frameon=False)
  eval_plots.save_figure(fig, path, dpi=120)


def sweep_plot(path, rows, title: str = "") -> None:
  """Dice on the withheld structure vs label-dropout p, one line per loss (Fig. 6)."""
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for loss in sorted({r["loss"] for r in rows}):
    sub = sorted((r for r in rows if r["loss"] == loss), key=lambda r: r["p"])
    ax.plot([r["p"] for r in sub], [r["withheld_dice"] for r in sub], "o-", label=loss)
  ax.set(xlabel="label dropout p", ylabel="test Dice (withheld structure)", ylim=(0, 1),
         title=title)
  ax.legend(fontsize=7, frameon=False)
  eval_plots.save_figure(fig, path, dpi=120)
