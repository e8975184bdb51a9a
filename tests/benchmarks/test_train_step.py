"""benchmarks/train_step.py: FLOP counting and MFU arithmetic against closed forms."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks import train_step


def test_cpu_flops_of_a_matmul_is_2mnk():
  m, k, n = 8, 16, 4
  x = jnp.ones((m, k))
  w = {"w": jnp.ones((k, n))}
  flops = train_step.cpu_flops(lambda x, p: x @ p["w"], x, w)
  assert flops == 2 * m * k * n


def test_cpu_flops_matches_the_compiled_count_on_cpu():
  x = jnp.ones((2, 12, 12, 3))
  kern = jnp.ones((3, 3, 3, 5))
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  compiled = train_step.compiled_flops(jax.jit(conv).lower(x, kern).compile().cost_analysis())
  # 2 · (output pixels) · (kernel taps) · out channels.
  assert compiled == 2 * 2 * 10 * 10 * (3 * 3 * 3) * 5
  assert train_step.cpu_flops(conv, x, kern) == compiled


def test_peak_table_lookup():
  assert train_step.peak_flops("NVIDIA H200") == 989e12
  assert train_step.peak_flops("cpu") is None


def test_profile_summary_finds_the_ops_of_a_step():
  """The traced op time of a step whose work is a chain of matmuls: the dot kind is
  there, is the largest, and no executor thread is busier than the step's wall time."""
  import time  # pylint: disable=g-import-not-at-top
  x = jnp.ones((256, 256))
  f = jax.jit(lambda x: jnp.tanh(x @ x @ x @ x))
  run_once = lambda: jax.block_until_ready(f(x))
  run_once()
  t0 = time.perf_counter()
  for _ in range(5):
    run_once()
  wall_ms = (time.perf_counter() - t0) / 5 * 1e3
  summary = train_step.profile_summary(run_once, steps=5)
  kinds = dict(summary["ops"])
  assert summary["ops"] and summary["threads"]
  dots = sum(ms for name, ms in kinds.items() if "dot" in name or "ynn_fusion" in name)
  assert dots == max(dots, *kinds.values()) and dots > 0
  assert max(summary["threads"].values()) < 3 * wall_ms
