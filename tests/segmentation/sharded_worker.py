"""Sharded segmentation prediction on 8 faked CPU devices against one device
(tests/segmentation/test_sharded.py runs it in a subprocess):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/segmentation/sharded_worker.py OUT

In one process, for the same parameters: the argmax labels of `segmentation.predict.
Predictor` on the 8-device mesh, on a 3-device mesh (batches of 33, which 32 is not) and
without a mesh (the one-device reference); the task's evaluation metrics and its
pseudo-labels (the teacher predicts through the same `Predictor`) with and without the
mesh; where the images of a batch live (one slice per device) and the compiled program's
flops per device. Writes OUT/results.json.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from configs import seg_partial
from evaluation import sharded
from segmentation import labels as labels_lib
from segmentation import models
from segmentation import predict
from segmentation import task as seg_task
from training import optim
from training import sharding

#: Small networks of every architecture (as tests/segmentation/test_models_data.py).
TINY = dict(width=0.0625, depth=2, window=4, depths=(2, 2), heads=(1, 2), dtype="float32")


def flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def compare(pred, ref):
  return dict(images=int(len(ref)), equal=int(np.sum(np.all(pred == ref, axis=(1, 2)))),
              pixels_differ=int(np.sum(pred != ref)),
              classes=sorted(int(c) for c in np.unique(ref)))


def smoke_config(out, loss="marginal"):
  c = seg_partial.get_config(f"inter,smoke,{loss}")
  c.data.cache_dir = os.environ.get("CARDIAC_DATA_CACHE") or os.path.join(out, "cache")
  c.loss.teacher_steps = 2
  return c


def main(out):
  assert jax.device_count() == 8, jax.devices()
  eight, three = sharding.make_mesh(8), sharding.make_mesh(3)
  results = {"devices": jax.device_count()}

  # Predictor alone, every architecture, random parameters: 45 images (not a multiple of
  # the batch), 8 and 3 devices against no mesh.
  # The parameters are drawn by a jitted init with an 'rbg' key (threefry's init, op by op
  # or compiled, costs XLA:CPU several times longer; lamod_jax.task.fast_key).
  images = np.asarray(jax.random.uniform(jax.random.key(0), (45, 32, 32)))
  nets, inits = {}, {}
  for arch in models.ARCHITECTURES:
    net = nets[arch] = models.build_model(ml_collections.ConfigDict(dict(TINY, arch=arch)))
    params = inits[arch] = jax.jit(net.init)(jax.random.key(1, impl="rbg"),
                                             images[:1, ..., None])
    ref = predict.Predictor(net)(params, images)
    results[arch] = {f"mesh{m.size}": compare(predict.Predictor(net, m)(params, images), ref)
                     for m in (eight, three)}

  # Where a batch lives and what each device computes.
  net, params = nets["unet"], inits["unet"]
  one, many = predict.Predictor(net), predict.Predictor(net, eight)
  x8, n = many.place(images[:13])
  x1, _ = one.place(images[:13])
  results["placement"] = dict(
      batch_size=many.batch_size, kept=n, global_shape=list(x8.shape),
      shard_rows=sorted(int(s.data.shape[0]) for s in x8.addressable_shards),
      shard_devices=len({s.device for s in x8.addressable_shards}),
      shard_starts=sorted(int(s.index[0].start or 0) for s in x8.addressable_shards))
  params8 = jax.device_put(params, sharded.replicated(eight))
  results["flops"] = dict(one=flops(one.fn.lower(params, x1).compile()),
                          eight_per_device=flops(many.fn.lower(params8, x8).compile()))
  # The logits themselves (before the argmax), split over the mesh and not.
  apply8 = jax.jit(net.apply, out_shardings=sharded.replicated(eight))
  logits1 = np.asarray(jax.jit(net.apply)(params, x1))
  results["logits_max_diff"] = float(np.max(np.abs(np.asarray(apply8(params8, x8)) - logits1)))
  results["logits_max_abs"] = float(np.max(np.abs(logits1)))

  # The task: evaluation metrics and pseudo-labels, 8-device mesh against none.
  metrics, labels = {}, {}
  for name, mesh in (("mesh8", eight), ("none", None)):
    task = seg_task.SegmentationTask(smoke_config(out, "pseudo"), out, mesh=mesh,
                                     make_optimizer=optim.make_optimizer)
    p = task.init(jax.random.key(2), task.example_batch())
    metrics[name] = task.evaluate(p, None, "test", final=False, workdir=out)
    labels[name] = task.train_labels
    if mesh is not None:
      rows = task.index["test"]
      results["task_predictions"] = compare(task.predictor(p, task.images, rows),
                                            predict.Predictor(task.model)(p, task.images,
                                                                          rows))
  results["task_metrics"] = dict(mesh8=metrics["mesh8"], none=metrics["none"])
  withheld = labels_lib.withhold(task.data["label"].astype(np.int32), task.sets["train"])
  results["pseudo_labels"] = dict(
      images=int(len(labels["none"])),
      pixels_differ=int(np.sum(labels["mesh8"] != labels["none"])),
      filled_images=int(task.pseudo_info["pseudo_labelled_images"]),
      filled_pixels=int(np.sum(labels["none"] != withheld)))
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1])
