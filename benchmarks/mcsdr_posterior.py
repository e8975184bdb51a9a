"""Latency of the MCSDR posterior (K samples) against the deterministic forward (§VI-A).

  python -m benchmarks.mcsdr_posterior [--encoders=small,r2plus1d] [--batch_sizes=1,8]
      [--ks=1,10,40,100] [--repeats=5] [--min_repeats=2] [--budget_s=10]
      [--width=1.0] [--frames=16] [--size=112] [--dtype=float32] [--out=PATH]

The paper's claim (§VI-A): a posterior of K = 40 DDIM chains (τ = 10) costs nearly what
the deterministic model costs, because the encoders run once per case and only the small
predictor (MCSN) runs K × τ times. Measured here, per encoder and batch size B, in one
process, each program compiled ahead of time (`jit(...).lower(...).compile()`):
  (a) deterministic: `DeterministicRegressor` (task.build_model, model.kind =
      'deterministic', the same conditioning and encoder), one forward;
  (b) posterior: `posterior.make_sampler(model, schedule, num_samples=K, sampler=
      samplers.SamplerConfig('ddim', τ))`: encoders once, then K chains of τ DDIM steps;
  (c) head: jit of `posterior.sample_from_memory` on a precomputed memory (K × τ calls
      of the predictor, nothing else);
  (d) encoder: jit of `model.apply(params, batch, method=model.condition)`.
Reported: ms per clip of each, posterior / deterministic, head / encoder, and posterior
cases/s for each K of --ks at the largest batch size (head-alone cases/s alongside).
`posterior_vs_head_max_abs_diff` checks that (b) equals (c) applied to (d)'s memory.

Encoders: 'small' is `configs/pediatric.py`'s config.model as is, the CPU default (its
encoder module, which that config chooses, is recorded as `module`);
'r2plus1d' applies `configs.common.r2plus1d_model` (R(2+1)D-18, features 512, 98 video
tokens) with the channel width multiplier --width, in float32 on a CPU and in the
config's bfloat16 elsewhere (--dtype overrides both encoders). Parameters are random
(numpy, by the shapes of `jax.eval_shape(model.init)`): timing only. Inputs: a random
video (B, frames, size, size, 1), 3 continuous attributes and Sex (2 categories), index
= arange(B).

Timing: after compilation each program runs once as a warm-up, then --repeats times,
the programs interleaved round by round (so drifting machine load hits all alike); the
median is reported. A slow program, one whose first run t₁ exceeds --budget_s /
--repeats (the R(2+1)D-18 forward on a CPU: ~2.6 s per clip), gets n = max(--min_repeats,
⌊--budget_s / t₁⌋) runs in all, its first run (straight after compilation) counted as one:
with the defaults 3 at batch 1 and 2 at batch 8 for R(2+1)D-18, which keeps the default
run under 10 minutes on 2 CPU cores. The load average (os.getloadavg) before and after
is recorded.

Reference figures (published PyTorch implementation, UniFormer-S, 2-core CPU, as given
in this project's brief; the paper's Table IV gives 0.01 s for the deterministic model
and 0.02 s for DDIM, device unstated): posterior / deterministic 1.10 at batch 1 and 1.04
at batch 8; the head alone 9–11 % (batch 1) and 4–5 % (batch 8) of the encoder.
Targets here, with the accelerator-sized encoder (r2plus1d): head ≤ 5 % of the encoder
at batch 1 and ≤ 3 % at batch 8 on a CPU; on a GPU the posterior at batch 1 within
1.05 × the deterministic forward.
"""
from __future__ import annotations

from evaluation.devices import cpu_name
from evaluation.devices import device_name

import functools
import json
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

ENCODERS = ("small", "r2plus1d")
NUM_CATEGORIES = (2,)     # Sex, as configs/pediatric.py
NUM_CONTINUOUS = 3        # Age, Weight, Height
#: Targets for r2plus1d: head / encoder on a CPU per batch size; posterior / deterministic
#: on an accelerator at batch 1.
CPU_HEAD_TARGETS = {1: 0.05, 8: 0.03}
ACCEL_POSTERIOR_TARGET = 1.05


