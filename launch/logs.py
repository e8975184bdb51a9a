"""Log output of the launchers: one line per fact, libraries' INFO chatter dropped."""
from __future__ import annotations

from absl import logging


class QuietLibraries(logging.logging.Filter):
  """Drops INFO chatter of orbax, grain, jax (backend probing: "Unable to initialize
  backend 'tpu'") and TFDS (file paths of every shard written; builders.py logs one line
  per split instead); their warnings and errors are kept."""

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname
                for lib in ("orbax", "grain", "jax", "tensorflow_datasets"))
    return record.levelno >= logging.logging.WARNING or not noisy


def quiet_libraries() -> None:
  """Installs `QuietLibraries` on absl's handler (once per process)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, QuietLibraries) for f in handler.filters):
    handler.addFilter(QuietLibraries())
