"""MCSDR on EchoNet-Pediatric A4C: video + Age, Sex, Weight, Height (built-in synthetic
cohort by default).

  python -m launch.train --config=configs/pediatric.py
  python -m launch.train --config=configs/pediatric.py:smoke --workdir=/tmp/smoke
  python -m launch.train --config=configs/pediatric.py:vision          # vision-only ablation
  python -m launch.train --config=configs/pediatric.py:full \\
      --config.data.root=/data/pediatric_echo_avi --config.data.test_fold=3

Variants (after the colon, comma-separated): '' (default, CPU-sized: 8.0 minutes
from a fresh clone on a quiet 2-core CPU, pip install and cohort generation included;
3,000 steps at 10.5 steps/s), 'smoke' (a minute), 'full' (the paper's setting for
accelerators: UniFormer-S pretrained by CoReEcho on EchoNet-Dynamic, fine-tuned at 0.1×
the rate, 112², bfloat16, 50 epochs; convert the weights once, nothing is downloaded:
  python -m launch.import_weights --format=coreecho_uniformer \\
      --src=CoReEcho_UniFormerS.pth --out=weights/coreecho_uniformer --trust_pickle
see configs/common.py:uniformer_model); 'vision' drops the attributes. The
deterministic baseline of Table IV: --config.model.kind=deterministic. The uncertainty
methods a user would pick instead, on the same encoder and budget
(mcsdr_jax/competitors.py): 'heteroscedastic' (Gaussian NLL), 'ensemble' (5 members),
'mc_dropout' (rate 0.2), e.g. configs/pediatric.py:ensemble.
"""
from __future__ import annotations

from configs import common

#: Variant flags that switch config.model.kind to a competitor (mcsdr_jax/competitors.py).
COMPETITORS = ("heteroscedastic", "ensemble", "mc_dropout")


def get_config(arg: str | None = None):
  size, flags = common.parse_variant(arg, "configs/pediatric.py",
                                     flags=("vision",) + COMPETITORS)
  c = common.base_config()
  c.task = "ef_regression"
  c.data = common.ef_data("echonet_pediatric", num_subjects=2000)
  c.data.view = "A4C"
  c.data.test_fold = 0        # Official CV: test = fold s, val = fold (s + 1) % 10.
  c.data.frames = 16
  c.data.period = 1
  c.data.sampling = "mcsdr"   # Every period-th frame, a 90–100 % crop resampled to `frames`.
  c.data.image_size = 64      # CPU default; 'full' uses 112 (EchoNet's size).
  c.data.batch_size = 8
  c.data.worker_count = 2
  c.data.augment = True
  c.sharding.cpu_ynnpack = False   # XLA's own CPU kernels: 1.2–1.6× faster train steps here.
  c.data.attributes = ("Age", "Weight", "Height")   # Continuous; Sex is categorical.
  c.data.categorical = ("Sex",)

  c.model = common.mcsdr_model()
  c.model.use_attributes = "vision" not in flags
  chosen = [f for f in COMPETITORS if f in flags]
  if len(chosen) > 1:
    raise ValueError(f"configs/pediatric.py: pick at most one of {COMPETITORS}, got {chosen}")
  if chosen:
    c.model.kind = chosen[0]
    c.model.dropout = 0.2 if chosen[0] == "mc_dropout" else 0.0
  c.diffusion = common.diffusion()
  c.diffusion.noise_draws = 32   # (t, ε) draws per clip: the ε-network learns the posterior's
                                 # width from them (8: MAE 3.64, σ–error ρ 0.12 on seed 42; +7 % step).
  c.diffusion.aux_weight = 1.0   # Random-init encoder: EF supervision (0 = Eq. 6 alone).
  # β-NLL on a (μ, σ) auxiliary head: the summary token the ε-network reads then carries
  # each clip's expected error, so σ widens with it ('mse': the earlier default, flat σ).
  c.diffusion.aux_loss = "beta_nll"
  c.sampling = common.sampling()
  # The adaptive probability-flow ODE (MCSDR Eq. 4): DDIM-10's last step returns the mean
  # given y at t = 99 and drops the rest of a narrow posterior's spread (raw 90 %
  # coverage 0.75; see docs/mcsdr.md). 'ddim' with steps=10: the paper's sampler.
  c.sampling.sampler = "pf_ode"
  c.sampling.steps = 0           # 0: adaptive steps (pf_ode).
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  # `python -m launch.sweep`: search space (Optuna), or the paper's DDIM τ × K grid with
  # --config.sweep.grid="('sampling.steps=5,10,20,50', 'sampling.num_samples=5,10,20,40')".
  c.sweep = common.sweep("val/mae", "min", params=(
      "optim.lr=loguniform(2e-4, 3e-3)", "diffusion.aux_weight=uniform(0.25, 4.0)",
      "model.attr_dropout=uniform(0.0, 0.3)", "optim.weight_decay=loguniform(1e-6, 1e-3)"))
  c.num_steps = 3000          # ~5 min of training on 2 CPU cores: the job fits 15 min.
  c.eval_every = 1000
  c.checkpoint.save_every = 1000

  if size == "smoke":
    c.data.synthetic.num_subjects = 48
    c.data.frames = 8
    c.data.image_size = 64
    c.data.worker_count = 0
    c.model.encoder_kwargs.widths = (8, 8, 16, 16)
    c.model.features = 16
    c.model.hidden = 32
    c.model.attr_features = 16
    c.sampling.num_samples = 8
    c.sampling.val_num_samples = 4
    c.sampling.sampler, c.sampling.steps = "ddim", 10   # Compiles in a second (tests).
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint.save_every = 10
  elif size == "full":
    common.uniformer_model(c)     # CoReEcho's UniFormer-S, as the paper (see its docstring).
    c.data.image_size = 112
    c.optim.lr = 3e-4
    c.data.batch_size = 8
    c.data.worker_count = 8
    c.diffusion.noise_draws = 1
    c.diffusion.aux_weight = 0.0   # The encoder is EF-pretrained (model.pretrained), as published.
    c.num_steps = 50 * 1850 // 8        # 50 epochs of the ~1,850 training videos.
    c.optim.warmup_steps = 500
    c.eval_every = 1000
    c.checkpoint.save_every = 1000
  return c
