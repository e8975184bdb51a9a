"""EF regression task for the shared loop: MCSDR (diffusion) or its deterministic baseline.

The target is EF standardised with training-split statistics; the diffusion runs in
that space (§III-B). Outputs are mapped back to percent; the point estimate is the
posterior mean clipped to [0, 100] (§V-B) and the fraction of samples outside that
range is reported.

config.model.kind: 'mcsdr' (ε-loss Eq. 6, K posterior samples per case) or
'deterministic' (Table IV: the same conditioning, an MSE head).
"""
from __future__ import annotations

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import builders
from cardiac_data import pipeline
from cardiac_data import sources as sources_lib
from diffusion import losses as diffusion_losses
from diffusion import schedule as schedule_lib
from evaluation import probabilistic
from evaluation import regression
from mcsdr_jax import model as model_lib
from mcsdr_jax import posterior
from mcsdr_jax import reports

MODEL_KEYS = ("video", "attr_cont", "attr_cont_missing", "attr_cat")
KINDS = ("mcsdr", "deterministic")
SPREAD_CALIBRATIONS = ("val", "none")
RAW_KEYS = ("crps", "crps_all_pairs", "coverage50", "coverage90", "sigma_mean",
            "sigma_error_spearman", "pit_hist")


def attribute_spec(data_cfg) -> attributes_lib.AttributeSpec:
  default = builders.BUILDERS[data_cfg.dataset].make_config(view=data_cfg.view).attribute_spec()
  names = tuple(data_cfg.get("attributes", ())) + tuple(data_cfg.get("categorical", ()))
  unknown = [n for n in names if n not in default.continuous and n not in default.categorical]
  if unknown:
    raise ValueError(f"config.data.attributes: unknown attribute(s) {unknown} for "
                     f"{data_cfg.dataset} (known: {list(default.continuous)} + "
                     f"{list(default.categorical)})")
  categorical = {name: default.categorical[name] for name in data_cfg.get("categorical", ())}
  continuous = tuple(n for n in data_cfg.get("attributes", ()) if n in default.continuous)
  return attributes_lib.AttributeSpec(continuous, categorical)


def pipeline_config(data_cfg, seed: int) -> pipeline.PipelineConfig:
  return pipeline.PipelineConfig(
      frames=data_cfg.frames, period=data_cfg.period, image_size=data_cfg.image_size,
      batch_size=data_cfg.batch_size, worker_count=data_cfg.worker_count,
      augment=data_cfg.augment, sampling=data_cfg.get("sampling", "clip"), seed=seed)


def sampler_config(cfg) -> posterior.SamplerConfig:
  return posterior.SamplerConfig(name=cfg.sampler, steps=cfg.get("steps", 10),
                                 eta=cfg.get("eta", 0.0), spacing=cfg.get("spacing", "trailing"))


def build_model(mcfg, num_categories, diffusion_cfg=None):
  """The Flax module of config.model (see configs/common.py:mcsdr_model)."""
  if mcfg.kind not in KINDS:
    raise ValueError(f"config.model.kind: {mcfg.kind!r} is not one of {KINDS}")
  ada = adacon_config(mcfg)
  cond = dict(encoder=mcfg.encoder, encoder_kwargs=dict(mcfg.encoder_kwargs),
              features=mcfg.features, hidden=mcfg.hidden, attr_features=mcfg.attr_features,
              attr_dropout=mcfg.attr_dropout, use_attributes=mcfg.use_attributes,
              conditioning=mcfg.conditioning, video_grid=tuple(mcfg.video_grid),
              attr_in_summary=mcfg.get("attr_in_summary", True),
              dtype=jnp.dtype(mcfg.get("dtype", "float32")))
  if mcfg.kind == "deterministic":
    return model_lib.DeterministicRegressor(num_categories, conditioner_kwargs=cond,
                                            hidden=mcfg.hidden)
  pred = dict(hidden=mcfg.hidden, time_dim=mcfg.time_dim)
  if mcfg.predictor in ("mcsn", "transformer_decoder"):
    pred.update(heads=mcfg.heads, mlp_ratio=mcfg.mlp_ratio)
  if mcfg.get("num_layers"):
    pred["num_layers"] = mcfg.num_layers
  schedule = (1000, 1e-4, 0.02) if diffusion_cfg is None else (
      diffusion_cfg.num_steps, diffusion_cfg.beta_start, diffusion_cfg.beta_end)
  return model_lib.MCSDR(num_categories, predictor=mcfg.predictor, predictor_kwargs=pred,
                         conditioner_kwargs=cond, eps_skip=mcfg.get("eps_skip", True),
                         schedule=schedule,
                         projection=(ada.proj_hidden, ada.proj_features) if ada else ())


