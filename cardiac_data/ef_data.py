"""The EF data path every video regressor shares (MCSDR, its deterministic baseline,
AdaCon): the TFDS sources of config.data, attribute preprocessing and EF
standardisation fitted on the training split, train and eval batches from the grain
pipeline, the per-case averaging of batched outputs (clips of one video), and the
selection of the cases evaluation can score (those with an EF label).

Labels: the training and validation splits must have an EF for every case (training,
checkpoint selection and the σ-scaling fit use them; a NaN there is an error naming
the split and count). The test split may hold unlabelled cases (CAMUS 2019
testing/ has no ground truth): evaluation scores the labelled ones and reports how
many it left out (`labelled_cases`, `select_cases`)."""
from __future__ import annotations

from absl import logging
import jax
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import builders
from cardiac_data import errors
from cardiac_data import pipeline
from cardiac_data import sources as sources_lib


def attribute_spec(data_cfg) -> attributes_lib.AttributeSpec:
  default = builders.BUILDERS[data_cfg.dataset].make_config(view=data_cfg.view).attribute_spec()
  names = tuple(data_cfg.attributes) + tuple(data_cfg.categorical)
  unknown = [n for n in names if n not in default.continuous and n not in default.categorical]
  if unknown:
    raise ValueError(f"config.data.attributes: unknown attribute(s) {unknown} for "
                     f"{data_cfg.dataset} (known: {list(default.continuous)} + "
                     f"{list(default.categorical)})")
  categorical = {name: default.categorical[name] for name in data_cfg.categorical}
  continuous = tuple(n for n in data_cfg.attributes if n in default.continuous)
  return attributes_lib.AttributeSpec(continuous, categorical)


def pipeline_config(data_cfg, seed: int) -> pipeline.PipelineConfig:
  return pipeline.PipelineConfig(
      frames=data_cfg.frames, period=data_cfg.period, image_size=data_cfg.image_size,
      batch_size=data_cfg.batch_size, worker_count=data_cfg.worker_count,
      augment=data_cfg.augment, sampling=data_cfg.sampling, seed=seed)


def average_per_case(num_cases: int, keys, values, split: str = "") -> np.ndarray:
  """Per-case mean (N, ...) of batched outputs: `keys` is a list of (index, mask) per
  batch, `values` the matching (B, ...) arrays; padding (mask False) is dropped and the
  clips of one video are averaged. Raises if a case got no output."""
  total = count = None
  for (index, mask), v in zip(keys, values):
    v = np.asarray(v)
    if total is None:
      total, count = np.zeros((num_cases,) + v.shape[1:]), np.zeros(num_cases)
    np.add.at(total, index[mask], v[mask])
    np.add.at(count, index[mask], 1)
  missing = num_cases if count is None else int(np.sum(count == 0))
  if missing:
    raise RuntimeError(f"split {split!r}: {missing} example(s) got no prediction")
  return total / count.reshape((-1,) + (1,) * (total.ndim - 1))


#: Splits whose every case must have an EF label (train: the loss; val: best-checkpoint
#: selection and the σ-scaling fit).
LABELLED_SPLITS = ("train", "val")


def labelled_cases(labels, split: str = "") -> np.ndarray:
  """Bool (N,) mask of the cases of `split` that have an EF label (finite); logs how
  many have none (counts only) and, if none has one, that its metrics are skipped."""
  keep = np.isfinite(np.asarray(labels, np.float64))
  missing = int(keep.size - keep.sum())
  if missing and keep.any():
    logging.warning("split %r: %d of %d case(s) have no EF label (NaN, e.g. CAMUS 2019 "
                    "testing/); scored on the %d labelled", split, missing, keep.size,
                    keep.size - missing)
  elif missing:
    logging.warning("split %r: none of its %d case(s) has an EF label (e.g. CAMUS 2019 "
                    "testing/); its metrics are skipped", split, keep.size)
  return keep


def unlabelled_metrics(keep: np.ndarray) -> dict[str, float]:
  """The counts every EF evaluation reports: num_labelled, num_unlabelled."""
  keep = np.asarray(keep, bool)
  return {"num_labelled": float(keep.sum()), "num_unlabelled": float(keep.size - keep.sum())}


