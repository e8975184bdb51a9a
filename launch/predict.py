"""Scores new echo videos with a trained run (MCSDR, its deterministic baseline, AdaCon)
or an imported published model (`launch.import_weights --format=echonet_r2plus1d`).

  python -m launch.predict --workdir=RUN --videos=DIR [--attributes=FILE.csv] --out=FILE.csv
  python -m launch.predict --workdir=RUN --data_root=DIR [--splits=test] --out=FILE.csv
  ... [--missing=Age,Weight|all]

--workdir: a training workdir (its best checkpoint, else its last) or an imported model.
Everything the model needs is read back from there, never refitted: the config, the
attribute preprocessing and the EF standardisation (the checkpoint's meta).
--videos: a bare folder of AVIs (no FileList; cardiac_data/folder.py), attributes from
  --attributes (FileName + attribute columns); a missing attribute uses the model's
  learned missing embedding. --data_root: a dataset in the run's layout (its
  config.data.dataset), every split it has (or --splits); labelled cases are scored too.
--missing: these attributes (names of the run's attributes, or 'all') are treated as
  missing for every video, whatever --attributes or the dataset gives
  (cardiac_data.attributes.mark_missing on each batch, as the preprocessor marks an
  absent value); recorded as `missing` in FILE_metrics.json.

Writes FILE.csv, one row per video: FileName, split, EF (the label, empty if none),
ef_pred (posterior mean clipped to [0, 100]), sigma (posterior SD), q05, q25, q75, q95
(the 90 % and 50 % central intervals); K = 1 models leave σ and the intervals empty.
With --samples_out=FILE.npz the K samples per video. Where cases have labels:
FILE_metrics.json (the evaluation metrics on the labelled cases, per split) and the
evaluation's figures in FILE_report/. The posterior is widened by the run's validation
σ-scale (its metrics.json spread_scale) when its config says spread_calibration='val'
(--spread_scale=none: the raw posterior).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any

from absl import app
from absl import flags
from absl import logging
import numpy as np

from launch import logs

RAW_ONLY = ("none", "raw")


def _define_flags():
  flags.DEFINE_string("workdir", None, "A training workdir or an imported model folder.")
  flags.DEFINE_string("videos", None, "A folder of .avi videos (no FileList needed).")
  flags.DEFINE_string("attributes", None, "CSV with FileName + attribute columns (--videos).")
  flags.DEFINE_string("data_root", None, "A dataset in the run's published layout.")
  flags.DEFINE_list("splits", None, "With --data_root: the splits to score (default: all).")
  flags.DEFINE_string("out", None, "The predictions CSV to write.")
  flags.DEFINE_string("samples_out", None, "Also write the K samples per video (.npz).")
  flags.DEFINE_integer("num_samples", None, "Posterior samples per video (default: the "
                       "run's config.sampling.num_samples).")
  flags.DEFINE_string("spread_scale", "auto", "'auto' (the run's validation σ-scale), "
                      "'none', or a number.")
  flags.DEFINE_integer("batch_size", None, "Override config.data.batch_size.")
  flags.DEFINE_integer("worker_count", None, "Override config.data.worker_count.")
  flags.DEFINE_integer("seed", None, "Seed of the posterior noise (default: the run's "
                       "config.seed + 1, the key of its own final evaluation).")
  flags.DEFINE_list("missing", [], "Attributes to treat as missing for every video: names "
                    "of the run's attributes (e.g. Age,Weight) or 'all'.")
  flags.mark_flags_as_required(["workdir", "out"])


def load_model(workdir: str) -> tuple[Any, dict, Any, dict]:
  """(config, task meta, evaluation params, {'which', 'step'}) of a run or an imported
  model, all read from `workdir`."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from backbones import torch_import  # pylint: disable=g-import-not-at-top
  from training import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from launch import import_weights  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(os.path.expanduser(workdir))
  imported = os.path.join(workdir, import_weights.MODEL_FILE)
  if os.path.isfile(imported):
    with open(os.path.join(workdir, "config.json")) as f:
      config = ml_collections.ConfigDict(json.load(f))
    with open(os.path.join(workdir, import_weights.META_FILE)) as f:
      meta = json.load(f)
    with np.load(imported, allow_pickle=False) as z:
      params = torch_import.unflatten({k: z[k] for k in z.files})
    return config, meta, params, {"which": "imported", "step": 0}
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"--workdir={workdir}: no checkpoints/ (a training workdir) and "
                            f"no {import_weights.MODEL_FILE} (an imported model)")
  params, meta, used = checkpoint_lib.read_run(workdir)
  config = ml_collections.ConfigDict(meta.pop("config"))
  meta.pop("metrics", None)
  logging.info("restored the %s checkpoint of %s (step %d)", used["which"], workdir, used["step"])
  return config, meta, params, used


