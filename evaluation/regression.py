"""Point-regression metrics in label units (EF percent)."""
from __future__ import annotations

import numpy as np


def regression_metrics(y_true, y_pred) -> dict[str, float]:
  """MAE, RMSE and R² = 1 − SS_res/SS_tot (float64, over all items)."""
  y_true = np.asarray(y_true, np.float64).ravel()
  y_pred = np.asarray(y_pred, np.float64).ravel()
  if y_true.shape != y_pred.shape or y_true.size == 0:
    raise ValueError(f"regression_metrics: shapes {y_true.shape} and {y_pred.shape}")
  err = y_pred - y_true
  ss_tot = np.sum((y_true - y_true.mean()) ** 2)
  return {
      "mae": float(np.mean(np.abs(err))),
      "rmse": float(np.sqrt(np.mean(err ** 2))),
      "r2": float(1.0 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
      "n": int(y_true.size),
  }
