"""AdaCon Figs. 3 and 4: feature similarity against label distance, and the angular
layout of the embeddings coloured by label (matplotlib, Agg, PNG)."""
from __future__ import annotations

import numpy as np

from evaluation import plots as eval_plots

plt = eval_plots.plt


def similarity_pairs(z, phi, num_pairs: int = 2000, seed: int = 0):
  """(|φ_i − φ_j|, z_i·z_j) for `num_pairs` random pairs i ≠ j (all pairs if fewer)."""
  z, phi = np.asarray(z, np.float64), np.asarray(phi, np.float64)
  n = len(z)
  i, j = np.triu_indices(n, k=1)
  if i.size > num_pairs:
    pick = np.random.default_rng(seed).choice(i.size, num_pairs, replace=False)
    i, j = i[pick], j[pick]
  return np.abs(phi[i] - phi[j]), np.sum(z[i] * z[j], axis=1)


def angular_positions(z):
  """Angle θ_i = arccos(z_i·z_a) ∈ [0, π] from endpoint a, where (a, b) is the pair of
  least cosine similarity (Fig. 3a–d); returns (θ, a, b)."""
  z = np.asarray(z, np.float64)
  sim = np.clip(z @ z.T, -1.0, 1.0)
  a, b = np.unravel_index(np.argmin(sim), sim.shape)
  return np.arccos(sim[a]), int(a), int(b)


def similarity_plot(path: str, z, phi, *, title: str = "") -> None:
  """Fig. 3e–h / 4e–h: cosine similarity of random pairs against |Δφ| with a trend line."""
  dphi, sim = similarity_pairs(z, phi)
  fig, ax = plt.subplots(figsize=(4.2, 3.4))
  ax.scatter(dphi, sim, s=4, alpha=0.4, color="tab:blue", lw=0)
  if dphi.size > 1 and np.ptp(dphi) > 0:
    slope, icept = np.polyfit(dphi, sim, 1)
    xs = np.array([0.0, dphi.max()])
    ax.plot(xs, icept + slope * xs, color="tab:red", lw=1.4, label=f"slope {slope:.2f}")
    ax.legend(fontsize=7, frameon=False)
  ax.set(xlabel="|φ(y_i) − φ(y_j)|", ylabel="cos(z_i, z_j)", ylim=(-1.05, 1.05),
         title=title or "Feature similarity vs label distance")
  eval_plots.save_figure(fig, path)


def angular_plot(path: str, z, labels, *, title: str = "", label: str = "EF (%)") -> None:
  """Fig. 3a–d / 4a–d: one ray per case at its angle from the least-similar endpoint,
  coloured from low (blue) to high (red) label."""
  theta, _, _ = angular_positions(z)
  labels = np.asarray(labels, float)
  fig, ax = plt.subplots(figsize=(4.6, 2.8))
  norm = plt.Normalize(float(labels.min()), float(labels.max()) + 1e-9)
  cmap = plt.get_cmap("coolwarm")
  for t, y in sorted(zip(theta, labels), key=lambda p: p[1]):
    ax.plot([0, np.cos(t)], [0, np.sin(t)], color=cmap(norm(y)), lw=0.6, alpha=0.7)
  sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
  fig.colorbar(sm, ax=ax, label=label)
  ax.set(xlim=(-1.05, 1.05), ylim=(-0.05, 1.05), title=title or "Angular embedding")
  ax.set_aspect("equal")
  ax.axis("off")
  eval_plots.save_figure(fig, path)