def spread_scale(workdir: str, config, flag: str) -> float:
  """The σ-scale to apply: the run's validation fit (metrics.json), 1, or the flag's."""
  if flag in RAW_ONLY:
    return 1.0
  if flag != "auto":
    value = float(flag)
    if not value > 0:
      raise ValueError(f"--spread_scale must be > 0, 'auto' or 'none', got {flag}")
    return value
  if "sampling" not in config or config.sampling.spread_calibration != "val":
    return 1.0
  path = os.path.join(workdir, "metrics.json")
  if os.path.isfile(path):
    with open(path) as f:
      metrics = json.load(f)
    for key in ("test/spread_scale", "val/spread_scale"):
      if key in metrics:
        return float(metrics[key])
  logging.warning("%s: no spread_scale in metrics.json (the run did not finish?); the raw "
                  "posterior is reported", workdir)
  return 1.0


def make_sources(config, task, *, videos=None, attributes=None, data_root=None, splits=None,
                 tfds_dir: str = ""):
  """{split name: data source} to score."""
  from cardiac_data import folder  # pylint: disable=g-import-not-at-top
  from cardiac_data import sources as sources_lib  # pylint: disable=g-import-not-at-top
  if (videos is None) == (data_root is None):
    raise ValueError("pass exactly one of --videos (a folder of AVIs) or --data_root (a "
                     "dataset in its published layout)")
  d = config.data
  if videos is not None:
    rows = folder.read_attribute_csv(attributes, task.spec) if attributes else None
    if rows is None and task.spec.num_continuous + task.spec.num_categorical:
      logging.warning("no --attributes: every attribute is missing (the model's learned "
                      "missing embedding stands in)")
    return {"videos": folder.VideoFolder(videos, dataset=d.dataset, view=d.view,
                                         image_size=d.image_size, spec=task.spec,
                                         attributes=rows)}
  if attributes:
    raise ValueError("--attributes goes with --videos; a --data_root has its own FileList")
  d = config.data.copy_and_resolve_references()
  with d.unlocked():
    d.root = data_root
    d.tfds_dir = tfds_dir
  _, sources = sources_lib.load_sources(d, task.spec, required=tuple(splits or ()))
  if splits:
    sources = {s: sources[s] for s in splits}
  return sources


def score(task, params, sources, *, num_samples: int | None, seed: int, scale: float
          ) -> dict[str, dict[str, np.ndarray]]:
  """{split: {'keys', 'labels', 'samples' (N, K) in EF %}} of every source."""
  import jax  # pylint: disable=g-import-not-at-top
  from evaluation import probabilistic  # pylint: disable=g-import-not-at-top
  from cardiac_data import builders  # pylint: disable=g-import-not-at-top
  task.sources.update(sources)
  out = {}
  rng = jax.random.key(seed)        # One key for every split, as the training loop's.
  for split, source in sources.items():
    if task.config.task == "adacon":
      pred, _, labels = task.predict(params, split)
      samples = pred[:, None]
    else:
      k = num_samples or task.config.sampling.num_samples
      samples, labels, _ = task.predict(params, split, rng, num_samples=k)
    if samples.shape[1] > 1 and scale != 1.0:
      samples = probabilistic.scale_spread(samples, scale)
    keys = getattr(source, "keys", None)
    if not isinstance(keys, list):
      keys = builders.split_metadata(source, "key") or [str(i) for i in range(len(source))]
    out[split] = {"keys": list(keys), "labels": np.asarray(labels, float), "samples": samples}
  return out


def write_csv(path: str, scored) -> int:
  """One row per video; returns the number of rows."""
  rows = 0
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["FileName", "split", "EF", "ef_pred", "sigma", "q05", "q25", "q75", "q95"])
    for split, s in scored.items():
      samples = s["samples"]
      k = samples.shape[1]
      mean = np.clip(samples.mean(axis=1), 0.0, 100.0)
      if k > 1:
        sigma = samples.std(axis=1, ddof=1)
        q = np.quantile(samples, [0.05, 0.25, 0.75, 0.95], axis=1).T
      for i, key in enumerate(s["keys"]):
        label = s["labels"][i]
        extra = ([f"{sigma[i]:.4f}"] + [f"{v:.4f}" for v in q[i]]) if k > 1 else [""] * 5
        w.writerow([key, split, "" if not np.isfinite(label) else f"{label:.4f}",
                    f"{mean[i]:.4f}"] + extra)
        rows += 1
  os.replace(tmp, path)
  return rows


