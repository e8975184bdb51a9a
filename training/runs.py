"""A trained run restored for inference: the task of its config and the parameters of
its best checkpoint (else its last), after checking that the checkpoint was written by a
config with the same model and data (`checkpoint.check_same_config`); the EF tasks take
the checkpoint's attribute preprocessing and EF standardisation (`EFData.use_fitted`)."""
from __future__ import annotations

import os

from absl import logging
import jax

from training import checkpoint as checkpoint_lib
from training import loop
from training import tasks


def abstract_state(task, config):
  """Shapes and dtypes of training.loop.init_state's state, on the first device (nothing
  computed: the init of the encoders takes ~30 s on a 2-core CPU)."""
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shapes = loop.init_state(task, config, jax.random.key(config.seed), abstract=True)[0]
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)


def load_run(config, workdir: str):
  """(task, params, {"which", "step"}) of WORKDIR's best checkpoint, else its last."""
  missing = FileNotFoundError(
      f"no checkpoint in {workdir} (checkpoints/last and checkpoints/best are empty or "
      f"missing); run `python -m launch.train --config=... --workdir={workdir}` first")
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise missing       # Checked first: Checkpoints() would create the folders.
  ckpt_cfg = config.checkpoint
  ckpts = checkpoint_lib.Checkpoints(workdir, keep=ckpt_cfg.keep,
                                     best_metric=ckpt_cfg.best_metric or None,
                                     best_mode=ckpt_cfg.best_mode)
  try:
    which = "best" if ckpts.has_best() else "last"
    step = (ckpts.best if which == "best" else ckpts.last).latest_step()
    if step is None:
      raise missing
    checkpoint_lib.check_same_config(ckpts.meta(which)["config"], config.to_dict(), workdir)
    task = tasks.make_task(config, workdir)
    state, meta = ckpts.restore(abstract_state(task, config), which=which)
  finally:
    ckpts.close()
  if hasattr(task, "use_fitted"):    # EF tasks: the checkpoint's preprocessing, not a refit.
    task.use_fitted(meta)
  logging.info("restored the %s checkpoint of %s (step %d)", which, workdir, step)
  return task, loop.eval_params(state), {"which": which, "step": int(step)}
