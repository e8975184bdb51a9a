"""AdaCon training task for the shared loop (Dai et al. 2021, §III-C, Eq. 8).

Per step: two augmented views of each clip (`views`); the regression branch is
supervised on view 1, the projection head of both views by the contrastive loss of
`config.adacon.contrastive` (AdaCon Eq. 6, SupCon, N-pair, adaptive triplet, or none):
  L = γ_reg·L_reg + γ_con·L_con   (Eq. 8, multi-task), or, with `pretrain_steps` > 0,
  L = L_con for steps < pretrain_steps, then L_reg (the two-stage scheme of Table V).
With γ_con = 0 (or contrastive 'none') only view 1 is encoded: the regression-only
baseline at the same steps and batches. The ECDF φ of the margins is fitted on the
training labels only and saved with every checkpoint (`meta`).

Data path, EF standardisation and per-case averaging: cardiac_data.ef_data.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from adacon_jax import ecdf as ecdf_lib
from adacon_jax import heads
from adacon_jax import losses
from adacon_jax import plots as adacon_plots
from adacon_jax import views
from backbones import video as video_backbones
from cardiac_data import ef_data
from evaluation import plots as eval_plots
from evaluation import regression


def check_config(a) -> None:
  """Raises ValueError naming the bad config.adacon field."""
  if a.contrastive not in losses.CONTRASTIVE:
    raise ValueError(f"config.adacon.contrastive: {a.contrastive!r} is not one of "
                     f"{losses.CONTRASTIVE}")
  if a.regression not in losses.REGRESSION:
    raise ValueError(f"config.adacon.regression: {a.regression!r} is not one of "
                     f"{losses.REGRESSION}")
  for field in ("con_weight", "reg_weight", "bucket_width", "pretrain_steps", "pad"):
    if not a[field] >= 0:
      raise ValueError(f"config.adacon.{field} must be ≥ 0, got {a[field]}")
  for field in ("scale", "huber_delta"):
    if not a[field] > 0:
      raise ValueError(f"config.adacon.{field} must be > 0, got {a[field]}")
  if a.pretrain_steps and a.contrastive == "none":
    raise ValueError("config.adacon.pretrain_steps > 0 (two-stage) needs a contrastive loss, "
                     "got config.adacon.contrastive='none'")


def contrastive_loss(kind: str, z, ef, phi, *, scale, bucket_width, triplet_margin, ef_std):
  """L_con of `kind` on z = [view 1; view 2] (2B, D) with labels ef (B,) and φ(ef) (B,)."""
  b = ef.shape[0]
  y2, phi2 = jnp.concatenate([ef, ef]), jnp.concatenate([phi, phi])
  pos = losses.positive_mask(y2, bucket_width)
  if kind == "adacon":
    return losses.adacon_loss(z, phi2, pos, scale=scale)
  if kind == "supcon":
    return losses.supcon_loss(z, pos, scale=scale)
  if kind == "npair":
    return losses.npair_loss(z[:b], z[b:], losses.positive_mask(ef, bucket_width), scale=scale)
  if kind == "triplet":
    margins = triplet_margin * jnp.abs(y2[:, None] - y2[None, :]) / ef_std
    return losses.adaptive_triplet_loss(z, pos, margins)
  raise ValueError(f"config.adacon.contrastive: {kind!r} is not one of {losses.CONTRASTIVE}")


def build_model(mcfg) -> heads.AdaConNet:
  return heads.AdaConNet(encoder=mcfg.encoder, encoder_kwargs=dict(mcfg.encoder_kwargs),
                         features=mcfg.features, proj_hidden=mcfg.proj_hidden,
                         proj_features=mcfg.proj_features,
                         dtype=jnp.dtype(mcfg.dtype))


class AdaConTask(ef_data.EFData):
  """Video → EF with an AdaCon (or baseline) contrastive branch; see the module doc."""

  def __init__(self, config, workdir: str, *, mesh=None, make_optimizer=None, fitted=None):
    """`make_optimizer(optim_cfg, num_steps, *, pretrained_encoder)`: the loop's
    factory. `mesh` is unused (evaluation runs on one device). `fitted`: a checkpoint's
    meta to score with instead of data (cardiac_data.ef_data.EFData; launch.predict)."""
    del mesh
    self.make_optimizer = make_optimizer
    check_config(config.adacon)
    if config.data.attributes or config.data.categorical:
      raise ValueError("config.data.attributes/categorical: the AdaCon task is vision only; "
                       "set them to ()")
    super().__init__(config, fitted=fitted)
    a = config.adacon
    if fitted is None:
      self.ecdf = ecdf_lib.ECDF.fit(self.labels("train"), bucket_width=a.bucket_width,
                                    mode=a.ecdf_mode, name="config.data training EF labels")
    else:       # Scoring only; an imported model has no training labels.
      self.ecdf = ecdf_lib.ECDF.from_json(fitted["ecdf"]) if "ecdf" in fitted else None
    self.model = build_model(config.model)
    self.uses_contrast = a.contrastive != "none" and (a.con_weight > 0 or a.pretrain_steps > 0)
    self._apply = jax.jit(lambda p, v: self.model.apply(p, v, train=False))

  def optimizer(self, num_steps: int):
    """config.optim; a pretrained encoder (config.model.pretrained) trains at
    config.optim.encoder_lr_mult × the rate."""
    return self.make_optimizer(self.config.optim, num_steps,
                               pretrained_encoder=bool(self.config.model.pretrained))

  def init(self, rng, batch):
    return self.model.init(rng, batch["video"])

  def train_batches(self, start_step: int):
    it = super().train_batches(start_step)
    if not self.config.adacon.pretrain_steps:
      return it
    def with_step():   # The two-stage loss switches on the step.
      for step, batch in enumerate(it, start_step):
        yield dict(batch, step=np.int32(step))
    return with_step()

  def loss(self, params, batch, rng):
    a = self.config.adacon
    target = self.standardise(batch["ef"])
    aug = dict(pad=a.pad, brightness=a.brightness, contrast=a.contrast)
    k1, k2 = jax.random.split(rng)
    v1 = views.random_views(k1, batch["video"], **aug)
    b = v1.shape[0]
    if self.uses_contrast:
      v2 = views.random_views(k2, batch["video"], **aug)
      (pred, z), stats = video_backbones.apply_train(self.model, params,
                                                     jnp.concatenate([v1, v2]), train=True)
      pred = pred[:b]
    else:
      (pred, z), stats = video_backbones.apply_train(self.model, params, v1, train=True)
    delta = a.huber_delta / self.ef_std       # δ is given in EF points.
    l_reg = losses.regression_loss(pred, target, a.regression, delta)
    metrics = {"reg_loss": l_reg, "mae_ef": jnp.mean(jnp.abs(pred - target)) * self.ef_std}
    if stats is not None:     # BatchNorm running averages, set by the loop's train step
      metrics["batch_stats"] = stats
    if not self.uses_contrast:
      return a.reg_weight * l_reg, metrics
    l_con = contrastive_loss(a.contrastive, z, batch["ef"], self.ecdf(batch["ef"]),
                             scale=a.scale, bucket_width=a.bucket_width,
                             triplet_margin=a.triplet_margin, ef_std=self.ef_std)
    metrics["con_loss"] = l_con
    if a.pretrain_steps:
      loss = jnp.where(batch["step"] < a.pretrain_steps, l_con, a.reg_weight * l_reg)
    else:
      loss = a.reg_weight * l_reg + a.con_weight * l_con
    return loss, metrics

  # -- Inference -----------------------------------------------------------------

  def predict(self, params, split: str):
    """Per case: EF (%) (N,), L2-normalised clip-averaged embedding (N, D), labels (N,)."""
    keys, preds, zs = [], [], []
    for batch in self.eval_batches(split):
      pred, z = self._apply(params, batch["video"])
      keys.append((batch["index"], batch["mask"]))
      preds.append(self.to_percent(pred))
      zs.append(np.asarray(z))
    n = len(self.sources[split])
    pred = ef_data.average_per_case(n, keys, preds, split)
    z = ef_data.average_per_case(n, keys, zs, split)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return pred, z, self.labels(split)

  def evaluate(self, params, rng, split, *, final, workdir):
    del rng
    keep = ef_data.labelled_cases(self.labels(split), split)   # NaN EF: not scored, counted.
    if not keep.any():
      return ef_data.unlabelled_metrics(keep)
    pred, z, labels = (ef_data.select_cases(keep, x) for x in self.predict(params, split))
    metrics = regression.regression_metrics(labels, np.clip(pred, 0.0, 100.0))
    metrics["mean_predictor_mae"] = float(np.mean(np.abs(labels - self.ef_mean)))
    metrics.update(ef_data.unlabelled_metrics(keep))
    phi = self.ecdf(labels)     # The training ECDF, also on val/test.
    dphi, sim = adacon_plots.similarity_pairs(z, phi)
    metrics["similarity_vs_ecdf_spearman"] = _spearman(dphi, sim)
    if final:
      plots = os.path.join(workdir, "plots")
      os.makedirs(plots, exist_ok=True)
      name = f"{self.config.adacon.contrastive} ({self.config.adacon.regression})"
      eval_plots.scatter_plot(os.path.join(plots, f"{split}_scatter.png"), labels,
                              np.clip(pred, 0.0, 100.0), title=f"AdaCon task, {split}: {name}")
      adacon_plots.similarity_plot(os.path.join(plots, f"{split}_similarity.png"), z, phi,
                                   title=f"{split}: {name}")
      adacon_plots.angular_plot(os.path.join(plots, f"{split}_angular.png"), z, labels,
                                title=f"{split}: {name}")
    return metrics

  def meta(self):
    return {"ef_mean": self.ef_mean, "ef_std": self.ef_std, "ecdf": self.ecdf.to_json(),
            "model": self.config.model.to_dict(), "adacon": self.config.adacon.to_dict(),
            "dataset": self.config.data.dataset}


def _spearman(x, y) -> float:
  """Spearman rank correlation (NaN if either is constant)."""
  from scipy import stats
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan")
  return float(stats.spearmanr(x, y).statistic)
