"""The sampler and posterior-size study of MCSDR (§V "Impact of key hyperparameters",
Fig. 7) on one split of a trained run: `launch.sample` restores the run and writes what
`run_sweeps` returns.

Two sweeps, all with the same key, so settings differ only in the sampler (noise is
drawn per case, `posterior.per_case_noise`):
  samplers: K = config.sampling.num_samples; 'ddpm' (all T steps), 'ddimN' (τ = N,
            η and spacing from config.sampling), 'pf_ode' (probability-flow ODE, MCSDR
            Eq. 4, adaptive diffrax steps) or 'pf_odeN' (N fixed solver steps);
  K sweep:  DDIM-10 with K posterior samples per case (K = 1: MAE/RMSE, CRPS null).
Point estimate: the posterior mean clipped to [0, 100] (MCSDR Eq. 7); CRPS in the fair
form (crps_all_pairs: the published code's), coverage90 of the central 90 % interval.

Timing excludes data loading and compilation: the split is read into device memory once;
each setting runs once on the first batch (compilation + warm-up), then the pass over
all batches is timed; seconds_per_case = elapsed / real clips (mask; one clip per video
with 'mcsdr' sampling).
"""
from __future__ import annotations

import math
import re
import time

from absl import logging
import jax
import numpy as np

from cardiac_data import builders
from cardiac_data import ef_data
from diffusion import samplers
from evaluation import devices
from evaluation import probabilistic
from evaluation import regression
from mcsdr_jax import task as task_lib

DEFAULT_SAMPLERS = ("ddpm", "ddim5", "ddim10", "ddim20", "ddim50", "pf_ode")
DEFAULT_KS = (1, 5, 10, 20, 40, 100)
K_SWEEP_SAMPLER = "ddim10"
#: Metrics copied into each entry (None where K = 1 leaves them undefined).
METRIC_KEYS = ("mae", "rmse", "r2", "crps", "crps_all_pairs", "coverage50", "coverage90",
               "sigma_mean", "sigma_error_spearman", "frac_samples_outside")
PROGRESS_S = 30.0
_SAMPLER_RE = re.compile(r"^(ddpm|ddim|pf_ode)(\d*)$")


def sampler_configs(names, config) -> list[tuple[str, object, int | None]]:
  """(name, SamplerConfig, steps reported) per sampler name of --samplers."""
  s = config.sampling
  out = []
  for name in dict.fromkeys(str(n).strip().lower() for n in names):
    m = _SAMPLER_RE.match(name)
    steps = int(m.group(2)) if m and m.group(2) else None
    if m is None or (m.group(1) == "ddpm" and m.group(2)) or steps == 0 or (
        m.group(1) == "ddim" and steps is None):
      raise ValueError(f"--samplers: unknown sampler {name!r}; use 'ddpm', 'ddimN' (N ≥ 1 "
                       "steps), 'pf_ode' (adaptive) or 'pf_odeN' (N fixed steps)")
    kind = m.group(1)
    if kind == "ddim":
      cfg = samplers.SamplerConfig("ddim", steps, eta=s.eta, spacing=s.spacing)
    else:
      cfg = samplers.SamplerConfig(kind, steps)
    out.append((name, cfg, config.diffusion.num_steps if kind == "ddpm" else steps))
  return out


def parse_ks(ks) -> list[int]:
  """The K values of --ks as ints ≥ 1 (duplicates dropped, order kept)."""
  out = []
  for k in ks:
    try:
      value = int(str(k).strip())
    except ValueError:
      raise ValueError(f"--ks: {k!r} is not an integer") from None
    if value < 1:
      raise ValueError(f"--ks: posterior sample counts must be ≥ 1, got {value}")
    out.append(value)
  return list(dict.fromkeys(out))


def plan(config, sampler_names=DEFAULT_SAMPLERS, ks=DEFAULT_KS) -> list[tuple]:
  """The settings (sweep, name, SamplerConfig, steps, K) of both sweeps; raises
  ValueError naming the bad argument before anything is loaded."""
  if config.model.kind != "mcsdr":
    raise ValueError(f"config.model.kind: {config.model.kind!r} has no posterior to sample; "
                     "the sampling study needs an 'mcsdr' run")
  ks = parse_ks(ks)
  settings = [("samplers", name, cfg, steps, config.sampling.num_samples)
              for name, cfg, steps in sampler_configs(sampler_names, config)]
  [(k_name, k_cfg, k_steps)] = sampler_configs([K_SWEEP_SAMPLER], config)
  settings += [("k_sweep", k_name, k_cfg, k_steps, k) for k in ks]
  if not settings:
    raise ValueError("--samplers and --ks are both empty: nothing to run")
  return settings


def load_split(task, split: str) -> tuple[list[dict], list[dict]]:
  """The split's batches once: (device inputs incl. index, host {index, mask})."""
  if split not in task.sources:
    raise ValueError(f"--split: unknown split {split!r}; known: {sorted(task.sources)}")
  inputs, host = [], []
  for b in task.eval_batches(split):
    arrays = {k: b[k] for k in task_lib.MODEL_KEYS}
    inputs.append(jax.device_put(dict(arrays, index=np.asarray(b["index"], np.int32))))
    host.append({"index": np.asarray(b["index"]), "mask": np.asarray(b["mask"], bool)})
  if not host:
    raise ValueError(f"--split: split {split!r} is empty")
  return inputs, host