def select_cases(keep: np.ndarray, value):
  """`value` restricted to the cases where `keep`: an array or list with one entry per
  case (first axis), a dict of those (e.g. reports.case_info), or None (kept None)."""
  keep = np.asarray(keep, bool)
  if value is None:
    return None
  if isinstance(value, dict):
    return {k: select_cases(keep, v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    if len(value) != keep.size:
      raise ValueError(f"select_cases: {len(value)} entries for {keep.size} cases")
    return [v for v, k in zip(value, keep) if k]
  value = np.asarray(value)
  if value.shape[:1] != keep.shape:
    raise ValueError(f"select_cases: shape {value.shape} for {keep.size} cases")
  return value[keep]


def check_labelled(labels, split: str, where) -> None:
  """DataFormatError naming `where` (the data root), the split and the count if a case
  of `split` has no EF label (NaN)."""
  labels = np.asarray(labels, np.float64)
  missing = int(np.sum(~np.isfinite(labels)))
  if missing:
    raise errors.DataFormatError(
        where, f"split {split!r}: {missing} of {labels.size} case(s) have no EF label (NaN); "
        f"the {', '.join(LABELLED_SPLITS)} splits need one for every case (only the test "
        "split may hold unlabelled cases, e.g. CAMUS 2019 testing/; check the split lists "
        "or config.data.reader.fold)")


class EFData:
  """The EF data path every video regressor shares: sources of config.data, attribute
  preprocessing and EF standardisation fitted on the training split, train and eval
  batches. Tasks (mcsdr_jax.task.EFRegressionTask, adacon_jax.task.AdaConTask) subclass it
  and add a model.

  `missing`: names of `spec`'s attributes (or ('all',)) marked missing in every
  evaluation batch (`eval_batches`, by attributes.mark_missing), as if the records had
  no value; training batches never. Empty by default; set by the launchers' --missing
  (launch.sample, launch.predict) and by mcsdr_jax.missing_study."""

  missing: tuple[str, ...] = ()

  def __init__(self, config, *, fitted=None):
    """`fitted`: None = read config.data and fit the preprocessing on its training split;
    a checkpoint's task meta ({'attributes': the preprocessor's JSON, 'ef_mean',
    'ef_std'}) = use that, read no data (`sources` starts empty; scoring adds its own)."""
    self.config = config
    d = config.data
    if fitted is not None:
      self.preprocessor = None
      if fitted.get("attributes") is not None:
        self.preprocessor = attributes_lib.AttributePreprocessor.from_json(fitted["attributes"])
      self.spec = (self.preprocessor.spec if self.preprocessor is not None
                   else attributes_lib.AttributeSpec())
      self.ef_mean, self.ef_std = float(fitted["ef_mean"]), float(fitted["ef_std"])
      self.root, self.builder, self.sources = None, None, {}
      self.pcfg = pipeline_config(d, config.seed)
      return
    self.spec = attribute_spec(d)
    self.root = sources_lib.dataset_root(d)
    self.builder, self.sources = sources_lib.load_sources(d, self.spec)
    for split in LABELLED_SPLITS:
      check_labelled(self.labels(split), split, self.root)
    raw = builders.raw_attributes(self.sources["train"])
    self.preprocessor = attributes_lib.AttributePreprocessor.fit(raw, self.spec)
    ef = self.labels("train")
    self.ef_mean, self.ef_std = float(np.nanmean(ef)), float(np.nanstd(ef))
    self.pcfg = pipeline_config(d, config.seed)

  def use_fitted(self, fitted) -> None:
    """Replaces the preprocessing fitted on this config's data by a checkpoint's (its
    task meta), so a restored run scores exactly as it was trained; a difference is
    logged (the data changed since training)."""
    if fitted.get("attributes") is not None:
      saved = attributes_lib.AttributePreprocessor.from_json(fitted["attributes"])
      if self.preprocessor is not None and saved.to_json() != self.preprocessor.to_json():
        logging.warning("the checkpoint's attribute preprocessing differs from the one this "
                        "data gives; the checkpoint's is used")
      self.preprocessor, self.spec = saved, saved.spec
    for field in ("ef_mean", "ef_std"):
      saved = float(fitted[field])
      if not np.isclose(saved, getattr(self, field), rtol=1e-6):
        logging.warning("the checkpoint's %s is %.6g, this data gives %.6g; the checkpoint's "
                        "is used", field, saved, getattr(self, field))
      setattr(self, field, saved)

  def labels(self, split: str) -> np.ndarray:
    """EF labels (%) of `split` in index order, float64 (NaN where a case has none)."""
    source = self.sources[split]
    labels = builders.split_metadata(source, "ef")
    if labels is None:        # Not a TFDS source: cardiac_data.folder.VideoFolder.
      labels = source.labels
    return np.asarray(labels, np.float64)

  def example_batch(self):
    return next(pipeline.make_loader(self.sources["val"], self.pcfg, train=False,
                                     preprocessor=self.preprocessor))

  def standardise(self, ef):
    return (ef - self.ef_mean) / self.ef_std

  def to_percent(self, standardised):
    return np.asarray(standardised) * self.ef_std + self.ef_mean

  def train_batches(self, start_step: int):
    """This host's slice of the training records and of each global batch (one host:
    all of them; `training.sharding.global_batch` assembles the hosts' rows)."""
    hosts = jax.process_count()
    if self.pcfg.batch_size % hosts:
      raise ValueError(f"config.data.batch_size={self.pcfg.batch_size} is not divisible by the "
                       f"{hosts} processes")
    cfg = self.pcfg.replace(shard_index=jax.process_index(), shard_count=hosts,
                            batch_size=self.pcfg.batch_size // hosts)
    return pipeline.make_loader(self.sources["train"], cfg, train=True,
                                preprocessor=self.preprocessor, start_batch=start_step)

  def eval_batches(self, split: str):
    """One pass over `split` in index order (padded last batch: see batch['mask']), with
    the attributes of `self.missing` marked missing (then a generator over the pass)."""
    names = attributes_lib.parse_missing(self.missing, self.spec)   # A bad name: raise now.
    loader = pipeline.make_loader(self.sources[split], self.pcfg, train=False,
                                  preprocessor=self.preprocessor, desc=f"eval {split}")
    if not names:
      return loader
    return (attributes_lib.mark_missing(batch, self.spec, names) for batch in loader)
