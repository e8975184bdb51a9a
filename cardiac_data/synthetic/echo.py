"""Synthetic apical-four-chamber echo cohort with exact ground truth.

Anatomy (one heart per subject, in pixels of the output frame):
  * LV cavity: a truncated ellipse (apex towards the sector apex, cut at the
    mitral plane), semi-axes a (along the long axis) and b, truncation τ: the
    cavity is {((s−a)/a)² + (v/b)² ≤ 1, s ≤ L} with s the distance from the apex
    along the long axis, v the perpendicular offset and L = a·(1+τ).
  * Myocardial band around it, RV with septum and free wall, LA and RA with thin
    walls, bright pericardium, mitral leaflets (closed from ED through systole)
    and annulus; sizes scale with body size (EDV ∝ BSA^1.25, wall ∝ √BSA).
  * Contraction over the heart cycle: c(t) ∈ [0, 1] (0 at end-diastole, 1 at
    end-systole); the apex stays fixed and the LV scales affinely,
    L(c) = L_ed·(1 − f_l·c), b(c) = b_ed·(1 − f_r·c).

Volume (stated formula, `cardiac_data.volumes`): method of discs, 20 discs with
diameters at the disc middles. The discs are circles at ED; during contraction the
septal–lateral diameter (the one in the A4C plane) shortens by f_r and the
anterior–inferior one (out of the plane) by ρ·f_r, so V = π/4·Σ d_i²·L/20 ·
(1 − ρ·f_r·c)/(1 − f_r·c) and V_es = V_ed·(1 − f_l)(1 − f_r)(1 − ρ·f_r): f_r is
solved from the target EF and TrueEF = 100·(EDV − ESV)/EDV holds exactly. The
written tracings are the truncated ellipse of the plane at the ED/ES frames
(rendered frames hit c = 0 and c = 1 exactly); their single-plane disc EF (V ∝
Σ d_i², `PlaneEF` in ground_truth.csv) equals TrueEF when ρ = 1.

Out-of-plane shortening (echo-4, pediatric only): ρ = 1 + 0.5·exp(−age / 2 y), 1
for adults. Motivation: in infancy the right ventricle is still pressure-loaded (the
fetal RV dominance regresses over the first years), which limits septal–lateral
excursion relative to anterior–inferior, so the A4C plane under-reads global
function: PlaneEF is ≈ 5.7 points below TrueEF before age 1, 3.2 at 1–3 y, 0.1
after 5 y. A clinical label measured with the short-axis area (e.g. the 5/6
area–length method of pediatric labs) sees both diameters; the label here is
TrueEF. This is the cohort's device by which age carries information that the clip
lacks, as the MCSDR paper finds demographics do on real data (R² 0.74 → 0.77, Table
II); its size is our choice, not a measurement.

Ultrasound look: sector mask, speckle (Rayleigh-like amplitude; tissue-locked: the
pattern moves with the LV and its walls, with a small per-frame decorrelation, see
`_tissue_map`), depth attenuation, gain/contrast, blur, near-field clutter, and
three quality tiers (poor adds wall dropout and rib shadowing).

Orientation: every clip is written as the released AVIs look, apex (and the
sector apex) at the top, atria at the bottom, LV on the image right. For
EchoNet-Pediatric this is the orientation *after* the vertical flip that its
preprocessing applied to the apex-down A4C DICOMs, so readers must not flip the
synthetic (or real released) pediatric A4C clips again.

Tracings: EchoNet-Dynamic rows per traced frame are the long axis (X1,Y1 = apex,
X2,Y2 = middle of the mitral plane) then the 20 disc chords at the disc middles
from apex to base (X1,Y1 on the lateral wall); the ES block comes first, then the
next ED. EchoNet-Pediatric rows are contour points (odd count, default 41) from
the lateral mitral hinge through the apex to the septal hinge.

Labels: FileList EF = TrueEF + N(0, sd) with sd 2 / 3.5 / 6 points for good /
medium / poor quality; Dynamic EDV/ESV are measured volumes (EDV with its own
error, ESV = EDV·(1 − EF/100)). `ground_truth.csv` holds the truth.

Determinism: subject i draws from `np.random.default_rng([seed, dataset_code, i,
...])`, so a parallel run writes the same bytes as a serial one.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import math
import multiprocessing
import os
import pathlib
import shutil
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from cardiac_data import video as video_io
from cardiac_data import volumes

GENERATOR_VERSION = "echo-4"
QUALITIES = ("good", "medium", "poor")
LABEL_NOISE_SD = {"good": 2.0, "medium": 3.5, "poor": 6.0}
NUM_DISCS = volumes.NUM_DISCS

PEDIATRIC_FILELIST_COLUMNS = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
PEDIATRIC_TRACING_COLUMNS = ("FileName", "X", "Y", "Frame")
DYNAMIC_FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth",
                            "FPS", "NumberOfFrames", "Split")
DYNAMIC_TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
GROUND_TRUTH_COLUMNS = (
    "FileName", "TrueEF", "LabelNoiseSD", "Quality", "LabelEF", "TrueEDV", "TrueESV",
    "EDFrame", "ESFrame", "HeartRate", "FPS", "NumberOfFrames", "SystolicFraction",
    "Subgroup", "PixelSpacing", "ImagingDepth", "Age", "Sex", "Weight", "Height", "BSA",
    "PatientID", "Dropout", "Shadow", "PlaneEF")

_SUPERSAMPLE = 2          # anatomy is drawn at 2× and area-averaged down.
_DYNAMIC_CODE, _PEDIATRIC_CODE = 1, 2


# ----------------------------------------------------------------------------
# Label noise and demographics.


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


# ----------------------------------------------------------------------------
# Geometry.


@dataclasses.dataclass(frozen=True)
class Heart:
  """Chamber geometry in output-frame pixels at end-diastole, and contraction.

  The LV frame: origin at the LV apex, e_l along the long axis towards the base,
  e_v perpendicular towards the lateral wall (image right). Other chambers are
  placed in this frame.
  """
  apex: np.ndarray          # (2,) LV apex (x, y)
  angle: float              # long-axis direction, radians from +y towards +x
  a: float                  # LV long semi-axis at ED
  b: float                  # LV short semi-axis at ED
  tau: float                # truncation: mitral plane at s = a·(1+τ)
  f_long: float             # longitudinal fractional shortening at ES
  f_rad: float              # radial (short-axis) fractional shortening at ES
  wall: float               # LV wall thickness at ED
  rv_width: float           # RV cavity half-width at ED
  rv_apex_frac: float       # RV apex at s = frac·L
  la_len: float             # LA length along the axis
  la_width: float           # LA half-width
  swing: np.ndarray         # (2,) translation of the whole heart at ES
  rho: float = 1.0          # out-of-plane radial shortening = rho·f_rad (not drawn)

  @property
  def e_l(self) -> np.ndarray:
    return np.array([math.sin(self.angle), math.cos(self.angle)])

  @property
  def e_v(self) -> np.ndarray:
    return np.array([math.cos(self.angle), -math.sin(self.angle)])

  def lv_axes(self, c):
    """(a, b, L) of the LV cavity at contraction c (0 = ED, 1 = ES)."""
    a = self.a * (1.0 - self.f_long * c)
    b = self.b * (1.0 - self.f_rad * c)
    return a, b, a * (1.0 + self.tau)

  def origin(self, c) -> np.ndarray:
    """LV apex at contraction c (scalar or (T,)) → (2,) or (T, 2)."""
    c = np.asarray(c, np.float64)
    return self.apex + self.swing * c[..., None]

  def to_image(self, c, s, v) -> np.ndarray:
    """LV-frame (s, v) → image points (..., 2).

    c is a scalar or (T,); s, v have c's shape (one point per frame) or
    c.shape + (n,) (n points per frame).
    """
    c = np.asarray(c, np.float64)
    s = np.asarray(s, np.float64)
    v = np.asarray(v, np.float64)
    o = self.origin(c)
    if max(s.ndim, v.ndim) > c.ndim:
      o = o[..., None, :]
    return o + s[..., None] * self.e_l + v[..., None] * self.e_v


def _cap_sv(centre_s, centre_v, a, b, s_cut, n, direction=1.0):
  """(s, v) of an ellipse cut by the plane s = s_cut, from hinge to hinge.

  Parameters are scalars or (T,) arrays; returns (..., n) arrays. direction=+1
  keeps s ≤ s_cut (apex at smaller s), −1 keeps s ≥ s_cut. With odd n the
  middle point is the apex exactly.
  """
  centre_s, centre_v, a, b, s_cut = (np.asarray(x, np.float64)[..., None]
                                     for x in (centre_s, centre_v, a, b, s_cut))
  th_h = np.arccos(np.clip(direction * (s_cut - centre_s) / a, -1.0, 1.0))
  th = th_h + np.linspace(0.0, 1.0, n) * (2 * math.pi - 2 * th_h)
  return centre_s + direction * a * np.cos(th), centre_v + direction * b * np.sin(th)


def lv_contour(heart: Heart, c: float, n: int = 41) -> np.ndarray:
  """LV endocardial contour (n, 2): lateral hinge → apex → septal hinge."""
  a, b, big_l = heart.lv_axes(c)
  s, v = _cap_sv(a, 0.0, a, b, big_l, n)
  return heart.to_image(c, s, v)


def lv_half_widths(heart: Heart, c: float, num_discs: int = NUM_DISCS):
  """Disc middle positions s_i and exact half-widths of the truncated ellipse."""
  a, b, big_l = heart.lv_axes(c)
  s = (np.arange(num_discs) + 0.5) * big_l / num_discs
  w = b * np.sqrt(np.clip(1.0 - ((s - a) / a)**2, 0.0, None))
  return s, w, big_l


def lv_chords(heart: Heart, c: float, num_discs: int = NUM_DISCS):
  """EchoNet-Dynamic tracing: long axis (2, 2) apex→base, chords (n, 2, 2).

  Each chord [p1, p2] runs from the lateral (+v) to the septal (−v) border.
  """
  s, w, big_l = lv_half_widths(heart, c, num_discs)
  axis = heart.to_image(c, np.array([0.0, big_l]), np.zeros(2))
  p1 = heart.to_image(c, s, w)
  p2 = heart.to_image(c, s, -w)
  return axis, np.stack([p1, p2], axis=1)


def lv_volume_px(heart: Heart, c: float) -> float:
  """Single-plane disc volume (pixel³) of the exact A4C shape: what tracings give."""
  _, w, big_l = lv_half_widths(heart, c)
  return float(volumes.discs_volume(2.0 * w, big_l))


def lv_true_volume_px(heart: Heart, c: float) -> float:
  """True LV volume (pixel³): discs with the out-of-plane diameter shortening by
  ρ·f_r·c instead of f_r·c (module docstring); equals `lv_volume_px` when ρ = 1."""
  return lv_volume_px(heart, c) * (1.0 - heart.rho * heart.f_rad * c) / (1.0 - heart.f_rad * c)


def _unit_disc_volume(sphericity: float, tau: float) -> float:
  """Disc-formula volume of the truncated ellipse with a = 1, b = sphericity."""
  big_l = 1.0 + tau
  s = (np.arange(NUM_DISCS) + 0.5) * big_l / NUM_DISCS
  w = sphericity * np.sqrt(np.clip(1.0 - (s - 1.0)**2, 0.0, None))
  return float(volumes.discs_volume(2.0 * w, big_l))


@dataclasses.dataclass(frozen=True)
class Acquisition:
  """Per-video timing, sector and image-quality settings."""
  size: int
  fps: int
  num_frames: int
  heart_rate: float
  es_frame: int
  ed_frame: int
  systolic_fraction: float
  frames_per_cycle: float
  sector_apex: np.ndarray   # (2,)
  sector_radius: float      # px
  half_angle: float         # rad
  spacing: float            # cm / px
  quality: str
  dropout: bool
  shadow: bool


def contraction(phase: np.ndarray, systolic_fraction: float) -> np.ndarray:
  """c(φ) for φ ∈ [0, 1): cosine ejection, then rapid filling, diastasis, atrial kick.

  c = 0 only at φ = 0 (ED), c = 1 only at φ = s (ES).
  """
  phase = np.asarray(phase, np.float64) % 1.0
  s = systolic_fraction

  def smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)

  sys = 0.5 * (1.0 - np.cos(np.pi * np.clip(phase / s, 0.0, 1.0)))
  psi = (phase - s) / (1.0 - s)
  filled = 0.75 * smooth(psi / 0.4) + 0.25 * smooth((psi - 0.75) / 0.25)
  return np.where(phase <= s, sys, 1.0 - filled)


def _sector_polar(points, acq: Acquisition):
  d = np.asarray(points, np.float64) - acq.sector_apex
  return np.hypot(d[..., 0], d[..., 1]), np.arctan2(d[..., 0], d[..., 1])


def make_heart_and_acquisition(subject: Subject, rng: np.random.Generator, *, size: int,
                               fps_choices: Sequence[int], fps_probs: Sequence[float],
                               quality_shift: float = 0.0) -> tuple[Heart, Acquisition]:
  """Physical sizes (cm) from the subject, imaging depth, then pixel geometry."""
  ef = subject.true_ef
  sph = {"dcm": 0.66, "hfref": 0.62, "hcm": 0.46}.get(subject.subgroup, 0.5)
  sph = float(np.clip(sph + 0.04 * rng.standard_normal(), 0.38, 0.8))
  tau = rng.uniform(0.6, 0.75)
  a_cm = (subject.edv_ml / _unit_disc_volume(sph, tau))**(1.0 / 3.0)
  wall_cm = 0.65 * math.sqrt(subject.bsa) * rng.uniform(0.9, 1.1)
  wall_cm *= {"dcm": 0.75, "hfref": 0.8, "hcm": 1.8}.get(subject.subgroup, 1.0)
  # Contraction: longitudinal shortening from EF, radial solved for exact EF:
  # (1 − f_l)(1 − f_r)(1 − ρ·f_r) = 1 − EF, the smaller root.
  f_long = min(0.17 * ef / 62.0 * rng.uniform(0.8, 1.2), 0.6 * ef / 100.0)
  ratio = (1.0 - ef / 100.0) / (1.0 - f_long)
  rho = subject.out_of_plane
  if rho == 1.0:   # The closed form: adult cohorts stay bit-identical to echo-3.
    f_rad = 1.0 - math.sqrt(ratio)
  else:
    f_rad = ((1.0 + rho) - math.sqrt((1.0 + rho)**2 - 4.0 * rho * (1.0 - ratio))) / (2.0 * rho)

  quality = quality_tier(subject.quality_score + quality_shift)
  scale = size / 112.0
  sector_apex = np.array([size / 2.0 + rng.normal(0, 1.0) * scale, rng.uniform(-1, 3) * scale])
  radius = size - 4.0 * scale - sector_apex[1]
  half_angle = math.radians(rng.uniform(36, 44))
  # Sonographer's depth: the LV fills ~45–58 % of the depth, in 0.5 cm steps.
  big_l_cm = a_cm * (1 + tau)
  depth = math.ceil(big_l_cm / rng.uniform(0.45, 0.58) / 0.5) * 0.5
  apex_r = rng.uniform(0.12, 0.2)
  apex_ang = math.radians(rng.uniform(0.0, 9.0))
  angle = apex_ang + math.radians(rng.normal(7.0, 4.0))
  rv_frac = rng.uniform(0.2, 0.3)
  rv_w = rng.uniform(0.55, 0.75)
  la_len = rng.uniform(0.6, 0.75)
  la_w = rng.uniform(0.75, 0.95)
  swing_dir = rng.uniform(0, 2 * math.pi)
  swing = rng.uniform(0.0, 1.2) * scale * np.array([math.cos(swing_dir), math.sin(swing_dir)])

  def build(depth_cm):
    spacing = depth_cm / radius
    a = a_cm / spacing
    apex = sector_apex + apex_r * radius * np.array([math.sin(apex_ang), math.cos(apex_ang)])
    b = sph * a
    return spacing, Heart(apex=apex, angle=angle, a=a, b=b, tau=tau, f_long=f_long,
                          f_rad=f_rad, wall=wall_cm / spacing, rv_width=rv_w * b,
                          rv_apex_frac=rv_frac, la_len=la_len * a, la_width=la_w * b,
                          swing=swing, rho=rho)

  acq_probe = Acquisition(size, 0, 0, 0.0, 0, 0, 0.0, 0.0, sector_apex, radius, half_angle,
                          0.0, quality, False, False)
  for _ in range(40):  # Deepen until the LV (and half its wall) sits inside the fan.
    spacing, heart = build(depth)
    a, b, big_l = heart.lv_axes(0.0)
    s, v = _cap_sv(a, 0.0, a + 0.35 * heart.wall, b + 0.5 * heart.wall, big_l, 33)
    r, th = _sector_polar(heart.to_image(0.0, s, v), acq_probe)
    if r.max() < 0.9 * radius and np.abs(th).max() < half_angle - math.radians(2):
      break
    depth += 0.5

  # Timing: ES at frame k_es, the next ED exactly n_dia frames later.
  fps = int(rng.choice(np.asarray(fps_choices), p=np.asarray(fps_probs)))
  fpc = 60.0 * fps / subject.heart_rate
  s_target = float(np.clip(0.33 + 0.0013 * (subject.heart_rate - 60.0), 0.3, 0.48))
  n_dia = max(2, int(round((1.0 - s_target) * fpc)))
  sys_frac = 1.0 - n_dia / fpc
  cycles = rng.uniform(1.5, 3.0)
  num_frames = int(np.clip(round(cycles * fpc), 32, 100))
  num_frames = max(num_frames, n_dia + 2)
  k_es = int(rng.integers(0, max(1, min(int(fpc), num_frames - n_dia - 1)) + 1))
  k_es = min(k_es, num_frames - n_dia - 1)
  dropout = quality == "poor" or (quality == "medium" and rng.random() < 0.4)
  shadow = quality == "poor" and rng.random() < 0.5
  acq = Acquisition(size, fps, num_frames, subject.heart_rate, k_es, k_es + n_dia, sys_frac,
                    fpc, sector_apex, radius, half_angle, spacing, quality, dropout, shadow)
  return heart, acq


# ----------------------------------------------------------------------------
# Rendering.


def _smooth_field(rng, size, cells, lo, hi):
  g = rng.uniform(lo, hi, (cells, cells)).astype(np.float32)
  return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _inset(points: np.ndarray, delta: float) -> np.ndarray:
  """Moves the vertices of closed polygons (..., n, 2) inwards by `delta`."""
  p = np.asarray(points, np.float64)
  t = np.roll(p, -1, -2) - np.roll(p, 1, -2)
  nrm = np.stack([t[..., 1], -t[..., 0]], -1)
  nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-9)
  x, y = p[..., 0], p[..., 1]
  area2 = np.sum(x * np.roll(y, -1, -1) - y * np.roll(x, -1, -1), axis=-1)
  # (t_y, −t_x) points outwards when the shoelace sum is positive.
  sign = np.where(area2 > 0, -1.0, 1.0)[..., None, None]
  return p + delta * sign * nrm


def _hi(points: np.ndarray) -> np.ndarray:
  """Output-pixel coordinates → fixed-point (4 fractional bits) supersampled ints."""
  s = _SUPERSAMPLE
  return np.round(((np.asarray(points) + 0.5) * s - 0.5) * 16).astype(np.int32)


def _anatomy(heart: Heart, c: np.ndarray, phase: np.ndarray, systolic_fraction: float,
             n: int = 48):
  """Polygons of every frame, in painter's order.

  Returns (fills, discs, valves): fills = [(points (T, m, 2), level key)],
  discs = [(centres (T, 2), radii (T,), level key)], valves = (points (T, 7, 2),
  thickness (T,)) for the mitral leaflets, closed or open per frame.
  """
  a, b, big_l = heart.lv_axes(c)
  w = heart.wall * (1.0 + 0.8 * (heart.b / b - 1.0))   # walls thicken in systole
  wa = 0.7 * w
  img = lambda sv: heart.to_image(c, *sv)
  # RV (septal side, −v); tricuspid plane slightly apical to the mitral plane.
  rv_b = heart.rv_width * (1.0 - 0.12 * c)
  rv_v = -(b + w + rv_b)
  rv_apex = heart.rv_apex_frac * big_l
  tv_s = big_l - 0.06 * heart.a * (1 + heart.tau)
  rv_a = (tv_s - rv_apex) / 1.55
  # Atria grow while the ventricles empty.
  la_a = 0.5 * heart.la_len * (1.0 + 0.12 * c)
  la_b = heart.la_width * (1.0 + 0.08 * c)
  ra_a = 0.85 * la_a
  ra_b = 0.9 * heart.rv_width * (1.0 + 0.08 * c)
  la_v = 0.15 * heart.b
  aw = 0.4 * w
  la_c = big_l + 0.92 * la_a
  ra_c = tv_s + 0.92 * ra_a
  fills = [
      (img(_cap_sv(a, 0.0, a + wa + 0.35 * w + 1.0, b + 1.35 * w + 1.0, big_l, n)), "pericardium"),
      (img(_cap_sv(la_c, la_v, la_a + aw, la_b + aw, big_l, n, -1.0)), "atrial_wall"),
      (img(_cap_sv(ra_c, rv_v, ra_a + aw, ra_b + aw, tv_s, n, -1.0)), "atrial_wall"),
      (img(_cap_sv(rv_apex + rv_a, rv_v, rv_a + 0.6 * aw, rv_b + aw, tv_s + 0.3 * w, n)),
       "rv_wall"),
      (img(_cap_sv(a, 0.0, a + wa, b + w, big_l + 0.3 * w, n)), "myocardium"),
  ]
  half_mv = b * math.sqrt(1 - heart.tau**2)
  discs = [(img((big_l, half_mv)), 0.45 * w, "annulus"),
           (img((big_l, -half_mv)), 0.55 * w, "annulus")]
  cavities = [
      (img(_cap_sv(la_c, la_v, la_a, la_b, big_l, n, -1.0)), "blood"),
      (img(_cap_sv(ra_c, rv_v, ra_a, ra_b, tv_s, n, -1.0)), "blood"),
      (img(_cap_sv(rv_apex + rv_a, rv_v, rv_a, rv_b, tv_s, n)), "blood"),
      (img(_cap_sv(a, 0.0, a, b, big_l, 2 * n + 1)), "blood"),
  ]
  # Mitral leaflets: closed (bowed into the LA) from ED through systole, open
  # towards the apex in diastole. Layout: 7 points (closed: one polyline; open:
  # lateral leaflet = points 0–1, septal leaflet = points 5–6).
  u = np.linspace(-1.0, 1.0, 7)
  closed_s = big_l[..., None] + 0.25 * half_mv[..., None] * (1 - u**2) + 0.5
  closed_v = half_mv[..., None] * u
  open_s = big_l[..., None] - 0.8 * half_mv[..., None] * (np.abs(u) < 1)
  open_v = half_mv[..., None] * np.sign(u) * np.where(np.abs(u) < 1, 0.7, 1.0)
  is_closed = (phase <= systolic_fraction + 0.05)[..., None]
  valve = img((np.where(is_closed, closed_s, open_s), np.where(is_closed, closed_v, open_v)))
  return fills + cavities, discs, (valve, is_closed[..., 0], np.maximum(0.6, 0.25 * w))


def _paint_frames(heart: Heart, c: np.ndarray, phase: np.ndarray, systolic_fraction: float,
                  levels: dict, background: np.ndarray) -> np.ndarray:
  """Echogenicity frames (T, H, W) uint8: polygons filled at 2× (`_SUPERSAMPLE`),
  then area-averaged down."""
  ss = _SUPERSAMPLE
  fills, discs, (valve, closed, lw) = _anatomy(heart, c, phase, systolic_fraction)
  # cv2's fill covers ~half a fine pixel beyond the edge; pull edges back by that.
  fills = [(_hi(_inset(p, 0.5 / ss)), int(levels[k])) for p, k in fills]
  discs = [(_hi(p), np.maximum(1, np.asarray(r) * ss * 16).astype(np.int64)
            * np.ones(len(c), np.int64), int(levels[k])) for p, r, k in discs]
  valve = _hi(valve)
  thick = np.maximum(1, np.round(lw * ss)).astype(np.int64) * np.ones(len(c), np.int64)
  v_level = int(levels["valve"])
  bg = cv2.resize(background, None, fx=ss, fy=ss, interpolation=cv2.INTER_NEAREST)
  canvas = np.empty_like(bg)
  size = background.shape[0]
  frames = np.empty((len(c),) + background.shape, np.uint8)
  for i in range(len(c)):
    np.copyto(canvas, bg)
    for k, (pts, level) in enumerate(fills):
      if k == 5:  # Walls done: annulus before the cavities.
        for ctr, rad, lev in discs:
          cv2.circle(canvas, (int(ctr[i, 0]), int(ctr[i, 1])), int(rad[i]), lev, -1,
                     cv2.LINE_8, 4)
      cv2.fillPoly(canvas, [pts[i]], level, cv2.LINE_8, 4)
    if closed[i]:
      cv2.polylines(canvas, [valve[i]], False, v_level, int(thick[i]), cv2.LINE_8, 4)
    else:
      cv2.polylines(canvas, [valve[i, :2], valve[i, 5:]], False, v_level, int(thick[i]),
                    cv2.LINE_8, 4)
    out = canvas
    while out.shape[0] > size:
      out = cv2.resize(out, (out.shape[1] // 2, out.shape[0] // 2), interpolation=cv2.INTER_AREA)
    frames[i] = out
  return frames


#: Weight ρ of the per-frame speckle field (the rest moves with the tissue).
SPECKLE_DECORRELATION = 0.15


def _tissue_map(heart: Heart, c: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Backward maps (T, H, W) float32 x, y: the end-diastolic position of the tissue
  at each pixel of each frame, for tissue-locked speckle.

  Stated motion model: inside the heart the tissue follows the LV contraction,
  the affine map of the LV frame (s, v) ↦ (s·(1 − f_l·c), v·(1 − f_r·c)) about
  the moving apex (the cavity's own motion, `Heart.lv_axes`); the map blends to
  the identity (static chest wall) between one and two LV sizes from the LV
  centre, with weight w = clip(2 − ρ, 0, 1), ρ the normalised elliptic radius.
  The smooth displacement is evaluated on a 4× coarser grid and resized
  bilinearly (cost: a sixteenth).
  """
  step = 4 if size % 4 == 0 else 1
  o = heart.origin(np.asarray(c, np.float64)).astype(np.float32)[:, None, None, :]
  c = np.asarray(c, np.float32)[:, None, None]
  g = (np.arange(size // step, dtype=np.float32) + 0.5) * step - 0.5   # coarse pixel centres
  yy, xx = np.meshgrid(g, g, indexing="ij")
  dx, dy = xx - o[..., 0], yy - o[..., 1]
  e_l, e_v = heart.e_l.astype(np.float32), heart.e_v.astype(np.float32)
  s = dx * e_l[0] + dy * e_l[1]
  v = dx * e_v[0] + dy * e_v[1]
  f_l, f_r, a, b, tau, wall = (float(x) for x in (heart.f_long, heart.f_rad, heart.a,
                                                    heart.b, heart.tau, heart.wall))
  s0 = s / (1.0 - f_l * c)
  v0 = v / (1.0 - f_r * c)
  rho = np.hypot((s0 - 0.5 * a * (1.0 + tau)) / (0.5 * a * (1.0 + tau) + 2.0 * wall),
                 v0 / (b + 2.0 * wall))
  w = np.clip(2.0 - rho, 0.0, 1.0)
  ux = w * (float(heart.apex[0]) + s0 * e_l[0] + v0 * e_v[0] - xx)
  uy = w * (float(heart.apex[1]) + s0 * e_l[1] + v0 * e_v[1] - yy)
  if step > 1:
    up = lambda u: np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR)
                             for f in u])
    ux, uy = up(ux), up(uy)
  fy, fx = np.mgrid[0:size, 0:size].astype(np.float32)
  return (fx + ux).astype(np.float32, copy=False), (fy + uy).astype(np.float32, copy=False)