def evaluate(scored, report_dir: str, title: str) -> dict[str, float]:
  """Metrics per split on the labelled cases (as the training run's final evaluation)
  and its figures in `report_dir`; splits without a label are left out."""
  from cardiac_data import ef_data  # pylint: disable=g-import-not-at-top
  from evaluation import probabilistic  # pylint: disable=g-import-not-at-top
  from evaluation import regression  # pylint: disable=g-import-not-at-top
  from mcsdr_jax import reports  # pylint: disable=g-import-not-at-top
  metrics = {}
  for split, s in scored.items():
    if not np.isfinite(s["labels"]).any():      # A folder of videos: nothing to score against.
      continue
    keep = ef_data.labelled_cases(s["labels"], split)
    labels, samples = s["labels"][keep], s["samples"][keep]
    if samples.shape[1] > 1:
      m = probabilistic.probabilistic_metrics(labels, samples)
    else:
      m = regression.regression_metrics(labels, np.clip(samples[:, 0], 0.0, 100.0))
    m.update(ef_data.unlabelled_metrics(keep))
    os.makedirs(report_dir, exist_ok=True)
    keys = [k for k, ok in zip(s["keys"], keep) if ok]
    m.update(reports.write_report(report_dir, split, labels, samples, None, keys, {},
                                  title=f"{title}: {split}"))
    metrics.update({f"{split}/{k}": v for k, v in m.items()})
  return metrics


def predict(workdir: str, out: str, *, videos=None, attributes=None, data_root=None,
            splits=None, samples_out=None, num_samples=None, spread_scale_flag="auto",
            batch_size=None, worker_count=None, seed: int | None = None,
            missing=None) -> dict[str, Any]:
  """Scores the videos (see the module doc); returns a summary dict. `missing`: the
  --missing value (attribute names, 'all', or None / [] for none)."""
  from mcsdr_jax import missing_study  # pylint: disable=g-import-not-at-top
  from training import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from training import writers  # pylint: disable=g-import-not-at-top
  config, meta, params, ckpt = load_model(workdir)
  with config.unlocked():
    if batch_size:
      config.data.batch_size = batch_size
    if worker_count is not None:
      config.data.worker_count = worker_count
  task = tasks_lib.make_task(config, workdir, fitted=meta)
  task.missing = missing_study.resolve_missing(config, task.spec, missing)
  if task.missing:
    logging.info("attributes treated as missing for every video: %s", ", ".join(task.missing))
  scale = spread_scale(workdir, config, spread_scale_flag)
  sources = make_sources(config, task, videos=videos, attributes=attributes,
                         data_root=data_root, splits=splits)
  seed = config.seed + 1 if seed is None else seed
  scored = score(task, params, sources, num_samples=num_samples, seed=seed, scale=scale)
  rows = write_csv(out, scored)
  stem = os.path.splitext(out)[0]
  if samples_out:
    np.savez(samples_out, **{f"{split}/{name}": np.asarray(v) for split, s in scored.items()
                             for name, v in s.items()})
  metrics = evaluate(scored, stem + "_report", f"{config.data.dataset} ({config.task})")
  summary = {"rows": rows, "checkpoint": ckpt, "spread_scale": scale, "metrics": metrics,
             "missing": list(task.missing)}
  if metrics:
    writers.write_json(stem + "_metrics.json", dict(metrics, checkpoint=ckpt["which"],
                                                     spread_scale=scale,
                                                     missing=list(task.missing)))
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_libraries()
  from training import sharding  # pylint: disable=g-import-not-at-top
  sharding.maybe_initialize_distributed()   # Before any other JAX call (multi-process runs).
  f = flags.FLAGS
  summary = predict(f.workdir, f.out, videos=f.videos, attributes=f.attributes,
                    data_root=f.data_root, splits=f.splits, samples_out=f.samples_out,
                    num_samples=f.num_samples, spread_scale_flag=f.spread_scale,
                    batch_size=f.batch_size, worker_count=f.worker_count, seed=f.seed,
                    missing=f.missing)
  print(f"Wrote {summary['rows']} predictions to {f.out}"
        + (f" (missing: {', '.join(summary['missing'])})" if summary["missing"] else ""))
  for key in sorted(k for k in summary["metrics"] if k.endswith(("/mae", "/crps", "/coverage90"))):
    print(f"  {key}: {summary['metrics'][key]:.4g}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
