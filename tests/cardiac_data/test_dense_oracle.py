"""cardiac_data.synthetic.dense_oracle against the label files the writer writes."""
from __future__ import annotations

import numpy as np

from cardiac_data import dense
from cardiac_data.synthetic import dense_oracle
from cardiac_data.synthetic import dense_writer


def test_oracle_scores_match_the_written_labels(tmp_path):
  n, frames = 14, 8
  out = dense_oracle.oracle_epe(n, seed=3, frames=frames, used_frames=4, split="val")
  # The zero predictor's EPE is the labels' mean norm: recompute it from the .mat files.
  dense_writer.write_dense(tmp_path, n, seed=3, frames=frames, cine_frames=0, workers=1)
  num = den = 0.0
  for folder in dense.split_folders(tmp_path, "val"):
    s = dense.read_sample(folder)
    idx = dense.frame_indices(s.mask.shape[0], 4)[1:]
    support = s.mask[0] > 0
    num += np.sqrt((s.displacement[idx] ** 2).sum(axis=1))[:, support].sum()
    den += support.sum() * len(idx)
  np.testing.assert_allclose(out["zero"], num / den, rtol=1e-6)
  assert out["exact"] < 1e-9
  # Knowing more of the motion can only help: radial only > prior mean of the rest.
  assert 0 < out["prior_mean"] < out["no_circumferential"] < out["zero"]
