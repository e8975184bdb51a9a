"""Sharded segmentation prediction on 8 faked CPU devices against one device.

The device count is fixed when JAX starts, so the checks run in a subprocess
(tests/segmentation/sharded_worker.py, as tests/training/test_sharding.py does for
MCSDR); the reference is the same prediction without a mesh in that process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tests

ROOT = str(tests.ROOT)
EIGHT = "--xla_force_host_platform_device_count=8"


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
  out = tmp_path_factory.mktemp("seg_sharded")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + [EIGHT])
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "segmentation",
                                                      "sharded_worker.py"), str(out)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "attention_unet", "swin_unet"])
@pytest.mark.parametrize("mesh", ["mesh8", "mesh3"])
def test_sharded_labels_equal_one_device(worker, arch, mesh):
  """45 images (32 + 13 padded on 8 devices; 33 + 12 on 3): every label as unsharded."""
  assert worker["devices"] == 8
  r = worker[arch][mesh]
  assert r["images"] == 45 and r["equal"] == 45 and r["pixels_differ"] == 0
  assert len(r["classes"]) >= 2                   # not a trivially constant prediction


@pytest.mark.slow
def test_each_device_holds_and_computes_its_images_only(worker):
  p = worker["placement"]
  assert p["batch_size"] == 32 and p["kept"] == 13 and p["global_shape"] == [32, 32, 32, 1]
  assert p["shard_devices"] == 8 and p["shard_rows"] == [4] * 8
  assert p["shard_starts"] == list(range(0, 32, 4))          # disjoint slices
  f = worker["flops"]
  # The per-device program does 1/8 of the one-device batch's work (no replicated compute).
  assert f["eight_per_device"] == pytest.approx(f["one"] / 8, rel=0.02)
  # Rounding only: XLA:CPU may block a 4-image convolution unlike a 32-image one.
  assert worker["logits_max_diff"] <= 1e-5 * worker["logits_max_abs"]


@pytest.mark.slow
def test_task_evaluation_and_pseudo_labels_equal_one_device(worker):
  t = worker["task_predictions"]
  assert t["images"] > 0 and t["equal"] == t["images"] and t["pixels_differ"] == 0
  m = worker["task_metrics"]
  assert m["mesh8"].keys() == m["none"].keys() and "fg_dice" in m["none"]
  for k, v in m["none"].items():
    assert m["mesh8"][k] == v, k
  p = worker["pseudo_labels"]
  assert p["filled_images"] > 0 and p["filled_pixels"] > 0   # the teacher filled labels
  assert p["pixels_differ"] == 0
