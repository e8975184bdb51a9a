"""Regression metrics against brute-force definitions; plots are written."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import plots, regression


def test_metrics_match_definitions():
  rng = np.random.default_rng(0)
  y = rng.uniform(20, 80, 50)
  p = y + rng.normal(0, 5, 50)
  m = regression.regression_metrics(y, p)
  mae = sum(abs(a - b) for a, b in zip(y, p)) / 50
  rmse = (sum((a - b) ** 2 for a, b in zip(y, p)) / 50) ** 0.5
  r2 = 1 - sum((a - b) ** 2 for a, b in zip(y, p)) / sum((a - y.mean()) ** 2 for a in y)
  assert m["mae"] == pytest.approx(mae) and m["rmse"] == pytest.approx(rmse)
  assert m["r2"] == pytest.approx(r2)
  assert regression.regression_metrics(y, y)["r2"] == 1.0
  assert regression.regression_metrics(y, np.full(50, y.mean()))["r2"] == pytest.approx(0.0, abs=1e-12)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shapes"):
    regression.regression_metrics([1.0, 2.0], [1.0])


def test_scatter_plot_writes_png(tmp_path):
  path = tmp_path / "scatter.png"
  plots.scatter_plot(str(path), [40, 50, 60], [42, 49, 65], yerr=[1, 2, 3], title="t")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
