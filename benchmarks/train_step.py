"""Training-step throughput (clips/s) of a task's config, and its model-FLOPs utilisation.

  python -m benchmarks.train_step --config=configs/pediatric.py [--config=...] [--steps=20]
      [--profile]

For each config: the task is built as `launch.train` builds it (on a small built-in
cohort: `data.synthetic.num_subjects` is lowered when the config has it, which
changes no shape), the state is initialised on the device mesh, and the jitted,
donated `training.loop` train step is timed on one batch already on the devices
(so the input pipeline is excluded; `benchmarks.pipeline_throughput` measures
that). Reported: compile seconds, steps/s and clips/s (median of `repeats`
windows), and, from XLA's cost analysis of the compiled step, FLOPs per step and the
model-FLOPs utilisation against the device's peak (known GPUs/TPUs only; the peak
table is stated below, dense bf16). `--profile` adds where the step's time goes
(`profile_summary`): busy time per XLA executor thread and per op kind. One process
times every config, so `config.sharding` (device count, YNNPACK) is not applied: the
process's own XLA_FLAGS decide, e.g. XLA_FLAGS="--xla_force_host_platform_device_count=2
--xla_cpu_experimental_ynn_fusion_type=" for the pediatric defaults.
`run(...)` returns the numbers as a dict (for benchmarks/run_all.py).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
import tempfile
import time

#: Dense bf16 peak FLOP/s by device kind (vendor datasheets, without sparsity).
PEAK_BF16 = {"NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12,
             "NVIDIA L4": 121e12, "TPU v4": 275e12, "TPU v5e": 197e12, "TPU v5p": 459e12}


def peak_flops(device_kind: str) -> float | None:
  for name, peak in PEAK_BF16.items():
    if device_kind.startswith(name) or name in device_kind:
      return peak
  return None


def load_config(config_arg: str, overrides: dict | None = None):
  """configs/x.py[:variant] → ConfigDict, with dotted `overrides` applied (unlocked)."""
  path, _, variant = config_arg.partition(":")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant or None)
  for dotted, value in (overrides or {}).items():
    node = config
    *parents, leaf = dotted.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def compiled_flops(cost) -> float:
  """FLOPs of a compiled computation's `cost_analysis()` (0 where XLA reports none)."""
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


def cpu_flops(fn, *args) -> float:
  """FLOPs of `fn(*args)` from XLA:CPU's cost analysis of the same computation.

  On GPUs, XLA's cost analysis counts cuDNN convolutions (custom calls) as zero FLOPs
  (seen on an H200, jax 0.11.2: 0 for the R(2+1)D train step), so the count comes
  from lowering the function for the host CPU with the arguments' shapes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), args)
  return compiled_flops(jax.jit(fn).lower(*specs).compile().cost_analysis())


#: Trace events of XLA's executor threads that are not ops (envelopes and markers).
NOT_OPS = ("ThunkExecutor::", "ThreadpoolListener::", "end: ", "SlinkyThreadPool::Await")


def profile_summary(run_once, steps: int = 5, top: int = 12) -> dict:
  """Where a step's time goes: `run_once()` (one step, blocking) traced `steps` times with
  `jax.profiler`, summed from the trace (`jax.profiler.ProfileData`). Returns
  {"threads": {thread: busy ms per step}, "ops": [(op kind, ms per step), ...]}, the op
  kind being the XLA op or fusion name without its number (e.g. 'ynn_fusion',
  'transpose_copy_fusion'), over XLA's threads (on a CPU the client thread and the Eigen
  pool, waits and rendezvous left out; on a GPU the device streams), the `top` largest
  first."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  run_once()
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        run_once()
    path, = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  threads, ops = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if "XLA" not in line.name and not plane.name.startswith("/device:"):
        continue          # Python's own line: the launches, not the work
      for event in line.events:
        if event.name.startswith(NOT_OPS) or "Wait" in event.name:
          continue        # envelopes, thread-pool markers, waiting
        threads[f"{plane.name} {line.name}"] += event.duration_ns
        ops[re.sub(r"[.\d]+$", "", event.name)] += event.duration_ns
  per_step = lambda ns: ns / 1e6 / steps
  return dict(threads={k: per_step(v) for k, v in threads.most_common()},
              ops=[(k, per_step(v)) for k, v in ops.most_common(top)])


def _batch_size(batch) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return int(jax.tree.leaves(batch)[0].shape[0])


