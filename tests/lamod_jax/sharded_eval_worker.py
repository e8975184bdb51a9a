"""LaMoD's sharded evaluation on 8 faked CPU devices (tests/lamod_jax/test_sharded_eval.py).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 CARDIAC_DATA_CACHE=DIR \\
      python tests/lamod_jax/sharded_eval_worker.py OUT

In one process, `LaMoDTask.predict` of configs/lamod_dense.py:smoke (random parameters,
the zero-initialised output convolutions made nonzero so every method's output and the
sampling noise matter) on the 8 training cases, eval_batch_size 5 (batches of 5 and 3,
both padded to 8), with an 8-device mesh and with no mesh (one device), and with no mesh
and eval_batch_size 8 (one batch); DDIM (noise at the start only) and DDPM (noise at
every step), 2 samples; with DDIM also the final evaluation's diagnosis groups
(`predict(..., diagnosis=True)`) on 8 devices and on one. Also the per-device FLOPs of the
task's `predict_fn` compiled for 8 case-sharded cases on 8 devices and for 8 cases on
one (every case computed once: about 1/8). Writes OUT/results.json.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import lamod_dense
from evaluation import sharded
from lamod_jax import task as task_lib
from training import sharding


def nonzero_params(params, seed=0):
  """Params with every all-zero leaf (output convolutions, biases) drawn N(0, 0.05²)."""
  rng = np.random.default_rng(seed)

  def one(x):
    x = np.asarray(x)
    return (rng.normal(0.0, 0.05, x.shape).astype(x.dtype) if not np.any(x) else x)

  return jax.tree.map(one, params)


def flops(task, params, batch, key):
  """Per-device FLOPs of the task's `predict_fn` compiled for `batch` (split over the
  task's mesh when it has one)."""
  if task.mesh is not None:
    params = jax.device_put(params, sharded.replicated(task.mesh))
    batch = sharded.shard_cases(batch, task.mesh)
  compiled = task.predict_fn(1).lower(params, batch["reg"], batch["masks"],
                                      batch["case_ids"], key).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def main(out):
  assert jax.device_count() == 8, jax.devices()
  mesh8 = sharding.make_mesh(8)
  results = {"devices": jax.device_count()}
  params = None
  for sampler in ("ddim", "ddpm"):
    preds, tasks = {}, {}
    for name, mesh, batch_size in (("8", mesh8, 5), ("none", None, 5), ("bs8", None, 8)):
      config = lamod_dense.get_config("smoke")
      config.data.eval_batch_size = batch_size
      config.sampling.num_samples = 2
      config.sampling.sampler = sampler
      task = tasks[name] = task_lib.LaMoDTask(config, out, mesh=mesh)
      if params is None:
        params = nonzero_params(task.init(jax.random.key(0), task.example_batch()))
      preds[name] = task.predict(params, "train", jax.random.key(7))
      if sampler == "ddim" and name != "bs8":
        diag = task.predict(params, "train", jax.random.key(7), diagnosis=True)
        results.setdefault("diagnosis_preds", {})[name] = diag
    res = {}
    for m in task_lib.METHODS:
      ref = preds["none"][m]
      res[m] = dict(shape=list(preds["8"][m].shape), scale=float(np.max(np.abs(ref))),
                    diff_8=float(np.max(np.abs(preds["8"][m] - ref))),
                    diff_bs8=float(np.max(np.abs(preds["bs8"][m] - ref))))
    results[sampler] = res
  diag = results.pop("diagnosis_preds")
  results["diagnosis"] = {
      g: dict(shape=list(diag["8"][g].shape), scale=float(np.max(np.abs(diag["none"][g]))),
              diff_8=float(np.max(np.abs(diag["8"][g] - diag["none"][g]))))
      for g in diag["none"]}

  arr = tasks["none"].data["train"]
  batch = {"reg": arr["reg"], "masks": arr["masks"],
           "case_ids": np.arange(len(arr["ids"]), dtype=np.int32)}
  results["flops_8"] = flops(tasks["8"], params, batch, jax.random.key(7))
  results["flops_1"] = flops(tasks["none"], params, batch, jax.random.key(7))
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1])
