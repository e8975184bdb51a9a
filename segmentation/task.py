"""Partial-label multi-domain segmentation task for the shared loop (Islam et al., MELBA 2026).

config.loss.name: 'cce' (Eq. 1), 'acce' (Eq. 2), 'marginal' (Eqs. 3–4), 'abce' (Eq. 5)
or 'pseudo' (§5.2: a teacher trained with CCE on the fully labelled images fills the
missing labels of the others, then the student trains with CCE); readings and the
Dice term as in `segmentation.losses`; config.loss.label_dropout = p (§5.3) on the
partially labelled classes.

Data: `cardiac_data.seg_frames.load_domains` reads every domain of config.data.sources
that is trained on (config.data.domains) or evaluated (config.data.eval_domains) from
its published layout; each image carries its reader's label set.

Evaluation: argmax of the logits (= softmax's); Dice per structure (lv, lvm, la) over
the images whose evaluation label set holds it (val: the training domains' images with
their training sets, withheld labels excluded; test: every eval_domains image with its
reader's set, so Exp. 1's unseen domains are scored), overall and per domain
('<domain>/dice_<s>'); fg_dice = the mean of the overall structure Dice (the
checkpoint selector, §4.4). Final evaluation adds HD/HD95 (pixels × spacing, mm; images
without a spacing, EchoNet's and Unity's, are counted in 'hd_no_spacing') and
EF MAE (`segmentation.metrics.ef_from_masks`: single-plane discs, area–length, and
biplane for patients with both views, each against the EF of the reference masks by
the same function), and writes plots. Prediction (`segmentation.predict.Predictor`)
splits each evaluation batch's images over the loop's device mesh; the networks compute
in config.model.dtype (float32 or bfloat16; parameters float32, logits cast to float32).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cardiac_data import seg_frames
from evaluation import sharded
from segmentation import data as data_lib
from segmentation import labels as labels_lib
from segmentation import losses
from segmentation import metrics as metrics_lib
from segmentation import models
from segmentation import plots
from segmentation import predict as predict_lib


class SegmentationTask:
  """Images (B, H, W, 1) → logits over {bg, LV, LVM, LA}."""

  def __init__(self, config, workdir: str, *, mesh=None, make_optimizer=None):
    """`make_optimizer(optim_cfg, num_steps)`: the loop's optimiser factory, for the
    pseudo-label teacher. `mesh`: the devices each evaluation batch's images are split
    over (evaluation and the pseudo-label teacher's predictions; None: one device)."""
    self.mesh = mesh
    self.make_optimizer = make_optimizer
    self.config = config
    d = config.data
    for field in ("domains", "eval_domains"):
      unknown = [x for x in d[field] if x not in d.sources]
      if unknown:
        raise ValueError(f"config.data.{field}: {unknown} not in config.data.sources "
                         f"({sorted(d.sources)})")
    # Training domains first, then the domains only evaluated (Exp. 1's unseen ones).
    self.domains = tuple(d.domains) + tuple(x for x in d.eval_domains if x not in d.domains)
    raw = seg_frames.load_domains(d, self.domains)
    self.data = raw
    self.images = raw["image"].astype(np.float32) / 255.0
    self.sets = data_lib.assign_label_sets(raw, d, config.seed)
    trained = np.isin(raw["domain"], [self.domains.index(x) for x in d.domains])
    evaluated = np.isin(raw["domain"], [self.domains.index(x) for x in d.eval_domains])
    # Validation (checkpoint selection) on the training domains only; test on eval_domains.
    self.index = {"train": np.nonzero(trained & (raw["split"] == 0))[0],
                  "val": np.nonzero(trained & (raw["split"] == 1))[0],
                  "test": np.nonzero(evaluated & (raw["split"] == 2))[0]}
    for split, rows in self.index.items():
      if not len(rows):
        raise ValueError(f"config.data: no {split} images in domains "
                         f"{list(d.eval_domains if split == 'test' else d.domains)}")
    self.train_labels = labels_lib.withhold(raw["label"].astype(np.int32), self.sets["train"])
    self.train_sets = self.sets["train"].copy()
    tr = self.index["train"]
    dropout_classes = d.dropout_classes
    self.droppable = (labels_lib.label_set(dropout_classes) if dropout_classes
                      else labels_lib.partially_labelled(self.train_sets[tr]))
    self.droppable[0] = False
    self.model = models.build_model(config.model)
    self.loss_cfg = config.loss
    # 'pseudo' trains the student with CCE on the completed labels.
    self.train_loss_cfg = (ml_collections.ConfigDict(dict(config.loss.to_dict(), name="cce"))
                           if config.loss.name == "pseudo" else config.loss)
    self.aug = {k: float(v) for k, v in config.augment.items() if k != "enabled"}
    self.predictor = predict_lib.Predictor(self.model, mesh)
    self.pseudo_info = {}
    if config.loss.name == "pseudo":
      self._pseudo_label(config)
    sources = [tr[raw["domain"][tr] == self.domains.index(x)] for x in d.domains]
    self.sampler = data_lib.MultiSourceSampler(sources, d.batch_size, d.mixing, config.seed)

  # -- Training ------------------------------------------------------------------

  def _batch(self, idx, labels, sets):
    return {"image": self.images[idx], "label": labels[idx], "label_set": sets[idx]}

  def example_batch(self):
    return self._batch(self.index["train"][:2], self.train_labels, self.train_sets)

  def init(self, rng, batch):
    return self.model.init(rng, jnp.asarray(batch["image"])[..., None])

  def _loss(self, loss_cfg, params, batch, rng, dropout: float = 0.0):
    aug_rng, drop_rng = jax.random.split(rng)
    x, y, sets = batch["image"], batch["label"], batch["label_set"]
    if self.config.augment.enabled:
      x, y = data_lib.augment(aug_rng, x, y, self.aug)
    p = float(dropout)
    if p > 0:
      y, sets = labels_lib.label_dropout(drop_rng, y, sets, p, self.droppable)
    logits = self.model.apply(params, x[..., None], train=True)
    value = losses.segmentation_loss(loss_cfg, logits, y, sets)
    return value, {"pixel_acc": jnp.mean(jnp.argmax(logits, -1) == y)}

  def loss(self, params, batch, rng):
    return self._loss(self.train_loss_cfg, params, batch, rng,
                      self.config.loss.label_dropout)

  def train_batches(self, start_step: int):
    step = start_step
    while True:      # This process's block of rows of the global batch.
      yield self._batch(sharded.host_block(self.sampler.indices(step)), self.train_labels,
                        self.train_sets)
      step += 1

  def _pseudo_label(self, config):
    """§5.2: a CCE teacher on the fully labelled training images; its predictions of
    the absent classes replace background in the partially labelled ones
    (`labels.fill_absent`: annotated pixels and present classes are never changed)."""
    tr = self.index["train"]
    full_rows = tr[self.train_sets[tr].all(1)]    # every class annotated (not EchoNet's LV-only)
    part_rows = np.setdiff1d(tr, full_rows)
    if not len(full_rows):
      raise ValueError("config.loss.name='pseudo' needs training images with every class "
                       "annotated (the teacher's data)")
    steps = int(config.loss.teacher_steps or config.num_steps)   # 0: the student's.
    if self.make_optimizer is None:
      raise ValueError("config.loss.name='pseudo' trains a teacher: SegmentationTask needs "
                       "make_optimizer (training.tasks.make_task passes it)")
    tx = self.make_optimizer(config.optim, steps)
    params = self.init(jax.random.key(config.seed + 7), self.example_batch())
    opt_state = tx.init(params)
    cce_cfg = ml_collections.ConfigDict(dict(config.loss.to_dict(), name="cce", dice_weight=0.0))

    @jax.jit
    def step_fn(params, opt_state, batch, rng):
      grads = jax.grad(lambda p: self._loss(cce_cfg, p, batch, rng)[0])(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    sampler = data_lib.MultiSourceSampler([full_rows], config.data.batch_size, "natural",
                                          config.seed + 7)
    key = jax.random.key(config.seed + 8)
    for t in range(steps):
      batch = self._batch(sampler.indices(t), self.train_labels, self.train_sets)
      params, opt_state = step_fn(params, opt_state, batch, jax.random.fold_in(key, t))
    full = self.sets["test"][part_rows]
    self.train_labels[part_rows] = labels_lib.fill_absent(
        self.train_labels[part_rows], self._predict_rows(params, part_rows),
        self.train_sets[part_rows], full)
    self.train_sets[part_rows] = full
    self.pseudo_info = {"teacher_steps": steps, "pseudo_labelled_images": int(len(part_rows)),
                        "teacher_images": int(len(full_rows)),
                        "teacher_val_fg_dice": self._teacher_dice(params)}

  def _teacher_dice(self, params) -> float:
    """The teacher's mean structure Dice on the held-out validation images whose reader
    annotates every class (withheld labels included: a diagnostic, never a selector;
    NaN without such images)."""
    rows = self.index["val"][self.sets["test"][self.index["val"]].all(1)]
    if not len(rows):
      return math.nan
    pred = self._predict_rows(params, rows)
    ref = self.data["label"][rows]
    return float(np.mean([metrics_lib.dice(pred[i] == c, ref[i] == c)
                          for i in range(len(rows)) for c in (1, 2, 3)]))

  # -- Evaluation ----------------------------------------------------------------

  def _predict_rows(self, params, rows):
    """Argmax labels of the images `rows`, in batches of one shape (one compile) whose
    images are split over the mesh (`segmentation.predict.Predictor`)."""
    return self.predictor(params, self.images, rows)

  def evaluate(self, params, rng, split, *, final, workdir):
    del rng
    rows = self.index[split]
    pred = self._predict_rows(params, rows)
    ref = self.data["label"][rows].astype(np.int64)
    sets = self.sets[split][rows]
    dom = self.data["domain"][rows]
    out, per_image = {}, {}
    for c, s in enumerate(labels_lib.STRUCTURES, start=1):
      d = np.array([metrics_lib.dice(pred[i] == c, ref[i] == c) for i in range(len(rows))])
      per_image[s] = np.where(sets[:, c], d, np.nan)
    for s, v in per_image.items():
      if np.isfinite(v).any():
        out[f"dice_{s}"] = float(np.nanmean(v))
      for k, name in enumerate(self.domains):
        sel = v[dom == k]
        if np.isfinite(sel).any():
          out[f"{name}/dice_{s}"] = float(np.nanmean(sel))
    present = [out[f"dice_{s}"] for s in labels_lib.STRUCTURES if f"dice_{s}" in out]
    out["fg_dice"] = float(np.mean(present))
    if final:
      out.update(self._surface_metrics(pred, ref, sets, rows))
      out.update(self._ef_metrics(pred, ref, rows))
      out.update(self.pseudo_info)
      plot_dir = os.path.join(workdir, "plots")
      plots.examples_plot(os.path.join(plot_dir, f"{split}_examples.png"), self.images[rows],
                          ref, pred, dom, self.domains)
      plots.dice_bars(os.path.join(plot_dir, f"{split}_dice.png"), out,
                      self.domains, title=self._title(split))
    return out

  def _surface_metrics(self, pred, ref, sets, rows):
    out = {}
    undefined = no_spacing = 0
    for c, s in enumerate(labels_lib.STRUCTURES, start=1):
      hd, hd95 = [], []
      for i in range(len(rows)):
        if not sets[i, c]:
          continue
        sp = tuple(float(x) for x in self.data["spacing_mm"][rows[i]])
        if not all(map(math.isfinite, sp)):
          no_spacing += 1              # EchoNet and Unity give no pixel spacing
          continue
        h, h95 = metrics_lib.hausdorff(pred[i] == c, ref[i] == c, sp)
        undefined += int(math.isnan(h))
        hd.append(h)
        hd95.append(h95)
      if hd and np.isfinite(hd).any():
        out[f"hd_{s}"] = float(np.nanmean(hd))
        out[f"hd95_{s}"] = float(np.nanmean(hd95))
    out["hd_undefined"] = undefined
    out["hd_no_spacing"] = no_spacing
    return out

  def _ef_metrics(self, pred, ref, rows):
    """EF MAE of predicted vs reference masks (same function), per method."""
    key = {}
    for i, r in enumerate(rows):
      if self.data["view"][r] < 0 or self.data["phase"][r] < 0:
        continue                       # no known view or cardiac phase (Unity frames)
      k = (int(self.data["domain"][r]), int(self.data["patient"][r]))
      key.setdefault(k, {})[(int(self.data["view"][r]), int(self.data["phase"][r]))] = i
    errs = {"discs": [], "area_length": [], "biplane": []}
    for views in key.values():
      both = [v for v in (0, 1) if (v, 0) in views and (v, 1) in views]
      for v in both:
        ed, es = views[(v, 0)], views[(v, 1)]
        e_p = metrics_lib.ef_from_masks(pred[ed] == 1, pred[es] == 1)
        e_r = metrics_lib.ef_from_masks(ref[ed] == 1, ref[es] == 1)
        for m in ("discs", "area_length"):
          errs[m].append(abs(e_p[m] - e_r[m]))
      if len(both) == 2:
        a = [views[(0, 0)], views[(0, 1)], views[(1, 0)], views[(1, 1)]]
        e_p = metrics_lib.ef_from_masks(pred[a[0]] == 1, pred[a[1]] == 1, pred[a[2]] == 1,
                                        pred[a[3]] == 1)
        e_r = metrics_lib.ef_from_masks(ref[a[0]] == 1, ref[a[1]] == 1, ref[a[2]] == 1,
                                        ref[a[3]] == 1)
        errs["biplane"].append(abs(e_p["biplane"] - e_r["biplane"]))
    out = {}
    for m, e in errs.items():
      e = np.asarray(e, float)
      if e.size:
        out[f"ef_mae_{m}"] = float(np.nanmean(e)) if np.isfinite(e).any() else math.nan
        out[f"ef_failed_{m}"] = int(np.sum(~np.isfinite(e)))
    return out

  def _title(self, split):
    c = self.config
    return f"{c.model.arch} · {c.loss.name} · {split}"

  def meta(self):
    return {"model": self.config.model.to_dict(), "loss": self.config.loss.to_dict(),
            "domains": list(self.config.data.domains),
            "eval_domains": list(self.config.data.eval_domains),
            "withheld": {k: list(v) for k, v in dict(self.config.data.withheld).items()}}
