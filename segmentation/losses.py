"""Partial-label segmentation losses (Islam et al., MELBA 2026, §4.5, Eqs. 1–5).

Every loss takes (logits (B, H, W, C), labels int (B, H, W), label_sets bool (B, C))
with bg always in the set and every label inside its sample's set (`labels.withhold`).
p = softmax(z), S = the sample's label set, A = its absent classes. Reduction: the
mean over all pixels of the batch (PyTorch / nnU-Net), unless stated.

  cce       Eq. 1: −log p_y.
  acce      Eq. 2, readings (the printed equation is ambiguous):
              'normaliser' (R2, default): −log(e^{z_y} / Σ_{c∈S} e^{z_c}), the softmax
                restricted to S, so absent classes get no gradient;
              'literal' (R1): Eq. 2 as printed with one-hot y; dropping the absent
                terms changes nothing (y_n = 0 there), so it equals CCE;
              'structures' (R1′): −log p_y over pixels labelled with a structure in
                L_k only (bg pixels carry no loss), mean over those pixels.
  marginal  Eqs. 3–4 (Shi et al. 2021), forms:
              'paper' (default): q_bg = p_bg + Σ_{c∈A} p_c, −log q on bg pixels,
                computed as logsumexp(z) − logsumexp(z[{bg} ∪ A]);
              'logit' (Shi's and PLS4MIS's code): z'_bg = z_bg + Σ_{c∈A} z_c, absent
                channels dropped, then CCE over S.
  abce      Eq. 5 (Petit et al. 2018), per-class sigmoid BCE, readings:
              'present' (default, the paper's text): foreground classes in S, mean
                over pixels × |S_fg| (summed over the batch);
              'present_bg': the same with the background channel added;
              'ambiguity' (Petit's map): every foreground class; for an absent class
                only pixels of annotated structures count (certain negatives), bg
                pixels are ignored; mean over the counted (pixel, class) pairs.
              Inference uses softmax (same argmax as the sigmoids' ranking of logits).
  dice      optional soft Dice term, 1 − mean over (sample, foreground class in S) of
            (2Σpg + s)/(Σp + Σg + s), s = 1e-5 (MONAI form), p = softmax.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("cce", "acce", "marginal", "abce")
ACCE_READINGS = ("normaliser", "literal", "structures")
MARGINAL_FORMS = ("paper", "logit")
ABCE_READINGS = ("present", "present_bg", "ambiguity")
DICE_SMOOTH = 1e-5


def _take(x, labels):
  return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


def _masked_lse(logits, mask):
  """logsumexp over the channels where mask (broadcast to logits) is true."""
  return jax.nn.logsumexp(jnp.where(mask, logits, -jnp.inf), axis=-1)


def _sets(label_sets):
  return jnp.asarray(label_sets, bool)[:, None, None, :]


def cce(logits, labels, label_sets=None):
  """Eq. 1, mean over pixels."""
  del label_sets
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def acce(logits, labels, label_sets, reading: str = "normaliser"):
  """Eq. 2 in one of ACCE_READINGS (module docstring)."""
  if reading == "literal":
    return cce(logits, labels)
  if reading == "normaliser":
    nll = _masked_lse(logits, _sets(label_sets)) - _take(logits, labels)
    return jnp.mean(nll)
  if reading == "structures":
    nll = jax.nn.logsumexp(logits, axis=-1) - _take(logits, labels)
    w = (labels > 0).astype(nll.dtype)
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)
  raise ValueError(f"config.loss.acce_reading: {reading!r} is not one of {ACCE_READINGS}")


def marginal(logits, labels, label_sets, form: str = "paper"):
  """Eqs. 3–4 in one of MARGINAL_FORMS (module docstring)."""
  sets = _sets(label_sets)
  merged = (~sets).at[..., 0].set(True)                       # {bg} ∪ A
  if form == "paper":
    target = jnp.where(labels == 0, _masked_lse(logits, merged), _take(logits, labels))
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - target)
  if form == "logit":
    absent_sum = jnp.sum(jnp.where(sets, 0.0, logits), axis=-1)
    z = logits.at[..., 0].add(absent_sum)
    nll = _masked_lse(z, sets) - _take(z, labels)
    return jnp.mean(nll)
  raise ValueError(f"config.loss.marginal_form: {form!r} is not one of {MARGINAL_FORMS}")


def abce(logits, labels, label_sets, reading: str = "present"):
  """Eq. 5 in one of ABCE_READINGS (module docstring)."""
  c = logits.shape[-1]
  onehot = jax.nn.one_hot(labels, c, dtype=logits.dtype)
  bce = optax.sigmoid_binary_cross_entropy(logits, onehot)
  sets = jnp.broadcast_to(_sets(label_sets), logits.shape)
  if reading == "present":
    w = sets.at[..., 0].set(False)
  elif reading == "present_bg":
    w = sets
  elif reading == "ambiguity":
    structure_pixel = (labels > 0)[..., None]
    w = (sets | structure_pixel).at[..., 0].set(False)
  else:
    raise ValueError(f"config.loss.abce_reading: {reading!r} is not one of {ABCE_READINGS}")
  w = w.astype(logits.dtype)
  return jnp.sum(bce * w) / jnp.maximum(jnp.sum(w), 1.0)


def dice_loss(logits, labels, label_sets, smooth: float = DICE_SMOOTH):
  """Soft Dice over (sample, foreground class in S) pairs (module docstring)."""
  c = logits.shape[-1]
  p = jax.nn.softmax(logits, axis=-1)
  g = jax.nn.one_hot(labels, c, dtype=p.dtype)
  inter = jnp.sum(p * g, axis=(1, 2))
  denom = jnp.sum(p, axis=(1, 2)) + jnp.sum(g, axis=(1, 2))
  dice = (2.0 * inter + smooth) / (denom + smooth)              # (B, C)
  w = jnp.asarray(label_sets, bool).at[:, 0].set(False).astype(p.dtype)
  return 1.0 - jnp.sum(dice * w) / jnp.maximum(jnp.sum(w), 1.0)


def segmentation_loss(cfg, logits, labels, label_sets):
  """The loss named by `cfg.name` (LOSSES) with its reading, plus cfg.dice_weight × Dice."""
  name = cfg.name
  if name == "cce":
    value = cce(logits, labels)
  elif name == "acce":
    value = acce(logits, labels, label_sets, cfg.acce_reading)
  elif name == "marginal":
    value = marginal(logits, labels, label_sets, cfg.marginal_form)
  elif name == "abce":
    value = abce(logits, labels, label_sets, cfg.abce_reading)
  else:
    raise ValueError(f"config.loss.name: {name!r} is not one of {LOSSES}")
  if cfg.dice_weight:
    value = value + cfg.dice_weight * dice_loss(logits, labels, label_sets)
  return value
