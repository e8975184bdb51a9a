"""MCSDR on CAMUS (A4C half sequences ED→ES) with Age, Sex and ImageQuality.
Built-in synthetic CAMUS cohort by default (500 patients, the real size).

  python -m launch.train --config=configs/camus.py
  python -m launch.train --config=configs/camus.py:vision            # vision-only ablation
  python -m launch.train --config=configs/camus.py:full --config.data.root=/data/CAMUS_public

Variants (comma-separated): '' (CPU-sized), 'smoke', 'full' (R(2+1)D-18); 'vision'.
The published CAMUS configs sample K = 10; K = 40 (the paper's text) is kept here.
"""
from __future__ import annotations

from configs import common
from configs import pediatric


def get_config(arg: str | None = None):
  size, flags = common.parse_variant(arg, "configs/camus.py")
  c = pediatric.get_config(",".join([size] + sorted(flags)) if size or flags else "")
  c.data = common.ef_data("camus", num_subjects=500 if size != "smoke" else 24)
  c.data.synthetic.size = 112 if size != "smoke" else 64   # Written frame size (CAMUS: ~600 px).
  c.data.view = "4CH"
  c.data.frames = 16 if size != "smoke" else 8
  c.data.period = 1
  c.data.sampling = "mcsdr"
  c.data.image_size = 112 if size == "full" else 64
  c.data.batch_size = 4 if size == "smoke" else 8
  c.data.worker_count = 0 if size == "smoke" else (8 if size == "full" else 2)
  c.data.augment = True
  c.data.attributes = ("Age",)
  c.data.categorical = ("Sex", "ImageQuality")
  c.model.use_attributes = "vision" not in flags
  c.model.attr_features = 16 if size != "full" else 64
  if size == "":
    c.num_steps = 600
  elif size == "full":
    c.num_steps = 50 * 400 // 8
    c.optim.warmup_steps = 100
    c.eval_every = 250
    c.checkpoint.save_every = 250
  return c
