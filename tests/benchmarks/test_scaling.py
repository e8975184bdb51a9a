"""benchmarks/scaling.py: exponent fits on synthetic power laws, local slopes and the stop
rule on a series that bends, the benchmark-result → series adapters, and the printed
table of a fake result. No timing asserts; nothing is benchmarked."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import run_all
from benchmarks import scaling


@pytest.mark.parametrize("a,b", [(3.0, 2.0), (0.5, 1.0), (7.0, 0.0), (2.0, -1.0), (1e-3, 0.37)])
def test_fit_exponent_recovers_a_power_law(a, b):
  xs = np.array([1, 2, 4, 8, 16, 64], float)
  fa, fb = scaling.fit_exponent(xs, a * xs ** b)
  assert fb == pytest.approx(b, abs=1e-9)
  assert fa == pytest.approx(a, rel=1e-9)


def test_fit_exponent_with_noise_is_within_tolerance():
  rng = np.random.default_rng(0)
  xs = np.geomspace(1, 1000, 30)
  ys = 4.0 * xs ** 1.5 * np.exp(rng.normal(0, 0.05, xs.size))   # ±5 % multiplicative
  a, b = scaling.fit_exponent(xs, ys)
  assert b == pytest.approx(1.5, abs=0.03)
  assert a == pytest.approx(4.0, rel=0.15)


def test_fit_exponent_rejects_bad_input():
  for xs, ys in (([1], [1]), ([1, 2], [1, 0]), ([0, 2], [1, 1]), ([2, 2], [1, 3]),
                 ([1, 2, 3], [1, 2])):
    with pytest.raises(ValueError):
      scaling.fit_exponent(xs, ys)


def bent_series():
  """t ∝ x for x ≤ 8, then t ∝ x² (a cost that stops scaling well at x = 8)."""
  xs = [1, 2, 4, 8, 16, 32]
  ys = [x if x <= 8 else 8 * (x / 8) ** 2 for x in xs]
  return xs, ys


def test_local_slopes_and_stop_rule_on_a_bending_series():
  xs, ys = bent_series()
  assert scaling.local_slopes(xs, ys) == pytest.approx([1, 1, 1, 2, 2])
  holds_to, after, throughout = scaling.stop_point(xs, ys)
  assert (holds_to, after, throughout) == (8, pytest.approx(2.0), False)
  # Within the tolerance, a small wobble is the same trend.
  ys_wobble = [1, 2.1, 4.2, 8.6]   # slopes 1.07, 1.00, 1.03
  assert scaling.stop_point([1, 2, 4, 8], ys_wobble)[2]
  # A departure at the second segment: the trend holds only to the second point.
  assert scaling.stop_point([1, 2, 4], [1, 1, 4])[:2] == (2, pytest.approx(2.0))
  # Too few points for a rule.
  assert scaling.stop_point([1, 2], [1, 2]) == (None, None, False)


def test_series_fits_positive_points_only():
  s = scaling.series("pipe", [0, 1, 2, 4], [5.0, 8.0, 4.0, 2.0], x_label="workers",
                     y_label="ms/clip", extra="kept")
  assert s["fitted"] == [False, True, True, True]
  assert s["b"] == pytest.approx(-1.0) and s["a"] == pytest.approx(8.0)
  assert s["throughout"] and s["holds_to"] == 4 and s["extra"] == "kept"
  assert json.loads(json.dumps(s)) == s
  lone = scaling.series("one", [0, 1], [1.0, 2.0], x_label="x", y_label="t")
  assert lone["b"] is None and lone["holds_to"] is None
  with pytest.raises(ValueError):
    scaling.series("dec", [2, 1], [1.0, 1.0], x_label="x", y_label="t")


def test_adapters_of_benchmark_results():
  epd = {"shootings": ("full", "flash"), "band_limit": 7, "n_steps": 10, "rows": [
      {"size": n, "batch": 16, "mode": "forward", "integrator": "rk4", "shooting": sh,
       "ms_per_pair": (n / 64) ** p} for sh, p in (("full", 2), ("flash", 0.5))
      for n in (64, 128, 256)]}
  full, flash = scaling.epdiff_series(epd, 16)
  assert (full["name"], flash["name"]) == ("epdiff_full", "epdiff_flash")
  assert full["b"] == pytest.approx(2) and flash["b"] == pytest.approx(0.5)

  def stat(s):
    return {"median_s": s}
  post = {"sampler": "ddim10", "clip": [16, 112, 112, 1], "num_samples": 40, "encoders": {
      "small": {"k_sweep": {"batch_size": 8, "rows": [
          {"k": k, "posterior_ms_per_clip": 10 + k / 100, "head_cases_per_s": 8000 / k}
          for k in (1, 10, 100)]},
                "batches": [{"batch_size": b, "posterior": stat(0.01 * b)} for b in (1, 8)]}}}
  by_k, head, by_b = scaling.mcsdr_series(post, "small")
  assert by_k["ys"][0] == pytest.approx(8 * 10.01)
  assert head["ys"] == pytest.approx([1, 10, 100]) and head["b"] == pytest.approx(1)
  assert by_b["xs"] == [1, 8] and by_b["b"] == pytest.approx(1)

  pipe = scaling.pipeline_series({2: 200.0, 0: 100.0, 1: 100.0})
  assert pipe["xs"] == [0, 1, 2] and pipe["ys"] == pytest.approx([10, 10, 5])
  ts = scaling.train_step_series([{"batch_size": b, "step_ms": 3.0 * b, "clips_per_s": 1,
                                   "compile_s": 1} for b in (4, 2)], "configs/pediatric.py")
  assert ts["xs"] == [2, 4] and ts["b"] == pytest.approx(1)


def test_plan_quick_is_smaller():
  quick, full = scaling.plan(True, gpu=False, cpu_count=2), scaling.plan(False, False, 2)
  assert quick["pipeline"]["workers"] == full["pipeline"]["workers"] == (0, 1, 2)
  assert scaling.plan(False, False, cpu_count=16)["pipeline"]["workers"] == (0, 1, 2, 4, 8, 16)
  assert full["epdiff"]["sizes"] == (64, 128, 256) and full["epdiff"]["batch"] == 16
  assert len(quick["train_step"]["batch_sizes"]) < len(full["train_step"]["batch_sizes"])
  assert full["mcsdr"]["ks"] == (1, 10, 40, 100, 400)


def test_table_of_a_fake_result():
  xs, ys = bent_series()
  fake_scaling = {"tol": 0.25, "series": [
      scaling.series("bends", xs, ys, x_label="B", y_label="ms/step"),
      scaling.series("flat", [1, 2, 4], [3.0, 3.0, 3.0], x_label="K", y_label="ms/call"),
      scaling.series("pair", [0, 1, 2], [1.0, 2.0, 1.0], x_label="workers",
                     y_label="ms/clip")],
                  "errors": {"train_step": "RuntimeError: boom"}}
  lines = scaling.format_table(fake_scaling)
  assert len(lines) == 1 + 3 + 1
  bends, flat, pair = lines[1:4]
  assert bends.startswith("bends") and "B = [1, 2, 4, 8, 16, 32]" in bends
  b = np.polyfit(np.log(xs), np.log(ys), 1)[0]
  assert f"b = {b:+.2f}" in bends and "holds to B = 8, then slope +2.00" in bends
  assert "b = +0.00" in flat and "holds throughout" in flat
  assert "n/a (< 3 points)" in pair and "b = -1.00" in pair
  assert "FAILED: RuntimeError: boom" in lines[4]

  r = {"device": "cpu (fake)", "jax": "0", "quick": True, "errors": {},
       "results": {"scaling": fake_scaling}}
  table = run_all.format_table(r)
  assert table.splitlines()[0].startswith("Benchmarks on cpu (fake)")
  assert all(line in table for line in lines)
  assert not math.isnan(fake_scaling["series"][0]["b"])
