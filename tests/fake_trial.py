"""A stand-in for `launch.train` in the sweep tests: no training, same command line.

  python -m tests.fake_trial --config=FILE[:variant] --workdir=DIR [--config.a.b=v ...]

Writes DIR/metrics.json with val/objective = (log10(optim.lr) + 3)² +
(model.hidden − 64)² / 1e4 (minimum at lr = 1e-3, hidden = 64), after sleeping
FAKE_TRIAL_SLEEP seconds; appends one line per start to DIR/starts.txt (so a test can
see that an interrupted trial was re-run in its own workdir).
"""
from __future__ import annotations

import json
import math
import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")


def main(argv):
  del argv
  c = _CONFIG.value
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "starts.txt"), "a") as f:
    f.write("start\n")
  time.sleep(float(os.environ.get("FAKE_TRIAL_SLEEP", "0")))
  value = (math.log10(c.optim.lr) + 3.0) ** 2 + (c.model.hidden - 64) ** 2 / 1e4
  with open(os.path.join(_WORKDIR.value, "metrics.json"), "w") as f:
    json.dump({"val/objective": value, "num_steps": c.num_steps}, f)


if __name__ == "__main__":
  app.run(main)
