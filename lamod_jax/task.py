"""LaMoD task for the shared loop: registration pre-training, then latent diffusion +
motion decoder (registration frozen), with the regression and registration-only baselines.

Data (cardiac_data/dense.py): per sample the myocardium masks (T, H, W) and the DENSE
Lagrangian displacement on the DENSE grid; `data.frames` frames are taken evenly from each
sequence (frame 0 = the reference), whatever its own frame count (DENSE's 40, cine's 25).
Pairs (I⁰, I^τ), τ = 1..F−1, are resampled (bilinear, antialiased) to the registration
grid `data.reg_size` (the paper's 128² at 1 mm) for E_R; displacements are predicted back
on the DENSE grid. Predicted displacements are strained and segmented on
`data.strain_mask`: 'label' = the label's support (as the truth), 'input' = the input's
frame-0 mask (the cine protocol: cine masks differ from the DENSE contour the label lives
on, so EPE there is approximate and segmental Ecc the headline; configs/lamod_dense.py:cine).

Phases (one optimiser, `lamod_jax.phases`): steps 1..pretrain.steps train (E_R, D_R) on
the training split's mask sequences, and with config.pretrain.extra_folders also on the
input masks of those folders (labels never read: the paper trains registration on all
cine and DENSE videos, §4.1; `pretrain_sequences`), by
  l_reg = mean over pairs of [½⟨Lv0, v0⟩ + 1/(2σ²)‖I⁰∘φ₁⁻¹ − I^τ‖²] / (H_r W_r)   (Eq. 1),
with φ₁⁻¹ from EPDiff shooting (Eqs. 2–3, lamod_jax.registration.energy_terms; on the full
grid, or in FLASH's Fourier band with config.registration.form='flash' and band_limit set,
lamod_jax.flash); later steps train ε_θ, D_η and the baseline on
  l = ‖ε' − ε_θ(z^(m), m)‖² (Eq. 9, ε' = K(ε)) + α·l_motion(D_η(ẑ0), Φ) (Eq. 10) + l_baseline,
z = E_R(pairs) frozen, l_motion = Σ mask‖Δu‖² / Σ mask. ẑ0 is `diffusion.training`:
'x0' = (z^(m) − √(1−ᾱ_m)ε̂)/√ᾱ_m from the one ε_θ call (gradients reach ε_θ), or
'paper_code' = the published shortcut: the reverse chain from M−1 reusing that one ε̂.
Inference (Alg. 1): z^(M) = √ᾱ_M z + √(1−ᾱ_M)K(ε), reverse chain with `sampling.sampler`
('ddim', 'ddpm' or 'paper_code'), Φ̂ = D_η(ẑ0), K samples averaged. Every noise draw of a
case comes from fold_in(key, case index in the split) (`per_case_noise`), so a case's
prediction does not depend on the other cases of its batch, on eval_batch_size, or on
how the cases are split over the devices: `predict` pads each evaluation batch to a
multiple of the mesh size and splits its cases over the mesh (evaluation.sharded).

Final evaluation (`final=True`) with config.diagnosis.enabled adds, per split, the
diagnosis groups (`Diagnosis.groups`, scored as the methods by `score`): clean_latent
= D_η(z) (no diffusion), lamod_<sampler> per config.diagnosis.samplers (the `lamod`
estimator with another chain), lamod_start<m> per config.diagnosis.start_steps (the
`lamod` estimator with its chain started at z^(m+1)), lamod_mean<N> / lamod_one (N samples
averaged / one sample with sampling.sampler), and params/{lamod,registration,regression} counts
(`param_counts`). config.pretrain.baseline trains the regression baseline from step 1
(an equal training budget: num_steps steps, as LaMoD's networks together).

config.model.dtype: computation dtype of the networks ('float32', or 'bfloat16' on
accelerators); parameters, gradients and optimiser state stay float32, and losses,
EPDiff shooting, strain and metrics run in float32 (lamod_jax.networks).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cardiac_data import dense
from cardiac_data import sources as sources_lib
from diffusion import losses as diffusion_losses
from diffusion import noise as noise_lib
from diffusion import samplers
from diffusion import schedule as schedule_lib
from evaluation import sharded
from lamod_jax import epdiff
from lamod_jax import networks
from lamod_jax import phases
from lamod_jax import registration as registration_lib
from lamod_jax import strain
from lamod_jax.metric import Metric

METHODS = ("lamod", "registration", "regression")
SCORES = ("epe", "segmental_ecc_mae", "global_peak_ecc_error")
#: Networks counted in params/<name>: LaMoD's prediction path (E_R, ε_θ, D_η; D_R only
#: trains E_R), the registration net (E_R, D_R) and the regression baseline.
PARAM_GROUPS = {"lamod": ("reg_encoder", "eps_net", "motion_decoder"),
                "registration": ("reg_encoder", "reg_decoder"),
                "regression": ("baseline",)}
DTYPES = ("float32", "bfloat16")
TRAINING_MODES = ("x0", "paper_code")
#: config.data.strain_mask: where predicted displacements are strained and segmented.
STRAIN_MASKS = ("label", "input")
SAMPLERS = ("ddim", "ddpm", "paper_code")


def resize_masks(masks, size: int) -> np.ndarray:
  """(..., H, W) {0,1} → (..., size, size) float32, bilinear with antialiasing."""
  masks = jnp.asarray(masks, jnp.float32)
  return np.asarray(jax.image.resize(masks, masks.shape[:-2] + (size, size), "linear"))


def to_dense_grid(u, size: tuple[int, int]):
  """Displacement (..., 2, h, w) in pixels of an h×w grid → (..., 2, H, W) in DENSE pixels
  (bilinear, half-pixel centres as `resize_masks`, so both grids cover the same field)."""
  h, w = u.shape[-2:]
  out = jax.image.resize(u, u.shape[:-2] + tuple(size), "linear")
  scale = jnp.array([size[1] / w, size[0] / h], u.dtype).reshape((2, 1, 1))
  return out * scale


def registration_config(r, reg_size: int) -> registration_lib.RegistrationConfig:
  """config.registration → RegistrationConfig. `band_limit` (None = off) band-limits K; with
  form='flash' the shooting runs in that Fourier band (lamod_jax.flash) and needs it set."""
  band_limit = r.get("band_limit")
  if band_limit is not None and not 1 <= int(band_limit) < reg_size / 2:
    raise ValueError(f"config.registration.band_limit={band_limit} must be in [1, "
                     f"data.reg_size/2 = {reg_size / 2:g}) (modes |k| <= band_limit per axis)")
  if r.form == "flash" and band_limit is None:
    raise ValueError("config.registration.form='flash' needs config.registration.band_limit "
                     "(the Fourier modes |k| <= band_limit kept per axis, e.g. 7)")
  return registration_lib.RegistrationConfig(
      metric=Metric(alpha=r.alpha, gamma=r.gamma, s=r.s,
                    band_limit=None if band_limit is None else int(band_limit)),
      sigma=r.sigma, n_steps=r.n_steps, integrator=r.integrator, form=r.form)


def check_grid(reg_size: int, reg_widths, eps_widths) -> None:
  """E_R pools the registration grid by 2 per `reg_widths` entry and D_R upsamples it
  back, so reg_size must be divisible by 2^len(reg_widths); ε_θ pools that latent grid
  len(eps_widths) − 1 more times, so it must keep at least one pixel."""
  levels = len(reg_widths)
  cell = reg_size // 2 ** levels
  if reg_size % 2 ** levels or cell < 2 ** (len(eps_widths) - 1):
    raise ValueError(
        f"config.data.reg_size={reg_size} must be a multiple of 2^len(model.reg_widths) = "
        f"{2 ** levels} (E_R pools, D_R upsamples by 2 per width), with a latent grid "
        f"reg_size/{2 ** levels} of at least 2^(len(model.eps_widths) − 1) = "
        f"{2 ** (len(eps_widths) - 1)} pixels")


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  """config.diagnosis, checked: the groups a final evaluation adds (`groups`).
  `num_samples` N ≥ 2 of lamod_mean<N>; `samplers`: each gives lamod_<name>;
  `start_steps`: each m gives lamod_start<m> (the chain started at z^(m+1) of Eq. 6;
  checked against the schedule by LaMoDTask)."""
  enabled: bool = False
  num_samples: int = 8
  samplers: tuple[str, ...] = ()
  start_steps: tuple[int, ...] = ()

  @classmethod
  def from_config(cls, config) -> "Diagnosis":
    d = config.get("diagnosis")
    if d is None:              # A config that predates the block: no diagnosis.
      return cls()
    samplers = tuple(d.samplers)
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad or len(set(samplers)) != len(samplers):
      raise ValueError(f"config.diagnosis.samplers={samplers}: distinct names of {SAMPLERS}")
    if int(d.num_samples) < 2:
      raise ValueError(f"config.diagnosis.num_samples={d.num_samples} must be ≥ 2 (the "
                       "mean of N samples; one sample is lamod_one)")
    starts = tuple(int(m) for m in d.get("start_steps", ()))
    if len(set(starts)) != len(starts) or any(m < 0 for m in starts):
      raise ValueError(f"config.diagnosis.start_steps={starts}: distinct steps m ≥ 0")
    return cls(bool(d.enabled), int(d.num_samples), samplers, starts)

  def groups(self) -> tuple[str, ...]:
    """Prediction groups, in table order: clean_latent, lamod_<sampler>…,
    lamod_start<m>…, lamod_mean<N>, lamod_one (none when disabled)."""
    if not self.enabled:
      return ()
    return ("clean_latent", *(f"lamod_{s}" for s in self.samplers),
            *(f"lamod_start{m}" for m in self.start_steps),
            f"lamod_mean{self.num_samples}", "lamod_one")


def param_counts(params) -> dict:
  """params/<name>: the number of parameters of the networks PARAM_GROUPS[name] (ints)."""
  tree = params["params"]

  def size(module):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree[module]))

  return {f"params/{name}": sum(size(m) for m in modules)
          for name, modules in PARAM_GROUPS.items()}


def load_split(folders, frames: int, reg_size: int, rv: dict) -> dict:
  """Arrays of the sample `folders` of one split: masks (N, F, H, W), reg (N, F, r, r),
  disp (N, F−1, 2, H, W), support (N, H, W) (the label's nonzero support, else the
  frame-0 mask), rv (N,) rad (NaN: no RV insertion angle for that sample, see
  `LaMoDTask.segmental`). Each sample's `frames` frames are `dense.frame_indices` of its own
  frame count (samples and splits may differ: DENSE 40, cine 25; a shorter sequence
  repeats its nearest frames, logged); frame 0 (the reference of every pair and of the
  Lagrangian label) is always the first."""
  out = {k: [] for k in ("masks", "disp", "support", "rv")}
  ids, short = [], 0
  for folder in folders:
    s = dense.read_sample(folder)
    idx = dense.frame_indices(s.mask.shape[0], frames)
    short += int(s.mask.shape[0] < frames)
    support = np.any(s.displacement != 0, axis=(0, 1))
    out["masks"].append(s.mask[idx].astype(np.float32))
    out["disp"].append(s.displacement[idx[1:]])
    out["support"].append((support if support.any() else s.mask[0] > 0).astype(np.float32))
    out["rv"].append(math.radians(rv[s.id]) if s.id in rv else math.nan)
    ids.append(s.id)
  arrays = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
  arrays["reg"] = resize_masks(arrays["masks"], reg_size)
  arrays["ids"] = ids
  if short:
    logging.info("LaMoD: %d of %d samples in %s have fewer than data.frames=%d frames: "
                 "resampled by repeating the nearest frames", short, len(ids),
                 folders[0].parent, frames)
  return arrays


def pretrain_sequences(root, train_folders, extra_folders, frames: int,
                       reg_size: int) -> np.ndarray:
  """Registration-grid sequences (N, F, r, r) of the input masks in ROOT/data/<name>/ for
  each name in `extra_folders` (config.pretrain.extra_folders), sample folders already in
  `train_folders` or listed twice left out. Only input.mat is read (label.mat may be
  absent); each sequence keeps `frames` frames as the training split's (frame 0 first)
  and is resized from its own grid to `reg_size`."""
  seen = {pathlib.Path(f).resolve() for f in train_folders}
  out = []
  for name in extra_folders:
    if not name:
      raise ValueError(f"config.pretrain.extra_folders: empty folder name in {extra_folders}")
    for folder in dense.split_folders(root, name):
      if folder.resolve() in seen:
        continue
      seen.add(folder.resolve())
      mask = dense.read_mask(folder)
      seq = mask[dense.frame_indices(mask.shape[0], frames)].astype(np.float32)
      out.append(resize_masks(seq, reg_size))
  if not out:
    return np.zeros((0, frames, reg_size, reg_size), np.float32)
  return np.stack(out)


def fast_key(key):
  """An 'rbg' key seeded from a (threefry) key: parameter init and training noise draws
  of this task use it because XLA:CPU compiles threefry for these shapes several times
  slower (30 s vs 9 s of CPU for the smoke model's init); deterministic in the loop's
  key. Not for per-case draws: `vmap` of an rbg draw over keys uses the first key
  only (jax's rng_bit_generator batching rule), so evaluation noise stays threefry."""
  data = jax.random.key_data(key).reshape(-1)[:2]
  return jax.random.wrap_key_data(jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)]),
                                  impl="rbg")