def adacon_config(mcfg):
  """config.model.adacon if the AdaCon plug-in is on (weight > 0), else None."""
  ada = mcfg.get("adacon")
  if not ada or not ada.get("weight", 0.0) > 0:
    return None
  if mcfg.kind != "mcsdr":
    raise ValueError(f"config.model.adacon.weight > 0 needs config.model.kind='mcsdr', "
                     f"got {mcfg.kind!r}")
  return ada


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
  batches. Subclasses (EFRegressionTask, adacon_jax.task.AdaConTask) add a model."""

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
                                preprocessor=self.preprocessor)


class EFRegressionTask(EFData):
  """Video (+ attributes) → EF posterior (MCSDR) or point estimate (baseline)."""

  def __init__(self, config, workdir: str):
    super().__init__(config)
    self.kind = config.model.kind
    num_categories = tuple(len(c) for c in self.spec.categorical.values())
    self.model = build_model(config.model, num_categories, config.diffusion)
    self.schedule = schedule_lib.linear_schedule(config.diffusion.num_steps,
                                                 config.diffusion.beta_start,
                                                 config.diffusion.beta_end)
    s = config.sampling
    if self.kind == "mcsdr" and min(s.num_samples, s.val_num_samples) < 2:
      raise ValueError("config.sampling.num_samples and val_num_samples must be ≥ 2 "
                       f"(a posterior needs spread), got {s.num_samples}, {s.val_num_samples}")
    calibration = s.get("spread_calibration", "none")
    if calibration not in SPREAD_CALIBRATIONS:
      raise ValueError(f"config.sampling.spread_calibration: {calibration!r} is not one of "
                       f"{SPREAD_CALIBRATIONS}")
    self._scale_cache = None
    self._samplers = {}
    self._predict = jax.jit(lambda p, b: self.model.apply(p, b, train=False))
    self.adacon = adacon_config(config.model)
    if self.adacon:
      from adacon_jax import ecdf  # pylint: disable=g-import-not-at-top
      self.ecdf = ecdf.ECDF.fit(self.labels("train"), bucket_width=self.adacon.bucket_width,
                                name="config.data training EF labels")

  # -- Training ------------------------------------------------------------------

  def init(self, rng, batch):
    inputs = {k: batch[k] for k in MODEL_KEYS}
    if self.kind == "deterministic":
      return self.model.init(rng, inputs)
    b = batch["video"].shape[0]
    return self.model.init(rng, inputs, jnp.zeros((b,)), jnp.zeros((b,), jnp.int32))

  def loss(self, params, batch, rng):
    inputs = {k: batch[k] for k in MODEL_KEYS}
    drop_rng, noise_rng = jax.random.split(rng)
    target = self.standardise(batch["ef"])
    if self.kind == "deterministic":
      pred = self.model.apply(params, inputs, train=True, rngs={"attr_dropout": drop_rng})
      return jnp.mean((pred - target) ** 2), {
          "mae_ef": jnp.mean(jnp.abs(pred - target)) * self.ef_std}
    if self.adacon:
      memory, aux, adacon_loss = self._adacon_plugin(params, inputs, batch["ef"], drop_rng,
                                                     jax.random.fold_in(rng, 1))
    else:
      memory, aux = self.model.apply(params, inputs, train=True,
                                     rngs={"attr_dropout": drop_rng},
                                     method=self.model.condition_and_aux)

    def eps_fn(y, t):
      return self.model.apply(params, memory, y, t, method=self.model.eps)

    def one_draw(key):
      return diffusion_losses.eps_loss(self.schedule, eps_fn, target, key)

    # Several (t, ε) draws per example reuse one encoder pass (mean of Eq. 6 estimates).
    keys = jax.random.split(noise_rng, self.config.diffusion.get("noise_draws", 1))
    eps_loss = jnp.mean(jax.vmap(one_draw)(keys))
    aux_mse = jnp.mean((aux - target) ** 2)
    loss = eps_loss + self.config.diffusion.get("aux_weight", 0.0) * aux_mse
    metrics = {"eps_loss": eps_loss, "aux_mae_ef": jnp.mean(jnp.abs(aux - target)) * self.ef_std}
    if self.adacon:
      loss = loss + self.adacon.weight * adacon_loss
      metrics["adacon_loss"] = adacon_loss
    return loss, metrics

  def _adacon_plugin(self, params, inputs, ef, drop_rng, view_rng):
    """(memory, aux, AdaCon Eq. 6 loss) with z from the pooled feature of the clip and of
    a second view (adacon_jax.views: pad-crop and intensity jitter)."""
    from adacon_jax import losses, views  # pylint: disable=g-import-not-at-top
    a = self.adacon
    memory, aux, z1 = self.model.apply(params, inputs, train=True,
                                       rngs={"attr_dropout": drop_rng},
                                       method=self.model.condition_aux_and_projection)
    v2 = views.random_views(view_rng, inputs["video"], pad=a.get("pad", 4),
                            brightness=a.get("brightness", 0.05),
                            contrast=a.get("contrast", 0.1))
    z2 = self.model.apply(params, dict(inputs, video=v2), train=True,
                          rngs={"attr_dropout": drop_rng}, method=self.model.project)
    y2 = jnp.concatenate([ef, ef])
    pos = losses.positive_mask(y2, a.bucket_width)
    loss = losses.adacon_loss(jnp.concatenate([z1, z2]), self.ecdf(y2), pos, scale=a.scale)
    return memory, aux, loss

  # -- Inference -----------------------------------------------------------------

  def sampler(self, num_samples: int, sampler_cfg: posterior.SamplerConfig,
              trajectory: bool = False):
    key = (num_samples, sampler_cfg, trajectory)
    if key not in self._samplers:
      self._samplers[key] = posterior.make_sampler(self.model, self.schedule,
                                                   num_samples=num_samples,
                                                   sampler=sampler_cfg,
                                                   return_trajectory=trajectory)
    return self._samplers[key]

  def predict(self, params, split: str, rng, *, num_samples: int | None = None,
              sampler_cfg: posterior.SamplerConfig | None = None, trajectory: bool = False):
    """EF (%) samples (N, K) per example of `split` (K = 1 for the deterministic model),
    the labels (N,), and trajectories (N, K, S) in EF % if requested. Clips of one
    video are averaged sample-wise (their noise is shared, keyed by the video index)."""
    fn = None
    if self.kind == "mcsdr":
      fn = self.sampler(num_samples, sampler_cfg or sampler_config(self.config.sampling),
                        trajectory)
    keys, outs, trajs = [], [], []
    for batch in self.eval_batches(split):
      inputs = {k: batch[k] for k in MODEL_KEYS}
      keys.append((batch["index"], batch["mask"]))
      if fn is None:
        outs.append(self.to_percent(self._predict(params, inputs))[:, None])
        continue
      out, traj = fn(params, dict(inputs, index=batch["index"]), rng)
      outs.append(self.to_percent(out))
      if traj is not None:
        trajs.append(self.to_percent(traj))
    n = len(self.sources[split])
    samples = average_per_case(n, keys, outs, split)
    trajs = average_per_case(n, keys, trajs, split) if trajs else None
    return samples, self.labels(split), trajs

  def evaluate(self, params, rng, split, *, final, workdir):
    s = self.config.sampling
    k = s.num_samples if final else s.val_num_samples
    samples, labels, trajs = self.predict(params, split, rng, num_samples=k,
                                          trajectory=final and self.kind == "mcsdr")
    if self.kind == "mcsdr":
      metrics = probabilistic.probabilistic_metrics(labels, samples)
      scale = self._spread_scale(params, rng, split, samples, labels) if final else None
      if scale is not None:   # σ-scaled posterior; the raw one's scores kept as raw_*
        raw = metrics
        samples = probabilistic.scale_spread(samples, scale)
        metrics = probabilistic.probabilistic_metrics(labels, samples)
        metrics.update({f"raw_{key}": raw[key] for key in RAW_KEYS}, spread_scale=scale)
    else:
      metrics = regression.regression_metrics(labels, np.clip(samples[:, 0], 0.0, 100.0))
    metrics["mean_predictor_mae"] = float(np.mean(np.abs(labels - self.ef_mean)))
    if final:
      keys = builders.split_metadata(self.sources[split], "key")
      info = reports.case_info(self.root, self.sources[split], self.spec, keys)
      metrics.update(reports.write_report(workdir, split, labels, samples, trajs, keys, info,
                                          ts=self._trajectory_ts(), title=self._title(split)))
    return metrics

  def _spread_scale(self, params, rng, split, samples, labels):
    """config.sampling.spread_calibration 'val': the σ-scaling factor fitted on the
    validation posterior by CRPS (evaluation.probabilistic.fit_spread_scale), one per
    params; 'none': None (the raw posterior, as the paper)."""
    if self.config.sampling.get("spread_calibration", "none") == "none":
      return None
    if self._scale_cache is not None and self._scale_cache[0] is params:
      return self._scale_cache[1]
    if split != "val":
      samples, labels, _ = self.predict(params, "val", rng,
                                        num_samples=self.config.sampling.num_samples)
    scale = probabilistic.fit_spread_scale(labels, samples)
    logging.info("posterior spread scale fitted on val (CRPS): %.3f", scale)
    self._scale_cache = (params, scale)
    return scale

  def _trajectory_ts(self):
    if self.kind != "mcsdr":
      return None
    return posterior.sampler_times(sampler_config(self.config.sampling), self.schedule)

  def _title(self, split):
    d = self.config.data
    mode = "vision" if not self.config.model.use_attributes or not (
        d.get("attributes") or d.get("categorical")) else "vision + attributes"
    return f"{d.dataset} {split}: {mode}"

  def meta(self):
    return {"attributes": self.preprocessor.to_json(), "ef_mean": self.ef_mean,
            "ef_std": self.ef_std, "model": self.config.model.to_dict(),
            "dataset": self.config.data.dataset}
