r"""Partial-label segmentation comparison: losses × architectures (× label-dropout p).

  python -m launch.seg_summary --config=configs/seg_partial.py:inter --workdir=/tmp/seg_sum
  python -m launch.seg_summary --config=configs/seg_partial.py:inter --workdir=/tmp/seg_sum \
      --archs=unet,attention_unet,swin_unet --losses=full_labels,cce,acce,marginal,abce,pseudo
  python -m launch.seg_summary --config=configs/seg_partial.py:dropout --workdir=/tmp/seg_drop \
      --losses=acce,marginal,abce --dropout_ps=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1

Each run is `training.loop.train_and_evaluate` of the config file's
`get_config("<variant>,<arch>,<loss>")`, the same config that `launch.train
--config=FILE:<variant>,<arch>,<loss>` trains (the architecture's optimiser and the
loss's settings are variants of the config file), in WORKDIR/<arch>-<loss>[-p<p>]; a run
whose metrics.json exists is reused (re-running resumes the table). 'full_labels' is the
fully labelled benchmark: CCE with nothing withheld. Any --config.x=y override applies
to every run, after the variants.

Writes WORKDIR/summary.json (one row per run: test Dice per structure overall and per
domain, the Dice of the withheld structure in its domain, HD95, EF MAE) and
WORKDIR/summary.png (Dice per structure per loss, one panel per architecture, like the
paper's Figs. 3 and 5), or with --dropout_ps WORKDIR/dropout_sweep.png (Fig. 6).
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
  flags.mark_flags_as_required(["config", "workdir"])


BENCHMARK = "full_labels"


def load_config_module(path: str):
  """The config file at `path` (configs/*.py) as a module."""
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_config(config_arg: str, overrides: dict, arch: str, loss: str, p: float | None):
  """The config of one run: FILE's get_config with the --config variant plus `arch` and
  `loss`, then the --config.x=y `overrides`, and label-dropout p if given."""
  path, _, variant = config_arg.partition(":")
  c = load_config_module(path).get_config(",".join(v for v in (variant, arch, loss) if v))
  c.update_from_flattened_dict(dict(overrides))
  if p is not None and loss != BENCHMARK:
    c.loss.label_dropout = float(p)
  return c


def withheld_key(config) -> str | None:
  """'<domain>/dice_<structure>' of the first withheld structure, or None."""
  for domain, names in dict(config.data.withheld).items():
    for s in names:
      return f"{domain}/dice_{s}"
  return None


def summary_row(arch: str, loss: str, p, metrics: dict, key: str | None) -> dict:
  from segmentation import labels as labels_lib
  test = {k[len("test/"):]: v for k, v in metrics.items() if k.startswith("test/")}
  dice = {s: test.get(f"dice_{s}", float("nan")) for s in labels_lib.STRUCTURES}
  per_domain = {k: v for k, v in test.items() if "/dice_" in k}
  row = {"arch": arch, "loss": loss, "p": p, "dice": dice, "dice_by_domain": per_domain,
         "fg_dice": test.get("fg_dice"), "checkpoint": metrics.get("checkpoint"),
         **{k: test[k] for k in test if k.startswith(("hd95_", "ef_mae_"))}}
  if key is not None:
    row["withheld"] = key
    row["withheld_dice"] = test.get(key, float("nan"))
  return row


def format_table(rows) -> str:
  """Markdown table of the rows (withheld-structure Dice first)."""
  head = "| arch | loss | p | withheld Dice | LV | LVM | LA | EF MAE (discs) |"
  lines = [head, "|" + "---|" * 8]
  for r in rows:
    p = "" if r["p"] is None else f"{r['p']:.1f}"
    lines.append(f"| {r['arch']} | {r['loss']} | {p} | {r.get('withheld_dice', float('nan')):.3f}"
                 f" | {r['dice']['lv']:.3f} | {r['dice']['lvm']:.3f} | {r['dice']['la']:.3f}"
                 f" | {r.get('ef_mae_discs', float('nan')):.2f} |")
  return "\n".join(lines)


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
  for field in ("model.arch", "loss.name"):
    if field in overrides:
      raise app.UsageError(f"--config.{field}: give architectures with --archs and losses "
                           "with --losses")
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
        name = f"{arch}-{loss}" + ("" if p is None else f"-p{p:.1f}")
        run_dir = os.path.join(workdir, name)
        path = os.path.join(run_dir, "metrics.json")
        if os.path.isfile(path):
          with open(path) as f:
            metrics = json.load(f)
          logging.info("reusing %s", path)
        else:
          logging.info("training %s", name)
          metrics = loop.train_and_evaluate(
              run_config(config_arg, overrides, arch, loss, p), run_dir)
        rows.append(summary_row(arch, loss, p, metrics, key))
        writers.write_json(os.path.join(workdir, "summary.json"), {"rows": rows})
  if ps != [None]:
    plots.sweep_plot(os.path.join(workdir, "dropout_sweep.png"),
                     [r for r in rows if r["p"] is not None],
                     title=f"{base.scenario}: {key}")
  else:
    plots.summary_plot(os.path.join(workdir, "summary.png"), rows, title=base.scenario)
  table = format_table(rows)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(table + "\n")
  print(table, flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
