"""Training steps/s of the real loop (`launch.train`, input pipeline included) under
different host settings, side by side in one run.

  python -m benchmarks.train_loop [--config=configs/pediatric.py] [--steps=400]
      [--repeats=2] [--json=PATH]

Each setting trains `--steps` steps of the config in its own process (the CPU device
count is fixed when JAX starts), interleaved over `--repeats` rounds so that machine
noise hits every setting alike. The rate is the loop's own `steps_per_s`
(WORKDIR/metrics.jsonl, one value per `log_every` window), median over the windows after
the first (which includes compilation); evaluation and checkpoints are switched off.
Settings compared (`SETTINGS`, overrides of the config's own defaults):
  * before: the host settings every config had before issue 19 (one CPU device,
    XLA:CPU's YNNPACK fusions on, 2 grain workers);
  * default: the config as it is (configs/common.py: one CPU device per core;
    configs/pediatric.py: YNNPACK fusions off);
  * kernels: the default but one CPU device (the kernel choice alone);
  * devices: the default but YNNPACK on (one device per core alone);
  * auto_workers: the default with config.data.worker_count=-1 (half the cores);
  * in_process: the default with batches made in the training process (0 workers).
The train loss of the last window is reported per setting: the settings change
scheduling, not the computation (equal up to float32 summation order).
`run(...)` returns the numbers as a dict (for benchmarks/run_all.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "before": ("--config.sharding.cpu_devices=1", "--config.sharding.cpu_ynnpack=True",
               "--config.data.worker_count=2"),
    "default": (),
    "kernels": ("--config.sharding.cpu_devices=1",),
    "devices": ("--config.sharding.cpu_ynnpack=True",),
    "auto_workers": ("--config.data.worker_count=-1",),
    "in_process": ("--config.data.worker_count=0",),
}


def train_once(config: str, setting: tuple[str, ...], steps: int, log_every: int,
               workdir: str) -> dict:
  """Runs launch.train in a subprocess; returns its window rates and last loss."""
  cmd = [sys.executable, "-m", "launch.train", f"--config={config}", f"--workdir={workdir}",
         f"--config.num_steps={steps}", f"--config.log_every={log_every}",
         f"--config.eval_every={10 * steps}", f"--config.checkpoint.save_every={10 * steps}",
         "--config.final_eval_splits=()", *setting]
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [r for r in rows if r.get("split") == "train" and "steps_per_s" in r]
  return dict(rates=[r["steps_per_s"] for r in train[1:]], loss=train[-1]["loss"])


def run(config: str = "configs/pediatric.py", *, steps: int = 400, log_every: int = 50,
        repeats: int = 2, settings=tuple(SETTINGS), log=print) -> dict:
  from evaluation.devices import device_name  # pylint: disable=g-import-not-at-top
  from cardiac_data.host import usable_cores  # pylint: disable=g-import-not-at-top
  out = {name: dict(rates=[], losses=[]) for name in settings}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(repeats):
      for name in settings:
        res = train_once(config, SETTINGS[name], steps, log_every,
                         os.path.join(tmp, f"{name}{r}"))
        out[name]["rates"] += res["rates"]
        out[name]["losses"].append(res["loss"])
        log(f"[train_loop] round {r} {name}: {statistics.median(res['rates']):.2f} steps/s, "
            f"loss {res['loss']:.5f}")
  for name, row in out.items():
    row["steps_per_s"] = statistics.median(row["rates"])
    row["over_before"] = (row["steps_per_s"] / statistics.median(out["before"]["rates"])
                          if "before" in out else None)
  return dict(device=device_name(), cores=usable_cores(), config=config, steps=steps,
              settings={k: list(SETTINGS[k]) for k in settings}, results=out)


def format_table(r: dict) -> str:
  lines = [f"training loop steps/s, {r['config']} ({r['steps']} steps), {r['device']}, "
           f"{r['cores']} usable cores",
           f"{'setting':12s} {'steps/s':>8s} {'× before':>9s} {'last loss':>10s}  flags"]
  for name, row in r["results"].items():
    ratio = f"{row['over_before']:.2f}" if row["over_before"] else "n/a"
    loss = ", ".join(f"{x:.4f}" for x in row["losses"])
    lines.append(f"{name:12s} {row['steps_per_s']:8.2f} {ratio:>9s} {loss:>10s}  "
                 f"{' '.join(r['settings'][name])}")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/pediatric.py")
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--log_every", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--settings", default=",".join(SETTINGS))
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  r = run(args.config, steps=args.steps, log_every=args.log_every, repeats=args.repeats,
          settings=tuple(args.settings.split(",")))
  print(format_table(r))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(r, f, indent=1)


if __name__ == "__main__":
  main()
