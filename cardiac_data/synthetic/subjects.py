"""Synthetic subjects: body size, disease subgroup, EF, heart rate, acoustic window.

A subject is drawn before any geometry or rendering (`Subject`): age, sex,
height and weight from growth curves (children) or population draws (adults),
body surface area (Mosteller), a disease subgroup with its EF distribution, EDV
∝ BSA^1.25, heart rate, and a latent acoustic-window score that `quality_tier`
cuts into good / medium / poor.

Out-of-plane shortening (echo-4, pediatric only): ρ = 1 + 0.5·exp(−age / 2 y), 1
for adults. Motivation: in infancy the right ventricle is still pressure-loaded (the
fetal RV dominance regresses over the first years), which limits septal–lateral
excursion relative to anterior–inferior, so the A4C plane under-reads global
function: PlaneEF is ≈ 5.7 points below TrueEF before age 1, 3.2 at 1–3 y, 0.1
after 5 y. A clinical label measured with the short-axis area (e.g. the 5/6
area–length method of pediatric labs) sees both diameters; the label here is
TrueEF. This is the cohort's device by which age carries information that the clip
lacks, as the MCSDR paper finds demographics do on real data (R² 0.74 → 0.77, Table
II); its size is our choice, not a measurement. (How ρ enters the volumes:
`anatomy`.)

Label noise: a measured EF label = TrueEF + N(0, sd) with sd 2 / 3.5 / 6 points for
good / medium / poor quality (`label_noise`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

QUALITIES = ("good", "medium", "poor")
LABEL_NOISE_SD = {"good": 2.0, "medium": 3.5, "poor": 6.0}


def label_noise(true_ef, quality: str, rng: np.random.Generator):
  """Measured EF label = TrueEF + N(0, sd(quality)), clipped to [1, 99]."""
  sd = LABEL_NOISE_SD[quality]
  true_ef = np.asarray(true_ef, np.float64)
  label = np.clip(true_ef + sd * rng.standard_normal(true_ef.shape), 1.0, 99.0)
  return label, sd


def _interp_growth(age: float, table: Sequence[tuple[float, float]]) -> float:
  xs, ys = zip(*table)
  return float(np.interp(age, xs, ys))


# Rough median growth curves (CDC/WHO-like), age in years.
_HEIGHT_CM = {
    "M": ((0, 50), (0.5, 67), (1, 76), (2, 88), (5, 110), (10, 139), (14, 164), (18, 176)),
    "F": ((0, 49), (0.5, 65), (1, 74), (2, 86), (5, 109), (10, 138), (14, 160), (18, 163)),
}
_WEIGHT_KG = {
    "M": ((0, 3.4), (0.5, 7.9), (1, 10.2), (2, 12.7), (5, 18.7), (10, 32), (14, 51), (18, 69)),
    "F": ((0, 3.3), (0.5, 7.3), (1, 9.5), (2, 12.1), (5, 18.2), (10, 33), (14, 50), (18, 58)),
}


def mosteller_bsa(height_cm: float, weight_kg: float) -> float:
  """Body surface area (m²) = sqrt(height·weight/3600)."""
  return math.sqrt(height_cm * weight_kg / 3600.0)


@dataclasses.dataclass(frozen=True)
class Subject:
  """Per-subject truth drawn before any rendering."""
  age: float
  sex: str
  height: float
  weight: float
  subgroup: str
  true_ef: float
  edv_ml: float
  heart_rate: float
  quality_score: float   # latent acoustic-window score; tiers are cut from it.
  out_of_plane: float = 1.0   # ρ: out-of-plane / in-plane radial shortening.

  @property
  def bsa(self) -> float:
    """Body surface area (m², `mosteller_bsa`)."""
    return mosteller_bsa(self.height, self.weight)


def _draw_subgroup(rng, groups, default):
  """Picks a subgroup by its probability, then EF ~ N(mean, sd) clipped to [lo, hi].

  groups: ((name, probability, mean, sd, lo, hi), ...); default: (name, mean, sd,
  lo, hi) for the remaining probability.
  """
  u = rng.random()
  for name, p, mean, sd, lo, hi in groups:
    if u < p:
      return name, float(np.clip(rng.normal(mean, sd), lo, hi))
    u -= p
  name, mean, sd, lo, hi = default
  return name, float(np.clip(rng.normal(mean, sd), lo, hi))


def pediatric_subject(rng: np.random.Generator) -> Subject:
  """Child 0–18 y: growth-curve size, age/sex-dependent disease subgroup.

  The EF spread is matched to EchoNet-Pediatric as far as published figures pin it:
  the MCSDR paper's test RMSE and R² (5.59, 0.77, Table II; 5.55, 0.77, Table IV) imply
  a label SD of RMSE/√(1 − R²) ≈ 11.6 points; this draw gives mean ≈ 58, SD ≈ 11.7,
  23 % below 55 (a referral population). Generator echo-2 had half these disease
  prevalences and SD 8.8.
  """
  age = rng.uniform(0.0, 1.0) if rng.random() < 0.2 else rng.uniform(1.0, 18.0)
  sex = "M" if rng.random() < 0.54 else "F"
  z_h = rng.standard_normal()
  z_w = 0.6 * z_h + 0.8 * rng.standard_normal()
  height = _interp_growth(age, _HEIGHT_CM[sex]) * (1.0 + 0.04 * z_h)
  weight = _interp_growth(age, _WEIGHT_KG[sex]) * math.exp(0.14 * z_w)
  male = sex == "M"
  # Prevalences depend on age and sex (DCM peaks in infancy; cardiotoxicity after
  # chemotherapy rises with age; HCM in older boys).
  p_dcm = (0.18 if age < 1 else 0.07) * (1.3 if male else 0.8)
  p_tox = 0.008 * age
  p_hcm = (0.01 + 0.0015 * age) * (1.5 if male else 0.6)
  subgroup, ef = _draw_subgroup(rng, (
      ("dcm", p_dcm, 30, 8, 10, 45), ("cardiotoxicity", p_tox, 46, 5, 35, 55),
      ("hcm", p_hcm, 72, 5, 62, 88)), ("normal", 62, 5.0, 50, 78))
  bsa = mosteller_bsa(height, weight)
  edv = 55.0 * bsa**1.25 * math.exp(0.1 * rng.standard_normal())
  edv *= {"dcm": 1.0 + 0.02 * (55 - ef), "cardiotoxicity": 1.1, "hcm": 0.8}.get(subgroup, 1.0)
  hr = (72.0 + 60.0 * math.exp(-age / 5.0)) * math.exp(0.08 * rng.standard_normal())
  hr *= 1.1 if subgroup == "dcm" else 1.0
  bmi = weight / (height / 100.0)**2
  q = rng.standard_normal() + 0.1 * max(bmi - 22.0, 0.0)
  return Subject(age, sex, height, weight, subgroup, float(ef), edv, float(np.clip(hr, 55, 190)), q,
                 out_of_plane(age))


def out_of_plane(age: float) -> float:
  """ρ = 1 + 0.5·exp(−age / 2 y): infants' septal–lateral (A4C) shortening under-reads
  global function (module docstring, echo-4)."""
  return 1.0 + 0.5 * math.exp(-age / 2.0)


def adult_subject(rng: np.random.Generator) -> Subject:
  """Adult (EchoNet-Dynamic-like): EF mean ≈ 56, SD ≈ 12, range ≈ 7–92."""
  age = float(np.clip(rng.normal(68, 15), 20, 95))
  sex = "M" if rng.random() < 0.52 else "F"
  male = sex == "M"
  height = rng.normal(176 if male else 162, 7)
  bmi = math.exp(rng.normal(math.log(27.0), 0.18))
  weight = bmi * (height / 100.0)**2
  age_f = 0.6 + 0.8 * (age - 20) / 75
  p_ref = 0.085 * age_f * (1.35 if male else 0.7)
  p_mref = 0.12 * age_f
  p_hyper = 0.04
  subgroup, ef = _draw_subgroup(rng, (
      ("hfref", p_ref, 26, 7.5, 7, 38), ("hfmref", p_mref, 44, 4.5, 35, 52),
      ("hyperdynamic", p_hyper, 76, 5, 68, 92)), ("normal", 61, 5.5, 50, 80))
  bsa = mosteller_bsa(height, weight)
  edv = 48.0 * bsa**1.25 * math.exp(0.12 * rng.standard_normal())
  edv *= 1.0 + 0.02 * max(55 - ef, 0.0)
  hr = rng.normal(72, 11) + (8 if ef < 40 else 0)
  q = rng.standard_normal() + 0.08 * (bmi - 27.0) + (0.3 if age > 75 else 0.0)
  return Subject(age, sex, float(height), float(weight), subgroup, float(ef), edv,
                 float(np.clip(hr, 45, 130)), q)


def quality_tier(score: float) -> str:
  """Cuts the latent window score into good (~55%), medium (~33%), poor (~12%)."""
  return "good" if score < 0.15 else ("medium" if score < 1.2 else "poor")
