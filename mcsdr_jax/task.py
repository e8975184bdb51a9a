"""EF regression task for the shared loop: MCSDR (diffusion) or its deterministic baseline.

The target is EF standardised with training-split statistics; the diffusion runs in
that space (§III-B). Outputs are mapped back to percent; the point estimate is the
posterior mean clipped to [0, 100] (§V-B) and the fraction of samples outside that
range is reported.

config.model.kind: 'mcsdr' (ε-loss Eq. 6, K posterior samples per case),
'deterministic' (Table IV: the same conditioning, an MSE head), or one of the
uncertainty methods a user would pick instead (mcsdr_jax/competitors.py:
'heteroscedastic', 'ensemble', 'mc_dropout'), scored by the same sample-based evaluation.
"""
from __future__ import annotations

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from backbones import video as video_backbones
from cardiac_data import builders
from cardiac_data import ef_data
from diffusion import losses as diffusion_losses
from diffusion import samplers
from diffusion import schedule as schedule_lib
from evaluation import probabilistic
from evaluation import regression
from mcsdr_jax import competitors
from mcsdr_jax import model as model_lib
from mcsdr_jax import posterior
from mcsdr_jax import reports

MODEL_KEYS = ("video", "attr_cont", "attr_cont_missing", "attr_cat")
KINDS = ("mcsdr", "deterministic") + competitors.KINDS
#: The kinds whose predictions are K samples of a predictive distribution per case.
POSTERIOR_KINDS = ("mcsdr",) + competitors.KINDS
SPREAD_CALIBRATIONS = ("val", "none")
AUX_LOSSES = ("mse",) + tuple(competitors.GAUSSIAN_LOSSES)
RAW_KEYS = ("crps", "crps_all_pairs", "coverage50", "coverage90", "sigma_mean",
            "sigma_error_spearman", "pit_hist")


def with_stats(metrics: dict, batch_stats) -> dict:
  """`metrics` plus the encoder's updated BatchNorm statistics, which the loop's train
  step sets in the params (training.loop.train_step_fn), when there are any."""
  return metrics if batch_stats is None else dict(metrics, batch_stats=batch_stats)


def sampler_config(cfg) -> samplers.SamplerConfig:
  """config.sampling → SamplerConfig; for 'pf_ode', steps 0 means adaptive steps."""
  steps = None if cfg.sampler == "pf_ode" and not cfg.steps else cfg.steps
  return samplers.SamplerConfig(name=cfg.sampler, steps=steps, eta=cfg.eta,
                                spacing=cfg.spacing)


