"""Regression metrics against brute-force definitions; plots are written."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import plots, regression, sharded


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


def test_pad_to_multiple_repeats_the_last_row():
  b = {"x": np.arange(6).reshape(3, 2), "i": np.arange(3)}
  padded, n = sharded.pad_to_multiple(b, 4)
  assert n == 3 and padded["i"].tolist() == [0, 1, 2, 2] and padded["x"][3].tolist() == [4, 5]
  same, n = sharded.pad_to_multiple(b, 3)
  assert same is b and n == 3


def test_log_axis_labels_the_values_studied_without_overlap():
  """The sampling-study plot's log axes: one plain label per studied value (the default
  log ticks labelled minor ticks, '3×10¹4×10¹' overlapping), none crowded."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(4.0, 3.0))
  ks = [1, 5, 10, 20, 40, 100]
  ax.plot(ks, np.arange(6))
  assert plots.log_axis_at(ax.xaxis, ks) == ks
  fig.canvas.draw()
  labels = [t.get_text() for t in ax.get_xticklabels()]
  assert ax.get_xscale() == "log" and labels == ["1", "5", "10", "20", "40", "100"]
  assert list(ax.xaxis.get_minorticklocs()) == []
  boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
  assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
  # Crowded values keep their ticks; labels too close to the previous one are dropped.
  crowded = [1, 2, 3, 4, 5, 8, 10, 16, 20, 32, 40, 50, 64, 100, 128]
  shown = plots.log_axis_at(ax.yaxis, crowded)
  assert len(ax.yaxis.get_majorticklocs()) == len(crowded) and shown[0] == 1
  assert min(np.diff(np.log10(shown))) >= 0.06 * np.log10(128)
  plt.close(fig)
