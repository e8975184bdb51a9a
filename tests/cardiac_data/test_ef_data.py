"""The EF data path's label rules: evaluation scores labelled cases only (CAMUS 2019
testing/ has no EF) and counts the rest; train and val must be fully labelled."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from cardiac_data import builders
from cardiac_data import ef_data
from cardiac_data import pipeline
from cardiac_data.errors import DataFormatError
from configs import camus as camus_config
from evaluation import regression
from tests import fixtures


def test_labelled_cases_and_selection_against_a_reference(caplog):
  labels = np.array([50.0, np.nan, 60.0, np.nan, 40.0])
  pred = np.array([52.0, 10.0, 57.0, 90.0, 40.0])
  samples = pred[:, None] + np.array([-1.0, 0.0, 1.0])          # (N, K)
  with caplog.at_level(logging.WARNING):
    keep = ef_data.labelled_cases(labels, "test")
  np.testing.assert_array_equal(keep, [True, False, True, False, True])
  assert "split 'test': 2 of 5 case(s) have no EF label" in caplog.text
  assert ef_data.unlabelled_metrics(keep) == {"num_labelled": 3.0, "num_unlabelled": 2.0}
  y, p, s = (ef_data.select_cases(keep, x) for x in (labels, pred, samples))
  metrics = regression.regression_metrics(y, p)
  assert metrics["mae"] == pytest.approx(np.mean([2.0, 3.0, 0.0]))
  assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean([4.0, 9.0, 0.0])))
  np.testing.assert_array_equal(s, samples[[0, 2, 4]])
  info = {"quality": ["Good", "Poor", "Medium", "Good", "Poor"], "age": np.arange(5.0)}
  picked = ef_data.select_cases(keep, info)
  assert picked["quality"] == ["Good", "Medium", "Poor"]
  np.testing.assert_array_equal(picked["age"], [0.0, 2.0, 4.0])
  assert ef_data.select_cases(keep, None) is None
  with pytest.raises(ValueError, match="4 entries for 5 cases"):
    ef_data.select_cases(keep, ["a"] * 4)


def test_labelled_cases_none_labelled_logs_the_skip(caplog):
  with caplog.at_level(logging.WARNING):
    keep = ef_data.labelled_cases(np.full(3, np.nan), "test")
  assert not keep.any() and "its metrics are skipped" in caplog.text
  assert ef_data.unlabelled_metrics(keep) == {"num_labelled": 0.0, "num_unlabelled": 3.0}


@pytest.fixture
def camus2019(tmp_path):
  """2019 MHD release: training/ patient0001, 0002, 0013 (val by the default rule),
  testing/ patient0004 (no EF)."""
  root = tmp_path / "camus2019"
  fixtures.write_camus(root, "mhd", num_frames=2, splits={
      "patient0001": "train", "patient0002": "train", "patient0013": "train",
      "patient0004": "test"})
  return root


def smoke_config(root, tmp_path, **reader):
  c = camus_config.get_config("smoke")
  c.data.update(root=str(root), cache_dir=str(tmp_path / "cache"), image_size=16,
                tfds_dir=str(tmp_path / "tfds"))
  c.data.reader.update(**reader)
  return c


def test_camus_2019_testing_is_unlabelled_and_skipped_in_scoring(camus2019, tmp_path):
  data = ef_data.EFData(smoke_config(camus2019, tmp_path))
  assert np.isfinite(data.labels("train")).all() and np.isfinite(data.labels("val")).all()
  assert np.isfinite([data.ef_mean, data.ef_std]).all()
  test = data.labels("test")
  keep = ef_data.labelled_cases(test, "test")
  assert test.shape == (1,) and not keep.any()
  assert ef_data.unlabelled_metrics(keep) == {"num_labelled": 0.0, "num_unlabelled": 1.0}
  # A split holding both: the labelled case alone is kept, with its key.
  mixed = pipeline.data_source(data.builder, "val+test")
  labels = np.asarray(builders.split_metadata(mixed, "ef"), np.float64)
  keep = ef_data.labelled_cases(labels, "val+test")
  np.testing.assert_array_equal(keep, [True, False])
  assert ef_data.select_cases(keep, builders.split_metadata(mixed, "key")) == ["patient0013_4CH"]


def test_unlabelled_cases_in_train_are_an_error_naming_split_and_count(camus2019, tmp_path):
  # vital-style lists that put the testing/ patient (no ground truth) in training.
  fixtures.write_split_lists(camus2019 / "listSubGroups", {
      "patient0001": "train", "patient0004": "train", "patient0002": "val",
      "patient0013": "test"}, pattern="subGroup1_{subset}.txt")
  with pytest.raises(DataFormatError, match=r"split 'train': 1 of 2 case\(s\) have no EF label"):
    ef_data.EFData(smoke_config(camus2019, tmp_path, fold=1))
  with pytest.raises(DataFormatError, match=r"camus2019: split 'val': 2 of 3"):
    ef_data.check_labelled([np.nan, 50.0, np.nan], "val", camus2019)
  ef_data.check_labelled([40.0, 50.0], "train", camus2019)   # Fully labelled: no error.


def test_fitted_meta_replaces_the_refit_and_reads_no_data():
  """EFData from a checkpoint's meta reads no data; use_fitted swaps in a checkpoint's
  preprocessing (launch.predict / training.runs: never refitted)."""
  from cardiac_data import attributes as attributes_lib
  from configs import pediatric
  config = pediatric.get_config("smoke")
  pre = attributes_lib.AttributePreprocessor(attributes_lib.PEDIATRIC_SPEC, mean=(5.0, 20.0, 110.0),
                                             std=(4.0, 10.0, 20.0))
  data = ef_data.EFData(config, fitted={"attributes": pre.to_json(), "ef_mean": 60.0,
                                        "ef_std": 8.0})
  assert data.sources == {} and data.root is None
  assert data.to_percent(np.array([1.0])) == pytest.approx([68.0])
  other = attributes_lib.AttributePreprocessor(attributes_lib.PEDIATRIC_SPEC, mean=(1.0, 2.0, 3.0),
                                               std=(1.0, 1.0, 1.0))
  data.use_fitted({"attributes": other.to_json(), "ef_mean": 50.0, "ef_std": 10.0})
  assert data.preprocessor.mean == (1.0, 2.0, 3.0)
  assert (data.ef_mean, data.ef_std) == (50.0, 10.0)
  out = data.preprocessor.transform(np.array([[3.0, np.nan, 5.0, 1.0]], np.float32))
  np.testing.assert_allclose(out["continuous"], [[2.0, 0.0, 2.0]])
