"""The EF data path every video regressor shares (MCSDR, its deterministic baseline,
AdaCon): the TFDS sources of config.data, attribute preprocessing and EF
standardisation fitted on the training split, train and eval batches from the grain
pipeline, and the per-case averaging of batched outputs (clips of one video)."""
from __future__ import annotations

import jax
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import builders
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


class EFData:
  """The EF data path every video regressor shares: sources of config.data, attribute
  preprocessing and EF standardisation fitted on the training split, train and eval
  batches. Tasks (mcsdr_jax.task.EFRegressionTask, adacon_jax.task.AdaConTask) subclass it
  and add a model."""

  def __init__(self, config):
    self.config = config
    d = config.data
    self.spec = attribute_spec(d)
    self.root = sources_lib.dataset_root(d)
    self.builder, self.sources = sources_lib.load_sources(d, self.spec)
    raw = builders.raw_attributes(self.sources["train"])
    self.preprocessor = attributes_lib.AttributePreprocessor.fit(raw, self.spec)
    ef = self.labels("train")
    self.ef_mean, self.ef_std = float(np.nanmean(ef)), float(np.nanstd(ef))
    self.pcfg = pipeline_config(d, config.seed)

  def labels(self, split: str) -> np.ndarray:
    """EF labels (%) of `split` in index order, float64."""
    return np.asarray(builders.split_metadata(self.sources[split], "ef"), np.float64)

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
    """One pass over `split` in index order (padded last batch: see batch['mask'])."""
    return pipeline.make_loader(self.sources[split], self.pcfg, train=False,
                                preprocessor=self.preprocessor, desc=f"eval {split}")
