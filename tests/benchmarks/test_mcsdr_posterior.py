"""benchmarks/mcsdr_posterior.py: a smoke run at minimal sizes (fields, arithmetic of the
reported figures against their own raw times, posterior = head(encoder memory)), the
model configs it builds, and its argument errors. No timing asserts."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from benchmarks import mcsdr_posterior as bench
from evaluation.devices import device_name

PROGRAMS = ("deterministic", "posterior", "head", "encoder")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench") / "mcsdr.json"
  r = bench.run(encoders=("small",), batch_sizes=(2,), ks=(2,), num_samples=2, steps=2,
                repeats=2, frames=4, size=32, out=str(out), log=lambda *_: None)
  return r, out


def test_fields_and_json(result):
  r, out = result
  assert json.loads(out.read_text()) == json.loads(json.dumps(r))
  assert r["device"] == device_name() and r["cpu"] and r["clip"] == [4, 32, 32, 1]
  assert len(r["loadavg_before"]) == 3 and len(r["loadavg_after"]) == 3
  e = r["encoders"]["small"]
  assert e["dtype"] == "float32" and e["params_head"] > 0 and e["params_encoder"] > 0
  assert e["module"] == e["model"]["encoder"] == bench.model_config("small").model.encoder
  (row,) = e["batches"]
  assert row["batch_size"] == 2
  for name in PROGRAMS:
    assert set(row[name]) >= {"median_s", "times_s", "compile_s", "ms_per_clip", "cases_per_s"}
  assert [s["k"] for s in e["k_sweep"]["rows"]] == [2]
  assert "targets" not in e   # Targets are stated for r2plus1d only.


def test_figures_follow_from_the_raw_times(result):
  (row,) = result[0]["encoders"]["small"]["batches"]
  med = {n: float(np.median(row[n]["times_s"])) for n in PROGRAMS}
  for n in PROGRAMS:
    assert len(row[n]["times_s"]) == 2
    np.testing.assert_allclose(row[n]["ms_per_clip"], 1e3 * med[n] / 2, rtol=1e-12)
    np.testing.assert_allclose(row[n]["cases_per_s"], 2 / med[n], rtol=1e-12)
  np.testing.assert_allclose(row["posterior_over_deterministic"],
                             med["posterior"] / med["deterministic"], rtol=1e-12)
  np.testing.assert_allclose(row["head_over_encoder"], med["head"] / med["encoder"], rtol=1e-12)
  sweep = result[0]["encoders"]["small"]["k_sweep"]
  assert sweep["batch_size"] == 2
  k2 = sweep["rows"][0]   # K = num_samples: the comparison's own posterior and head.
  assert k2["posterior_times_s"] == row["posterior"]["times_s"]
  assert k2["head_times_s"] == row["head"]["times_s"]
  for s in sweep["rows"]:
    np.testing.assert_allclose(s["posterior_cases_per_s"],
                               2 / float(np.median(s["posterior_times_s"])), rtol=1e-12)
    np.testing.assert_allclose(s["posterior_over_deterministic"],
                               float(np.median(s["posterior_times_s"])) / med["deterministic"],
                               rtol=1e-12)
    np.testing.assert_allclose(s["head_over_encoder"],
                               float(np.median(s["head_times_s"])) / med["encoder"], rtol=1e-12)

def test_posterior_is_the_head_on_the_encoder_memory(result):
  (row,) = result[0]["encoders"]["small"]["batches"]
  assert row["posterior_vs_head_max_abs_diff"] <= 1e-5
  assert row["context_tokens"] >= 4   # video tokens + one per attribute


def test_table_names_device_and_rows(result):
  table = bench.format_table(result[0])
  assert device_name() in table
  assert sum(l.startswith("small ") for l in table.splitlines()) == 1 + 1   # batch + K rows


def test_model_configs():
  from configs import pediatric  # pylint: disable=g-import-not-at-top
  small = bench.model_config("small").model.to_dict()
  assert small == pediatric.get_config("").model.to_dict()
  r = bench.model_config("r2plus1d", width=0.25).model
  dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  assert (r.encoder, r.features, r.encoder_kwargs.width, r.dtype) == ("r2plus1d", 512, 0.25, dtype)
  assert bench.model_config("r2plus1d", dtype="bfloat16").model.dtype == "bfloat16"
  assert bench.model_config("small", kind="deterministic").model.kind == "deterministic"


@pytest.mark.parametrize("kwargs, field", [(dict(encoders=("uniformer",)), "--encoders"),
                                           (dict(batch_sizes=(0,)), "--batch_sizes"),
                                           (dict(ks=()), "--ks"),
                                           (dict(repeats=0), "--repeats")])
def test_bad_arguments_name_the_flag(kwargs, field):
  with pytest.raises(ValueError, match=field):
    bench.run(**kwargs)
