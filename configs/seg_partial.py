"""Partial-label multi-domain echo segmentation (Islam et al., MELBA 2026), on the datasets
as distributed (CAMUS, EchoNet-Dynamic/Pediatric tracings, Unity Imaging) or on the
built-in three-vendor scenario written in those same layouts
(`cardiac_data/synthetic/seg_domains.py`).

  python -m launch.train --config=configs/seg_partial.py:inter --workdir=/tmp/seg
  python -m launch.train --config=configs/seg_partial.py:inter,smoke,abce
  python -m launch.train --config=configs/seg_partial.py:inter,swin_unet,marginal
  python -m launch.seg_summary --config=configs/seg_partial.py:inter --workdir=/tmp/seg_sum
  python -m launch.train --config=configs/seg_partial.py:inter \
      --config.data.sources.camus.root=/data/CAMUS --config.data.sources.unity.root=/data/unity

Data: config.data.sources maps a domain name to {dataset, root, reader options}
(`cardiac_data.seg_frames.OPTIONS`): camus (release, split_list_dir, fold, views,
frames 'ed_es' | 'half_sequence', strict), echonet_dynamic / echonet_pediatric (strict;
Pediatric also view, test_fold), unity (curves: structure → curve name, '' = not
annotated; split_seed, val_fraction, test_fraction; strict). root '' = config.data.root/<domain>
if set, else the built-in scenario's <domain>/ folder. Each image's label set comes from
its reader; config.data.domains are trained on, config.data.eval_domains evaluated.

Variants (comma-separated): one scenario, at most one architecture, one loss and one size.
  scenario  'inter' (default; §5.3: CAMUS-like fully labelled + Unity-like with LA
            withheld in training and validation), 'intra' (§5.2: CAMUS-like only, LVM
            removed from 50 % of the patients), 'all3' (+ the EchoNet-like LV-only
            domain), 'dropout' (inter with aCCE and label dropout p = 0.4, the U-Net's
            best in §5.3; `launch.seg_summary` sweeps p over 0, 0.1, …, 1), and
            Experiment 1 (§5.1: LV segmentation with CCE, trained on one domain or all
            three, evaluated on all three): 'exp1_camus', 'exp1_unity', 'exp1_echonet',
            'exp1_all'.
  arch      'unet' (default), 'attention_unet', 'swin_unet': config.model.arch with that
            architecture's optimiser (ARCH_OPTIM: Swin-UNet trains with AdamW 1e-3 and
            gradient clipping at global norm 1; with SGD at the U-Net's 0.05 it
            diverges, at the published 0.01 + clipping it stays at background only).
  loss      'cce', 'acce', 'marginal' (the default), 'abce', 'pseudo', or 'full_labels'
            (the fully labelled benchmark: CCE with nothing withheld): config.loss.name
            with that loss's settings (LOSS_DEFAULTS: aBCE gets the Dice term).
  size      '' (CPU: 300 patients per domain, 64×64 images, U-Net width 1/8,
            depth 3, 1200 steps), 'smoke' (32×32, seconds), 'full' (256×256, width 1,
            depth 4, the paper's size, for accelerators; computes in bfloat16).
  config.model.dtype: the networks' computation dtype, 'float32' (default: CPU) or
  'bfloat16' ('full'; parameters, gradients and optimiser state stay float32, logits
  are cast to float32 for the losses; --config.model.dtype=float32 turns it off).
`launch.train` and `launch.seg_summary` build every run from these variants alike; a
bare --config.loss.name or --config.model.arch override changes that field only.
"""
from __future__ import annotations

import ml_collections

from configs import common

DOMAINS = ("camus", "unity", "echonet")
EXP1 = tuple(f"exp1_{d}" for d in DOMAINS + ("all",))
SCENARIOS = ("inter", "intra", "all3", "dropout") + EXP1
ARCHS = ("unet", "attention_unet", "swin_unet")
BENCHMARK = "full_labels"
LOSSES = ("cce", "acce", "marginal", "abce", "pseudo", BENCHMARK)
#: config.optim entries per architecture. Swin-UNet from scratch: SGD at 0.05 diverges;
#: the published SGD 0.01 (which starts from ImageNet weights) with clipping at 1 stayed
#: at background only for 300 steps; AdamW 1e-3 with clipping at 1 trains (validation
#: LV Dice 0.81 at step 300).
ARCH_OPTIM = {"swin_unet": dict(name="adamw", lr=1e-3, grad_clip=1.0)}
#: config.loss entries per loss. aBCE ('present') with the Dice term: without it its LA
#: channel failed to train on one of two seeds (validation CAMUS-like LA Dice 0.02;
#: with it 0.94).
LOSS_DEFAULTS = {"abce": dict(dice_weight=1.0)}


def _one(chosen: set, options, kind: str, arg):
  if len(chosen) > 1:
    raise ValueError(f"configs/seg_partial.py: choose at most one {kind} of {options}, "
                     f"got {arg!r}")
  return next(iter(chosen)) if chosen else None


