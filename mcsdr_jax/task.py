"""EF regression task for the shared loop: data, loss, evaluation.

The target is EF standardised with training-split statistics; predictions are
mapped back to percent and clipped to [0, 100] for the metrics.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import builders
from cardiac_data import pipeline
from cardiac_data import sources as sources_lib
from evaluation import plots
from evaluation import regression
from mcsdr_jax import encoders

MODEL_KEYS = ("video", "attr_cont", "attr_cont_missing", "attr_cat")


def attribute_spec(data_cfg) -> attributes_lib.AttributeSpec:
  default = builders.BUILDERS[data_cfg.dataset].make_config(view=data_cfg.view).attribute_spec()
  categorical = {name: default.categorical[name] for name in data_cfg.get("categorical", ())
                 if name in default.categorical}
  unknown = [n for n in tuple(data_cfg.attributes) + tuple(data_cfg.get("categorical", ()))
             if n not in default.continuous and n not in default.categorical]
  if unknown:
    raise ValueError(f"config.data.attributes: unknown attribute(s) {unknown} for "
                     f"{data_cfg.dataset} (known: {list(default.continuous)} + "
                     f"{list(default.categorical)})")
  return attributes_lib.AttributeSpec(tuple(data_cfg.attributes), categorical)


def pipeline_config(data_cfg, seed: int) -> pipeline.PipelineConfig:
  return pipeline.PipelineConfig(
      frames=data_cfg.frames, period=data_cfg.period, image_size=data_cfg.image_size,
      batch_size=data_cfg.batch_size, worker_count=data_cfg.worker_count,
      augment=data_cfg.augment, seed=seed)


class EFRegressionTask:
  """Deterministic EF regressor (video + attributes -> EF), MSE on standardised EF."""

  def __init__(self, config, workdir: str):
    self.config = config
    d = config.data
    self.spec = attribute_spec(d)
    self.builder, self.sources = sources_lib.load_sources(d, self.spec)
    raw = builders.raw_attributes(self.sources["train"])
    self.preprocessor = attributes_lib.AttributePreprocessor.fit(raw, self.spec)
    ef = np.asarray(builders.split_metadata(self.sources["train"], "ef"), np.float64)
    self.ef_mean, self.ef_std = float(np.nanmean(ef)), float(np.nanstd(ef))
    self.pcfg = pipeline_config(d, config.seed)
    self.model = encoders.DeterministicRegressor(
        num_categories=tuple(len(c) for c in self.spec.categorical.values()),
        **config.model)
    self._predict = jax.jit(lambda p, b: self.model.apply(p, b, train=False))

  def example_batch(self):
    return next(pipeline.make_loader(self.sources["val"], self.pcfg, train=False,
                                     preprocessor=self.preprocessor))

  def init(self, rng, batch):
    return self.model.init(rng, {k: batch[k] for k in MODEL_KEYS})

  def loss(self, params, batch, rng):
    pred = self.model.apply(params, {k: batch[k] for k in MODEL_KEYS}, train=True,
                            rngs={"attr_dropout": rng})
    target = (batch["ef"] - self.ef_mean) / self.ef_std
    mse = jnp.mean((pred - target) ** 2)
    return mse, {"mae_ef": jnp.mean(jnp.abs(pred - target)) * self.ef_std}

  def train_batches(self, start_step: int):
    return pipeline.make_loader(self.sources["train"], self.pcfg, train=True,
                                preprocessor=self.preprocessor, start_batch=start_step)

  def predict(self, params, split: str):
    """EF (%) per example of `split` (clip predictions averaged per video)."""
    n = len(self.sources[split])
    total, count = np.zeros(n), np.zeros(n)
    for batch in pipeline.make_loader(self.sources[split], self.pcfg, train=False,
                                      preprocessor=self.preprocessor):
      pred = np.asarray(self._predict(params, {k: batch[k] for k in MODEL_KEYS}))
      ok = batch["mask"]
      np.add.at(total, batch["index"][ok], pred[ok] * self.ef_std + self.ef_mean)
      np.add.at(count, batch["index"][ok], 1)
    labels = np.asarray(builders.split_metadata(self.sources[split], "ef"), np.float64)
    return np.clip(total / np.maximum(count, 1), 0, 100), labels

  def evaluate(self, params, rng, split, *, final, workdir):
    pred, labels = self.predict(params, split)
    metrics = regression.regression_metrics(labels, pred)
    metrics["mean_predictor_mae"] = float(np.mean(np.abs(labels - self.ef_mean)))
    if final:
      plots.scatter_plot(os.path.join(workdir, f"scatter_{split}.png"), labels, pred,
                         title=f"{self.config.data.dataset} {split}")
    return metrics

  def meta(self):
    return {"attributes": self.preprocessor.to_json(), "ef_mean": self.ef_mean,
            "ef_std": self.ef_std}
