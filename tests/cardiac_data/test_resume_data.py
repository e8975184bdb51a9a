"""A resumed run sees the batches an uninterrupted run sees (pipeline `start_batch`)."""
from __future__ import annotations

import itertools

import numpy as np

from cardiac_data import pipeline
from tests.cardiac_data.test_pipeline import cfg, ramp_source


def test_start_batch_continues_the_uninterrupted_stream():
  source = ramp_source([9, 12, 7, 10, 11], num_attr=2)
  config = cfg(augment=True, batch_size=2)
  full = list(itertools.islice(pipeline.make_loader(source, config, train=True), 7))
  resumed = list(itertools.islice(pipeline.make_loader(source, config, train=True,
                                                       start_batch=4), 3))
  for a, b in zip(full[4:], resumed):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert not np.array_equal(full[0]["index"], full[4]["index"]) or not np.array_equal(
      full[0]["video"], full[4]["video"])
