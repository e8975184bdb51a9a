"""Demographic attributes: raw matrix from records, and a preprocessor fitted on train.

`raw_attribute_matrix` turns the records' raw attributes (None = missing) into a
float32 matrix: continuous values as read, categorical values as the index of the
category in the spec, NaN for missing. `AttributePreprocessor` holds the
imputation and scaling statistics fitted on the TRAINING split only (mean
imputation, then standardisation with the training mean and standard deviation);
categorical columns become int32 codes with code `len(categories)` = missing.
It is pure numpy and JSON-serialisable, so it is saved with each checkpoint.
`mark_missing` marks named attributes of a preprocessed batch missing exactly as the
preprocessor marks an absent value (test-time missing attributes, `--missing` of
launch.sample and launch.predict; `parse_missing` reads that flag's value).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Mapping, Sequence

from absl import logging
import numpy as np

#: Standard deviations below this are treated as 1 (constant column).
_MIN_STD = 1e-8


@dataclasses.dataclass(frozen=True)
class AttributeSpec:
  """Which attributes a model sees: continuous names and categorical vocabularies."""
  continuous: tuple[str, ...] = ()
  categorical: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, "continuous", tuple(self.continuous))
    object.__setattr__(self, "categorical",
                       {str(k): tuple(v) for k, v in dict(self.categorical).items()})
    names = list(self.continuous) + list(self.categorical)
    if len(set(names)) != len(names):
      raise ValueError(f"attribute names must be unique, got {names}")
    for name, cats in self.categorical.items():
      if not cats or len(set(cats)) != len(cats):
        raise ValueError(f"categorical attribute {name!r}: categories must be non-empty and "
                         f"unique, got {cats}")

  @property
  def num_continuous(self) -> int:
    return len(self.continuous)

  @property
  def num_categorical(self) -> int:
    return len(self.categorical)

  @property
  def names(self) -> tuple[str, ...]:
    """Every attribute: the continuous ones, then the categorical ones (column order)."""
    return self.continuous + tuple(self.categorical)

  @property
  def num_categories(self) -> tuple[int, ...]:
    """Number of real categories per categorical column (missing code excluded)."""
    return tuple(len(c) for c in self.categorical.values())

  def to_json(self) -> dict:
    return {"continuous": list(self.continuous),
            "categorical": {k: list(v) for k, v in self.categorical.items()}}

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> AttributeSpec:
    return cls(continuous=tuple(d["continuous"]),
               categorical={k: tuple(v) for k, v in d["categorical"].items()})


#: Attributes of each layout (EchoNet-Dynamic has none).
PEDIATRIC_SPEC = AttributeSpec(("Age", "Weight", "Height"), {"Sex": ("M", "F")})
CAMUS_SPEC = AttributeSpec(("Age",), {"Sex": ("M", "F"),
                                      "ImageQuality": ("Good", "Medium", "Poor")})
DYNAMIC_SPEC = AttributeSpec((), {})


def _is_missing(value: Any) -> bool:
  if value is None:
    return True
  if isinstance(value, float) and math.isnan(value):
    return True
  return isinstance(value, str) and value.strip() == ""


def raw_attribute_matrix(records: Iterable[Any], spec: AttributeSpec) -> np.ndarray:
  """float32 (N, n_cont + n_cat): continuous raw values, category index, NaN = missing.

  `records` are EchoRecords (or anything with an `attributes` mapping). A value
  that is not a number (continuous) or not in the spec's categories
  (categorical) raises ValueError naming the record and attribute.
  """
  records = list(records)
  out = np.full((len(records), spec.num_continuous + spec.num_categorical), np.nan, np.float32)
  for i, rec in enumerate(records):
    attrs = rec.attributes
    for j, name in enumerate(spec.continuous):
      value = attrs.get(name)
      if _is_missing(value):
        continue
      try:
        out[i, j] = float(value)
      except (TypeError, ValueError):
        raise ValueError(f"{getattr(rec, 'key', i)}: attribute {name}={value!r} is not a number"
                         ) from None
    for j, (name, cats) in enumerate(spec.categorical.items(), start=spec.num_continuous):
      value = attrs.get(name)
      if _is_missing(value):
        continue
      if value not in cats:
        raise ValueError(f"{getattr(rec, 'key', i)}: attribute {name}={value!r} is not one of "
                         f"{cats}")
      out[i, j] = cats.index(value)
  return out


@dataclasses.dataclass(frozen=True)
class AttributePreprocessor:
  """Mean imputation + standardisation (continuous), integer codes (categorical).

  `mean`/`std` are per continuous column, fitted on the training split only.
  transform: x -> (x if observed else mean - mean) / std, i.e. missing -> 0.
  """
  spec: AttributeSpec
  mean: tuple[float, ...]
  std: tuple[float, ...]
  num_fitted: int = 0

  @classmethod
  def fit(cls, raw: np.ndarray, spec: AttributeSpec) -> AttributePreprocessor:
    """Fits on `raw` (N, n_cont + n_cat) from raw_attribute_matrix of TRAINING records."""
    raw = _check_raw(raw, spec)
    cont = raw[:, :spec.num_continuous].astype(np.float64)
    means, stds = [], []
    for j, name in enumerate(spec.continuous):
      col = cont[:, j]
      col = col[~np.isnan(col)]
      if col.size == 0:
        logging.warning("attribute %s: no observed value in the training split; "
                        "imputing 0 with scale 1", name)
        means.append(0.0)
        stds.append(1.0)
        continue
      std = float(np.std(col))
      means.append(float(np.mean(col)))
      stds.append(std if std > _MIN_STD else 1.0)
    _check_codes(raw[:, spec.num_continuous:], spec)
    return cls(spec=spec, mean=tuple(means), std=tuple(stds), num_fitted=int(raw.shape[0]))

  def transform(self, raw: np.ndarray) -> dict[str, np.ndarray]:
    """raw (..., n_cont + n_cat) -> continuous f32, continuous_missing bool, categorical int32."""
    raw = _check_raw(raw, self.spec)
    n_cont = self.spec.num_continuous
    cont = raw[..., :n_cont].astype(np.float64)
    missing = np.isnan(cont)
    mean = np.asarray(self.mean, np.float64)
    std = np.asarray(self.std, np.float64)
    scaled = (np.where(missing, mean, cont) - mean) / std
    codes = raw[..., n_cont:]
    _check_codes(codes, self.spec)
    n_cats = np.asarray(self.spec.num_categories, np.float32)
    categorical = np.where(np.isnan(codes), n_cats, codes).astype(np.int32)
    return {"continuous": scaled.astype(np.float32),
            "continuous_missing": missing,
            "categorical": categorical}

  def to_json(self) -> dict:
    """JSON-serialisable dict; floats are Python floats so a round trip is exact."""
    return {"spec": self.spec.to_json(), "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std], "num_fitted": self.num_fitted}

  @classmethod
  def from_json(cls, d: Mapping[str, Any] | str) -> AttributePreprocessor:
    """Inverse of to_json; also accepts the JSON text (json.dumps of to_json())."""
    if isinstance(d, (str, bytes)):
      d = json.loads(d)
    spec = AttributeSpec.from_json(d["spec"])
    mean, std = tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"])
    if len(mean) != spec.num_continuous or len(std) != spec.num_continuous:
      raise ValueError(f"preprocessor JSON has {len(mean)} means / {len(std)} stds for "
                       f"{spec.num_continuous} continuous attributes")
    return cls(spec=spec, mean=mean, std=std, num_fitted=int(d.get("num_fitted", 0)))


def fit_on_train(records: Iterable[Any], spec: AttributeSpec) -> AttributePreprocessor:
  """Fits on the records whose split is 'train' (all others are ignored)."""
  train = [r for r in records if r.split == "train"]
  if not train:
    raise ValueError("no training record to fit the attribute preprocessor on")
  return AttributePreprocessor.fit(raw_attribute_matrix(train, spec), spec)


#: The preprocessed attribute arrays of a batch (cardiac_data.transforms.PreprocessAttributes:
#: AttributePreprocessor.transform's continuous, continuous_missing, categorical).
BATCH_KEYS = ("attr_cont", "attr_cont_missing", "attr_cat")
#: The --missing value that names every attribute of the spec.
ALL = "all"


def parse_missing(value: str | Sequence[str] | None, spec: AttributeSpec, *,
                  flag: str = "--missing") -> tuple[str, ...]:
  """The attribute names a `--missing` value gives: 'Age,Weight' or a sequence of names
  (what absl's DEFINE_list gives), 'all' (every attribute of `spec`, in spec order), or
  '' / None / an empty sequence (none). Duplicates are dropped, order kept.

  ValueError naming the flag and its value if a name is not one of `spec`'s (listing
  them), if 'all' comes with other names, or if `spec` has no attribute at all.
  """
  if value is None:
    items = []
  elif isinstance(value, str):
    items = value.split(",")
  else:
    items = list(value)
  items = [str(v).strip() for v in items]
  items = [v for v in items if v]
  if not items:
    return ()
  shown = f"{flag}={','.join(items)}"
  if not spec.names:
    raise ValueError(f"{shown}: the model takes no patient attribute (vision only); there "
                     "is nothing to mark missing")
  if ALL in items:
    if len(items) > 1:
      raise ValueError(f"{shown}: {ALL!r} names every attribute; give it alone or list "
                       f"names of {list(spec.names)}")
    return spec.names
  unknown = [v for v in items if v not in spec.names]
  if unknown:
    raise ValueError(f"{shown}: unknown attribute(s) {unknown}; the model's attributes are "
                     f"{list(spec.names)} (or {ALL!r})")
  return tuple(dict.fromkeys(items))


def mark_missing(batch: Mapping[str, Any], spec: AttributeSpec,
                 names: str | Sequence[str], *, flag: str = "--missing") -> dict[str, Any]:
  """A new batch in which the attributes `names` (a sequence of names of `spec`, or
  'all'; read by `parse_missing`) are missing exactly as AttributePreprocessor.transform
  marks an absent value: a continuous one has value 0 (the training mean, standardised)
  and its missing flag set, a categorical one the missing code `len(categories)`. The
  other attributes and every other key are as given; `batch` is not modified.

  `batch` holds BATCH_KEYS with `spec`'s columns in order (numpy or array-likes, any
  leading dimensions); the three arrays of the result are numpy, of the input dtypes.
  """
  names = parse_missing(names, spec, flag=flag)
  out = dict(batch)
  if not names:
    return out
  cont, cont_missing, cat = (np.asarray(batch[k]) for k in BATCH_KEYS)
  if cont.shape[-1] != spec.num_continuous or cat.shape[-1] != spec.num_categorical:
    raise ValueError(f"mark_missing: the batch has {cont.shape[-1]} continuous and "
                     f"{cat.shape[-1]} categorical attribute columns, the spec "
                     f"{spec.num_continuous} and {spec.num_categorical} ({list(spec.names)})")
  drop_cont = np.array([n in names for n in spec.continuous], bool)
  drop_cat = np.array([n in names for n in spec.categorical], bool)
  out["attr_cont"] = np.where(drop_cont, 0, cont).astype(cont.dtype)
  out["attr_cont_missing"] = (cont_missing | drop_cont).astype(cont_missing.dtype)
  out["attr_cat"] = np.where(drop_cat, np.asarray(spec.num_categories, cat.dtype),
                             cat).astype(cat.dtype)
  return out


def _check_raw(raw: np.ndarray, spec: AttributeSpec) -> np.ndarray:
  raw = np.asarray(raw, np.float32)
  width = spec.num_continuous + spec.num_categorical
  if raw.ndim < 1 or raw.shape[-1] != width:
    raise ValueError(f"raw attributes must have last dimension {width} "
                     f"({spec.num_continuous} continuous + {spec.num_categorical} categorical), "
                     f"got shape {raw.shape}")
  return raw


def _check_codes(codes: np.ndarray, spec: AttributeSpec) -> None:
  n_cats = np.asarray(spec.num_categories, np.float32)
  ok = np.isnan(codes) | ((codes >= 0) & (codes < n_cats) & (codes == np.round(codes)))
  if not np.all(ok):
    bad = codes[~ok][0]
    raise ValueError(f"categorical code {bad} out of range for categories "
                     f"{dict(spec.categorical)}")
