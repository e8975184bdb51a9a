"""EF regression on EchoNet-Pediatric A4C (built-in synthetic cohort by default).

  python -m launch.train --config=configs/pediatric.py
  python -m launch.train --config=configs/pediatric.py:smoke --workdir=/tmp/smoke
  python -m launch.train --config=configs/pediatric.py \
      --config.data.root=/data/pediatric_echo_avi --config.data.test_fold=3

Variants (after the colon): '' (default, CPU-sized), 'smoke' (< 2 min on 2 CPU cores).
"""
from __future__ import annotations

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.task = "ef_regression"
  c.data = common.synthetic_data("echonet_pediatric", num_subjects=2000)
  c.data.view = "A4C"
  c.data.test_fold = 0        # Official CV: test = fold s, val = fold (s + 1) % 10.
  c.data.frames = 16
  c.data.period = 1
  c.data.image_size = 112
  c.data.batch_size = 8
  c.data.eval_batch_size = 16
  c.data.worker_count = 2
  c.data.augment = True
  c.data.attributes = ("Age", "Weight", "Height")   # Continuous; Sex is categorical.
  c.data.categorical = ("Sex",)

  c.model = dict(encoder_widths=(32, 64), patch=(2, 8, 8), features=64, attr_features=32,
                 attr_dropout=0.1)
  c.num_steps = 800           # CPU-sized: about 10 minutes on 2 cores.
  c.eval_every = 200
  c.checkpoint.save_every = 200

  if arg == "smoke":
    c.data.synthetic.num_subjects = 48
    c.data.frames = 8
    c.data.image_size = 64
    c.data.batch_size = 4
    c.data.worker_count = 0
    c.model.encoder_widths = (8, 16)
    c.model.features = 16
    c.model.attr_features = 16
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint.save_every = 10
  elif arg:
    raise ValueError(f"configs/pediatric.py: unknown variant {arg!r} (use '' or 'smoke')")
  return c
