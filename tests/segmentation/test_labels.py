"""segmentation.labels: pseudo-label filling against a per-pixel loop."""
from __future__ import annotations

import numpy as np

from segmentation import labels as labels_lib


def test_fill_absent_matches_a_per_pixel_loop_and_keeps_annotations():
  rng = np.random.default_rng(0)
  b, h, w = 6, 5, 7
  full = np.ones((b, 4), bool)
  full[4, 3] = False                                     # a domain without LA
  sets = full & (rng.random((b, 4)) < 0.6)
  sets[:, 0] = True
  labels = labels_lib.withhold(rng.integers(0, 4, (b, h, w)), sets)
  pred = rng.integers(0, 4, (b, h, w))
  got = labels_lib.fill_absent(labels, pred, sets, full)
  want = labels.copy()
  for i in range(b):
    for y in range(h):
      for x in range(w):
        c = pred[i, y, x]
        if labels[i, y, x] == 0 and c > 0 and full[i, c] and not sets[i, c]:
          want[i, y, x] = c
  np.testing.assert_array_equal(got, want)
  annotated = labels > 0
  np.testing.assert_array_equal(got[annotated], labels[annotated])   # foreground kept
  changed = got != labels
  b_idx = np.nonzero(changed)[0]
  assert changed.any()
  assert not sets[b_idx, got[changed]].any()             # only absent classes are added
  assert full[b_idx, got[changed]].all()                 # and only the domain's own
