"""MCSDR on EchoNet-Dynamic, vision only (the paper's Table I protocol: no attributes,
as ESV/EDV would leak the label). Built-in synthetic adult cohort by default.

  python -m launch.train --config=configs/dynamic.py
  python -m launch.train --config=configs/dynamic.py:full --config.data.root=/data/EchoNet-Dynamic

Variants: '' (CPU-sized), 'smoke', 'full' (R(2+1)D-18, 32 frames every 4th, bfloat16).
"""
from __future__ import annotations

from configs import common
from configs import pediatric


def get_config(arg: str | None = None):
  size, _ = common.parse_variant(arg, "configs/dynamic.py", flags=())
  c = pediatric.get_config(size)
  c.data = common.ef_data("echonet_dynamic", num_subjects=2000 if size != "smoke" else 48)
  c.data.view = "A4C"
  c.data.frames = 32 if size == "full" else 16
  c.data.period = 4 if size == "full" else 2
  c.data.sampling = "mcsdr"
  c.data.image_size = 112 if size == "full" else 64
  c.data.batch_size = 4 if size == "smoke" else 8
  c.data.worker_count = 0 if size == "smoke" else (8 if size == "full" else 2)
  c.data.augment = True
  c.data.attributes = ()
  c.data.categorical = ()
  if size == "smoke":
    c.data.frames = 8
  c.model.use_attributes = False
  if size == "full":
    c.num_steps = 50 * 7465 // 8
  return c
