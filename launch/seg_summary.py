r"""Partial-label segmentation comparison: losses × architectures (× label-dropout p) × seeds.

  python -m launch.seg_summary --config=configs/seg_partial.py:inter --workdir=/tmp/seg_sum
  python -m launch.seg_summary --config=configs/seg_partial.py:inter --workdir=/tmp/seg_sum \
      --archs=unet,attention_unet,swin_unet --losses=full_labels,cce,acce,marginal,abce,pseudo
  python -m launch.seg_summary --config=configs/seg_partial.py:dropout --workdir=/tmp/seg_drop \
      --losses=acce,marginal,abce --dropout_ps=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1
  python -m launch.seg_summary --config=configs/seg_partial.py:all3,smoke --workdir=/tmp/s \
      --seeds=0,1                      # two seeds (default five: 0,1,2,3,4)

Each run is `training.loop.train_and_evaluate` of the config file's
`get_config("<variant>,<arch>,<loss>")`, the same config that `launch.train
--config=FILE:<variant>,<arch>,<loss>` trains (the architecture's optimiser and the
loss's settings are variants of the config file), with config.seed = each of --seeds, in
WORKDIR/<arch>-<loss>[-p<p>]/seed<k>. 'full_labels' is the fully labelled benchmark: CCE
with nothing withheld. Any --config.x=y override applies to every run, after the
variants; the seed is set last.

A run whose metrics.json exists is reused (re-running resumes the table), but only if the
config.json the loop wrote next to it equals the run's config now (tuples and lists
compare equal; IGNORED_FIELDS, which do not change results, may differ). A stale run
(another config, or a metrics.json without a config.json) stops the launcher with the
run folder and the differing fields: delete that folder or use a new --workdir. So does a
partial run (config.json, no metrics.json) of another config, which the loop would
otherwise resume.

Writes, in WORKDIR:
  summary.json  'rows': one row per run and seed (test Dice per structure overall and per
                domain, the Dice of the withheld structure in its domain, HD95, EF MAE);
                'aggregate': one entry per (arch, loss, p) with the mean, the SD over
                seeds (ddof=1; 0 for one seed) as '<key>_sd', and n.
  summary.md    the aggregate table (mean ± SD) and the per-domain test LV Dice table
                (Experiment 1: trained on config.data.domains, tested on every domain
                evaluated; the unseen ones are marked).
  summary.png   Dice per structure per loss, mean ± SD, one panel per architecture (like
                the paper's Figs. 3 and 5), or with --dropout_ps dropout_sweep.png (the
                withheld structure's Dice vs p, mean ± SD; Fig. 6).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS


def _define_flags():
  """Flags of the command line (defined only when run as a program, so importing
  this module next to launch.train in one process does not clash)."""
  config_flags.DEFINE_config_file("config", None, "configs/seg_partial.py[:variant].",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "Output folder.")
  flags.DEFINE_list("archs", ["unet"], "Architectures (segmentation.models.ARCHITECTURES).")
  flags.DEFINE_list("losses", ["full_labels", "cce", "marginal", "abce"],
                    "Losses (cce, acce, marginal, abce, pseudo) and/or full_labels.")
  flags.DEFINE_list("dropout_ps", [], "Label-dropout probabilities to sweep (empty: the "
                    "config's).")
  flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Training seeds (config.seed); "
                    "each (arch, loss, p) runs once per seed.")
  flags.mark_flags_as_required(["config", "workdir"])


BENCHMARK = "full_labels"
#: Dotted config fields that do not change a run's results (where files are cached, how
#: often the loss is logged, how many checkpoints are kept): a stored config.json may
#: differ from the current config in these.
IGNORED_FIELDS = ("data.cache_dir", "log_every", "checkpoint.keep")


def load_config_module(path: str):
  """The config file at `path` (configs/*.py) as a module."""
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_config(config_arg: str, overrides: dict, arch: str, loss: str, p: float | None,
               seed: int | None = None):
  """The config of one run: FILE's get_config with the --config variant plus `arch` and
  `loss`, then the --config.x=y `overrides`, label-dropout p if given, and config.seed =
  `seed` if given."""
  path, _, variant = config_arg.partition(":")
  c = load_config_module(path).get_config(",".join(v for v in (variant, arch, loss) if v))
  c.update_from_flattened_dict(dict(overrides))
  if p is not None and loss != BENCHMARK:
    c.loss.label_dropout = float(p)
  if seed is not None:
    c.seed = int(seed)
  return c


def run_name(arch: str, loss: str, p: float | None) -> str:
  """'<arch>-<loss>[-p<p>]': the folder of one (arch, loss, p), above its seeds."""
  return f"{arch}-{loss}" + ("" if p is None else f"-p{p:.1f}")


# ---------------------------------------------------------------------------------------
# Stale results.


def _json_round_trip(obj):
  """`obj` as JSON stores it (tuples become lists, non-JSON values strings)."""
  return json.loads(json.dumps(obj, default=str))


def _same(a, b) -> bool:
  """Equality of JSON values: ints equal floats, NaN equals NaN, booleans only booleans."""
  if isinstance(a, list) and isinstance(b, list):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  return a == b


_ABSENT = object()           # a field one config does not have


def _show(value) -> str:
  return "<absent>" if value is _ABSENT else json.dumps(value)


def config_differences(stored: dict, current: dict, ignore=IGNORED_FIELDS) -> list[str]:
  """'<dotted.field>: <stored> in the stored config.json, <current> now' for each leaf
  that differs, in sorted field order, after a JSON round trip of both (so tuples equal
  lists); fields in `ignore` and below them are skipped. [] if the configs agree."""
  out = []

  def walk(a, b, prefix: str):
    if prefix in ignore:
      return
    if isinstance(a, dict) and isinstance(b, dict):
      for k in sorted(set(a) | set(b)):
        walk(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{prefix}.{k}" if prefix else str(k))
    elif not _same(a, b):
      out.append(f"{prefix or '<config>'}: {_show(a)} in the stored config.json, "
                 f"{_show(b)} now")

  walk(_json_round_trip(stored), _json_round_trip(current), "")
  return out


def reusable_metrics(run_dir: str, config) -> dict | None:
  """The metrics.json of `run_dir` if it holds a finished run of `config`, None if it
  holds no finished run (train it).

  Raises app.UsageError naming `run_dir` and the differing fields if its config.json
  (written by training.loop at the start of the run) differs from `config`, and if a
  metrics.json has no config.json next to it (its config cannot be checked).
  """
  metrics_path = os.path.join(run_dir, "metrics.json")
  config_path = os.path.join(run_dir, "config.json")
  fix = "Delete that folder or use a new --workdir."
  has_metrics = os.path.isfile(metrics_path)
  if not os.path.isfile(config_path):
    if has_metrics:
      raise app.UsageError(f"{run_dir} holds a metrics.json but no config.json: its results "
                           f"cannot be checked against the config now. {fix}")
    return None
  with open(config_path) as f:
    stored = json.load(f)
  diff = config_differences(stored, config.to_dict())
  if diff:
    what = "results" if has_metrics else "a partial run (the loop would resume it)"
    raise app.UsageError(
        f"{run_dir} holds {what} of another config: {'; '.join(diff[:6])}"
        f"{'; …' if len(diff) > 6 else ''}. {fix}")
  if not has_metrics:
    return None
  with open(metrics_path) as f:
    return json.load(f)


# ---------------------------------------------------------------------------------------
# Rows, aggregation over seeds, tables.


def withheld_key(config) -> str | None:
  """'<domain>/dice_<structure>' of the first withheld structure, or None."""
  for domain, names in dict(config.data.withheld).items():
    for s in names:
      return f"{domain}/dice_{s}"
  return None


def summary_row(arch: str, loss: str, p, metrics: dict, key: str | None,
                seed: int | None = None) -> dict:
  """One run's row: test Dice per structure ('dice') and per domain ('dice_by_domain'),
  fg_dice, HD95 and EF MAE, the withheld structure's Dice, and the seed if given."""
  from segmentation import labels as labels_lib
  test = {k[len("test/"):]: v for k, v in metrics.items() if k.startswith("test/")}
  dice = {s: test.get(f"dice_{s}", float("nan")) for s in labels_lib.STRUCTURES}
  per_domain = {k: v for k, v in test.items() if "/dice_" in k}
  row = {"arch": arch, "loss": loss, "p": p, "dice": dice, "dice_by_domain": per_domain,
         "fg_dice": test.get("fg_dice"), "checkpoint": metrics.get("checkpoint"),
         **{k: test[k] for k in test if k.startswith(("hd95_", "ef_mae_"))}}
  if seed is not None:
    row["seed"] = seed
  if key is not None:
    row["withheld"] = key
    row["withheld_dice"] = test.get(key, float("nan"))
  return row


def _as_float(v) -> float:
  """A metric value as a float (metrics.json writes non-finite values as strings)."""
  return float("nan") if v is None else float(v)


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample SD (ddof=1; 0 for a single value) of `values`."""
  v = np.asarray([_as_float(x) for x in values], float)
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


#: Scalar row keys averaged over seeds (besides 'dice' and 'dice_by_domain').
_SCALARS = ("withheld_dice", "fg_dice")
_DICTS = ("dice", "dice_by_domain")


def aggregate(rows) -> list[dict]:
  """One entry per (arch, loss, p), in the order they first appear in `rows` (one row
  per seed): 'n' (rows), 'seeds', and for withheld_dice, fg_dice, hd95_*, ef_mae_* and
  each key of 'dice' and 'dice_by_domain' the mean under the row's key and the SD
  (ddof=1; 0 when n = 1) under '<key>_sd'. A key missing from some rows is averaged over
  the rows that have it."""
  groups: dict = {}
  for r in rows:
    groups.setdefault((r["arch"], r["loss"], r["p"]), []).append(r)
  out = []
  for (arch, loss, p), sub in groups.items():
    entry = {"arch": arch, "loss": loss, "p": p, "n": len(sub),
             "seeds": [r.get("seed") for r in sub]}
    if any("withheld" in r for r in sub):
      entry["withheld"] = next(r["withheld"] for r in sub if "withheld" in r)
    scalars = [k for k in _SCALARS if any(r.get(k) is not None for r in sub)]
    scalars += sorted({k for r in sub for k in r if k.startswith(("hd95_", "ef_mae_"))})
    for k in scalars:
      entry[k], entry[f"{k}_sd"] = mean_sd([r[k] for r in sub if r.get(k) is not None])
    for d in _DICTS:
      keys = list(dict.fromkeys(k for r in sub for k in r.get(d, {})))
      stats = {k: mean_sd([r[d][k] for r in sub if k in r.get(d, {})]) for k in keys}
      entry[d] = {k: m for k, (m, _) in stats.items()}
      entry[f"{d}_sd"] = {k: s for k, (_, s) in stats.items()}
    out.append(entry)
  return out


def _pm(mean, sd, digits: int = 3) -> str:
  return f"{_as_float(mean):.{digits}f} ± {_as_float(sd):.{digits}f}"


def format_table(rows) -> str:
  """Markdown table of the rows (withheld-structure Dice first).

  Rows of `aggregate` (they carry 'n') print as mean ± SD over the seeds with a column n;
  rows of single runs (`summary_row`) print their values.
  """
  if rows and all("n" in r for r in rows):
    head = "| arch | loss | p | n | withheld Dice | LV | LVM | LA | EF MAE (discs) |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
      p = "" if r["p"] is None else f"{r['p']:.1f}"
      dice = " | ".join(_pm(r["dice"].get(s), r["dice_sd"].get(s)) for s in ("lv", "lvm", "la"))
      lines.append(f"| {r['arch']} | {r['loss']} | {p} | {r['n']}"
                   f" | {_pm(r.get('withheld_dice'), r.get('withheld_dice_sd'))} | {dice}"
                   f" | {_pm(r.get('ef_mae_discs'), r.get('ef_mae_discs_sd'), 2)} |")
    return "\n".join(lines)
  head = "| arch | loss | p | withheld Dice | LV | LVM | LA | EF MAE (discs) |"
  lines = [head, "|" + "---|" * 8]
  for r in rows:
    p = "" if r["p"] is None else f"{r['p']:.1f}"
    lines.append(f"| {r['arch']} | {r['loss']} | {p} | {r.get('withheld_dice', float('nan')):.3f}"
                 f" | {r['dice']['lv']:.3f} | {r['dice']['lvm']:.3f} | {r['dice']['la']:.3f}"
                 f" | {r.get('ef_mae_discs', float('nan')):.2f} |")
  return "\n".join(lines)


def format_domain_table(agg, structure: str = "lv", trained_domains=None) -> str:
  """Markdown table of the test Dice of `structure` per domain ('<domain>/dice_<s>', one
  column per domain found), mean ± SD over seeds, one line per `aggregate` entry
  (Experiment 1). The columns of `trained_domains` (if given) come first, in that order;
  the other domains follow, marked unseen."""
  suffix = f"/dice_{structure}"
  found = list(dict.fromkeys(k[:-len(suffix)] for r in agg for k in r["dice_by_domain"]
                             if k.endswith(suffix)))
  trained = [d for d in (trained_domains or ()) if d in found]
  domains = trained + [d for d in found if d not in trained]      # seen first, then unseen
  def name(d):
    return d if trained_domains is None or d in trained_domains else f"{d} (unseen)"
  lines = ["| arch | loss | p | n | " + " | ".join(name(d) for d in domains) + " |",
           "|" + "---|" * (4 + len(domains))]
  for r in agg:
    p = "" if r["p"] is None else f"{r['p']:.1f}"
    cells = [_pm(r["dice_by_domain"][d + suffix], r["dice_by_domain_sd"][d + suffix])
             if d + suffix in r["dice_by_domain"] else "" for d in domains]
    lines.append(f"| {r['arch']} | {r['loss']} | {p} | {r['n']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def summary_markdown(agg, trained_domains=None) -> str:
  """summary.md: the aggregate table and the per-domain LV Dice table."""
  return (f"## Test Dice, mean ± SD over seeds\n\n{format_table(agg)}\n\n"
          "## Test LV Dice per domain, mean ± SD over seeds (Experiment 1)\n\n"
          f"{format_domain_table(agg, 'lv', trained_domains)}\n")


def parse_seeds(values) -> list[int]:
  """--seeds as distinct ints."""
  try:
    seeds = [int(s) for s in values]
  except ValueError as e:
    raise app.UsageError(f"--seeds: integers, got {values}") from e
  if not seeds or len(set(seeds)) != len(seeds):
    raise app.UsageError(f"--seeds: give one or more distinct seeds, got {values}")
  return seeds


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from launch import logs
  logs.quiet_libraries()
  from segmentation import plots
  from training import loop
  from training import writers
  base = FLAGS.config
  if base.task != "segmentation":
    raise app.UsageError(f"--config: task {base.task!r} is not 'segmentation'")
  config_arg = config_flags.get_config_filename(FLAGS["config"])
  overrides = config_flags.get_override_values(FLAGS["config"])
  for field in ("model.arch", "loss.name", "seed"):
    if field in overrides:
      raise app.UsageError(f"--config.{field}: give architectures with --archs, losses "
                           "with --losses and seeds with --seeds")
  seeds = parse_seeds(FLAGS.seeds)
  workdir = os.path.abspath(FLAGS.workdir)
  os.makedirs(workdir, exist_ok=True)
  key = withheld_key(base)
  ps = [float(p) for p in FLAGS.dropout_ps] or [None]
  rows = []
  for arch in FLAGS.archs:
    for loss in FLAGS.losses:
      for p in ps:
        if loss == BENCHMARK and p not in (None, ps[0]):
          continue                     # the benchmark has nothing to drop
        p = None if loss == BENCHMARK else p
        name = run_name(arch, loss, p)
        if os.path.isfile(os.path.join(workdir, name, "metrics.json")):
          logging.warning("%s: a run without seed folders (an older layout), not reused",
                          os.path.join(workdir, name))
        for seed in seeds:
          run_dir = os.path.join(workdir, name, f"seed{seed}")
          config = run_config(config_arg, overrides, arch, loss, p, seed)
          metrics = reusable_metrics(run_dir, config)
          if metrics is not None:
            logging.info("reusing %s", os.path.join(run_dir, "metrics.json"))
          else:
            logging.info("training %s seed %d", name, seed)
            metrics = loop.train_and_evaluate(config, run_dir)
          rows.append(summary_row(arch, loss, p, metrics, key, seed))
          writers.write_json(os.path.join(workdir, "summary.json"),
                             {"rows": rows, "aggregate": aggregate(rows)})
  agg = aggregate(rows)
  if ps != [None]:
    plots.sweep_plot(os.path.join(workdir, "dropout_sweep.png"),
                     [r for r in agg if r["p"] is not None],
                     title=f"{base.scenario}: {key}")
  else:
    plots.summary_plot(os.path.join(workdir, "summary.png"), agg, title=base.scenario)
  text = summary_markdown(agg, trained_domains=tuple(base.data.domains))
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(text)
  print(text, flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
