"""Every benchmark in one table, with the device name; also written as JSON.

  python benchmarks/run_all.py [--json=benchmark_results.json] [--quick] [--no_scaling]

Sections (each module also runs alone, with more options):
  * train step: clips/s of the jitted train step of each task's default config
    (`benchmarks.train_step`; on a known GPU/TPU also MFU of the bf16 video
    encoder config, `configs/pediatric.py:full`, target ≥ 35 % on an H100);
  * MCSDR posterior: K = 40 DDIM-10 posterior over a deterministic forward, and the
    head's share of the encoder time (`benchmarks.mcsdr_posterior`; targets in its
    docstring: posterior/deterministic ≤ 1.5 (CPU model), head ≤ 10 % of encoder);
  * EPDiff: registration objectives (pairs/s) at 128² with 10 Euler steps
    (`benchmarks.epdiff_throughput`; GPU target ≥ 10,000 pairs/s);
  * input pipeline: clips/s of the grain loader (`benchmarks.pipeline_throughput`);
  * scaling (unless --no_scaling): how each cost grows: EPDiff ms/pair vs grid size (full
    grid and band-limited), MCSDR posterior vs K and vs batch, pipeline vs grain workers,
    train step vs batch size, each with the exponent b of time ≈ a·x^b fitted on log–log
    and where the first segment's trend stops (`benchmarks.scaling`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TASK_CONFIGS = ("configs/pediatric.py", "configs/adacon_dynamic.py", "configs/lamod_dense.py",
                "configs/seg_partial.py")


def _section(name, fn, results, errors):
  t0 = time.perf_counter()
  print(f"[run_all] {name} ...", flush=True)
  try:
    results[name] = fn()
  except Exception as e:  # pylint: disable=broad-except
    errors[name] = f"{type(e).__name__}: {e}"
    print(f"[run_all] {name} FAILED: {errors[name]}", flush=True)
  print(f"[run_all] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)


def run(quick: bool = False, scaling: bool = True) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from evaluation import devices  # pylint: disable=g-import-not-at-top
  from benchmarks import epdiff_throughput  # pylint: disable=g-import-not-at-top
  from benchmarks import mcsdr_posterior  # pylint: disable=g-import-not-at-top
  from benchmarks import pipeline_throughput  # pylint: disable=g-import-not-at-top
  from benchmarks import scaling as scaling_lib  # pylint: disable=g-import-not-at-top
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()   # grain workers read absl flags (never parsed here)
  gpu = jax.devices()[0].platform != "cpu"
  results, errors = {}, {}
  configs = TASK_CONFIGS[:1] if quick else TASK_CONFIGS
  _section("train_step", lambda: train_step.run(configs, steps=5 if quick else 20,
                                                repeats=1 if quick else 3), results, errors)
  if gpu:
    _section("train_step_bf16", lambda: train_step.run(("configs/pediatric.py:full",),
                                                       dtype="bfloat16"), results, errors)
  _section("mcsdr_posterior", lambda: mcsdr_posterior.run(
      encoders=("small", "r2plus1d") if gpu else ("small",), batch_sizes=(8,), ks=(1, 40),
      repeats=2 if quick else 5, min_repeats=1 if quick else 2, log=lambda *a: None),
      results, errors)
  _section("epdiff", lambda: epdiff_throughput.run(
      sizes=(128,), batches=(256,) if gpu else (16,), integrators=("euler",), n_steps=10,
      modes=("forward",), repeats=1 if quick else 3, numpy_baseline=False), results, errors)
  _section("pipeline", lambda: pipeline_throughput.run(
      num_videos=16 if quick else 48, epochs=1 if quick else 2), results, errors)
  if scaling:
    _section("scaling", lambda: scaling_lib.run(quick), results, errors)
  return dict(device=devices.device_name(), jax=jax.__version__, results=results,
              errors=errors, quick=quick)


def format_table(r: dict) -> str:
  res = r["results"]
  lines = [f"Benchmarks on {r['device']} (jax {r['jax']}){' [quick]' if r['quick'] else ''}",
           f"{'benchmark':58s} {'value':>14s}"]
  add = lambda name, value: lines.append(f"{name:58s} {value:>14s}")
  for key in ("train_step", "train_step_bf16"):
    for row in res.get(key, {}).get("rows", []):
      add(f"train step {row['config']} (batch {row['batch_size']}) clips/s",
          f"{row['clips_per_s']:.2f}")
      if "mfu" in row:
        add(f"  MFU ({row['model_dtype']})", f"{100 * row['mfu']:.1f}%")
  post = res.get("mcsdr_posterior", {})
  for name, enc in post.get("encoders", {}).items():
    for row in enc.get("batches", []):
      b = row["batch_size"]
      add(f"MCSDR {name} B={b} posterior(K={post['num_samples']}, {post['sampler']}) "
          "/ deterministic", f"{row['posterior_over_deterministic']:.3f}")
      add(f"MCSDR {name} B={b} head / encoder time", f"{100 * row['head_over_encoder']:.2f}%")
  for row in res.get("epdiff", {}).get("rows", []):
    add(f"EPDiff {row['size']}² {row['integrator']} {res['epdiff']['n_steps']} steps "
        f"batch {row['batch']} {row['mode']} pairs/s", f"{row['pairs_per_s']:.0f}")
  pipe = res.get("pipeline", {})
  for k, v in pipe.items():
    if k.endswith("clips_per_s") and isinstance(v, (int, float)):
      add(f"input pipeline {k}", f"{v:.1f}")
  for name, err in r["errors"].items():
    add(f"{name} FAILED", err[:14])
  if "scaling" in res:
    from benchmarks import scaling  # pylint: disable=g-import-not-at-top
    lines += [""] + scaling.format_table(res["scaling"])
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", default="benchmark_results.json")
  parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
  parser.add_argument("--no_scaling", action="store_true",
                      help="skip the scaling series (benchmarks/scaling.py)")
  args = parser.parse_args()
  r = run(args.quick, scaling=not args.no_scaling)
  with open(args.json, "w") as f:
    json.dump(r, f, indent=1, default=str)
  print(format_table(r))
  print(f"written to {args.json}")


if __name__ == "__main__":
  main()