def render_clip(heart: Heart, acq: Acquisition, rng: np.random.Generator,
                paint: Callable | None = None) -> np.ndarray:
  """All frames of one clip as uint8 (T, H, W).

  `paint` replaces `_paint_frames` (same arguments), e.g. for a view without the
  right heart (`camus_writer`'s 2CH).
  """
  size, t_n = acq.size, acq.num_frames
  q = acq.quality
  k = np.arange(t_n)
  phase = (acq.systolic_fraction + (k - acq.es_frame) / acq.frames_per_cycle) % 1.0
  c = contraction(phase, acq.systolic_fraction)
  c[acq.es_frame], c[acq.ed_frame] = 1.0, 0.0
  phase[acq.ed_frame] = 0.0

  myo = rng.uniform(115, 160)
  levels = dict(myocardium=myo, rv_wall=0.85 * myo, atrial_wall=0.7 * myo,
                pericardium=min(255.0, myo * rng.uniform(1.45, 1.7)),
                annulus=min(255.0, myo * 1.25), valve=0.9 * myo,
                blood=rng.uniform(4, 10))
  background = _smooth_field(rng, size, 7, 45, 95).clip(0, 255).astype(np.uint8)
  frames = (paint or _paint_frames)(heart, c, phase, acq.systolic_fraction, levels, background)

  # Beam geometry.
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  r = np.hypot(xx - acq.sector_apex[0], yy - acq.sector_apex[1]) / acq.sector_radius
  th = np.arctan2(xx - acq.sector_apex[0], yy - acq.sector_apex[1])
  edge = 1.5 / acq.sector_radius
  sector = (np.clip((1.0 - r) / edge, 0, 1) *
            np.clip((acq.half_angle - np.abs(th)) * acq.sector_radius * 0.5, 0, 1))

  tier = QUALITIES.index(q)
  texture = _smooth_field(rng, size, 12, 0.8, 1.2)
  haze_near = (0.05, 0.15, 0.45)[tier] * rng.uniform(0.6, 1.4)
  haze_floor = (0.015, 0.04, 0.1)[tier] * rng.uniform(0.6, 1.4)
  static = texture / 255.0
  additive = haze_floor + haze_near * np.exp(-r / rng.uniform(0.12, 0.25 + 0.1 * tier))
  if acq.dropout:
    # Beam-parallel wall drops out: lateral wall (or septum), over its depth range.
    a_, b_, big_l = heart.lv_axes(0.0)
    side = 1.0 if rng.random() < 0.7 else -1.0
    target = heart.to_image(0.0, rng.uniform(0.4, 0.8) * big_l, side * (b_ + 0.5 * heart.wall))
    rt, tht = _sector_polar(target, acq)
    depth_drop = rng.uniform(0.5, 0.7) if q == "medium" else rng.uniform(0.85, 0.97)
    width = math.radians(rng.uniform(5, 8) if q == "medium" else rng.uniform(7, 12))
    radial = np.exp(-((r * acq.sector_radius - rt) / (0.45 * big_l))**4)
    static = static * (1.0 - depth_drop * np.exp(-((th - tht) / width)**4) * radial)
  if acq.shadow:
    th_s = rng.uniform(-acq.half_angle * 0.8, acq.half_angle * 0.8)
    width = math.radians(rng.uniform(3, 7))
    onset = rng.uniform(0.2, 0.5)
    band = np.exp(-((th - th_s) / width)**4) * np.clip((r - onset) / 0.05, 0, 1)
    static = static * (1.0 - rng.uniform(0.7, 0.9) * band)

  # Speckle: Rayleigh-like amplitude sqrt(E), E ~ Exp(1) mixed as
  # (1 − ρ)·E_tissue + ρ·E_frame: E_tissue is one random bank seen through the
  # tissue motion (`_tissue_map`), E_frame a per-frame field (windows of the same
  # bank at random offsets: cheap). Electronic noise: Rayleigh.
  pad = 26
  bank = rng.standard_exponential((size + pad, size + pad), dtype=np.float32)
  amp_bank = np.sqrt(bank)[::-1, ::-1]
  offs = rng.integers(0, pad, (t_n, 4))
  map_x, map_y = _tissue_map(heart, c, size)
  map_x += pad // 3
  map_y += pad // 2
  sigma = (0.55, 0.8, 1.2)[tier]
  attenuation = np.exp(-rng.uniform(0.3, 0.7) * (1.0 + 0.5 * tier) * r)
  noise_sd = (0.015, 0.035, 0.08)[tier]
  gamma = rng.uniform(0.65, 0.85)
  gain = rng.uniform(0.95, 1.25) * (1.0, 0.9, 0.75)[tier]
  black = 0.08
  # Log-compression-like display map as a lookup table over e ∈ [0, 4.095].
  lut_x = np.arange(4096, dtype=np.float64) / 1000.0
  lut = np.clip(255.0 * (gain * lut_x**gamma - black) / (1.0 - black) + 0.5, 0, 255)
  lut = lut.astype(np.uint8)
  static = static.astype(np.float32)
  additive = (additive * texture).astype(np.float32)
  gain_map = (attenuation * sector * 1000.0).astype(np.float32)
  noise_map = (noise_sd * sector * 1000.0).astype(np.float32)
  out = np.empty_like(frames)
  frame_bank = SPECKLE_DECORRELATION * bank
  tissue_bank = (1.0 - SPECKLE_DECORRELATION) * bank
  chunk = 8  # frames per vector op: amortises call overhead, stays in cache.
  for start in range(0, t_n, chunk):
    idx = range(start, min(start + chunk, t_n))
    f = frames[idx.start:idx.stop] * static
    f += additive
    sp = np.stack([frame_bank[offs[i, 0]:offs[i, 0] + size, offs[i, 1]:offs[i, 1] + size]
                   for i in idx])
    sp += np.stack([cv2.remap(tissue_bank, map_x[i], map_y[i], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT) for i in idx])
    np.sqrt(sp, out=sp)
    f *= sp
    for j in range(len(idx)):
      cv2.GaussianBlur(f[j], (0, 0), sigmaX=sigma * 1.3, dst=f[j], sigmaY=sigma)
    f *= gain_map
    noise = np.stack([amp_bank[offs[i, 2]:offs[i, 2] + size, offs[i, 3]:offs[i, 3] + size]
                      for i in idx])
    noise *= noise_map
    f += noise
    np.clip(f, 0, 4095, out=f)
    out[idx.start:idx.stop] = lut[f.astype(np.uint16)]
  return out