def build_model(mcfg, num_categories, diffusion_cfg=None, proj_head=None):
  """The Flax module of config.model (see configs/common.py:mcsdr_model); `proj_head`
  is a plug-in's projection head on the pooled video feature (MCSDR only)."""
  if mcfg.kind not in KINDS:
    raise ValueError(f"config.model.kind: {mcfg.kind!r} is not one of {KINDS}")
  if proj_head is not None and mcfg.kind != "mcsdr":
    raise ValueError(f"config.model.adacon.weight > 0 needs config.model.kind='mcsdr', "
                     f"got {mcfg.kind!r}")
  cond = dict(encoder=mcfg.encoder, encoder_kwargs=dict(mcfg.encoder_kwargs),
              features=mcfg.features, hidden=mcfg.hidden, attr_features=mcfg.attr_features,
              attr_dropout=mcfg.attr_dropout, use_attributes=mcfg.use_attributes,
              conditioning=mcfg.conditioning, video_grid=tuple(mcfg.video_grid),
              attr_in_summary=mcfg.attr_in_summary,
              dtype=jnp.dtype(mcfg.dtype))
  competitors.check(mcfg)
  if mcfg.kind == "ensemble":
    return competitors.Ensemble(mcfg.ensemble_size, dict(
        num_categories=num_categories, conditioner_kwargs=cond, hidden=mcfg.hidden,
        dropout=mcfg.dropout))
  if mcfg.kind != "mcsdr":
    return model_lib.DeterministicRegressor(
        num_categories, conditioner_kwargs=cond, hidden=mcfg.hidden,
        outputs=2 if mcfg.kind == "heteroscedastic" else 1, dropout=mcfg.dropout)
  pred = dict(hidden=mcfg.hidden, time_dim=mcfg.time_dim)
  if mcfg.predictor in ("mcsn", "transformer_decoder"):
    pred.update(heads=mcfg.heads, mlp_ratio=mcfg.mlp_ratio)
  if mcfg.num_layers:       # 0: the predictor's default depth
    pred["num_layers"] = mcfg.num_layers
  schedule = schedule_lib.VPSchedule() if diffusion_cfg is None else \
      schedule_lib.VPSchedule.from_config(diffusion_cfg)
  aux_loss = "mse" if diffusion_cfg is None else diffusion_cfg.aux_loss
  if aux_loss not in AUX_LOSSES:
    raise ValueError(f"config.diffusion.aux_loss: {aux_loss!r} is not one of {AUX_LOSSES}")
  return model_lib.MCSDR(num_categories, predictor=mcfg.predictor, predictor_kwargs=pred,
                         conditioner_kwargs=cond, eps_skip=mcfg.eps_skip,
                         schedule=schedule, aux_outputs=1 if aux_loss == "mse" else 2,
                         proj_head=proj_head)


