"""How costs grow: scaling series of the benchmarks and their fitted exponents.

  python -m benchmarks.scaling [--quick] [--json=PATH]
  (also a section of `python benchmarks/run_all.py`, unless --no_scaling)

Each series is a cost t measured at several values of one size x, in one process, by
the other benchmark modules' `run(...)` (called as they are):
  * epdiff_full / epdiff_flash: ms per registration pair vs grid size N (64², 128²,
    256²; RK4, 10 steps, forward objective, batch 16 on a CPU, 256 on an accelerator),
    full-grid EPDiff and FLASH's band-limited form (|k| ≤ 7) (`epdiff_throughput`);
  * mcsdr_posterior_vs_k / mcsdr_head_vs_k: ms per call of the K-sample DDIM-10
    posterior (encoders + K chains) and of the ε-head alone (K chains on a precomputed
    memory) vs K, at the largest batch size; mcsdr_posterior_vs_batch: ms per call of
    the K = 40 posterior vs batch size B ('small' encoder on a CPU, 'r2plus1d' on an
    accelerator) (`mcsdr_posterior`);
  * pipeline_vs_workers: ms per clip (1 / clips/s) of the grain loader vs grain worker
    processes: 0 = in process, ≥ 1 = the steady rate once every worker has delivered
    a batch (`pipeline_throughput`);
  * train_step_vs_batch: ms per jitted train step of configs/pediatric.py vs
    data.batch_size (`train_step`; the batch size is set through a two-line wrapper
    config file that applies the override, data.worker_count = 0 so no background
    loader competes with the timed step; `train_step.run` takes no overrides).

Reading a series: b is the least-squares slope of log t on log x (t ≈ a·x^b,
`fit_exponent`, numpy.polyfit). b = 1: the cost is proportional to x (batching buys
nothing per item); b < 1: per-item cost falls with x (fixed overheads amortised,
idle hardware filled); b ≈ 0: x is free; b = 2: quadratic (e.g. grid points of an N²
image); for time per clip vs workers, b = −1 is perfect parallel scaling.
Where it stops scaling (`stop_point`): the local slopes between consecutive points
(`local_slopes`) are compared with the first segment's; the first-segment trend
"holds to" the largest x such that every segment up to x has a slope within
TOL = 0.25 of the first one; the next segment's slope is reported with it ("then
b=..."). "throughout" = every segment agrees; "n/a" = fewer than 3 usable points.
Points with x ≤ 0 or a non-positive/non-finite time (e.g. 0 workers) are listed but
left out of the fit and the slopes. Timings on a shared 2-core machine are noisy:
read the exponents to ±0.2 or so.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

#: Largest |local slope − first segment's slope| still counted as the same trend.
TOL = 0.25

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- pure functions


def fit_exponent(xs, ys) -> tuple[float, float]:
  """(a, b) of y ≈ a·x^b: least squares of log y on log x (numpy.polyfit, degree 1)."""
  x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  if x.shape != y.shape or x.ndim != 1 or x.size < 2:
    raise ValueError(f"fit_exponent needs ≥ 2 paired points, got {x.shape} and {y.shape}")
  if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
    raise ValueError("fit_exponent needs positive, finite x and y")
  if np.unique(x).size < 2:
    raise ValueError("fit_exponent needs ≥ 2 distinct x")
  b, log_a = np.polyfit(np.log(x), np.log(y), 1)
  return float(np.exp(log_a)), float(b)


def local_slopes(xs, ys) -> list[float]:
  """Slopes Δlog y / Δlog x between consecutive points (len(xs) − 1 of them)."""
  lx, ly = np.log(np.asarray(xs, np.float64)), np.log(np.asarray(ys, np.float64))
  return [float(s) for s in np.diff(ly) / np.diff(lx)]


def stop_point(xs, ys, tol: float = TOL) -> tuple[float | None, float | None, bool]:
  """Where the first segment's trend stops: (holds_to, slope_after, throughout).

  holds_to: the largest x such that every local slope up to it is within `tol` of the
  first segment's (None with fewer than 3 points); slope_after: the slope of the first
  segment that departs (None when none does); throughout: no segment departs.
  """
  if len(xs) < 3:
    return None, None, False
  slopes = local_slopes(xs, ys)
  for i, s in enumerate(slopes[1:], start=1):
    if abs(s - slopes[0]) > tol:
      return xs[i], s, False
  return xs[-1], None, True


def series(name: str, xs, ys, *, x_label: str, y_label: str, tol: float = TOL,
           **meta) -> dict:
  """One scaling series: its points, fitted (a, b), local slopes and stop point.

  Points with x ≤ 0 or y not positive and finite are kept in `xs`/`ys` but not fitted
  (`fitted` marks the ones used); the points must be in increasing x.
  """
  xs = [int(x) if float(x).is_integer() else float(x) for x in xs]
  ys = [float(y) for y in ys]
  if len(xs) != len(ys):
    raise ValueError(f"series {name}: {len(xs)} x values but {len(ys)} times")
  if any(b <= a for a, b in zip(xs, xs[1:])):
    raise ValueError(f"series {name}: x values must increase, got {xs}")
  fitted = [x > 0 and math.isfinite(y) and y > 0 for x, y in zip(xs, ys)]
  fx = [x for x, ok in zip(xs, fitted) if ok]
  fy = [y for y, ok in zip(ys, fitted) if ok]
  a = b = None
  slopes = []
  if len(fx) >= 2:
    a, b = fit_exponent(fx, fy)
    slopes = local_slopes(fx, fy)
  holds_to, slope_after, throughout = stop_point(fx, fy, tol)
  return dict(name=name, x_label=x_label, y_label=y_label, xs=xs, ys=ys, fitted=fitted,
              a=a, b=b, local_slopes=slopes, holds_to=holds_to, slope_after=slope_after,
              throughout=throughout, tol=tol, **meta)


def _num(v: float) -> str:
  return f"{v:g}" if float(v).is_integer() else f"{v:.3g}"


def describe_stop(s: dict) -> str:
  if s.get("holds_to") is None:
    return "n/a (< 3 points)"
  if s["throughout"]:
    return f"holds throughout (to {s['x_label']} = {_num(s['holds_to'])})"
  return (f"holds to {s['x_label']} = {_num(s['holds_to'])}, "
          f"then slope {s['slope_after']:+.2f}")


def format_series(s: dict) -> str:
  """One line: name, x values, times, fitted exponent, where scaling stops."""
  xs = ", ".join(_num(x) for x in s["xs"])
  ys = ", ".join(f"{y:.3g}" if math.isfinite(y) else "nan" for y in s["ys"])
  b = f"b = {s['b']:+.2f}" if s.get("b") is not None else "b = n/a"
  return f"{s['name']:26s} {s['x_label']} = [{xs}]: {s['y_label']} = [{ys}]; {b}; " + \
      describe_stop(s)


def format_table(r: dict) -> list[str]:
  """The lines of a `run(...)` result (one per series, then any failed collector)."""
  lines = [f"Scaling: time ≈ a·x^b (least squares on log–log); trend = first segment's "
           f"slope ± {r.get('tol', TOL)}"]
  lines += [format_series(s) for s in r.get("series", [])]
  lines += [f"{name:26s} FAILED: {err}" for name, err in r.get("errors", {}).items()]
  return lines


# ---------------------------------------------- benchmark results → series (pure)


def epdiff_series(result: dict, batch: int) -> list[dict]:
  """ms per pair vs grid size, one series per shooting (`epdiff_throughput.run` rows)."""
  out = []
  for shooting in result.get("shootings", ("full",)):
    rows = sorted((r for r in result["rows"] if r.get("shooting", "full") == shooting
                   and r["batch"] == batch and r["mode"] == "forward"),
                  key=lambda r: r["size"])
    if not rows:
      continue
    label = "full grid" if shooting == "full" else f"band |k| ≤ {result.get('band_limit')}"
    out.append(series(f"epdiff_{shooting}", [r["size"] for r in rows],
                      [r["ms_per_pair"] for r in rows], x_label="N",
                      y_label="ms/pair", shooting=shooting,
                      integrator=rows[0]["integrator"], n_steps=result.get("n_steps"),
                      batch=batch, workload=f"EPDiff objective, {label}, forward"))
  return out


def mcsdr_series(result: dict, encoder: str) -> list[dict]:
  """Posterior and head ms per call vs K (at the sweep's batch size), posterior ms per
  call vs batch size (at K = num_samples) (`mcsdr_posterior.run`)."""
  e = result["encoders"][encoder]
  sweep = e["k_sweep"]
  b = sweep["batch_size"]
  ks = [r["k"] for r in sweep["rows"]]
  common = dict(encoder=encoder, sampler=result.get("sampler"), clip=result.get("clip"))
  out = [
      series("mcsdr_posterior_vs_k", ks,
             [r["posterior_ms_per_clip"] * b for r in sweep["rows"]], x_label="K",
             y_label=f"ms/call (B={b})", batch_size=b, **common),
      series("mcsdr_head_vs_k", ks, [1e3 * b / r["head_cases_per_s"] for r in sweep["rows"]],
             x_label="K", y_label=f"ms/call (B={b})", batch_size=b, **common)]
  rows = e["batches"]
  out.append(series("mcsdr_posterior_vs_batch", [r["batch_size"] for r in rows],
                    [1e3 * r["posterior"]["median_s"] for r in rows], x_label="B",
                    y_label=f"ms/call (K={result.get('num_samples')})",
                    num_samples=result.get("num_samples"), **common))
  return out


def pipeline_series(results_by_workers: dict) -> dict:
  """ms per clip vs grain workers: {workers: clips/s} (0 = in process, else steady)."""
  ws = sorted(results_by_workers)
  rates = [results_by_workers[w] for w in ws]
  return series("pipeline_vs_workers", ws,
                [1e3 / r if r and math.isfinite(r) and r > 0 else float("nan") for r in rates],
                x_label="workers", y_label="ms/clip", clips_per_s=rates)


def train_step_series(rows: list[dict], config: str) -> dict:
  """ms per train step vs batch size (`train_step.run` rows)."""
  rows = sorted(rows, key=lambda r: r["batch_size"])
  return series("train_step_vs_batch", [r["batch_size"] for r in rows],
                [r["step_ms"] for r in rows], x_label="B", y_label="ms/step", config=config,
                clips_per_s=[r["clips_per_s"] for r in rows],
                compile_s=[r["compile_s"] for r in rows])


# ------------------------------------------------------------------- collection


def plan(quick: bool, gpu: bool, cpu_count: int | None = None) -> dict:
  """The points of each series (quick: fewer points and repeats)."""
  cpu_count = cpu_count or os.cpu_count() or 1
  workers = [0, 1, 2] + [w for w in (4, 8, 16) if w <= cpu_count and not quick]
  return dict(
      epdiff=dict(sizes=(64, 128, 256) + (() if quick or not gpu else (512,)),
                  batch=256 if gpu else 16, repeats=1 if quick else 3),
      mcsdr=dict(encoder="r2plus1d" if gpu else "small",
                 batch_sizes=(1, 4, 8) if quick else (1, 8, 32) + ((128,) if gpu else ()),
                 ks=(1, 10, 100, 400) if quick else (1, 10, 40, 100, 400),
                 repeats=2 if quick else 5, min_repeats=1 if quick else 2,
                 budget_s=3.0 if quick else 10.0),
      pipeline=dict(workers=tuple(workers), num_videos=16 if quick else 48,
                    epochs=4),
      train_step=dict(config="configs/pediatric.py", batch_sizes=(2, 4, 8) if quick
                      else (2, 4, 8, 16), steps=5 if quick else 10,
                      repeats=1 if quick else 3))


def _collect_epdiff(p: dict) -> list[dict]:
  from benchmarks import epdiff_throughput  # pylint: disable=g-import-not-at-top
  r = epdiff_throughput.run(sizes=p["sizes"], batches=(p["batch"],), integrators=("rk4",),
                            n_steps=10, modes=("forward",), repeats=p["repeats"],
                            numpy_baseline=False, shootings=("full", "flash"), band_limit=7)
  return epdiff_series(r, p["batch"])


def _collect_mcsdr(p: dict) -> list[dict]:
  from benchmarks import mcsdr_posterior  # pylint: disable=g-import-not-at-top
  r = mcsdr_posterior.run(encoders=(p["encoder"],), batch_sizes=p["batch_sizes"], ks=p["ks"],
                          repeats=p["repeats"], min_repeats=p["min_repeats"],
                          budget_s=p["budget_s"], log=lambda *a: None)
  return mcsdr_series(r, p["encoder"])


def _collect_pipeline(p: dict) -> list[dict]:
  from benchmarks import pipeline_throughput  # pylint: disable=g-import-not-at-top
  rates, extra = {}, {}
  positive = [w for w in p["workers"] if w > 0]
  for w in positive:
    r = pipeline_throughput.run(num_videos=p["num_videos"], workers=w, epochs=p["epochs"],
                                in_process=(w == positive[0] and 0 in p["workers"]))
    rates[w] = r["array_record_clips_per_s_steady"]
    extra[w] = dict(clips_per_s_with_startup=r["array_record_clips_per_s"],
                    startup_s=r["array_record_startup_s"])
    if "array_record_in_process_clips_per_s" in r:
      rates[0] = r["array_record_in_process_clips_per_s"]
  s = pipeline_series(rates)
  s["with_startup"] = {str(w): v for w, v in extra.items()}
  s["num_videos"], s["epochs"] = p["num_videos"], p["epochs"]
  return [s]


_WRAPPER = '''"""{base} with data.batch_size = {batch} (written by benchmarks/scaling.py)."""
from benchmarks import train_step


def get_config(arg=None):
  return train_step.load_config({config_arg!r}, {overrides!r})
'''


def _collect_train_step(p: dict) -> list[dict]:
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  path, _, variant = p["config"].partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(_ROOT, path)
  config_arg = path + (f":{variant}" if variant else "")
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for b in p["batch_sizes"]:
      wrapper = os.path.join(tmp, f"batch{b}.py")
      with open(wrapper, "w") as f:
        f.write(_WRAPPER.format(base=p["config"], batch=b, config_arg=config_arg,
                                overrides={"data.batch_size": b, "data.worker_count": 0}))
      rows += train_step.run((wrapper,), steps=p["steps"], repeats=p["repeats"])["rows"]
  return [train_step_series(rows, p["config"])]


COLLECTORS = (("epdiff", _collect_epdiff), ("mcsdr", _collect_mcsdr),
              ("pipeline", _collect_pipeline), ("train_step", _collect_train_step))


def run(quick: bool = False, *, only=None, log=print) -> dict:
  """Collects every series (or those named in `only`); a collector that fails is
  recorded in `errors` and the others still run."""
  import jax  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()   # grain workers read absl flags
  gpu = jax.devices()[0].platform != "cpu"
  points = plan(quick, gpu)
  out = dict(quick=quick, tol=TOL, platform=jax.devices()[0].platform, plan=points,
             series=[], errors={}, seconds={})
  for name, collect in COLLECTORS:
    if only and name not in only:
      continue
    t0 = time.perf_counter()
    try:
      out["series"] += collect(points[name])
    except Exception as e:  # pylint: disable=broad-except
      out["errors"][name] = f"{type(e).__name__}: {e}"
    out["seconds"][name] = time.perf_counter() - t0
    log(f"[scaling] {name}: {out['seconds'][name]:.0f} s"
        + (f" FAILED {out['errors'][name]}" if name in out["errors"] else ""))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer points and repeats")
  parser.add_argument("--only", default="", help="comma-separated: "
                      + ",".join(n for n, _ in COLLECTORS))
  parser.add_argument("--json", default=None, help="write the series to this file")
  args = parser.parse_args(argv)
  r = run(args.quick, only=[x for x in args.only.split(",") if x] or None)
  print("\n".join(format_table(r)))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(r, f, indent=1, default=str)
  return r


if __name__ == "__main__":
  sys.path.insert(0, _ROOT)
  main()