# ----------------------------------------------------------------------------
# Per-video records.


def _fmt(x: float, digits: int) -> str:
  return f"{x:.{digits}f}"


def _splitmix64(x: int) -> int:
  m = (1 << 64) - 1
  z = (x + 0x9E3779B97F4A7C15) & m
  z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
  z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
  return z ^ (z >> 31)


def dynamic_file_name(seed: int, index: int) -> str:
  """'0X' + 16 uppercase hex digits; a bijection of index for a fixed seed."""
  x = (_splitmix64(seed) * 0x9E3779B97F4A7C15 + index) & ((1 << 64) - 1)
  return f"0X{_splitmix64(x):016X}"


def dynamic_split(file_name: str) -> str:
  """TRAIN/VAL/TEST ≈ 75/12.5/12.5 from a hash of the name."""
  u = int(hashlib.sha1(file_name.encode()).hexdigest(), 16) % 8
  return "TRAIN" if u < 6 else ("VAL" if u == 6 else "TEST")


def _cr_id(seed: int, index: int, salt: int) -> str:
  """'CR' + 7 lowercase hex digits, unique per index for a fixed seed."""
  mod = 16**7
  offset = _splitmix64(seed * 7919 + salt) % mod
  mult = (0x9E3779B if salt == 0 else 0x5BD1E99) | 1
  return f"CR{(index * mult + offset) % mod:07x}"


