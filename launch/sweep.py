r"""Hyper-parameter sweeps: an Optuna study whose trials are `launch.train` subprocesses.

  python -m launch.sweep --config=configs/pediatric.py:smoke --workdir=DIR
  python -m launch.sweep --config=configs/pediatric.py --workdir=DIR \
      --config.sweep.grid="('sampling.steps=5,10,20,50', 'sampling.num_samples=5,10,40')"

The config declares its search space in `config.sweep` (configs/common.py:sweep):
  params: ("optim.lr=loguniform(1e-4, 3e-3)", "model.hidden=choice(64, 128)",
           "diffusion.aux_weight=uniform(0.3, 3)", "model.num_layers=int(1, 4)", ...)
  grid:   ("a.b=v1,v2,...", ...) — when set, a grid over their product (the paper's
          ablations, e.g. DDIM steps × K, architecture × loss) instead of `params`;
  metric, mode: the key of the trial's WORKDIR/metrics.json to optimise ('min'/'max');
  num_trials (ignored by a grid: its size), parallel (trials at once), seed.

Trial i trains in DIR/trials/<i> with `--config.<field>=<value>` overrides. The study
lives in DIR/study.db (SQLite: offline, no server). Killed and re-run with the same
command, the sweep resumes: trials left running are re-run in their own workdirs
(so `launch.train` resumes them from their checkpoints), finished ones are kept.
Writes DIR/sweep_summary.json (every trial, the best) and DIR/sweep.png (objective per
trial with the best so far, and against each swept field), and prints the table.
"""
from __future__ import annotations

import ast
import concurrent.futures
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _define_flags():
  """Flags of the command line (defined only when run as a program, so importing
  this module next to launch.train in one process does not clash)."""
  config_flags.DEFINE_config_file("config", None, "Config file with a `sweep` field.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Sweep folder (study.db, trials/, summary).")
  flags.DEFINE_string("train_module", "launch.train",
                      "Module each trial runs (tests substitute a fake one).")
  flags.mark_flags_as_required(["config", "workdir"])


_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(loguniform|uniform|int|choice)\((.*)\)\s*$")
_GRID = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.+)$")


def parse_space(params) -> dict[str, tuple[str, tuple]]:
  """'field=kind(args)' strings → {field: (kind, args)}; a clear error otherwise."""
  space = {}
  for spec in params:
    m = _SPEC.match(spec)
    if not m:
      raise ValueError(f"config.sweep.params: cannot parse {spec!r}; expected "
                       "'field=loguniform(lo, hi)', 'uniform(lo, hi)', 'int(lo, hi)' or "
                       "'choice(v1, v2, ...)'")
    field, kind, args = m.groups()
    values = ast.literal_eval(f"({args},)")
    if kind != "choice" and (len(values) != 2 or not values[0] < values[1]):
      raise ValueError(f"config.sweep.params: {spec!r} needs two bounds lo < hi")
    if kind == "loguniform" and values[0] <= 0:
      raise ValueError(f"config.sweep.params: {spec!r}: loguniform needs lo > 0")
    space[field] = (kind, tuple(values))
  return space


def parse_grid(grid) -> dict[str, list]:
  """'field=v1,v2,...' strings → {field: [values]}."""
  out = {}
  for spec in grid:
    m = _GRID.match(spec)
    if not m:
      raise ValueError(f"config.sweep.grid: cannot parse {spec!r}; expected 'field=v1,v2,...'")
    values = ast.literal_eval(f"({m.group(2)},)")
    out[m.group(1)] = list(values)
  return out


def check_fields(config, fields) -> None:
  """Every swept field must exist in the config (a typo is an error, not a no-op)."""
  for field in fields:
    node = config
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node:
        raise ValueError(f"config.sweep: field {field!r} is not in the config")
      node = node[part]


def suggest(trial, space):
  """Optuna suggestions for a parsed `params` space."""
  out = {}
  for field, (kind, v) in space.items():
    if kind == "loguniform":
      out[field] = trial.suggest_float(field, v[0], v[1], log=True)
    elif kind == "uniform":
      out[field] = trial.suggest_float(field, v[0], v[1])
    elif kind == "int":
      out[field] = trial.suggest_int(field, int(v[0]), int(v[1]))
    else:
      out[field] = trial.suggest_categorical(field, list(v))
  return out


def _flag_value(value) -> str:
  return repr(value) if isinstance(value, (tuple, list, str)) else str(value)


