"""What the host machine offers this process (read once per call, no JAX)."""
from __future__ import annotations

import os


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity mask, else os.cpu_count())."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):
    return max(1, os.cpu_count() or 1)