def pediatric_split(patient_id: str) -> int:
  """EchoNet-Pediatric fold: int(sha1(patient_id).hexdigest(), 16) % 10."""
  return int(hashlib.sha1(patient_id.encode()).hexdigest(), 16) % 10


@dataclasses.dataclass
class VideoResult:
  """Rows for one written video (strings, ready for the CSV writers)."""
  filelist: list
  tracings: list
  truth: list


def _truth_row(name, subject, heart, acq, label, sd, edv_ml, esv_ml, patient_id):
  return [name, _fmt(100.0 * (edv_ml - esv_ml) / edv_ml, 6), _fmt(sd, 2), acq.quality,
          _fmt(label, 6), _fmt(edv_ml, 6), _fmt(esv_ml, 6), acq.ed_frame, acq.es_frame,
          _fmt(acq.heart_rate, 2), acq.fps, acq.num_frames, _fmt(acq.systolic_fraction, 4),
          subject.subgroup, _fmt(acq.spacing, 6), _fmt(acq.spacing * acq.sector_radius, 2),
          _fmt(subject.age, 3), subject.sex, _fmt(subject.weight, 2), _fmt(subject.height, 2),
          _fmt(subject.bsa, 4), patient_id, int(acq.dropout), int(acq.shadow),
          _fmt(float(volumes.ejection_fraction(lv_volume_px(heart, 0.0),
                                               lv_volume_px(heart, 1.0))), 6)]


