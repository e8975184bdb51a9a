"""Checks run in a subprocess with 8 faked CPU devices (tests/training/test_sharding.py).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_worker.py OUT

Compares, in one process, the 8-device mesh with a 1-device mesh of the same
code: three train steps of a small MCSDR (loss and parameters), and posterior
sampling (DDIM and the diffrax PF-ODE, with a batch the device count does not
divide). Writes OUT/results.json, and a checkpoint of a state whose large leaves
are sharded over the 8 devices (OUT/ckpt) with its values (OUT/ckpt_params.npz)
for the parent process (1 device) to restore.
"""
from __future__ import annotations

import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from configs import common
from diffusion import losses as diffusion_losses
from diffusion import samplers
from diffusion import schedule as schedule_lib
from mcsdr_jax import model as model_lib
from mcsdr_jax import posterior
from training import checkpoint as checkpoint_lib
from training import loop
from training import sharding

MODEL_KEYS = ("video", "attr_cont", "attr_cont_missing", "attr_cat")


def batch(b=8, t=4, hw=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"video": rng.random((b, t, hw, hw, 1)).astype(np.float32),
          "attr_cont": rng.standard_normal((b, 2)).astype(np.float32),
          "attr_cont_missing": np.zeros((b, 2), bool),
          "attr_cat": rng.integers(0, 2, (b, 1)).astype(np.int32),
          "ef": rng.normal(0.0, 1.0, b).astype(np.float32),
          "index": np.arange(b)}


def tiny_model():
  cond = dict(encoder="small", encoder_kwargs=dict(widths=(4, 8), patch=(2, 4, 4)), features=8,
              hidden=16, attr_features=8, video_grid=(2, 2, 2))
  return model_lib.MCSDR((2,), predictor="mcsn", predictor_kwargs=dict(hidden=16, time_dim=8,
                                                                        heads=2),
                         conditioner_kwargs=cond)


class TinyTask:
  """Eq. 6 on a tiny MCSDR: the same loss structure as mcsdr_jax.task, no data files."""

  def __init__(self):
    self.model = tiny_model()
    self.schedule = schedule_lib.VPSchedule()

  def example_batch(self):
    return batch()

  def init(self, rng, b):
    inputs = {k: b[k] for k in MODEL_KEYS}
    n = b["video"].shape[0]
    return self.model.init(rng, inputs, jnp.zeros((n,)), jnp.zeros((n,), jnp.int32))

  def loss(self, params, b, rng):
    inputs = {k: b[k] for k in MODEL_KEYS}
    memory = self.model.apply(params, inputs, method=self.model.condition)
    eps_fn = lambda y, t: self.model.apply(params, memory, y, t, method=self.model.eps)
    return diffusion_losses.eps_loss(self.schedule, eps_fn, b["ef"], rng), {}


def config(shard_min=0):
  c = common.base_config()
  c.optim.name = "sgd"
  c.optim.lr = 0.05
  c.optim.schedule = "constant"
  c.num_steps = 3
  c.sharding = dict(shard_params_min_size=shard_min)
  return c


def train(mesh, task, cfg, steps=3):
  state, tx, sh = loop.init_state(task, cfg, jax.random.key(0), mesh)
  step = jax.jit(functools.partial(loop.train_step_fn, task.loss, tx, 0.0),
                 in_shardings=(sh, sharding.data_sharding(mesh)),
                 out_shardings=(sh, sharding.replicated(mesh)))
  losses = []
  for i in range(steps):
    state, metrics = step(state, sharding.global_batch(batch(seed=i), mesh))
    losses.append(float(metrics["loss"]))
  return state, losses


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(out):
  assert jax.device_count() == 8, jax.devices()
  one, eight = sharding.make_mesh(1), sharding.make_mesh(8)
  task = TinyTask()
  results = {"devices": jax.device_count()}

  # Train steps: replicated params, then params sharded over the mesh (FSDP switch).
  s1, l1 = train(one, task, config())
  s8, l8 = train(eight, task, config())
  s8f, l8f = train(eight, task, config(shard_min=64))
  results["train"] = dict(loss_1=l1, loss_8=l8, loss_8_fsdp=l8f,
                          param_diff=max_diff(s1["params"], s8["params"]),
                          param_diff_fsdp=max_diff(s1["params"], s8f["params"]))
  results["fsdp_sharded_leaves"] = sum(
      not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(s8f["params"]))

  # Posterior sampling: 6 cases over 8 devices (padded), DDIM and the diffrax ODE.
  params = s1["params"]
  cases = {k: v[:6] for k, v in batch(seed=5).items()}
  for cfg in (samplers.SamplerConfig("ddim", 10),
              samplers.SamplerConfig("pf_ode", 8, solver="heun")):
    outs = []
    for mesh in (one, eight):
      fn = posterior.make_sampler(task.model, task.schedule, num_samples=5, sampler=cfg,
                                  mesh=mesh)
      outs.append(np.asarray(fn(params, cases, jax.random.key(3))[0]))
    results[f"sample_{cfg.label}"] = dict(shape=list(outs[1].shape),
                                          diff=float(np.max(np.abs(outs[0] - outs[1]))),
                                          spread=float(outs[0].std()))

  # A checkpoint of the FSDP-sharded state, for the 1-device parent to restore.
  ckpts = checkpoint_lib.Checkpoints(os.path.join(out, "ckpt"), keep=1)
  ckpts.save(3, s8f, {"config": config(shard_min=64).to_dict()})
  ckpts.close()
  np.savez(os.path.join(out, "ckpt_params.npz"),
           *[np.asarray(x) for x in jax.tree.leaves(s8f["params"])])
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1])