def model_config(encoder: str, *, dtype: str | None = None, width: float = 1.0,
                 kind: str = "mcsdr"):
  """configs/pediatric.py's config.model for `encoder` ('small' as is, 'r2plus1d' via
  configs.common.r2plus1d_model with `width`); `dtype` None = float32 for r2plus1d on a
  CPU, else the config's."""
  from configs import common  # pylint: disable=g-import-not-at-top
  from configs import pediatric  # pylint: disable=g-import-not-at-top
  if encoder not in ENCODERS:
    raise ValueError(f"--encoders: unknown encoder {encoder!r}; choose from {ENCODERS}")
  config = pediatric.get_config("")
  if encoder == "r2plus1d":
    common.r2plus1d_model(config)
    config.model.encoder_kwargs.width = float(width)
    if dtype is None and jax.default_backend() == "cpu":
      dtype = "float32"
  if dtype is not None:
    config.model.dtype = str(jnp.dtype(dtype))
  config.model.kind = kind
  return config


def random_inputs(batch_size: int, frames: int, size: int, seed: int = 0) -> dict:
  """Model inputs of the pediatric config, plus index = arange(B), as device arrays."""
  rng = np.random.default_rng(seed)
  batch = dict(
      video=rng.random((batch_size, frames, size, size, 1), np.float32),
      attr_cont=rng.standard_normal((batch_size, NUM_CONTINUOUS)).astype(np.float32),
      attr_cont_missing=np.zeros((batch_size, NUM_CONTINUOUS), bool),
      attr_cat=rng.integers(0, NUM_CATEGORIES[0], (batch_size, 1)).astype(np.int32),
      index=np.arange(batch_size, dtype=np.int32))
  return jax.device_put(batch)


