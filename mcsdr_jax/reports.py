"""Final-evaluation outputs of the EF task: predictions.npz, tables and figures.

  WORKDIR/predictions[_<split>].npz   ids (N,), truth (N,), samples (N, K) in EF %
                                      (the test split writes predictions.npz)
  WORKDIR/plots/<split>_*.png         scatter, density (Fig. 5), posterior histograms
                                      (Fig. 8), DDIM trajectories (Figs. 6, 9, 10),
                                      PIT, calibration, σ per quality tier
Tables by quality tier (synthetic cohorts: from ground_truth.csv, with the tier's true
label-noise SD beside the mean predicted σ) and by age band (when Age is an attribute).
"""
from __future__ import annotations

import os
import pathlib

from absl import logging
import numpy as np

from cardiac_data import builders
from evaluation import plots
from evaluation import probabilistic


def _strip(name: str) -> str:
  return name[:-4] if name.lower().endswith(".avi") else name


def case_info(root, source, spec, keys) -> dict:
  """Per-case 'quality', 'label_noise_sd' (synthetic ground truth) and 'age' (attribute)."""
  info = {}
  gt_path = pathlib.Path(root) / "ground_truth.csv"
  if keys is not None and gt_path.is_file():
    import pandas as pd  # pylint: disable=g-import-not-at-top
    gt = pd.read_csv(gt_path)
    if "FileName" in gt.columns:      # EchoNet layouts: one row per video.
      gt.index = [_strip(str(f)) for f in gt["FileName"]]
      lookup = list(keys)
    else:                             # CAMUS: one row per patient, keys patientXXXX_<view>.
      gt.index = [str(p) for p in gt["Patient"]]
      lookup = [k.split("_")[0] for k in keys]
    found = [k in gt.index for k in lookup]
    if all(found):
      rows = gt.loc[lookup]
      info["quality"] = [str(q) for q in rows["Quality"]]
      info["label_noise_sd"] = rows["LabelNoiseSD"].to_numpy(float)
    else:
      logging.warning("ground_truth.csv: %d of %d cases not found; no quality table",
                      len(found) - sum(found), len(found))
  names = builders.metadata(source.dataset_info).get("attribute_names", []) \
      if hasattr(source, "dataset_info") else []
  if "Age" in names:
    info["age"] = builders.raw_attributes(source)[:, list(names).index("Age")]
  return info


def write_report(workdir: str, split: str, truth, samples, trajectories, keys, info, *,
                 ts=None, title: str = "") -> dict:
  """Writes predictions and figures; returns the tables to merge into metrics.json."""
  truth, samples = np.asarray(truth, float), np.asarray(samples, float)
  ids = list(keys) if keys is not None else [str(i) for i in range(truth.size)]
  name = "predictions.npz" if split == "test" else f"predictions_{split}.npz"
  np.savez(os.path.join(workdir, name), ids=np.asarray(ids, np.str_), truth=truth,
           samples=samples)
  out_dir = os.path.join(workdir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  png = lambda stem: os.path.join(out_dir, f"{split}_{stem}.png")  # noqa: E731
  point = np.clip(samples.mean(axis=1), 0.0, 100.0)
  k = samples.shape[1]
  sigma = samples.std(axis=1, ddof=1) if k > 1 else None
  plots.scatter_plot(png("scatter"), truth, point, yerr=sigma, title=title)
  plots.density_plot(png("density"), truth, point, title=title)
  tables = {}
  if k < 2:
    return tables
  case_ids = [str(i) for i in range(truth.size)]   # Figures show split indices, not file names.
  plots.posterior_histograms(png("posterior_hist"), samples, truth, ids=case_ids)
  plots.pit_histogram(png("pit"), probabilistic.pit_values(samples, truth,
                                                           np.random.default_rng(0)))
  plots.calibration_plot(png("calibration"), samples, truth)
  if trajectories is not None and ts is not None:
    order = np.argsort(sigma, kind="stable")
    pick = [order[0], order[len(order) // 2], order[-1]]
    titles = [f"case {i} ({kind}): σ {sigma[i]:.1f}"
              for i, kind in zip(pick, ("sharpest", "median", "widest"))]
    plots.trajectory_plot(png("trajectories"), ts, trajectories[pick][:, :20], truth[pick],
                          titles=titles)
  if "quality" in info:
    table = probabilistic.grouped_metrics(info["quality"], truth, samples)
    true_sd = {q: float(np.mean(info["label_noise_sd"][np.asarray(info["quality"]) == q]))
               for q in table}
    for q in table:
      table[q]["true_label_noise_sd"] = true_sd[q]
    tables["by_quality"] = table
    if "good" in table and "poor" in table:   # The built-in cohorts' tiers: σ should widen.
      tables["sigma_poor_over_good"] = table["poor"]["sigma_mean"] / table["good"]["sigma_mean"]
    plots.group_bar_plot(png("sigma_by_quality"), table, metric="sigma_mean", reference=true_sd,
                         reference_label="true label-noise SD",
                         title="Mean posterior σ per quality tier")
  if "age" in info:
    tables["by_age_band"] = probabilistic.grouped_metrics(
        probabilistic.age_band(info["age"]), truth, samples)
  return tables