def bench_config(config_arg: str, *, steps: int = 20, repeats: int = 3,
                 num_subjects: int = 40, dtype: str | None = None,
                 profile: bool = False) -> dict:
  """Times the train step of one config; returns a row."""
  import jax  # pylint: disable=g-import-not-at-top
  from training import loop  # pylint: disable=g-import-not-at-top
  from training import sharding  # pylint: disable=g-import-not-at-top
  from training import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  overrides = {}
  probe = load_config(config_arg)
  if "synthetic" in probe.get("data", {}) and "num_subjects" in probe.data.synthetic:
    overrides["data.synthetic.num_subjects"] = max(num_subjects, 8)
  if dtype and "dtype" in probe.get("model", {}):
    overrides["model.dtype"] = dtype
  if "pretrained" in probe.get("model", {}):   # Speed does not depend on the weights.
    overrides["model.pretrained"] = ""
  config = load_config(config_arg, overrides)
  with tempfile.TemporaryDirectory() as workdir:
    task = tasks_lib.make_task(config, workdir)
    mesh = sharding.make_mesh()
    state, tx, state_sh = loop.init_state(task, config, jax.random.key(0), mesh)
    step_fn = functools.partial(loop.train_step_fn, task.loss, tx,
                                config.optim.ema_decay)
    step = jax.jit(step_fn,
                   in_shardings=(state_sh, sharding.data_sharding(mesh)),
                   out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=0)
    batch = sharding.global_batch(next(task.train_batches(0)), mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    flops = compiled_flops(compiled.cost_analysis())
    if not flops and jax.devices()[0].platform != "cpu":
      flops = cpu_flops(step_fn, state, batch)
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      for _ in range(steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      times.append((time.perf_counter() - t0) / steps)
    if profile:
      def run_once():
        nonlocal state
        state, out = compiled(state, batch)
        jax.block_until_ready(out)
      summary = profile_summary(run_once)
  sec = statistics.median(times)
  b = _batch_size(batch)
  device = jax.devices()[0]
  peak = peak_flops(device.device_kind)
  row = dict(config=config_arg, task=config.task, batch_size=b, devices=jax.device_count(),
             compile_s=compile_s, step_ms=1e3 * sec, steps_per_s=1.0 / sec, clips_per_s=b / sec,
             flops_per_step=flops, model_dtype=config.get("model", {}).get("dtype"))
  if peak and flops:
    row["mfu"] = flops / sec / (peak * jax.device_count())
  if profile:
    row["profile"] = summary
  return row


def run(configs=("configs/pediatric.py",), *, steps: int = 20, repeats: int = 3,
        dtype: str | None = None, profile: bool = False) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from evaluation.devices import device_name  # pylint: disable=g-import-not-at-top
  rows = []
  for c in configs:
    if not os.path.exists(c.partition(":")[0]):
      continue
    rows.append(bench_config(c, steps=steps, repeats=repeats, dtype=dtype, profile=profile))
  return dict(device=device_name(), jax=jax.__version__, rows=rows)


def format_table(r: dict) -> str:
  lines = [f"train step throughput on {r['device']} (jax {r['jax']})",
           f"{'config':34s} {'batch':>5s} {'step ms':>9s} {'clips/s':>9s} {'compile s':>9s} "
           f"{'GFLOP/step':>10s} {'MFU':>6s}"]
  for row in r["rows"]:
    mfu = f"{100 * row['mfu']:.1f}%" if "mfu" in row else "n/a"
    lines.append(f"{row['config']:34s} {row['batch_size']:5d} {row['step_ms']:9.1f} "
                 f"{row['clips_per_s']:9.2f} {row['compile_s']:9.1f} "
                 f"{row['flops_per_step'] / 1e9:10.2f} {mfu:>6s}")
    if "profile" in row:
      busy = ", ".join(f"{ms:.1f}" for ms in row["profile"]["threads"].values())
      lines.append(f"  profile: executor threads busy {busy} ms/step; by op kind, ms/step:")
      lines += [f"    {ms:8.2f}  {name}" for name, ms in row["profile"]["ops"]]
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", action="append", help="configs/x.py[:variant] (repeatable)")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", default=None, help="model.dtype override, e.g. bfloat16")
  parser.add_argument("--profile", action="store_true",
                      help="also trace 5 steps (jax.profiler): busy time per executor "
                           "thread and the largest op kinds")
  args = parser.parse_args()
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()   # grain reads absl flags, which argparse never parses
  r = run(args.config or ["configs/pediatric.py"], steps=args.steps, repeats=args.repeats,
          dtype=args.dtype, profile=args.profile)
  print(format_table(r))


if __name__ == "__main__":
  main()