def random_params(model, *init_args, seed: int = 0):
  """Variables of `model.init(key, *init_args)` by shape (eval_shape: no init compile),
  drawn by numpy: kernels N(0, 1/fan_in), norm scales 1, biases 0, the rest N(0, 0.02²)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), *init_args)
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "scale":
      return np.ones(s.shape, s.dtype)
    if name == "bias":
      return np.zeros(s.shape, s.dtype)
    std = 1.0 / math.sqrt(math.prod(s.shape[:-1]) or 1) if name == "kernel" else 0.02
    return (std * rng.standard_normal(s.shape)).astype(s.dtype)

  return jax.device_put(jax.tree_util.tree_map_with_path(draw, shapes))


def _count(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))


def _run_once(fn, args):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0, out


def _compile(jitted, args):
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


def measure(programs: dict, *, repeats: int, min_repeats: int, budget_s: float):
  """programs: name -> (jitted fn, args). Compiles each, runs each once (a warm-up, or
  the first sample of a slow program: see the module docstring), then interleaved
  rounds; returns (name -> {median_s, times_s, compile_s}, name -> first output)."""
  compiled, stats, outputs = {}, {}, {}
  for name, (fn, args) in programs.items():
    compiled[name], compile_s = _compile(fn, args)
    first, outputs[name] = _run_once(compiled[name], args)
    slow = first * repeats > budget_s
    target = min(repeats, max(min_repeats, int(budget_s // first))) if slow else repeats
    stats[name] = dict(compile_s=compile_s, times_s=[first] if slow else [], target=target)
  for _ in range(max(s["target"] for s in stats.values())):
    for name, (_, args) in programs.items():
      if len(stats[name]["times_s"]) < stats[name]["target"]:
        stats[name]["times_s"].append(_run_once(compiled[name], args)[0])
  for s in stats.values():
    del s["target"]
    s["median_s"] = statistics.median(s["times_s"])
  return stats, outputs


def _per_clip(stat: dict, batch_size: int) -> dict:
  return dict(stat, ms_per_clip=1e3 * stat["median_s"] / batch_size,
              cases_per_s=batch_size / stat["median_s"])


def bench_encoder(encoder: str, *, batch_sizes, ks, num_samples: int, steps: int,
                  repeats: int, min_repeats: int, budget_s: float, width: float, frames: int,
                  size: int, dtype: str | None, seed: int = 0, log=print) -> dict:
  """All numbers of one encoder (see the module docstring)."""
  from diffusion import samplers  # pylint: disable=g-import-not-at-top
  from diffusion import schedule as schedule_lib  # pylint: disable=g-import-not-at-top
  from mcsdr_jax import posterior  # pylint: disable=g-import-not-at-top
  from mcsdr_jax import task as task_lib  # pylint: disable=g-import-not-at-top
  config = model_config(encoder, dtype=dtype, width=width)
  det_cfg = model_config(encoder, dtype=dtype, width=width, kind="deterministic")
  model = task_lib.build_model(config.model, NUM_CATEGORIES)
  det_model = task_lib.build_model(det_cfg.model, NUM_CATEGORIES)
  schedule = schedule_lib.VPSchedule.from_config(config.diffusion)
  sampler = samplers.SamplerConfig("ddim", steps)

  probe = random_inputs(1, frames, size, seed)
  inputs = {k: v for k, v in probe.items() if k != "index"}
  params = random_params(model, inputs, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32), seed=seed)
  det_params = random_params(det_model, inputs, seed=seed)
  det_fn = jax.jit(lambda p, b: det_model.apply(p, b))
  enc_fn = jax.jit(lambda p, b: model.apply(p, b, method=model.condition))
  # A second jit of the same computation feeds the head, so enc_fn's compile is timed.
  memory_fn = jax.jit(lambda p, b: model.apply(p, b, method=model.condition))

  def post_fn(k):
    return posterior.make_sampler(model, schedule, num_samples=k, sampler=sampler)

  def head_fn(k):
    return jax.jit(functools.partial(posterior.sample_from_memory, model, schedule=schedule,
                                     num_samples=k, sampler=sampler))

  p = params["params"]
  result = dict(
      encoder=encoder, module=config.model.encoder, dtype=config.model.dtype,
      model=config.model.to_dict(),
      params_encoder=_count(p["conditioner"]), params_head=_count(p["head"]),
      params_deterministic=_count(det_params), batches=[])
  key = jax.random.key(seed)
  largest = max(batch_sizes)
  for b in batch_sizes:
    batch = random_inputs(b, frames, size, seed)
    memory = jax.block_until_ready(memory_fn(params, batch))
    # The K sweep runs at the largest batch size, interleaved with the comparison there.
    k_values = list(dict.fromkeys([num_samples] + (list(ks) if b == largest else [])))
    programs = dict(deterministic=(det_fn, (det_params, batch)), encoder=(enc_fn, (params, batch)))
    for k in k_values:
      programs[f"posterior_k{k}"] = (post_fn(k), (params, batch, key))
      programs[f"head_k{k}"] = (head_fn(k), (params, memory, batch["index"], key))
    stats, outs = measure(programs, repeats=repeats, min_repeats=min_repeats,
                          budget_s=budget_s)
    stats = {name: _per_clip(s, b) for name, s in stats.items()}
    post, head = stats[f"posterior_k{num_samples}"], stats[f"head_k{num_samples}"]
    row = dict(batch_size=b, context_tokens=int(jax.tree.leaves(memory)[0].shape[1]),
               deterministic=stats["deterministic"], posterior=post, head=head,
               encoder=stats["encoder"],
               posterior_over_deterministic=post["median_s"] / stats["deterministic"]["median_s"],
               head_over_encoder=head["median_s"] / stats["encoder"]["median_s"],
               posterior_vs_head_max_abs_diff=float(jnp.max(jnp.abs(
                   outs[f"posterior_k{num_samples}"][0] - outs[f"head_k{num_samples}"][0]))))
    result["batches"].append(row)
    log(f"  {encoder} B={b}: posterior/deterministic {row['posterior_over_deterministic']:.3f}, "
        f"head/encoder {100 * row['head_over_encoder']:.2f} %")
    if b == largest:
      result["k_sweep"] = dict(batch_size=b, rows=[_sweep_row(k, stats) for k in ks])
  if encoder == "r2plus1d":
    result["targets"] = _targets(result["batches"])
  return result


def _sweep_row(k: int, stats: dict) -> dict:
  post, head = stats[f"posterior_k{k}"], stats[f"head_k{k}"]
  return dict(k=k, posterior_cases_per_s=post["cases_per_s"],
              posterior_ms_per_clip=post["ms_per_clip"], head_cases_per_s=head["cases_per_s"],
              head_over_encoder=head["median_s"] / stats["encoder"]["median_s"],
              posterior_over_deterministic=post["median_s"] / stats["deterministic"]["median_s"],
              posterior_times_s=post["times_s"], head_times_s=head["times_s"])


def _targets(rows) -> dict:
  """Pass/fail of the r2plus1d targets (module docstring) for the measured batch sizes."""
  out = {}
  for r in rows:
    b = r["batch_size"]
    if jax.default_backend() == "cpu" and b in CPU_HEAD_TARGETS:
      out[f"head_over_encoder_b{b}"] = dict(value=r["head_over_encoder"],
                                            limit=CPU_HEAD_TARGETS[b],
                                            ok=r["head_over_encoder"] <= CPU_HEAD_TARGETS[b])
    if jax.default_backend() != "cpu" and b == 1:
      out["posterior_over_deterministic_b1"] = dict(
          value=r["posterior_over_deterministic"], limit=ACCEL_POSTERIOR_TARGET,
          ok=r["posterior_over_deterministic"] <= ACCEL_POSTERIOR_TARGET)
  return out


def run(*, encoders=ENCODERS, batch_sizes=(1, 8), ks=(1, 10, 40, 100), num_samples: int = 40,
        steps: int = 10, repeats: int = 5, min_repeats: int = 2, budget_s: float = 10.0,
        width: float = 1.0, frames: int = 16, size: int = 112, dtype: str | None = None,
        seed: int = 0, out: str | None = None, log=print) -> dict:
  """Benchmarks each encoder; returns (and writes to `out` as JSON) every number."""
  for name, values in (("--batch_sizes", batch_sizes), ("--ks", ks)):
    if not values or any(int(v) < 1 for v in values):
      raise ValueError(f"{name} must be positive integers, got {list(values)}")
  if not 1 <= min_repeats <= repeats:
    raise ValueError(f"--repeats and --min_repeats must satisfy 1 ≤ min_repeats ≤ repeats, "
                     f"got {repeats}, {min_repeats}")
  for e in encoders:
    if e not in ENCODERS:
      raise ValueError(f"--encoders: unknown encoder {e!r}; choose from {ENCODERS}")
  t0 = time.perf_counter()
  result = dict(
      device=device_name(), cpu=cpu_name(), cpu_count=os.cpu_count(),
      backend=jax.default_backend(), jax_version=jax.__version__,
      clip=[frames, size, size, 1], sampler=f"ddim{steps}", num_samples=num_samples,
      repeats=repeats, min_repeats=min_repeats, budget_s=budget_s,
      loadavg_before=list(os.getloadavg()), encoders={})
  for e in encoders:
    log(f"{e} ...")
    result["encoders"][e] = bench_encoder(
        e, batch_sizes=[int(b) for b in batch_sizes], ks=[int(k) for k in ks],
        num_samples=num_samples, steps=steps, repeats=repeats, min_repeats=min_repeats,
        budget_s=budget_s, width=width, frames=frames, size=size, dtype=dtype,
        seed=seed, log=log)
  result["loadavg_after"] = list(os.getloadavg())
  result["total_s"] = time.perf_counter() - t0
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=2)
  return result


def format_table(r: dict) -> str:
  """The printed report: per encoder and batch size, then the K sweep."""
  la = lambda x: " ".join(f"{v:.2f}" for v in x)
  lines = [
      f"MCSDR posterior latency on {r['device']}"
      + ("" if r["backend"] == "cpu" else f", host CPU {r['cpu']}")
      + f" ({r['cpu_count']} cores; jax {r['jax_version']})",
      f"clip {'x'.join(map(str, r['clip']))}, {r['sampler']}, K = {r['num_samples']}; "
      f"median of {r['repeats']} runs (slow programs: ≥ {r['min_repeats']}, ~{r['budget_s']:g} s "
      f"each; 'runs' below); "
      f"load average before {la(r['loadavg_before'])}, after {la(r['loadavg_after'])}",
      "",
      f"{'encoder':<10}{'module':<10}{'dtype':<10}{'B':>3}{'determ.':>10}{'posterior':>11}"
      f"{'encoder':>10}{'head':>9}{'post/det':>10}{'head/enc':>10}{'runs':>10}",
      f"{'':<33}{'ms/clip':>10}{'ms/clip':>11}{'ms/clip':>10}{'ms/clip':>9}{'':>20}"
      f"{'d/p/h/e':>10}",
  ]
  for name, e in r["encoders"].items():
    for row in e["batches"]:
      runs = "/".join(str(len(row[k]["times_s"])) for k in ("deterministic", "posterior",
                                                             "head", "encoder"))
      lines.append(
          f"{name:<10}{e['module']:<10}{e['dtype']:<10}{row['batch_size']:>3}"
          f"{row['deterministic']['ms_per_clip']:>10.1f}{row['posterior']['ms_per_clip']:>11.1f}"
          f"{row['encoder']['ms_per_clip']:>10.1f}{row['head']['ms_per_clip']:>9.2f}"
          f"{row['posterior_over_deterministic']:>10.3f}{100 * row['head_over_encoder']:>9.2f}%"
          f"{runs:>10}")
  lines += ["", f"{'encoder':<10}{'B':>3}{'K':>5}{'posterior':>11}{'posterior':>11}"
            f"{'head':>10}{'head/enc':>10}{'post/det':>10}",
            f"{'':<18}{'cases/s':>11}{'ms/clip':>11}{'cases/s':>10}"]
  for name, e in r["encoders"].items():
    s = e["k_sweep"]
    for row in s["rows"]:
      lines.append(f"{name:<10}{s['batch_size']:>3}{row['k']:>5}"
                   f"{row['posterior_cases_per_s']:>11.2f}{row['posterior_ms_per_clip']:>11.1f}"
                   f"{row['head_cases_per_s']:>10.1f}{100 * row['head_over_encoder']:>9.2f}%"
                   f"{row['posterior_over_deterministic']:>10.3f}")
  lines.append("")
  for name, e in r["encoders"].items():
    lines.append(f"{name}: encoder {e['params_encoder']:,} params, head {e['params_head']:,}, "
                 f"deterministic {e['params_deterministic']:,}; context tokens "
                 f"{e['batches'][0]['context_tokens']}; max |posterior − head(memory)| "
                 f"{max(b['posterior_vs_head_max_abs_diff'] for b in e['batches']):.1e}")
    for t, v in e.get("targets", {}).items():
      lines.append(f"  target {t}: {v['value']:.4f} ≤ {v['limit']:g}: "
                   f"{'met' if v['ok'] else 'MISSED'}")
  lines.append("reference (PyTorch, UniFormer-S, 2-core CPU): posterior/deterministic 1.10 "
               "(B=1), 1.04 (B=8); head/encoder 9–11 % (B=1), 4–5 % (B=8)")
  return "\n".join(lines)


def _define_flags():
  """absl flags, defined only when run as a script (importing the module defines none)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_list("encoders", list(ENCODERS), "Encoders: small, r2plus1d.")
  flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
  flags.DEFINE_list("ks", ["1", "10", "40", "100"], "K values of the sweep (largest batch).")
  flags.DEFINE_integer("num_samples", 40, "K of the posterior-vs-deterministic comparison.")
  flags.DEFINE_integer("steps", 10, "DDIM steps τ.")
  flags.DEFINE_integer("repeats", 5, "Timed runs per program (median).")
  flags.DEFINE_integer("min_repeats", 2, "Fewest timed runs of a slow program.")
  flags.DEFINE_float("budget_s", 10.0, "Seconds of timed runs per slow program.")
  flags.DEFINE_float("width", 1.0, "R(2+1)D-18 channel width multiplier.")
  flags.DEFINE_integer("frames", 16, "Clip frames.")
  flags.DEFINE_integer("size", 112, "Clip height and width.")
  flags.DEFINE_string("dtype", None, "Encoder dtype (default: float32 on a CPU; the "
                      "config's elsewhere, bfloat16 for r2plus1d).")
  flags.DEFINE_integer("seed", 0, "Seed of the random inputs and parameters.")
  flags.DEFINE_string("out", None, "Write the numbers to this JSON file.")
  return flags.FLAGS


def main(argv):
  del argv
  f = FLAGS
  r = run(encoders=f.encoders, batch_sizes=f.batch_sizes, ks=f.ks, num_samples=f.num_samples,
          steps=f.steps, repeats=f.repeats, min_repeats=f.min_repeats, budget_s=f.budget_s,
          width=f.width, frames=f.frames, size=f.size, dtype=f.dtype, seed=f.seed, out=f.out)
  print(format_table(r))
  print(f"total {r['total_s']:.0f} s" + (f"; wrote {f.out}" if f.out else ""))


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  FLAGS = _define_flags()
  app.run(main)