class Sweep:
  """One study in `workdir`; trials run `python -m <train_module>` subprocesses."""

  def __init__(self, config, config_arg: str, workdir: str, train_module: str = "launch.train",
               overrides: tuple[str, ...] = ()):
    import optuna  # pylint: disable=g-import-not-at-top
    self.optuna = optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "sweep" not in config:
      raise ValueError(f"{config_arg}: the config has no `sweep` field (configs/common.py:sweep)")
    self.cfg = config.sweep
    self.config_arg = config_arg
    self.workdir = os.path.abspath(workdir)
    self.train_module = train_module
    self.overrides = tuple(overrides)
    os.makedirs(os.path.join(self.workdir, "trials"), exist_ok=True)
    self.grid = parse_grid(self.cfg.grid)
    self.space = {} if self.grid else parse_space(self.cfg.params)
    check_fields(config, self.grid or self.space)
    if not (self.grid or self.space):
      raise ValueError("config.sweep: neither `params` nor `grid` declares a field to sweep")
    if self.cfg.mode not in ("min", "max"):
      raise ValueError(f"config.sweep.mode must be 'min' or 'max', got {self.cfg.mode!r}")
    # A grid is enqueued point by point (GridSampler stops the study from `tell`,
    # which only works inside `optimize`); the sampler then only replays them.
    sampler = (optuna.samplers.RandomSampler(seed=self.cfg.seed) if self.grid
               else optuna.samplers.TPESampler(seed=self.cfg.seed))
    self.study = optuna.create_study(
        study_name="sweep", storage=f"sqlite:///{os.path.join(self.workdir, 'study.db')}",
        sampler=sampler, load_if_exists=True,
        direction="minimize" if self.cfg.mode == "min" else "maximize")
    self.num_trials = (math.prod(len(v) for v in self.grid.values()) if self.grid
                       else int(self.cfg.num_trials))
    self._lock = threading.Lock()
    self._done = 0

  def trial_dir(self, number: int) -> str:
    return os.path.join(self.workdir, "trials", f"{number:04d}")

  def run_trial(self, number: int, params: dict) -> float:
    """Trains one trial (resuming its workdir if it has a checkpoint); its objective."""
    workdir = self.trial_dir(number)
    os.makedirs(workdir, exist_ok=True)
    cmd = [sys.executable, "-m", self.train_module, f"--config={self.config_arg}",
           f"--workdir={workdir}", *self.overrides]
    cmd += [f"--config.{k}={_flag_value(v)}" for k, v in params.items()]
    with open(os.path.join(workdir, "params.json"), "w") as f:
      json.dump(params, f, indent=1)
    start = time.time()
    with open(os.path.join(workdir, "stdout.log"), "a") as out, \
         open(os.path.join(workdir, "stderr.log"), "a") as err:
      proc = subprocess.run(cmd, stdout=out, stderr=err, cwd=os.getcwd())
    if proc.returncode != 0:
      raise RuntimeError(f"trial {number} failed (exit {proc.returncode}); see "
                         f"{os.path.join(workdir, 'stderr.log')}")
    with open(os.path.join(workdir, "metrics.json")) as f:
      metrics = json.load(f)
    if self.cfg.metric not in metrics:
      raise KeyError(f"trial {number}: config.sweep.metric {self.cfg.metric!r} is not in "
                     f"metrics.json (keys: {sorted(metrics)[:12]} ...)")
    value = float(metrics[self.cfg.metric])
    with open(os.path.join(workdir, "seconds.txt"), "a") as f:
      f.write(f"{time.time() - start:.1f}\n")
    return value

  def _finish(self, number: int, params: dict) -> None:
    state = self.optuna.trial.TrialState
    try:
      value = self.run_trial(number, params)
      if not math.isfinite(value):
        raise ValueError(f"trial {number}: objective {value}")
      self.study.tell(number, value)
      msg = f"{self.cfg.metric} = {value:.4g}"
    except (RuntimeError, KeyError, ValueError, OSError) as e:
      logging.warning("%s", e)
      self.study.tell(number, state=state.FAIL)
      msg = "FAILED"
    with self._lock:
      self._done += 1
      print(f"[sweep] trial {number} {params}: {msg} ({self._done} this session)", flush=True)

  def _new_trial(self):
    with self._lock:
      trial = self.study.ask()
      params = ({k: trial.suggest_categorical(k, v) for k, v in self.grid.items()} if self.grid
                else suggest(trial, self.space))
    return trial.number, params

  def run(self) -> dict:
    """Resumes interrupted trials, runs the remaining ones, writes the summary."""
    state = self.optuna.trial.TrialState
    trials = self.study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state == state.RUNNING]
    finished = sum(t.state in (state.COMPLETE, state.FAIL, state.PRUNED) for t in trials)
    remaining = max(0, self.num_trials - finished - len(stale))
    if trials:
      print(f"[sweep] resuming: {finished} finished, {len(stale)} interrupted, "
            f"{remaining} new of {self.num_trials}", flush=True)
    if self.grid:
      # Points already tried, running, or enqueued by a killed session (WAITING).
      waiting = [t for t in trials if t.state == state.WAITING]
      seen = {tuple(sorted((t.params or t.system_attrs.get("fixed_params", {})).items()))
              for t in trials}
      todo = [p for p in (dict(zip(self.grid, v)) for v in itertools.product(*self.grid.values()))
              if tuple(sorted(p.items())) not in seen]
      for p in todo:
        self.study.enqueue_trial(p)
      remaining = len(todo) + len(waiting)
    parallel = max(1, int(self.cfg.parallel))
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
      jobs = [pool.submit(self._finish, t.number, dict(t.params)) for t in stale]

      def fresh():
        number, params = self._new_trial()
        self._finish(number, params)

      jobs += [pool.submit(fresh) for _ in range(remaining)]
      for job in jobs:
        job.result()
    return self.summary()

  def summary(self) -> dict:
    rows = []
    for t in self.study.get_trials(deepcopy=False):
      rows.append(dict(number=t.number, state=t.state.name, value=t.value, params=t.params))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = (min if self.cfg.mode == "min" else max)(done, key=lambda r: r["value"]) if done else None
    out = dict(metric=self.cfg.metric, mode=self.cfg.mode, num_trials=self.num_trials,
               complete=len(done), failed=sum(r["state"] == "FAIL" for r in rows),
               best=best, trials=rows,
               kind="grid" if self.grid else "optuna-tpe")
    path = os.path.join(self.workdir, "sweep_summary.json")
    with open(path + ".tmp", "w") as f:
      json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    self._plot(done)
    self._print(rows, best)
    return out

  def _print(self, rows, best) -> None:
    fields = sorted({k for r in rows for k in r["params"]})
    head = ["trial", "state", self.cfg.metric] + fields
    lines = [head]
    for r in sorted(rows, key=lambda r: r["number"]):
      v = "" if r["value"] is None else f"{r['value']:.4g}"
      lines.append([str(r["number"]), r["state"], v] +
                   [f"{r['params'].get(k, ''):.4g}" if isinstance(r["params"].get(k), float)
                    else str(r["params"].get(k, "")) for k in fields])
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    for l in lines:
      print("  ".join(c.ljust(w) for c, w in zip(l, widths)))
    if best:
      print(f"best: trial {best['number']} {self.cfg.metric} = {best['value']:.4g} "
            f"{best['params']}", flush=True)

  def _plot(self, done) -> None:
    if not done:
      return
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    done = sorted(done, key=lambda r: r["number"])
    fields = sorted({k for r in done for k in r["params"]})
    fig, axes = plt.subplots(1, 1 + len(fields), figsize=(4 * (1 + len(fields)), 3.4),
                             squeeze=False)
    x = [r["number"] for r in done]
    y = [r["value"] for r in done]
    acc = list(itertools.accumulate(y, min if self.cfg.mode == "min" else max))
    ax = axes[0, 0]
    ax.plot(x, y, "o", color="tab:blue", label="trial")
    ax.step(x, acc, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(self.cfg.metric)
    ax.legend(frameon=False)
    for ax, field in zip(axes[0, 1:], fields):
      vals = [r["params"].get(field) for r in done]
      numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
      ax.plot(vals if numeric else [str(v) for v in vals], y, "o", color="tab:blue")
      kind = self.space.get(field, ("",))[0]
      if numeric and kind == "loguniform":
        ax.set_xscale("log")
      ax.set_xlabel(field)
    fig.tight_layout()
    fig.savefig(os.path.join(self.workdir, "sweep.png"), dpi=120)
    plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Trials re-read the config file with this command's --config.* overrides, except
  # those of config.sweep itself.
  config_arg = flags.FLAGS["config"].config_filename
  overrides = [a for a in sys.argv[1:]
               if a.startswith("--config.") and not a.startswith("--config.sweep.")]
  sweep = Sweep(FLAGS.config, config_arg, FLAGS.workdir, FLAGS.train_module, overrides)
  sweep.run()
  print(f"Summary written to {os.path.join(sweep.workdir, 'sweep_summary.json')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
