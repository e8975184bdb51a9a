"""Defaults shared by every config; each experiment file edits a copy."""
from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = ""
  c.seed = 42
  c.num_steps = 1000
  c.log_every = 50
  c.eval_every = 250
  c.final_eval_splits = ("val", "test")

  c.optim = ml_collections.ConfigDict(dict(
      name="adamw", lr=3e-4, weight_decay=1e-5, schedule="cosine", min_lr=1e-6,
      warmup_steps=0, momentum=0.9, nesterov=False, grad_clip=0.0, decay_steps=1000,
      decay_rate=0.1, encoder_lr_mult=0.1, ema_decay=0.0))
  c.checkpoint = ml_collections.ConfigDict(dict(
      save_every=250, keep=2, best_metric="mae", best_mode="min"))
  # shard_params_min_size: leaves of at least this many elements are split over the
  # devices (FSDP style; 0 = parameters replicated); cpu_devices: JAX devices on the CPU
  # backend, 0 = one per core (dividing data.batch_size; the batch's parts run side by
  # side), n = n devices; cpu_ynnpack: XLA:CPU's YNNPACK fusions for dots, convolutions
  # and reductions (False = XLA's own kernels, faster for the EF configs' per-frame CNN).
  # Set by launch.train before JAX starts (training/sharding.py; docs/benchmarks.md).
  c.sharding = ml_collections.ConfigDict(dict(shard_params_min_size=0, cpu_devices=0,
                                              cpu_ynnpack=True))
  return c


def synthetic_data(dataset: str, num_subjects: int, seed: int = 0) -> ml_collections.ConfigDict:
  """`root` empty = the built-in synthetic cohort, generated on first use into
  `cache_dir` (empty = $CARDIAC_DATA_CACHE or ~/.cache/cardiac_jax)."""
  return ml_collections.ConfigDict(dict(
      dataset=dataset, root="", cache_dir="",
      synthetic=ml_collections.ConfigDict(dict(num_subjects=num_subjects, seed=seed))))


def ef_data(dataset: str, num_subjects: int) -> ml_collections.ConfigDict:
  """`synthetic_data` plus the EF tasks' TFDS build folder `tfds_dir` (empty =
  `<cache>/tfds/<root name>-<path hash>`, cardiac_data/sources.py) and the reader
  options `reader` (cardiac_data/sources.py: reader_options; options other than these
  defaults build their own dataset):

  strict: False = a FileList row (CAMUS: a patient's cfg) with an unexpected value
    (Sex outside M/F, Split outside TRAIN/VAL/TEST, a non-numeric EF, ...) is
    skipped, counted and logged; True = it stops the build, naming the file and row.
  require_tracings: drop (counted) videos with fewer than 2 traced frames (EchoNet),
    patients without ED/ES ground truth (CAMUS).
  CAMUS only (another dataset must keep the defaults): release 'auto' (from the
    folder layout), 'nifti' (2023) or 'mhd' (2019); split_list_dir: the folder of
    the split lists ('' = the release's default: database_split/, or
    listSubGroups/ with a fold); fold: -1 = none, k = vital's subGroup{k}_*.txt.
  (EchoNet-Pediatric's cross-validation fold is config.data.test_fold.)
  """
  d = synthetic_data(dataset, num_subjects)
  d.tfds_dir = ""
  d.reader = ml_collections.ConfigDict(dict(strict=False, require_tracings=False,
                                            release="auto", split_list_dir="", fold=-1))
  return d


