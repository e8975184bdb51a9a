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

from launch import logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: workdirs/<config>).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdirs", f"{name}-{variant}" if variant else name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_libraries()
  from training import sharding  # pylint: disable=g-import-not-at-top
  sharding.maybe_initialize_distributed()   # Before any other JAX call (multi-process runs).
  sharding.configure_cpu_kernels(_CONFIG.value)   # XLA:CPU's kernels (config.sharding).
  sharding.configure_cpu_devices(_CONFIG.value)   # One CPU device per core (config.sharding).
  from training import loop  # Imported after flag parsing (JAX reads XLA_FLAGS on import).
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("workdir: %s", os.path.abspath(workdir))
  metrics = loop.train_and_evaluate(_CONFIG.value, workdir)
  logging.info("final metrics: %s", metrics)
  print(f"Final metrics written to {os.path.join(workdir, 'metrics.json')}")


if __name__ == "__main__":
  app.run(main)