def per_case_noise(noise_fn, case_ids):
  """A noise_fn drawing element b of a (B, ...) state as noise_fn(fold_in(key,
  case_ids[b]), shape[1:]): a case's noise does not depend on the rest of its batch
  (`noise_fn` acts on one case: LaMoD's smoothing axes exclude the batch axis). Needs a
  threefry key (see `fast_key`)."""
  def noise(key, shape, dtype=jnp.float32):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(case_ids)
    return jax.vmap(lambda k: noise_fn(k, shape[1:], dtype))(keys)
  return noise


def pairs(seq):
  """(B, F, H, W) → (B, F−1, H, W, 2) channels (I⁰, I^τ)."""
  first = jnp.broadcast_to(seq[:, :1], seq[:, 1:].shape)
  return jnp.stack([first, seq[:, 1:]], axis=-1)


def masked_sq_error(u_pred, u_true, support):
  """Σ mask‖Δu‖² / Σ mask over (B, T) for fields (B, T, 2, H, W), mask (B, H, W)."""
  err = jnp.sum((u_pred - u_true) ** 2, axis=2)
  m = jnp.broadcast_to(support[:, None], err.shape)
  return jnp.sum(m * err) / jnp.maximum(jnp.sum(m), 1.0)


def _labels_with_baseline(params):
  """`phases.group_labels` with the regression baseline's leaves labelled 'baseline'."""
  def label(path, group):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return "baseline" if "baseline" in names else group
  return jax.tree_util.tree_map_with_path(label, phases.group_labels(params))


