"""Metric writers: JSON lines and TensorBoard event files (tensorboardX, no TensorFlow),
plus the final `metrics.json`."""
from __future__ import annotations

import json
import math
import os

import numpy as np


def _to_python(value):
  value = np.asarray(value)
  if value.size != 1:
    return value.tolist()
  value = value.item()
  return value if not isinstance(value, float) or math.isfinite(value) else str(value)


class MetricWriter:
  """Appends `{"step": s, "split": name, metric: value, ...}` lines to
  WORKDIR/metrics.jsonl and scalars to WORKDIR/tensorboard/."""

  def __init__(self, workdir: str, *, resume_step: int | None = None):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None:
      self._truncate_after(resume_step)
    from tensorboardX import SummaryWriter  # Lazy: keeps `import training` light.
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def _truncate_after(self, step: int) -> None:
    """On resume, drops lines logged after the checkpoint so each step appears once."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(lines)
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict, split: str = "train") -> None:
    row = {"step": int(step), "split": split}
    row.update({k: _to_python(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in metrics.items():
      v = np.asarray(v)
      if v.size == 1 and np.isfinite(v):
        self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    self._tb.close()


def write_json(path: str, obj: dict) -> None:
  """Writes JSON atomically (temporary file + rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_to_python)
    f.write("\n")
  os.replace(tmp, path)
