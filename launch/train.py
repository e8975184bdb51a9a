"""Trains a method from a config file.

  python -m launch.train --config=configs/pediatric.py[:variant] [--config.a.b=value] [--workdir=DIR]

Without --workdir the run goes to workdirs/<config>[-<variant>]. Re-running the same
command resumes from the latest checkpoint there.
"""
from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: workdirs/<config>).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdirs", f"{name}-{variant}" if variant else name)


class QuietLibraries(logging.logging.Filter):
  """Drops INFO chatter of orbax, grain, jax (backend probing: "Unable to initialize
  backend 'tpu'") and TFDS (file paths of every shard written; builders.py logs one line
  per split instead); their warnings and errors are kept."""

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname
                for lib in ("orbax", "grain", "jax", "tensorflow_datasets"))
    return record.levelno >= logging.logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(QuietLibraries())
  from training import loop  # Imported after flag parsing (JAX reads XLA_FLAGS on import).
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("workdir: %s", os.path.abspath(workdir))
  metrics = loop.train_and_evaluate(_CONFIG.value, workdir)
  logging.info("final metrics: %s", metrics)
  print(f"Final metrics written to {os.path.join(workdir, 'metrics.json')}")


if __name__ == "__main__":
  app.run(main)