def _volumes_ml(heart: Heart, acq: Acquisition) -> tuple[float, float]:
  cm3 = acq.spacing**3
  return lv_true_volume_px(heart, 0.0) * cm3, lv_true_volume_px(heart, 1.0) * cm3


def _dynamic_task(args) -> VideoResult:
  out_dir, seed, index, size = args
  rng = np.random.default_rng([seed, _DYNAMIC_CODE, index])
  subject = adult_subject(rng)
  heart, acq = make_heart_and_acquisition(
      subject, rng, size=size, fps_choices=(30, 40, 50, 60), fps_probs=(0.07, 0.08, 0.75, 0.1))
  frames = render_clip(heart, acq, rng)
  name = dynamic_file_name(seed, index)
  video_io.write_video(os.path.join(out_dir, "Videos", name + ".avi"), frames, acq.fps)
  edv, esv = _volumes_ml(heart, acq)
  label, sd = label_noise(100.0 * (edv - esv) / edv, acq.quality, rng)
  label = float(label)
  # Measured volumes: EDV with its own error, ESV consistent with the EF label.
  edv_meas = edv * math.exp(rng.normal(0.0, 0.05 + 0.03 * QUALITIES.index(acq.quality)))
  esv_meas = edv_meas * (1.0 - label / 100.0)
  filelist = [name, _fmt(label, 8), _fmt(esv_meas, 8), _fmt(edv_meas, 8), size, size,
              acq.fps, acq.num_frames, dynamic_split(name)]
  tracings = []
  for frame, cc in ((acq.es_frame, 1.0), (acq.ed_frame, 0.0)):  # ES block first, as EchoNet
    axis, chords = lv_chords(heart, cc)
    tracings.append([name + ".avi", *(_fmt(v, 6) for v in axis.reshape(-1)), frame])
    for ch in chords:
      tracings.append([name + ".avi", *(_fmt(v, 6) for v in ch.reshape(-1)), frame])
  truth = [_truth_row(name, subject, heart, acq, label, sd, edv, esv, "")]
  return VideoResult([filelist], tracings, truth)


