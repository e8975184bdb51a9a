"""AdaCon (Dai et al. 2021) on EchoNet-Dynamic: MSE + adaptive-margin contrastive loss.
Built-in synthetic adult cohort by default; real data with --config.data.root.

  python -m launch.train --config=configs/adacon_dynamic.py --workdir=/tmp/adacon
  python -m launch.train --config=configs/adacon_dynamic.py:mse      # regression-only arm
  python -m launch.train --config=configs/adacon_dynamic.py:full \\
      --config.data.root=/data/EchoNet-Dynamic

Variants (after the colon, comma-separated): '' (CPU-sized, a few minutes on 2 cores),
'smoke' (under a minute), 'full' (as the published code: R(2+1)D-18 initialised from
torchvision's Kinetics-400 weights with its BatchNorm statistics trained, frames
standardised by EchoNet-Dynamic's pixel mean/SD, 32 frames every 2nd, batch 20; convert
the weights once, nothing is downloaded:
  python -m launch.import_weights --format=torchvision_r2plus1d \
      --src=r2plus1d_18-91a641e6.pth --out=weights/kinetics_r2plus1d
or train from scratch with --config.model.pretrained=''); a loss flag replaces AdaCon: 'mse' (regression only), 'supcon',
'npair', 'triplet' (adaptive triplet); 'twostage' pre-trains contrastively for half the
steps, then fine-tunes the regression (Table V). Regression loss and weights:
--config.adacon.regression=l1|mse|huber, --config.adacon.huber_delta (EF points),
--config.adacon.con_weight (γ_con), --config.adacon.reg_weight (γ_reg).
"""
from __future__ import annotations

import ml_collections

from configs import common

LOSS_FLAGS = ("mse", "supcon", "npair", "triplet", "twostage")


def adacon() -> ml_collections.ConfigDict:
  """config.adacon (adacon_jax/task.py):

  contrastive: 'adacon' (Eq. 6), 'supcon', 'npair', 'triplet' or 'none'.
  con_weight, reg_weight: γ_con, γ_reg of Eq. 8 (γ_con = 0: regression only).
  regression: 'mse', 'l1' or 'huber' (huber_delta in EF points), on standardised EF.
  scale: s of Eq. 6 (1/temperature). CPU default 10 with γ_con 0.05, chosen on validation
    MAE over (150, 0.005) and (150, 0.001); 'full' uses the published s = 150, γ_con 0.005.
  bucket_width: positives share the label bucket ⌊EF/w⌋ (published: 0.05), also the
    ECDF's; 0 = equal labels. ecdf_mode: 'paper' (Eq. 5) or 'midrank' (published code).
  triplet_margin: adaptive triplet margin per standardised EF point of |Δy|.
  pretrain_steps: > 0 = two-stage (contrastive only before, regression only after).
  pad, brightness, contrast: the two views' pad-crop (pixels) and intensity jitter.
  """
  return ml_collections.ConfigDict(dict(
      contrastive="adacon", con_weight=0.05, reg_weight=1.0, regression="mse",
      huber_delta=4.0, scale=10.0, bucket_width=0.05, ecdf_mode="paper", triplet_margin=1.0,
      pretrain_steps=0, pad=3, brightness=0.05, contrast=0.1))


def get_config(arg: str | None = None):
  size, flags = common.parse_variant(arg, "configs/adacon_dynamic.py", flags=LOSS_FLAGS)
  if len(flags & {"mse", "supcon", "npair", "triplet"}) > 1:
    raise ValueError(f"configs/adacon_dynamic.py: variant {arg!r} names more than one loss")
  c = common.base_config()
  c.task = "adacon"
  c.data = common.ef_data("echonet_dynamic", num_subjects=1200)
  c.data.view = "A4C"
  c.data.attributes = ()
  c.data.categorical = ()
  c.data.frames = 16
  c.data.period = 2
  c.data.sampling = "mcsdr"
  c.data.image_size = 32          # CPU default; 'full' uses 112 (EchoNet's size).
  c.data.batch_size = 16
  c.data.worker_count = 2
  c.sharding.cpu_ynnpack = False   # XLA's own CPU kernels: 1.6× faster train steps here.
  c.data.augment = False          # The two views are the augmentation (as published).

  c.model = ml_collections.ConfigDict(dict(
      encoder="frames",
      encoder_kwargs=ml_collections.ConfigDict(dict(widths=(16, 32, 64, 64), temporal=1,
                                                    motion=True)),   # + frame − clip mean
      features=64, proj_hidden=64, proj_features=128, dtype="float32", pretrained=""))
  c.adacon = adacon()
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.num_steps = 600               # ~3 min on 2 free CPU cores (the regression-only arm ~2).
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint.save_every = 200

  if size == "smoke":
    c.data.synthetic.num_subjects = 48
    c.data.frames = 8
    c.data.batch_size = 4
    c.data.worker_count = 0
    c.model.encoder_kwargs.widths = (8, 8, 16, 16)
    c.model.features = 16
    c.model.proj_hidden = 16
    c.model.proj_features = 16
    c.num_steps = 20
    c.optim.warmup_steps = 0
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint.save_every = 10
  elif size == "full":
    # As the published code: R(2+1)D-18 from torchvision's Kinetics-400 weights, BatchNorm
    # trained, input standardised by EchoNet-Dynamic's pixel statistics (see the docstring).
    c.model.encoder = "r2plus1d"
    c.model.encoder_kwargs = ml_collections.ConfigDict(dict(
        width=1.0, norm="batch", norm_stats="train", project=False, in_channels=3,
        pixel_mean=common.COREECHO_PIXEL_MEAN, pixel_std=common.COREECHO_PIXEL_STD))
    c.model.pretrained = "weights/kinetics_r2plus1d"
    c.optim.encoder_lr_mult = 1.0       # The published code fine-tunes all at one rate.
    c.model.features = 512
    c.model.proj_hidden = 512
    c.model.dtype = "bfloat16"
    c.data.frames = 32
    c.data.period = 2
    c.data.sampling = "clip"
    c.data.image_size = 112
    c.data.batch_size = 20
    c.data.worker_count = 8
    c.adacon.pad = 12
    c.data.augment = False
    c.adacon.scale = 150.0
    c.adacon.con_weight = 0.75 / 150.0  # Published 0.75 on raw-EF MSE; ours is standardised
                                        # (EF sd ≈ 12 points: 0.75 / 12² ≈ 0.005).
    c.optim.lr = 3e-4
    c.optim.warmup_steps = 500
    c.num_steps = 45 * 7465 // 20       # 45 epochs of the training videos.
    c.eval_every = 2000
    c.checkpoint.save_every = 2000

  if "mse" in flags:
    c.adacon.contrastive = "none"
    c.adacon.con_weight = 0.0
  for name in ("supcon", "npair", "triplet"):
    if name in flags:
      c.adacon.contrastive = name
  if "twostage" in flags:
    c.adacon.pretrain_steps = c.num_steps // 2
  return c
