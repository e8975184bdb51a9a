"""What hardware a result was measured on (for study and benchmark reports)."""
from __future__ import annotations

import platform

import jax


def cpu_name() -> str:
  """The CPU model (/proc/cpuinfo), else the platform's processor or machine name."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_name() -> str:
  """The JAX device kind, with the CPU model for CPU runs."""
  d = jax.devices()[0]
  return f"{d.device_kind} ({cpu_name()})" if d.platform == "cpu" else d.device_kind