class EFRegressionTask(ef_data.EFData):
  """Video (+ attributes) → EF posterior (MCSDR) or point estimate (baseline)."""

  def __init__(self, config, workdir: str, *, mesh=None, make_optimizer=None,
               make_plugin=None, fitted=None):
    """`mesh`: the devices posterior sampling splits cases over (None: one device).
    `make_optimizer(optim_cfg, num_steps, *, pretrained_encoder)`: the loop's factory.
    `make_plugin(train EF labels) -> plugin`: a representation loss beside the
    diffusion head (the AdaCon plug-in, `adacon_jax.plugin`; `training.tasks`
    supplies it when config.model.adacon.weight > 0). `fitted`: a checkpoint's meta to
    score with instead of data (cardiac_data.ef_data.EFData; launch.predict): no
    training, so no plug-in (its head's parameters are ignored by inference)."""
    super().__init__(config, fitted=fitted)
    self.kind = config.model.kind
    self.mesh = mesh
    self.make_optimizer = make_optimizer
    self.plugin = None
    if config.model.adacon.weight > 0 and fitted is None:
      if make_plugin is None:
        raise ValueError("config.model.adacon.weight > 0: the AdaCon plug-in is built by "
                         "training.tasks.make_task (pass make_plugin)")
      self.plugin = make_plugin(self.labels("train"))
    num_categories = tuple(len(c) for c in self.spec.categorical.values())
    self.model = build_model(config.model, num_categories, config.diffusion,
                             proj_head=self.plugin.head if self.plugin else None)
    self.schedule = schedule_lib.VPSchedule.from_config(config.diffusion)
    s = config.sampling
    if self.kind != "deterministic" and min(s.num_samples, s.val_num_samples) < 2:
      raise ValueError("config.sampling.num_samples and val_num_samples must be ≥ 2 "
                       f"(a posterior needs spread), got {s.num_samples}, {s.val_num_samples}")
    calibration = s.spread_calibration
    if calibration not in SPREAD_CALIBRATIONS:
      raise ValueError(f"config.sampling.spread_calibration: {calibration!r} is not one of "
                       f"{SPREAD_CALIBRATIONS}")
    self._scale_cache = None
    self._samplers = {}
    self._predict = jax.jit(lambda p, b: self.model.apply(p, b, train=False))
    self._predictive = jax.jit(self._predictive_samples, static_argnums=4)
    self._aux = jax.jit(lambda p, b: self.model.apply(p, b, method=self.model.condition_and_aux)[1])

  # -- Training ------------------------------------------------------------------

  def optimizer(self, num_steps: int):
    """config.optim; a pretrained encoder (config.model.pretrained) trains at
    config.optim.encoder_lr_mult × the rate."""
    return self.make_optimizer(self.config.optim, num_steps,
                               pretrained_encoder=bool(self.config.model.pretrained))

  def init(self, rng, batch):
    inputs = {k: batch[k] for k in MODEL_KEYS}
    if self.kind != "mcsdr":
      return self.model.init(rng, inputs)
    b = batch["video"].shape[0]
    return self.model.init(rng, inputs, jnp.zeros((b,)), jnp.zeros((b,), jnp.int32))

  def loss(self, params, batch, rng):
    inputs = {k: batch[k] for k in MODEL_KEYS}
    drop_rng, noise_rng = jax.random.split(rng)
    target = self.standardise(batch["ef"])
    if self.kind != "mcsdr":
      return self._point_loss(params, inputs, target, drop_rng, noise_rng)
    if self.plugin:
      (memory, aux, plugin_loss), stats = self._plugin_loss(
          params, inputs, batch["ef"], drop_rng, jax.random.fold_in(rng, 1))
    else:
      (memory, aux), stats = video_backbones.apply_train(
          self.model, params, inputs, train=True, rngs={"attr_dropout": drop_rng},
          method=self.model.condition_and_aux)

    def eps_fn(y, t):
      return self.model.apply(params, memory, y, t, method=self.model.eps)

    def one_draw(key):
      return diffusion_losses.eps_loss(self.schedule, eps_fn, target, key)

    # Several (t, ε) draws per example reuse one encoder pass (mean of Eq. 6 estimates).
    keys = jax.random.split(noise_rng, self.config.diffusion.noise_draws)
    eps_loss = jnp.mean(jax.vmap(one_draw)(keys))
    aux_loss, aux = self._aux_loss(aux, target)
    loss = eps_loss + self.config.diffusion.aux_weight * aux_loss
    metrics = {"eps_loss": eps_loss, "aux_mae_ef": jnp.mean(jnp.abs(aux - target)) * self.ef_std}
    if self.plugin:
      loss = loss + self.plugin.weight * plugin_loss
      metrics[f"{self.plugin.name}_loss"] = plugin_loss
    return loss, with_stats(metrics, stats)

  def _aux_loss(self, aux, target):
    """(the auxiliary EF head's loss, its EF estimate (B,)): config.diffusion.aux_loss
    'mse' on its one output, or a scoring rule of competitors.GAUSSIAN_LOSSES on its
    (μ, raw σ) outputs, so the summary token the ε-network attends to carries each case's
    expected error too."""
    kind = self.config.diffusion.aux_loss
    if kind == "mse":
      return jnp.mean((aux - target) ** 2), aux
    loss, mu, _ = competitors.gaussian_head_loss(kind, aux, target)
    return loss, mu

  def _point_loss(self, params, inputs, target, drop_rng, dropout_rng):
    """The deterministic baseline's and the competitors' losses (standardised EF):
    MSE; the heteroscedastic head's scoring rule (config.model.het_loss); the
    mean over the ensemble's members of their MSE (each member's own gradient)."""
    out, stats = video_backbones.apply_train(
        self.model, params, inputs, train=True,
        rngs={"attr_dropout": drop_rng, "dropout": dropout_rng})
    if self.kind == "heteroscedastic":
      loss, mu, sigma = competitors.gaussian_head_loss(self.config.model.het_loss, out, target)
      metrics = {"mae_ef": jnp.mean(jnp.abs(mu - target)) * self.ef_std,
                 "sigma_ef": jnp.mean(sigma) * self.ef_std}
      return loss, with_stats(metrics, stats)
    mse = jnp.mean((out - target) ** 2)     # ensemble: out (M, B), the members' mean
    mean = jnp.mean(out, axis=0) if self.kind == "ensemble" else out
    return mse, with_stats({"mae_ef": jnp.mean(jnp.abs(mean - target)) * self.ef_std}, stats)

  def _predictive_samples(self, params, inputs, case_ids, key, num_samples: int):
    """(B, K) standardised samples of a competitor's predictive: Gaussian mid-quantiles
    (heteroscedastic; ensemble: N(member mean, member SD²)) or K dropout masks of the
    head over one encoder pass (mc_dropout; masks drawn per case from fold_in(key, id))."""
    if self.kind == "heteroscedastic":
      out = self.model.apply(params, inputs, train=False)
      return competitors.quantile_samples(out[:, 0], competitors.sigma_from_raw(out[:, 1]),
                                          num_samples)
    if self.kind == "ensemble":
      mean, sd = competitors.ensemble_moments(self.model.apply(params, inputs, train=False))
      return competitors.quantile_samples(mean, sd, num_samples)
    h = self.model.apply(params, inputs, method=self.model.features)

    def one_case(case_id, hi):
      case_key = jax.random.fold_in(key, case_id)
      draw = lambda j: self.model.apply(
          params, hi[None], train=True, method=self.model.readout,
          rngs={"dropout": jax.random.fold_in(case_key, j)})[0]
      return jax.vmap(draw)(jnp.arange(num_samples))

    return jax.vmap(one_case)(case_ids, h)

  def _plugin_loss(self, params, inputs, ef, drop_rng, view_rng):
    """((memory, aux, the plug-in's loss), updated batch_stats) with z from the pooled
    feature of the clip and of the plug-in's second view of it (the running statistics
    follow the first view)."""
    (memory, aux, z1), stats = video_backbones.apply_train(
        self.model, params, inputs, train=True, rngs={"attr_dropout": drop_rng},
        method=self.model.condition_aux_and_projection)
    v2 = self.plugin.second_view(view_rng, inputs["video"])
    z2, _ = video_backbones.apply_train(self.model, params, dict(inputs, video=v2), train=True,
                                        rngs={"attr_dropout": drop_rng},
                                        method=self.model.project)
    return (memory, aux, self.plugin.loss(z1, z2, ef)), stats

  # -- Inference -----------------------------------------------------------------

  def sampler(self, num_samples: int, sampler_cfg: samplers.SamplerConfig,
              trajectory: bool = False):
    key = (num_samples, sampler_cfg, trajectory)
    if key not in self._samplers:
      self._samplers[key] = posterior.make_sampler(self.model, self.schedule,
                                                   num_samples=num_samples,
                                                   sampler=sampler_cfg,
                                                   return_trajectory=trajectory,
                                                   mesh=self.mesh)
    return self._samplers[key]

  def predict(self, params, split: str, rng, *, num_samples: int | None = None,
              sampler_cfg: samplers.SamplerConfig | None = None, trajectory: bool = False):
    """EF (%) samples (N, K) per example of `split` (K = 1 for the deterministic model;
    K = config.sampling.num_samples by default),
    the labels (N,), and trajectories (N, K, S) in EF % if requested. Clips of one
    video are averaged sample-wise (their noise is shared, keyed by the video index)."""
    num_samples = num_samples or self.config.sampling.num_samples
    fn = None
    if self.kind == "mcsdr":
      fn = self.sampler(num_samples, sampler_cfg or sampler_config(self.config.sampling),
                        trajectory)
    keys, outs, trajs = [], [], []
    for batch in self.eval_batches(split):
      inputs = {k: batch[k] for k in MODEL_KEYS}
      keys.append((batch["index"], batch["mask"]))
      if self.kind == "deterministic":
        outs.append(self.to_percent(self._predict(params, inputs))[:, None])
        continue
      if fn is None:
        outs.append(self.to_percent(self._predictive(
            params, inputs, jnp.asarray(batch["index"], jnp.int32), rng, num_samples)))
        continue
      out, traj = fn(params, dict(inputs, index=batch["index"]), rng)
      outs.append(self.to_percent(out))
      if traj is not None:
        trajs.append(self.to_percent(traj))
    n = len(self.sources[split])
    samples = ef_data.average_per_case(n, keys, outs, split)
    trajs = ef_data.average_per_case(n, keys, trajs, split) if trajs else None
    return samples, self.labels(split), trajs

  def evaluate(self, params, rng, split, *, final, workdir):
    s = self.config.sampling
    k = s.num_samples if final else s.val_num_samples
    keep = ef_data.labelled_cases(self.labels(split), split)   # NaN EF: not scored, counted.
    if not keep.any():
      return ef_data.unlabelled_metrics(keep)
    samples, labels, trajs = self.predict(params, split, rng, num_samples=k,
                                          trajectory=final and self.kind == "mcsdr")
    samples, labels, trajs = (ef_data.select_cases(keep, x) for x in (samples, labels, trajs))
    if self.kind != "deterministic":
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
    metrics["mae_over_mean_predictor"] = metrics["mae"] / metrics["mean_predictor_mae"]
    metrics.update(ef_data.unlabelled_metrics(keep))
    if final and self.kind == "mcsdr":
      metrics.update(self._aux_metrics(params, split, keep, labels))
    if final:
      keys = builders.split_metadata(self.sources[split], "key")
      info = reports.case_info(self.root, self.sources[split], self.spec, keys)
      keys, info = ef_data.select_cases(keep, keys), ef_data.select_cases(keep, info)
      metrics.update(reports.write_report(workdir, split, labels, samples, trajs, keys, info,
                                          ts=self._trajectory_ts(), title=self._title(split)))
    return metrics

  def _aux_metrics(self, params, split, keep, labels) -> dict:
    """The auxiliary EF head's own scores (config.diffusion.aux_loss): aux_mae of its μ
    and, for a (μ, σ) head, aux_sigma_error_spearman of its σ: what a linear read-out
    of the summary token gives, beside the ε-network's posterior that attends to it."""
    keys, mus, sigmas = [], [], []
    for batch in self.eval_batches(split):
      aux = np.asarray(self._aux(params, {k: batch[k] for k in MODEL_KEYS}))
      keys.append((batch["index"], batch["mask"]))
      mu = aux if aux.ndim == 1 else aux[:, 0]
      mus.append(self.to_percent(mu)[:, None])
      if aux.ndim == 2:
        sigmas.append(np.asarray(competitors.sigma_from_raw(aux[:, 1]))[:, None] * self.ef_std)
    n = len(self.sources[split])
    mu = ef_data.select_cases(keep, ef_data.average_per_case(n, keys, mus, split)[:, 0])
    out = {"aux_mae": float(np.mean(np.abs(np.clip(mu, 0.0, 100.0) - labels)))}
    if sigmas:
      sigma = ef_data.select_cases(keep, ef_data.average_per_case(n, keys, sigmas, split)[:, 0])
      out["aux_sigma_error_spearman"] = probabilistic.spearman(sigma, np.abs(mu - labels))
    return out

  def _spread_scale(self, params, rng, split, samples, labels):
    """config.sampling.spread_calibration 'val': the σ-scaling factor fitted on the
    validation posterior by CRPS (evaluation.probabilistic.fit_spread_scale), one per
    params; 'none': None (the raw posterior, as the paper)."""
    if self.config.sampling.spread_calibration == "none":
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
    return samplers.sampler_times(sampler_config(self.config.sampling), self.schedule)

  def _title(self, split):
    d = self.config.data
    mode = "vision" if not self.config.model.use_attributes or not (
        d.attributes or d.categorical) else "vision + attributes"
    return f"{d.dataset} {split}: {mode}"

  def meta(self):
    return {"attributes": self.preprocessor.to_json(), "ef_mean": self.ef_mean,
            "ef_std": self.ef_std, "model": self.config.model.to_dict(),
            "dataset": self.config.data.dataset}