def mcsdr_model() -> ml_collections.ConfigDict:
  """MCSDR network (mcsdr_jax/model.py), CPU-sized. Fields:

  kind: 'mcsdr' (diffusion, the paper), 'deterministic' (Table IV baseline), or a
    competitor on the same encoder (mcsdr_jax/competitors.py): 'heteroscedastic' (μ and σ
    heads, het_loss 'gaussian_nll', 'beta_nll' or 'crps'), 'ensemble' (ensemble_size deterministic
    regressors from independent initialisations) or 'mc_dropout' (dropout kept on at test).
  dropout: dropout rate on the point heads' pooled context and hidden layer (the
    deterministic kinds; mc_dropout needs > 0; 0 = none).
  encoder: 'frames' (per-frame 2D CNN + temporal convs, CPU), 'small' (tubelet 3D CNN),
    'r2plus1d' (R(2+1)D-18) or 'uniformer' (UniFormer-S, the paper's), with
    encoder_kwargs (for 'frames': widths, temporal, norm 'frame'/'clip', motion: frame −
    clip mean as extra input channels; for the published networks see
    backbones/r2plus1d.py and backbones/uniformer.py); features: its width.
  predictor: 'mcsn' (cross-attention, Fig. 4), 'mlp' or 'transformer_decoder' (Table V);
    hidden, heads, num_layers (0 = the predictor's default), mlp_ratio, time_dim.
  conditioning: 'tokens' (video tokens pooled to video_grid + one token per attribute)
    or 'paper_code' (the published single-token context; attention is inert).
  use_attributes: False = vision only (attributes ignored; the paper's ablation).
  attr_features, attr_dropout: attribute encoder width, train-time dropout probability.
  attr_in_summary: the summary token (read by the auxiliary EF head) also sees the
    attribute embeddings (True), or the pooled video feature only (False).
  pretrained: '' (random initialisation) or a folder whose weights initialise the video
    encoder (training/pretrained.py): converted published weights (`python -m
    launch.import_weights`) or a workdir (its best checkpoint); the encoder then trains
    at config.optim.encoder_lr_mult × the learning rate.
  dtype: computation dtype of the encoder ('bfloat16' on accelerators).
  eps_skip: ε̂ = √(1−ᾱ)·y_t + √ᾱ·F (well conditioned at t ≈ T; see mcsdr_jax/model.py);
    False = the network outputs ε̂ directly, as the published code.
  adacon: the AdaCon plug-in (adacon_jax/plugin.py): weight > 0 adds weight·AdaCon Eq. 6
    on the encoder's pooled feature (a projection head proj_hidden → proj_features, a
    second view per clip: pad-crop `pad`, brightness/contrast jitter; margins from the
    training-label ECDF with `bucket_width`, logit `scale`); 0 = off, model unchanged.
  """
  return ml_collections.ConfigDict(dict(
      kind="mcsdr", encoder="frames",
      encoder_kwargs=ml_collections.ConfigDict(dict(widths=(16, 32, 64, 64), temporal=1,
                                                    norm="frame", motion=True)),
      features=64, predictor="mcsn", hidden=128, heads=4, num_layers=0, mlp_ratio=4,
      time_dim=64, conditioning="tokens", video_grid=(4, 4, 4), use_attributes=True,
      attr_features=32, attr_dropout=0.1, attr_in_summary=True, pretrained="", dtype="float32",
      eps_skip=True, het_loss="gaussian_nll", ensemble_size=5, dropout=0.0,
      adacon=ml_collections.ConfigDict(dict(
          weight=0.0, scale=150.0, bucket_width=0.05, proj_hidden=128, proj_features=128,
          pad=4, brightness=0.05, contrast=0.1))))


#: CoReEcho's input standardisation on 0..255 frames (coreecho/dataset.py DEFAULT_MEAN /
#: DEFAULT_STD × 255), the one its UniFormer-S was trained with: EchoNet-Dynamic's pixel
#: statistics, as EchoNet's code computes them from its training split.
COREECHO_PIXEL_MEAN = tuple(255.0 * m for m in (0.12741163, 0.1279413, 0.12912785))
COREECHO_PIXEL_STD = tuple(255.0 * s for s in (0.19557191, 0.19562256, 0.1965878))


def uniformer_model(c: ml_collections.ConfigDict,
                    pretrained: str = "weights/coreecho_uniformer") -> None:
  """Switches `c.model` to MCSDR's encoder: UniFormer-S pretrained by CoReEcho on
  EchoNet-Dynamic (backbones/uniformer.py), fine-tuned at optim.encoder_lr_mult × the
  rate, bfloat16. Nothing is downloaded: convert CoReEcho's checkpoint (Google Drive id
  1ZNF4lMTLEnaZyhVHHTUW_MctB7kDGP6o, see the CoReEcho README) once with

    python -m launch.import_weights --format=coreecho_uniformer --src=CoReEcho_UniFormerS.pth \\
        --out=weights/coreecho_uniformer --trust_pickle

  Grey frames are replicated to RGB and standardised as CoReEcho trained (the published
  MCSDR code feeds x/255 unstandardised: --config.model.encoder_kwargs.pixel_mean=()
  --config.model.encoder_kwargs.pixel_std=()); BatchNorm statistics stay frozen (the
  published code updates them: --config.model.encoder_kwargs.norm_stats=train).
  Without weights: --config.model.pretrained='' --config.diffusion.aux_weight=1.
  """
  c.model.encoder = "uniformer"
  c.model.encoder_kwargs = ml_collections.ConfigDict(dict(
      norm_stats="frozen", project=False, in_channels=3, pixel_mean=COREECHO_PIXEL_MEAN,
      pixel_std=COREECHO_PIXEL_STD))
  c.model.features = 512
  c.model.hidden = 256
  c.model.heads = 8
  c.model.attr_features = 64
  c.model.video_grid = (4, 3, 3)
  c.model.dtype = "bfloat16"
  c.model.pretrained = pretrained