def time_sampler(fn, params, inputs, key, num_cases: int, label: str):
  """Outputs per batch and the timing of one pass (after a warm-up on batch 0).

  Batch i + 1 is dispatched before waiting on batch i, so the device stays busy while
  progress is logged."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(params, inputs[0], key))
  warmup = time.perf_counter() - t0
  outs, last_log = [], time.perf_counter()
  t0 = time.perf_counter()
  pending = fn(params, inputs[0], key)[0]
  for i in range(1, len(inputs) + 1):
    nxt = fn(params, inputs[i], key)[0] if i < len(inputs) else None
    outs.append(jax.block_until_ready(pending))
    pending = nxt
    now = time.perf_counter()
    if now - last_log > PROGRESS_S and i < len(inputs):
      rate = i / (now - t0)
      logging.info("  %s: %d/%d batches, %.3g batches/s, ETA %.0f s", label, i, len(inputs),
                   rate, (len(inputs) - i) / rate)
      last_log = now
  elapsed = time.perf_counter() - t0
  return [np.asarray(o) for o in outs], dict(seconds_per_case=elapsed / num_cases,
                                            elapsed_s=elapsed, warmup_s=warmup)


def per_case_samples(task, outputs, host, num_cases: int) -> np.ndarray:
  """EF (%) samples (N, K): clips of a video averaged sample-wise (as task.predict)."""
  return ef_data.average_per_case(num_cases, [(h["index"], h["mask"]) for h in host],
                                   [task.to_percent(out) for out in outputs])


def _clean(value):
  return None if value is None or not math.isfinite(value) else float(value)


def score(labels, samples) -> dict:
  """METRIC_KEYS of EF samples (N, K); ensemble scores None for K = 1."""
  if samples.shape[1] >= 2:
    m = probabilistic.probabilistic_metrics(labels, samples)
  else:
    m = regression.regression_metrics(labels, np.clip(samples[:, 0], 0.0, 100.0))
  return {key: _clean(m.get(key)) for key in METRIC_KEYS}


def run_sweeps(task, params, config, split: str, settings) -> dict:
  """Runs the `plan` settings on `split` of a restored run; returns the study (without
  the checkpoint information, which the caller adds)."""
  inputs, host = load_split(task, split)
  num_cases = len(task.sources[split])
  num_clips = int(sum(h["mask"].sum() for h in host))
  labels = np.asarray(builders.split_metadata(task.sources[split], "ef"), np.float64)
  key = jax.random.key(config.seed + 2)
  study = {"split": split, "num_cases": num_cases, "num_clips": num_clips,
           "device": devices.device_name(), "seed": config.seed + 2,
           "samplers": [], "k_sweep": []}
  logging.info("%s: %d cases (%d clips) in %d batches on %s; %d settings", split, num_cases,
               num_clips, len(inputs), study["device"], len(settings))
  t_start = time.perf_counter()
  for i, (sweep, name, cfg, steps, k) in enumerate(settings):
    label = f"{name} K={k}"
    outputs, timing = time_sampler(task.sampler(k, cfg), params, inputs, key, num_clips, label)
    entry = dict(name=name, sampler=cfg.label, steps=steps, k=k, **timing,
                 **score(labels, per_case_samples(task, outputs, host, num_cases)))
    study[sweep].append(entry)
    done = time.perf_counter() - t_start
    logging.info("[%d/%d] %s: %.4g s/case (%.3g cases/s; warm-up %.1f s), MAE %.3f, CRPS %s; "
                 "%.0f s so far, ETA ≈ %.0f s (mean per setting)", i + 1, len(settings), label,
                 entry["seconds_per_case"], 1.0 / max(entry["seconds_per_case"], 1e-12),
                 entry["warmup_s"], entry["mae"], fmt_value(entry["crps"]), done,
                 done / (i + 1) * (len(settings) - i - 1))
  return study


def fmt_value(value, spec: str = ".3f") -> str:
  """A table cell: `value` formatted, or – for None."""
  return "–" if value is None else format(value, spec)


def format_table(study: dict) -> str:
  ck = study["checkpoint"]
  lines = [f"{study['split']}: {study['num_cases']} cases on {study['device']}, "
           f"{ck['which']} checkpoint (step {ck['step']})",
           f"{'sweep':8s} {'setting':10s} {'K':>4s} {'MAE':>7s} {'RMSE':>7s} {'CRPS':>7s} "
           f"{'cov90':>6s} {'σ':>6s} {'s/case':>9s}"]
  for sweep in ("samplers", "k_sweep"):
    for e in study[sweep]:
      lines.append(f"{sweep:8s} {e['name']:10s} {e['k']:4d} {e['mae']:7.3f} {e['rmse']:7.3f} "
                   f"{fmt_value(e['crps']):>7s} {fmt_value(e['coverage90'], '.2f'):>6s} "
                   f"{fmt_value(e['sigma_mean'], '.2f'):>6s} {e['seconds_per_case']:9.3g}")
  return "\n".join(lines)
