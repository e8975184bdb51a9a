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