def _pediatric_task(args) -> VideoResult:
  out_dir, seed, index, size, second_video_prob, tracing_points = args
  rng = np.random.default_rng([seed, _PEDIATRIC_CODE, index])
  subject = pediatric_subject(rng)
  patient = _cr_id(seed, index, 0)
  fold = pediatric_split(patient)
  n_videos = 2 if rng.random() < second_video_prob else 1
  result = VideoResult([], [], [])
  for j in range(n_videos):
    vrng = np.random.default_rng([seed, _PEDIATRIC_CODE, index, 1, j])
    heart, acq = make_heart_and_acquisition(
        subject, vrng, size=size, fps_choices=(30, 40, 50, 60, 70),
        fps_probs=(0.15, 0.15, 0.4, 0.2, 0.1), quality_shift=0.3 * j)
    frames = render_clip(heart, acq, vrng)
    accession = _cr_id(seed, 2 * index + (j if vrng.random() < 0.4 else 0), 1)
    instance = int(vrng.integers(1, 120)) + 200 * j
    name = f"{patient}-{accession}-{instance:06d}.avi"
    video_io.write_video(os.path.join(out_dir, "A4C", "Videos", name), frames, acq.fps)
    edv, esv = _volumes_ml(heart, acq)
    label, sd = label_noise(100.0 * (edv - esv) / edv, acq.quality, vrng)
    label = float(label)
    height = "" if vrng.random() < 0.08 else _fmt(subject.height, 1)
    weight = "" if vrng.random() < 0.02 else _fmt(subject.weight, 1)
    result.filelist.append([name, _fmt(label, 2), subject.sex, int(subject.age), weight,
                            height, fold])
    for frame, cc in ((acq.es_frame, 1.0), (acq.ed_frame, 0.0)):
      for x, y in lv_contour(heart, cc, tracing_points):
        result.tracings.append([name, _fmt(x, 4), _fmt(y, 4), frame])
    result.truth.append(_truth_row(name, subject, heart, acq, label, sd, edv, esv, patient))
  return result