def r2plus1d_model(c: ml_collections.ConfigDict) -> None:
  """Switches `c.model` to the accelerator-sized encoder (R(2+1)D-18, bfloat16)."""
  c.model.encoder = "r2plus1d"
  c.model.encoder_kwargs = ml_collections.ConfigDict(dict(width=1.0))
  c.model.features = 512
  c.model.hidden = 256
  c.model.heads = 8
  c.model.attr_features = 64
  c.model.video_grid = (2, 7, 7)
  c.model.dtype = "bfloat16"


def diffusion() -> ml_collections.ConfigDict:
  """VP schedule (β linear 1e-4 → 0.02, T = 1000); noise_draws: (t, ε) draws per example
  and step, sharing one encoder pass (1 = the paper); aux_weight: weight of an MSE on a
  linear EF head of the encoder's summary token, added to Eq. 6 (0 = the paper's loss).
  The published code starts from an encoder already trained on EF (CoReEcho's weights);
  the auxiliary term gives a randomly initialised encoder that supervision within one
  run. The posterior still comes from the diffusion head alone. aux_loss: 'mse' (the
  head's one output), or 'gaussian_nll', 'beta_nll' (β = 1) or 'crps' (the head gives μ
  and σ, trained by that scoring rule, mcsdr_jax/competitors.py:GAUSSIAN_LOSSES, so the
  summary token the ε-network attends to also carries the case's expected error)."""
  return ml_collections.ConfigDict(dict(num_steps=1000, beta_start=1e-4, beta_end=0.02,
                                        noise_draws=1, aux_weight=0.0, aux_loss="mse"))


def sampling() -> ml_collections.ConfigDict:
  """Posterior sampling at evaluation: K = num_samples (val_num_samples during training),
  sampler 'ddim' (steps τ, eta η, spacing 'trailing' = published code, or 'leading'),
  'ddpm' or 'pf_ode'. spread_calibration 'val': the final evaluation widens or narrows
  every posterior about its mean by one factor fitted on the validation split by CRPS
  (σ-scaling; metrics.json keeps the raw posterior's scores as raw_*, the factor as
  spread_scale; val's own scores are then in-sample); 'none': the raw posterior (paper)."""
  return ml_collections.ConfigDict(dict(num_samples=40, val_num_samples=10, sampler="ddim",
                                        steps=10, eta=0.0, spacing="trailing",
                                        spread_calibration="val"))


def parse_variant(arg: str | None, config_file: str, sizes=("smoke", "full"),
                  flags=("vision",)) -> tuple[str, set[str]]:
  """'smoke,vision' → ('smoke', {'vision'}); unknown parts raise ValueError."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  unknown = [p for p in parts if p not in sizes and p not in flags]
  chosen = [p for p in parts if p in sizes]
  if unknown or len(chosen) > 1:
    raise ValueError(f"{config_file}: unknown variant {arg!r}; use one of {list(sizes)} "
                     f"(or none), optionally with {list(flags)}, comma-separated")
  return (chosen[0] if chosen else ""), {p for p in parts if p in flags}


def sweep(metric: str, mode: str = "min", params: tuple[str, ...] = (),
          grid: tuple[str, ...] = (), num_trials: int = 16,
          parallel: int = 1) -> ml_collections.ConfigDict:
  """What `python -m launch.sweep` searches (see its docstring): `params` are
  'field=loguniform(lo, hi)' / 'uniform(lo, hi)' / 'int(lo, hi)' / 'choice(a, b)'
  strings (Optuna TPE); `grid` 'field=v1,v2,...' strings (a full grid instead);
  `metric` a key of the trial's metrics.json (tune on 'val/...', report 'test/...')."""
  return ml_collections.ConfigDict(dict(metric=metric, mode=mode, params=tuple(params),
                                        grid=tuple(grid), num_trials=num_trials,
                                        parallel=parallel, seed=0))