def get_config(arg: str | None = None):
  size, flags = common.parse_variant(arg, "configs/seg_partial.py",
                                     flags=SCENARIOS + ARCHS + LOSSES)
  scenario = _one(flags & set(SCENARIOS), SCENARIOS, "scenario", arg) or "inter"
  arch = _one(flags & set(ARCHS), ARCHS, "architecture", arg) or "unet"
  loss = _one(flags & set(LOSSES), LOSSES, "loss", arg)
  c = common.base_config()
  c.task = "segmentation"
  c.scenario = scenario
  # Per domain; 300 gives 30 test patients per domain (60 Unity-like test images).
  c.data = common.synthetic_data("seg_domains", num_subjects=300)
  c.data.image_size = 64
  c.data.batch_size = 8
  c.data.mixing = "natural"            # or 'balanced' (each source equally often)
  c.data.dropout_classes = ()          # () = the classes partially labelled in training
  c.data.tfds_dir = ""                 # '' = <cache>/tfds/<root name>-<hash> per root
  # One entry per domain: the dataset's layout, its root ('' = see the docstring) and
  # the reader options of cardiac_data/seg_frames.py (OPTIONS).
  c.data.sources = ml_collections.ConfigDict(dict(
      camus=dict(dataset="camus", root="", release="auto", split_list_dir="", fold=-1,
                 views=("2CH", "4CH"), frames="ed_es", strict=False),
      unity=dict(dataset="unity", root="", strict=False, split_seed=0, val_fraction=0.1,
                 test_fraction=0.1,
                 curves=dict(lv="curve-lv-endo", lvm="curve-lv-epi", la="curve-la-endo")),
      echonet=dict(dataset="echonet_dynamic", root="", strict=False)))
  if scenario == "intra":
    c.data.domains = ("camus",)
    c.data.withheld = {"camus": ("lvm",)}
    c.data.withheld_fraction = {"camus": 0.5}
  elif scenario in EXP1:
    # §5.1: LV only (LVM and LA withheld everywhere), CCE, every domain evaluated.
    trained = scenario[len("exp1_"):]
    c.data.domains = DOMAINS if trained == "all" else (trained,)
    c.data.withheld = {d: ("lvm", "la") for d in DOMAINS}
    c.data.withheld_fraction = {}
  else:
    c.data.domains = ("camus", "unity") + (("echonet",) if scenario == "all3" else ())
    c.data.withheld = {"unity": ("la",)}
    c.data.withheld_fraction = {}
  # Evaluated in validation and test: the training domains, or more (unseen domains).
  c.data.eval_domains = DOMAINS if scenario in EXP1 else c.data.domains

  # depth: U-Net levels; window, depths, heads: Swin-UNet's (embed 96·width); dtype: the
  # computation dtype (segmentation.models.DTYPES; parameters stay float32).
  c.model = ml_collections.ConfigDict(dict(arch=arch, width=0.125, depth=3, window=8,
                                           depths=(2, 2, 2, 2), heads=(3, 6, 12, 24),
                                           dtype="float32"))
  # teacher_steps: training steps of the pseudo-label teacher ('pseudo'); 0 = the
  # student's num_steps.
  c.loss = ml_collections.ConfigDict(dict(
      name="marginal", acce_reading="normaliser", marginal_form="paper",
      abce_reading="present", dice_weight=0.0, label_dropout=0.0, teacher_steps=0))
  if scenario == "dropout":
    c.loss.name = "acce"
    c.loss.label_dropout = 0.4
  elif scenario in EXP1:
    c.loss.name = "cce"
  c.augment = ml_collections.ConfigDict(dict(
      enabled=True, scale=0.1, rotation_deg=10.0, blur_sigma=1.0, blur_prob=0.3,
      brightness=0.1, contrast=0.2, gamma=0.5))
  # gamma: u ↦ u^γ, γ in [1/1.5, 1.5] (not in §4.4; vendors' display curves differ):
  # in the inter-domain run it raised the validation CAMUS-like LA and foreground Dice.

  # SGD, Nesterov momentum 0.9, decayed learning rate (§4.4); PyTorch-style weight decay.
  c.optim.name = "sgd"
  c.optim.nesterov = True
  c.optim.momentum = 0.9
  c.optim.lr = 0.05
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "cosine"
  c.optim.min_lr = 1e-4
  c.optim.warmup_steps = 50
  c.num_steps = 1200
  c.log_every = 50
  c.eval_every = 300
  c.checkpoint.save_every = 300
  c.checkpoint.best_metric = "fg_dice"     # best validation foreground Dice (§4.4)
  c.checkpoint.best_mode = "max"
  c.final_eval_splits = ("val", "test")

  if size == "smoke":
    c.data.synthetic.num_subjects = 10
    c.data.image_size = 32
    c.data.batch_size = 4
    c.model.depth = 2
    c.num_steps = 4
    c.optim.warmup_steps = 0
    c.log_every = 2
    c.eval_every = 2
    c.checkpoint.save_every = 2
  elif size == "full":
    c.data.synthetic.num_subjects = 500
    c.data.image_size = 256
    c.data.batch_size = 16
    c.model.width = 1.0
    c.model.depth = 4
    c.model.dtype = "bfloat16"           # accelerators; as MCSDR's full variants
    c.optim.lr = 0.01
    c.num_steps = 20000
    c.eval_every = 1000
    c.checkpoint.save_every = 1000
  c.optim.update(ARCH_OPTIM.get(arch, {}))
  if loss == BENCHMARK:
    c.loss.name = "cce"
    c.loss.label_dropout = 0.0
    c.data.withheld = {}
    c.data.withheld_fraction = {}
  elif loss:
    c.loss.name = loss
    c.loss.update(LOSS_DEFAULTS.get(loss, {}))
  return c