# ----------------------------------------------------------------------------
# Cohort writers.


def _write_csv(path: pathlib.Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  w.writerows(rows)
  path.write_text(buf.getvalue(), encoding="utf-8")


def _run_tasks(fn: Callable, tasks: list, workers: int | None, progress: bool,
               desc: str) -> list[VideoResult]:
  from tqdm import tqdm  # Local: keeps worker start-up light.
  workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
  bar = tqdm(total=len(tasks), desc=desc, unit="subject", disable=not progress,
             dynamic_ncols=True)
  results = []
  try:
    if workers == 1 or len(tasks) < 4:
      for t in tasks:
        results.append(fn(t))
        bar.update(1)
    else:
      # 'spawn': safe when the caller has already started JAX threads.
      ctx = multiprocessing.get_context("spawn")
      chunk = max(1, min(16, len(tasks) // (4 * workers)))
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        for res in ex.map(fn, tasks, chunksize=chunk):
          results.append(res)
          bar.update(1)
  finally:
    bar.close()
  return results


def _prepare(out: pathlib.Path, overwrite: bool, layout_items: Sequence[str]) -> None:
  existing = [p for p in layout_items if (out / p).exists()]
  if existing and not overwrite:
    raise FileExistsError(f"{out}: already holds {', '.join(existing)}; "
                          "choose another output folder or pass overwrite=True (--overwrite)")
  for p in existing:
    target = out / p
    shutil.rmtree(target) if target.is_dir() else target.unlink()


def write_echonet_dynamic(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                          workers: int | None = None, progress: bool = False,
                          overwrite: bool = False, size: int = 112) -> int:
  """Writes an EchoNet-Dynamic tree (FileList.csv, VolumeTracings.csv, Videos/).

  One video per subject. Returns the number of videos written.
  """
  out = pathlib.Path(out)
  _prepare(out, overwrite, ("FileList.csv", "VolumeTracings.csv", "Videos", "ground_truth.csv"))
  (out / "Videos").mkdir(parents=True, exist_ok=True)
  tasks = [(str(out), int(seed), i, int(size)) for i in range(int(num_subjects))]
  results = _run_tasks(_dynamic_task, tasks, workers, progress, "echonet_dynamic")
  _write_csv(out / "FileList.csv", DYNAMIC_FILELIST_COLUMNS,
             (r for res in results for r in res.filelist))
  _write_csv(out / "VolumeTracings.csv", DYNAMIC_TRACING_COLUMNS,
             (r for res in results for r in res.tracings))
  _write_csv(out / "ground_truth.csv", GROUND_TRUTH_COLUMNS,
             (r for res in results for r in res.truth))
  return sum(len(res.filelist) for res in results)


def write_echonet_pediatric(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                            workers: int | None = None, progress: bool = False,
                            overwrite: bool = False, size: int = 112,
                            second_video_prob: float = 0.15, tracing_points: int = 41) -> int:
  """Writes an EchoNet-Pediatric A4C tree (A4C/FileList.csv, VolumeTracings.csv, Videos/).

  `num_subjects` patients; a fraction `second_video_prob` has a second video (same
  patient, hence same fold). Returns the number of videos written.
  """
  if tracing_points < 5 or tracing_points % 2 == 0:
    raise ValueError(f"tracing_points must be odd and >= 5, got {tracing_points}")
  out = pathlib.Path(out)
  _prepare(out, overwrite, ("A4C", "ground_truth.csv"))
  (out / "A4C" / "Videos").mkdir(parents=True, exist_ok=True)
  tasks = [(str(out), int(seed), i, int(size), float(second_video_prob), int(tracing_points))
           for i in range(int(num_subjects))]
  results = _run_tasks(_pediatric_task, tasks, workers, progress, "echonet_pediatric")
  _write_csv(out / "A4C" / "FileList.csv", PEDIATRIC_FILELIST_COLUMNS,
             (r for res in results for r in res.filelist))
  _write_csv(out / "A4C" / "VolumeTracings.csv", PEDIATRIC_TRACING_COLUMNS,
             (r for res in results for r in res.tracings))
  _write_csv(out / "ground_truth.csv", GROUND_TRUTH_COLUMNS,
             (r for res in results for r in res.truth))
  return sum(len(res.filelist) for res in results)


write_echonet_dynamic.generator_version = GENERATOR_VERSION
write_echonet_pediatric.generator_version = GENERATOR_VERSION
