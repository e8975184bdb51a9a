"""Attribute matrix and preprocessor: train-only fit, missing handling, exact JSON round trip."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from cardiac_data import attributes, echonet
from tests import fixtures

SPEC = attributes.PEDIATRIC_SPEC


@dataclasses.dataclass
class Rec:
  key: str
  split: str
  attributes: dict


def _records():
  rows = [("train", 2.0, "M", 12.0, None), ("train", 5.5, "F", None, 110.0),
          ("train", None, None, 20.5, 120.0), ("train", 9.0, "F", 30.0, 135.5),
          ("val", 100.0, "M", 900.0, 10.0), ("test", 50.0, None, None, 999.0)]
  return [Rec(f"v{i}", s, {"Age": a, "Sex": x, "Weight": w, "Height": h})
          for i, (s, a, x, w, h) in enumerate(rows)]


def test_raw_matrix_values_and_missing():
  raw = attributes.raw_attribute_matrix(_records(), SPEC)
  assert raw.dtype == np.float32 and raw.shape == (6, 4)
  np.testing.assert_array_equal(raw[0], [2.0, 12.0, np.nan, 0])   # Age, Weight, Height, Sex
  np.testing.assert_array_equal(raw[1], [5.5, np.nan, 110.0, 1])
  np.testing.assert_array_equal(raw[2], [np.nan, 20.5, 120.0, np.nan])
  with pytest.raises(ValueError, match=r"v0: attribute Sex='U' is not one of \('M', 'F'\)"):
    attributes.raw_attribute_matrix([Rec("v0", "train", {"Sex": "U"})], SPEC)
  with pytest.raises(ValueError, match="Age='old' is not a number"):
    attributes.raw_attribute_matrix([Rec("v0", "train", {"Age": "old"})], SPEC)
  # Absent keys and NaN are missing too.
  raw = attributes.raw_attribute_matrix([Rec("v", "train", {"Age": float("nan")})], SPEC)
  assert np.isnan(raw).all()


def test_fit_statistics_match_float64_reference_and_transform():
  recs = _records()
  pre = attributes.fit_on_train(recs, SPEC)
  train = [r for r in recs if r.split == "train"]
  for j, name in enumerate(SPEC.continuous):
    vals = [r.attributes[name] for r in train if r.attributes[name] is not None]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    assert pre.mean[j] == pytest.approx(mean, rel=1e-12)
    assert pre.std[j] == pytest.approx(std, rel=1e-12)
  out = pre.transform(attributes.raw_attribute_matrix(recs, SPEC))
  assert out["continuous"].dtype == np.float32 and out["continuous"].shape == (6, 3)
  assert out["continuous_missing"].dtype == bool and out["categorical"].dtype == np.int32
  # Age of record 4 (val) = 100: scaled with the train statistics.
  assert out["continuous"][4, 0] == pytest.approx((100 - pre.mean[0]) / pre.std[0], rel=1e-6)
  # Missing -> imputed with the mean -> exactly 0 after scaling, and flagged.
  assert out["continuous"][2, 0] == 0.0 and out["continuous_missing"][2, 0]
  assert not out["continuous_missing"][0, 0]
  np.testing.assert_array_equal(out["categorical"][:, 0], [0, 1, 2, 1, 0, 2])  # 2 = missing


def test_val_and_test_rows_never_change_fitted_statistics(tmp_path):
  fx = fixtures.write_echonet_pediatric(tmp_path, 10, with_videos=False)
  records = echonet.read_echonet_pediatric(fx.root, test_fold=4, check_files=False).records
  assert {r.split for r in records} == {"train", "val", "test"}
  base = attributes.fit_on_train(records, SPEC)

  def perturb(rec, age):
    return dataclasses.replace(rec, attributes={**rec.attributes, "Age": age, "Weight": None,
                                                "Sex": None})
  changed = [perturb(r, 1e4) if r.split != "train" else r for r in records]
  assert attributes.fit_on_train(changed, SPEC) == base
  # A training row does move them (the check can fail).
  i = next(i for i, r in enumerate(records) if r.split == "train")
  moved = list(records)
  moved[i] = perturb(records[i], 1e4)
  assert attributes.fit_on_train(moved, SPEC).mean != base.mean
  with pytest.raises(ValueError, match="no training record"):
    attributes.fit_on_train([r for r in records if r.split != "train"], SPEC)


def test_json_round_trip_is_exact():
  recs = _records()
  pre = attributes.fit_on_train(recs, SPEC)
  text = json.dumps(pre.to_json())
  back = attributes.AttributePreprocessor.from_json(json.loads(text))
  assert back == pre
  assert attributes.AttributePreprocessor.from_json(text) == pre  # JSON text accepted too
  raw = attributes.raw_attribute_matrix(recs, SPEC)
  a, b = pre.transform(raw), back.transform(raw)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
    assert a[k].dtype == b[k].dtype
  assert attributes.AttributeSpec.from_json(json.loads(json.dumps(SPEC.to_json()))) == SPEC


def test_leading_dims_constant_and_all_missing_columns():
  spec = attributes.CAMUS_SPEC
  raw = np.array([[60.0, 0, 0], [60.0, 1, 2], [60.0, np.nan, 1]], np.float32)
  pre = attributes.AttributePreprocessor.fit(raw, spec)
  assert pre.std == (1.0,)  # constant column: scale 1, not a division by 0
  out = pre.transform(raw.reshape(3, 1, 3))
  assert out["continuous"].shape == (3, 1, 1) and np.all(out["continuous"] == 0)
  np.testing.assert_array_equal(out["categorical"][:, 0], [[0, 0], [1, 2], [2, 1]])
  empty = attributes.AttributePreprocessor.fit(np.full((2, 3), np.nan, np.float32), spec)
  assert (empty.mean, empty.std) == ((0.0,), (1.0,))
  with pytest.raises(ValueError, match="last dimension 3"):
    pre.transform(np.zeros((2, 4)))
  with pytest.raises(ValueError, match="categorical code 3.0 out of range"):
    pre.transform(np.array([[1.0, 0, 3]]))


def test_dynamic_spec_is_empty():
  pre = attributes.AttributePreprocessor.fit(np.zeros((4, 0), np.float32), attributes.DYNAMIC_SPEC)
  out = pre.transform(np.zeros((2, 0), np.float32))
  assert [v.shape for v in out.values()] == [(2, 0)] * 3