def _channels_first(u):
  return jnp.moveaxis(u, -1, 2)   # (B, T, H, W, 2) → (B, T, 2, H, W)


class LaMoDTask:
  """DENSE-supervised motion from masks: LaMoD and its two baselines."""

  def __init__(self, config, workdir: str, *, mesh=None, make_optimizer=None):
    """`make_optimizer(optim_cfg, num_steps)`: the loop's optimiser factory
    (`training.optim.make_optimizer`), used for both phases. `mesh`: the devices whose
    first axis the cases of an evaluation batch are split over (None: one device)."""
    self.mesh = mesh
    self.make_optimizer = make_optimizer
    self.config = config
    self.workdir = workdir
    d, m, df = config.data, config.model, config.diffusion
    self.strain_mask = d.get("strain_mask", "label")
    if self.strain_mask not in STRAIN_MASKS:
      raise ValueError(f"config.data.strain_mask: {self.strain_mask!r} is not one of "
                       f"{STRAIN_MASKS}")
    self.root = sources_lib.dataset_root(d)
    self.ground_truth = dense.read_ground_truth(self.root, required=False)
    rv = {k: v["rv_insertion_deg"] for k, v in self.ground_truth.items()}
    folders = dense.role_folders(self.root, dict(d.split_folders), val_fraction=d.val_fraction,
                                 seed=d.split_seed)
    self.data = {s: load_split(folders[s], d.frames, d.reg_size, rv)
                 for s in ("train", "val", "test")}
    # Registration pre-training's sequences: the training split's, then the extra folders'.
    extra = tuple(config.pretrain.get("extra_folders", ()))
    extra_reg = pretrain_sequences(self.root, folders["train"], extra, d.frames, d.reg_size)
    self.pretrain_reg = np.concatenate([self.data["train"]["reg"], extra_reg])
    if extra:
      logging.info("LaMoD registration pre-training: %d training + %d unlabelled sequences "
                   "from data/{%s} (config.pretrain.extra_folders)",
                   len(self.data["train"]["ids"]), len(extra_reg), ",".join(extra))
    for s, arr in self.data.items():
      no_rv = int(np.isnan(arr["rv"]).sum())
      logging.info("LaMoD %s: %d samples, %d frames%s", s, len(arr["ids"]), d.frames,
                   f"; {no_rv} without an RV insertion angle (global strain only)"
                   if no_rv else "")
    self.dense_size = tuple(self.data["train"]["masks"].shape[-2:])
    for arr in self.data.values():   # (N, H, W): where predictions are strained (`score`).
      arr["strain_support"] = (arr["support"] if self.strain_mask == "label"
                               else (arr["masks"][:, 0] > 0).astype(np.float32))
    if m.latent_norm not in networks.LATENT_NORMS:
      raise ValueError(f"config.model.latent_norm: {m.latent_norm!r} is not one of "
                       f"{networks.LATENT_NORMS}")
    if m.dtype not in DTYPES:
      raise ValueError(f"config.model.dtype: {m.dtype!r} is not one of {DTYPES}")
    self.model = networks.LaMoD(
        reg_widths=tuple(m.reg_widths), latent=m.latent, eps_widths=tuple(m.eps_widths),
        step_dim=m.step_dim, decoder_widths=tuple(m.decoder_widths),
        baseline_widths=tuple(m.baseline_widths), dense_size=self.dense_size,
        latent_norm=m.latent_norm, baseline_pool=m.baseline_pool,
        dtype=jnp.dtype(m.dtype))
    check_grid(int(d.reg_size), m.reg_widths, m.eps_widths)
    self.reg_cfg = registration_config(config.registration, int(d.reg_size))
    self.schedule = schedule_lib.VPSchedule.from_config(df)
    self.noise_fn = noise_lib.smoothed_noise(df.noise_size, df.noise_sigma,
                                             unit_variance=df.unit_variance)
    if df.training not in TRAINING_MODES:
      raise ValueError(f"config.diffusion.training: {df.training!r} is not one of "
                       f"{TRAINING_MODES}")
    if config.sampling.sampler not in SAMPLERS:
      raise ValueError(f"config.sampling.sampler: {config.sampling.sampler!r} is not one "
                       f"of {SAMPLERS}")
    self.diagnosis = Diagnosis.from_config(config)
    for field, steps in (("sampling.start_step", (self.start_step(),)),
                         ("diagnosis.start_steps", self.diagnosis.start_steps)):
      if any(not 0 <= m < self.schedule.num_steps for m in steps):
        raise ValueError(f"config.{field}: {steps} outside 0..{self.schedule.num_steps - 1} "
                         f"(diffusion.num_steps = {self.schedule.num_steps})")
    self.pretrain_baseline = bool(config.pretrain.get("baseline", False))
    self.pretrain_steps = int(config.pretrain.steps)
    if not 0 <= self.pretrain_steps < config.num_steps:
      raise ValueError(f"config.pretrain.steps must be in [0, num_steps={config.num_steps}), "
                       f"got {self.pretrain_steps}")
    self._eval_fns = {}
    self._true_ecc = {}
    self._segmental = jax.jit(jax.vmap(strain.segmental_ecc))

  # -- Loop interface --------------------------------------------------------------

  def example_batch(self):
    return self._batch("train", np.arange(2), phase=1)

  def init(self, rng, batch):
    return self.model.init(fast_key(rng), pairs(batch["reg"]), pairs(batch["masks"]))

  def optimizer(self, num_steps: int) -> optax.GradientTransformation:
    """config.pretrain.optim (Adam) for the registration phase, config.optim (AdamW 1e-4,
    wd 1e-4 in the paper) for the joint phase, gated by step (`lamod_jax.phases`)."""
    if self.make_optimizer is None:
      raise ValueError("LaMoDTask needs make_optimizer (training.tasks.make_task passes it)")
    reg_tx = self.make_optimizer(self.config.pretrain.optim, max(self.pretrain_steps, 1))
    joint_tx = self.make_optimizer(self.config.optim, num_steps - self.pretrain_steps)
    freeze = self.config.pretrain.freeze
    if not self.pretrain_baseline:
      return phases.two_phase(reg_tx, joint_tx, self.pretrain_steps, freeze)
    # config.pretrain.baseline: the baseline is its own group, config.optim over all
    # num_steps from step 1 (an equal training budget); the other two groups as two_phase.
    baseline_tx = self.make_optimizer(self.config.optim, num_steps)
    return optax.multi_transform(
        {"registration": phases.phase_gate(reg_tx, 0, self.pretrain_steps if freeze else None),
         "joint": phases.phase_gate(joint_tx, self.pretrain_steps),
         "baseline": baseline_tx}, _labels_with_baseline)

  def _batch(self, split, idx, phase):
    """Phase 1: the registration grid's sequences `reg` (and with pretrain.baseline the
    baseline's masks, support and labels, the labels as `baseline_disp`: `loss` tells the
    phases apart by `disp`); phase 2: reg, masks, disp, support."""
    arr = self.data[split]
    batch = {"reg": arr["reg"][idx]}
    if phase or self.pretrain_baseline:
      batch.update(masks=arr["masks"][idx], support=arr["support"][idx])
      batch["disp" if phase else "baseline_disp"] = arr["disp"][idx]
    return batch

  def train_batches(self, start_step: int):
    """Global batches of training samples, drawn by a generator seeded with (seed, step);
    this process gets its block (`sharded.host_block`). With pretrain.extra_folders the
    registration phase draws its sequences from `pretrain_reg` (training + extra) by a
    second draw (the baseline of pretrain.baseline keeps the labelled training samples)."""
    n = len(self.data["train"]["ids"])
    n_pool = len(self.pretrain_reg)
    bs = self.config.data.batch_size
    step = start_step
    while True:
      step += 1
      rng = np.random.default_rng([self.config.seed, step])
      idx = rng.choice(n, size=bs, replace=n < bs)       # the global batch
      phase = int(step > self.pretrain_steps)
      batch = self._batch("train", sharded.host_block(idx), phase=phase)
      if not phase and n_pool > n:
        reg_idx = rng.choice(n_pool, size=bs, replace=n_pool < bs)
        batch["reg"] = self.pretrain_reg[sharded.host_block(reg_idx)]
      yield batch

  def registration(self, params, reg_seq):
    """(z, v0 (B, F−1, 2, r, r)) of E_R and D_R for mask sequences (B, F, r, r)."""
    z = self.model.apply(params, pairs(reg_seq), method=networks.LaMoD.encode)
    return z, _channels_first(self.model.apply(params, z, method=networks.LaMoD.velocity))

  def registration_terms_per_device(self, params, reg_seq):
    """`registration_terms` of a global batch; on several devices a `shard_map` over the
    mesh's first axis, each device on its rows (GSPMD partitioning of the EPDiff FFTs
    hits an XLA:CPU layout RET_CHECK in fft_thunk; the per-row terms are independent, so
    the result is the same). Gradients to the replicated params are summed over the
    devices by shard_map's transpose."""
    if self._devices() == 1:
      return self.registration_terms(params, reg_seq)
    cases = sharded.case_sharding(self.mesh).spec
    rep = sharded.replicated(self.mesh).spec
    return jax.shard_map(self.registration_terms, mesh=self.mesh, in_specs=(rep, cases),
                         out_specs=cases)(params, reg_seq)

  def registration_terms(self, params, reg_seq):
    """Per pair ½⟨Lv0, v0⟩ and 1/(2σ²)‖I⁰∘φ₁⁻¹ − I^τ‖², each (B, F−1)."""
    _, v0 = self.registration(params, reg_seq)
    return jax.vmap(jax.vmap(functools.partial(registration_lib.energy_terms,
                                               config=self.reg_cfg),
                             in_axes=(0, None, 0)))(v0, reg_seq[:, 0], reg_seq[:, 1:])

  def loss(self, params, batch, rng):
    zero = jnp.zeros(())
    metrics = dict(reg_regularity=zero, reg_data=zero, diffusion_loss=zero, motion_loss=zero,
                   regression_loss=zero)
    if "disp" not in batch:   # Phase 1: registration pre-training (Eq. 1 per pair).
      reg, data = self.registration_terms_per_device(params, batch["reg"])
      npix = batch["reg"].shape[-1] * batch["reg"].shape[-2]
      metrics.update(reg_regularity=jnp.mean(reg) / npix, reg_data=jnp.mean(data) / npix)
      total = metrics["reg_regularity"] + metrics["reg_data"]
      if "baseline_disp" in batch:    # config.pretrain.baseline
        metrics["regression_loss"] = self.regression_loss(params, batch["masks"],
                                                          batch["baseline_disp"],
                                                          batch["support"])
        total = total + metrics["regression_loss"]
      return total, metrics
    z = self.model.apply(params, pairs(batch["reg"]), method=networks.LaMoD.encode)
    if self.config.pretrain.freeze:
      z = jax.lax.stop_gradient(z)
    rng = fast_key(rng)
    eps_fn = functools.partial(self.model.apply, params, method=networks.LaMoD.eps)
    t, noise, z_t, eps = diffusion_losses.eps_prediction(self.schedule, eps_fn, z, rng,
                                                         noise_fn=self.noise_fn)
    l_diff = jnp.mean((eps - noise) ** 2)
    if self.config.diffusion.training == "x0":
      z_hat = diffusion_losses.predict_x0(self.schedule, z_t, t, eps)
    else:   # The published shortcut: one ε̂ reused over the whole reverse chain.
      z_hat, _ = samplers.ddpm_sample(lambda y, s: eps, self.schedule,
                                      jax.random.fold_in(rng, 1), z.shape,
                                      noise_fn=self.noise_fn, y_start=z_t,
                                      t_start=self.schedule.num_steps - 1)
    u = _channels_first(self.model.apply(params, z_hat, method=networks.LaMoD.motion))
    l_motion = masked_sq_error(u, batch["disp"], batch["support"])
    l_base = self.regression_loss(params, batch["masks"], batch["disp"], batch["support"])
    metrics.update(diffusion_loss=l_diff, motion_loss=l_motion, regression_loss=l_base)
    return l_diff + self.config.diffusion.motion_weight * l_motion + l_base, metrics

  def regress(self, params, masks):
    """The regression baseline: masks (B, F, H, W) on the DENSE grid → displacement
    (B, F−1, 2, H, W)."""
    return _channels_first(self.model.apply(params, pairs(masks), method=networks.LaMoD.regress))

  def regression_loss(self, params, masks, disp, support):
    """l_baseline: masked squared error of the regression UNet on the DENSE-grid masks."""
    return masked_sq_error(self.regress(params, masks), disp, support)

  # -- Inference -------------------------------------------------------------------

  def start_step(self) -> int:
    """sampling.start_step, the chain's first index M − 1 (−1: T − 1, Alg. 1's M = T)."""
    s = int(self.config.sampling.start_step)
    return self.schedule.num_steps - 1 if s < 0 else s

  def sample_latent(self, params, z, key, case_ids=None, sampler: str | None = None,
                    start: int | None = None):
    """ẑ0 from the registration latent z (Alg. 1): noise to `start` (None: sampling's,
    `start_step`), then the reverse chain `sampler` (None: sampling.sampler; 'ddpm' is
    the ancestral chain of Eq. 8 with the smoothed noise σ_m K(γ)). `case_ids` (B,):
    each case's noise is keyed by its id (`per_case_noise`); None = 0..B−1."""
    s = self.config.sampling
    m = self.start_step() if start is None else int(start)
    if case_ids is None:
      case_ids = jnp.arange(z.shape[0])
    noise_fn = per_case_noise(self.noise_fn, jnp.asarray(case_ids, jnp.int32))
    k_noise, k_chain = jax.random.split(key)
    t = jnp.full((z.shape[0],), m)
    z_m = diffusion_losses.q_sample(self.schedule, z, t, noise_fn(k_noise, z.shape, z.dtype))
    eps_fn = lambda y, step: self.model.apply(  # noqa: E731
        params, y, jnp.broadcast_to(step, (y.shape[0],)), method=networks.LaMoD.eps)
    cfg = samplers.SamplerConfig(sampler or s.sampler, steps=min(s.steps, m + 1), eta=s.eta,
                                 t_start=m)
    out, _ = samplers.get_sampler(cfg)(eps_fn, self.schedule, k_chain, z.shape,
                                       noise_fn=noise_fn, y_start=z_m)
    return out

  def decode(self, params, z):
    """D_η: latent (B, F−1, h, w, C) → displacement (B, F−1, 2, H, W) on the DENSE grid."""
    return _channels_first(self.model.apply(params, z, method=networks.LaMoD.motion))

  def lamod_samples(self, params, z, key, case_ids, sampler: str, n: int,
                    start: int | None = None):
    """(n, B, F−1, 2, H, W): D_η(ẑ0) of samples k = 0..n−1 by `sampler` from `start`,
    sample k drawn with fold_in(key, k) (`sample_latent`); a `lax.map` over k (one chain
    compiled)."""
    def one(k):
      return self.decode(params, self.sample_latent(params, z, jax.random.fold_in(key, k),
                                                    case_ids, sampler, start))
    return jax.lax.map(one, jnp.arange(n))

  def predict_batch(self, params, reg_seq, mask_seq, case_ids, key, num_samples: int,
                    diagnosis: bool = False):
    """Displacements (B, F−1, 2, H, W) on the DENSE grid: LaMoD (the mean of
    `num_samples` samples of sampling.sampler), registration, regression; with
    `diagnosis` also the groups of `Diagnosis.groups` (D_η of the clean latent z;
    `num_samples` samples of each diagnosis sampler; the mean of diagnosis.num_samples
    and one sample of sampling.sampler). Sample k of every sampler is drawn with
    fold_in(key, k), so samplers share their starts z^(M) and lamod_one is sample 0 of
    `lamod`. `case_ids` (B,) key each case's noise. Pure and jit-able (`predict` jits
    it, with the cases split over the mesh)."""
    z, v0 = self.registration(params, reg_seq)
    u_reg = jax.vmap(jax.vmap(lambda v: epdiff.displacement(registration_lib.end_maps(
        v, self.reg_cfg, want_phi=True)[1])))(v0)          # u = φ₁ − id, Lagrangian
    u_reg = to_dense_grid(u_reg, self.dense_size)
    u_b = self.regress(params, mask_seq)
    sampler = self.config.sampling.sampler
    diag = self.diagnosis
    n = max(num_samples, diag.num_samples) if diagnosis else num_samples
    us = self.lamod_samples(params, z, key, case_ids, sampler, n)
    out = {"lamod": jnp.mean(us[:num_samples], axis=0), "registration": u_reg,
           "regression": u_b}
    if diagnosis:
      out["clean_latent"] = self.decode(params, z)
      for name in diag.samplers:
        out[f"lamod_{name}"] = out["lamod"] if name == sampler else jnp.mean(
            self.lamod_samples(params, z, key, case_ids, name, num_samples), axis=0)
      for m in diag.start_steps:
        out[f"lamod_start{m}"] = out["lamod"] if m == self.start_step() else jnp.mean(
            self.lamod_samples(params, z, key, case_ids, sampler, num_samples, m), axis=0)
      out[f"lamod_mean{diag.num_samples}"] = jnp.mean(us[:diag.num_samples], axis=0)
      out["lamod_one"] = us[0]
    return out

  def _devices(self) -> int:
    """Devices an evaluation batch's cases are split over (the mesh's first axis)."""
    return 1 if self.mesh is None else int(self.mesh.shape[self.mesh.axis_names[0]])

  def predict_fn(self, num_samples: int, diagnosis: bool = False):
    """jit of `predict_batch`; on several devices a `shard_map` over the mesh's first
    axis: each device runs it on its block of cases (the one-device program: GSPMD
    partitioning of the EPDiff FFTs hits an XLA:CPU layout RET_CHECK in fft_thunk),
    the outputs gathered to every device (readable on every process)."""
    cache_key = (num_samples, diagnosis)
    if cache_key not in self._eval_fns:
      fn = functools.partial(self.predict_batch, num_samples=num_samples, diagnosis=diagnosis)
      if self._devices() == 1:
        self._eval_fns[cache_key] = jax.jit(fn)
      else:
        cases = sharded.case_sharding(self.mesh).spec
        rep_spec = sharded.replicated(self.mesh).spec
        body = jax.shard_map(fn, mesh=self.mesh,
                             in_specs=(rep_spec, cases, cases, cases, rep_spec),
                             out_specs=cases)
        self._eval_fns[cache_key] = jax.jit(body,
                                            out_shardings=sharded.replicated(self.mesh))
    return self._eval_fns[cache_key]

  def predict(self, params, split: str, rng, num_samples: int | None = None,
              diagnosis: bool = False) -> dict:
    """Per method (and with `diagnosis` per diagnosis group), displacements
    (N, F−1, 2, H, W) for `split` (numpy).

    Each batch of config.data.eval_batch_size cases is padded (repeating its last case)
    to a multiple of the mesh's device count, its cases split over the mesh, and the
    padding dropped; noise is keyed by (rng, case index in the split), so the result is
    the one-device result whatever the device count and batch size."""
    arr = self.data[split]
    k = int(num_samples or self.config.sampling.num_samples)
    bs = self.config.data.eval_batch_size
    n_dev = self._devices()
    if n_dev > 1:
      params = jax.device_put(params, sharded.replicated(self.mesh))
    outs = {}
    for i in range(0, len(arr["ids"]), bs):
      sl = slice(i, i + bs)
      batch = {"reg": arr["reg"][sl], "masks": arr["masks"][sl],
               "case_ids": np.arange(i, min(i + bs, len(arr["ids"])), dtype=np.int32)}
      batch, b = sharded.pad_to_multiple(batch, n_dev)
      if n_dev > 1:
        batch = sharded.shard_cases(batch, self.mesh)
      res = self.predict_fn(k, diagnosis)(params, batch["reg"], batch["masks"],
                                          batch["case_ids"], rng)
      for m, u in res.items():
        outs.setdefault(m, []).append(np.asarray(u)[:b])
    return {m: np.concatenate(v) for m, v in outs.items()}

  def true_ecc(self, split: str) -> np.ndarray:
    """Segmental Ecc (N, F−1, 6) of the DENSE labels (same pixel-strain pipeline)."""
    if split not in self._true_ecc:
      arr = self.data[split]
      self._true_ecc[split] = self.segmental(arr["disp"], split)
    return self._true_ecc[split]

  def segmental(self, disp, split: str, support=None) -> np.ndarray:
    """Segmental Ecc (N, F−1, 6) of displacements on `support` (N, H, W; default the
    label's support). A sample without an RV insertion angle is divided from
    angle 0: its segment means still average to its global Ecc (global peak Ecc error),
    but its segmental errors are NaN in `score` (skipped, counted)."""
    arr = self.data[split]
    rv = np.nan_to_num(arr["rv"], nan=0.0)
    support = arr["support"] if support is None else support
    return np.asarray(self._segmental(jnp.asarray(disp), jnp.asarray(support),
                                      jnp.asarray(rv)))

  def score(self, u, split: str) -> tuple[dict, np.ndarray]:
    """The scores (SCORES) of displacements u (N, F−1, 2, H, W) against `split`'s DENSE
    labels, and u's segmental Ecc (N, F−1, 6): EPE over the label support; segmental Ecc
    MAE over the samples with an RV insertion angle (NaN if none); global peak Ecc error.
    u's strain is taken on config.data.strain_mask's mask (`strain_support`), the truth's
    on the label support. Every method and diagnosis group is scored by this one function."""
    arr = self.data[split]
    epe = float(strain.end_point_error(u, arr["disp"], arr["support"][:, None]))
    dom = arr["strain_support"]
    seg = self.segmental(u * dom[:, None, None], split, dom)
    errs = jax.vmap(strain.strain_errors)(jnp.asarray(seg), jnp.asarray(self.true_ecc(split)))
    seg_mae = np.asarray(errs["segmental_ecc_mae"])[~np.isnan(arr["rv"])]
    return {"epe": epe,
            "segmental_ecc_mae": float(np.nanmean(seg_mae)) if seg_mae.size else math.nan,
            "global_peak_ecc_error": float(np.nanmean(errs["global_peak_ecc_error"]))}, seg

  def evaluate(self, params, rng, split, *, final, workdir):
    """Scores of the three methods on `split`; a final evaluation with
    config.diagnosis.enabled also scores the diagnosis groups and adds the parameter
    counts (`param_counts`)."""
    arr = self.data[split]
    diagnosis = bool(final and self.diagnosis.enabled)
    preds = self.predict(params, split, rng, diagnosis=diagnosis)
    out, curves = {}, {}
    for m in (*METHODS, *(self.diagnosis.groups() if diagnosis else ())):
      scores, curves[m] = self.score(preds[m], split)
      out.update({f"{m}/{k}": v for k, v in scores.items()})
    out["segmental_skipped_no_rv"] = int(np.isnan(arr["rv"]).sum())
    if diagnosis:
      out.update(param_counts(params))
    if final:
      from lamod_jax import reports  # pylint: disable=g-import-not-at-top
      reports.write_plots(os.path.join(workdir, "plots"), split, arr,
                          {m: preds[m] for m in METHODS}, {m: curves[m] for m in METHODS},
                          self.true_ecc(split), out, self._patterns(split),
                          diagnosis=self.diagnosis.groups() if diagnosis else ())
    return out

  def _patterns(self, split: str) -> list[str]:
    return [self.ground_truth.get(i, {}).get("pattern", "") for i in self.data[split]["ids"]]

  def meta(self):
    return {"frames": int(self.config.data.frames), "reg_size": int(self.config.data.reg_size),
            "dense_size": list(self.dense_size), "pretrain_steps": self.pretrain_steps}
