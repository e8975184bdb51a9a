"""Synthetic CAMUS cohort in the 2023 NIfTI layout, from the echo heart model.

Layout written under `out` (what `cardiac_data.camus.read_camus` reads):

  database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}.nii.gz         frames
  database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}_gt.nii.gz      labels
  database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_half_sequence.nii.gz   (T, H, W)
  database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_half_sequence_gt.nii.gz
  database_nifti/patientXXXX/Info_{2CH,4CH}.cfg   ED, ES, NbFrame, Sex, Age,
                                                  ImageQuality, EF, FrameRate
  database_split/subgroup_{training,validation,testing}.txt   ~80/10/10
  ground_truth.csv                                one row per patient

Volumes are uint8, stored as SimpleITK would write them (nibabel array = the
(T, H, W) array transposed, zooms (col_mm, row_mm[, 1])), apex at the top, S×S
pixels (`size`), isotropic spacing in mm. Labels: 0 background, 1 LV cavity,
2 myocardium, 3 left atrium. ED/ES in the cfg are 1-based; the half sequence
runs ED → ES (systole), or with probability `reverse_prob` ES → ED (the
diastolic half; ES=1, ED=NbFrame), per view.

Heart model (one LV per patient, `subjects.adult_subject`): the LV cavity is a
truncated ellipsoid with long semi-axis a, short semi-axes b (in the 4CH plane)
and b₂ = ρ·b (in the orthogonal 2CH plane), ρ ~ U(0.85, 1.15), cut at the
mitral plane s = a·(1+τ). The 4CH view is `anatomy`'s (RV, RA, LA, pericardium);
the 2CH view cuts the same LV in the orthogonal plane: the same a, τ, wall and
contraction, half-widths b₂·√(1 − ((s−a)/a)²), LA, pericardium, annulus and
mitral leaflets, and no right heart. The probe is rotated about the apex, so
the 2CH keeps the 4CH sector and depth (deeper in 0.5 cm steps only if the LV
would leave the fan) with a slightly moved apex and tilted axis.

Volume (`cardiac_data.volumes`, biplane method of discs): V = π/4·Σ a_i·b_i·L/20
with a_i, b_i the 4CH/2CH disc diameters. Contraction is affine in both planes
(L·(1 − f_l), b·(1 − f_r), b₂·(1 − f_r)), so V_es = V_ed·(1 − f_l)(1 − f_r)² for
the discs and for the exact ellipsoid alike; TrueEF is the volumetric EF of the
one LV (100·(EDV − ESV)/EDV), EDV = the subject's EDV.

Masks are `anatomy.label_maps`: rasterised (pixel centres inside) from the same
polygons that are painted (`anatomy.polygons`), in painter's order: myocardium =
epicardial polygon (the band around the cavity), then LA, then (4CH) RA and RV
cavities as background, then the LV cavity.

Labels: cfg EF = TrueEF + N(0, sd) (`subjects.label_noise`), sd from the worse of
the two views' ImageQuality (sd 2 / 3.5 / 6 points), rounded to 0.1, the same
in both cfgs. Each view has its own quality tier (Good/Medium/Poor), frame
rate, heart-rate jitter and ultrasound look.

Determinism: patient i draws from `np.random.default_rng([seed, 3, i, ...])`;
gzip streams carry mtime 0 and no file name, so the same seed writes the same
bytes for any worker count.
"""
from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib

import nibabel as nib
import numpy as np

from cardiac_data import volumes
from cardiac_data.synthetic import anatomy, jobs, rendering, subjects

GENERATOR_VERSION = "camus-1"
VIEWS = ("2CH", "4CH")
QUALITY_NAMES = {"good": "Good", "medium": "Medium", "poor": "Poor"}
SUBSETS = ("training", "validation", "testing")
FPS_CHOICES = (30, 40, 50, 60, 70)
FPS_PROBS = (0.1, 0.2, 0.35, 0.2, 0.15)
CFG_KEYS = ("ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate")
_VIEW_COLUMNS = ("Quality", "NbFrame", "ED", "ES", "FrameRate", "PixelSpacing", "Dropout",
                 "Shadow")
GROUND_TRUTH_COLUMNS = (
    "Patient", "TrueEF", "LabelNoiseSD", "Quality", "LabelEF", "TrueEDV", "TrueESV", "Split",
    "Subgroup", "Age", "Sex", "Weight", "Height", "BSA", "HeartRate", "LongAxisED",
    "DiameterRatio2CH4CH", "LongitudinalShortening", "RadialShortening",
    *(col + view for view in VIEWS for col in _VIEW_COLUMNS))

_CAMUS_CODE = 3           # rng stream tag (echonet_writer uses 1, 2)
_SPLIT_CODE = 103
_GZIP_LEVEL = 6


def patient_id(index: int) -> str:
  """0-based index → 'patient0001', … (CAMUS numbering)."""
  return f"patient{index + 1:04d}"


def camus_split(num_subjects: int, seed: int) -> list[str]:
  """Subset ('training'/'validation'/'testing') of each patient index.

  A seeded permutation puts round(10 %) of the patients (at least one each from 3
  patients on) in validation and in testing, the rest in training.
  """
  n = int(num_subjects)
  k = max(1, int(round(0.1 * n))) if n >= 3 else 0
  perm = np.random.default_rng([int(seed), _SPLIT_CODE]).permutation(n)
  out = ["training"] * n
  for i in perm[:k]:
    out[i] = "validation"
  for i in perm[k:2 * k]:
    out[i] = "testing"
  return out


# ----------------------------------------------------------------------------
# Geometry of the two views.


def _deepen(heart: anatomy.Heart, acq: anatomy.Acquisition, step_cm: float = 0.5):
  """The heart imaged 0.5 cm deeper: sizes shrink, the apex keeps its pixel (as the
  sonographer re-centres it; `anatomy.make_heart_and_acquisition` does the same)."""
  depth = acq.spacing * acq.sector_radius
  k = depth / (depth + step_cm)
  heart = dataclasses.replace(
      heart, a=k * heart.a, b=k * heart.b, wall=k * heart.wall, rv_width=k * heart.rv_width,
      la_len=k * heart.la_len, la_width=k * heart.la_width, swing=k * heart.swing)
  return heart, dataclasses.replace(acq, spacing=acq.spacing / k)


def view_geometry(subject: subjects.Subject, rng: np.random.Generator, size: int):
  """{'4CH': (heart, acq), '2CH': (heart, acq)} of one LV, and ρ = b₂/b.

  The 4CH is `anatomy.make_heart_and_acquisition` for EDV/ρ (single plane), so the
  biplane EDV is the subject's. Timing fields of the acquisitions are placeholders
  (`half_cycle` sets them).
  """
  ratio = float(rng.uniform(0.85, 1.15))
  heart4, acq4 = anatomy.make_heart_and_acquisition(
      dataclasses.replace(subject, edv_ml=subject.edv_ml / ratio), rng, size=size,
      fps_choices=FPS_CHOICES, fps_probs=FPS_PROBS)
  scale = size / 112.0
  swing_dir = rng.uniform(0, 2 * math.pi)
  heart2 = dataclasses.replace(
      heart4, b=ratio * heart4.b,
      apex=heart4.apex + rng.normal(0.0, 1.0, 2) * scale,
      angle=heart4.angle + math.radians(rng.normal(0.0, 3.0)),
      la_len=heart4.la_len * rng.uniform(0.9, 1.1),
      la_width=heart4.la_width * rng.uniform(0.85, 1.1),
      swing=rng.uniform(0.0, 1.2) * scale * np.array([math.cos(swing_dir), math.sin(swing_dir)]))
  quality2 = subjects.quality_tier(subject.quality_score + rng.normal(0.1, 0.4))
  dropout2 = quality2 == "poor" or (quality2 == "medium" and rng.random() < 0.4)
  acq2 = dataclasses.replace(acq4, quality=quality2, dropout=dropout2,
                             shadow=quality2 == "poor" and rng.random() < 0.5)
  for _ in range(40):
    if anatomy.lv_fits_sector(heart2, acq2):
      break
    heart2, acq2 = _deepen(heart2, acq2)
  return {"4CH": (heart4, acq4), "2CH": (heart2, acq2)}, ratio


def half_cycle(acq: anatomy.Acquisition, heart_rate: float, reverse: bool,
               rng: np.random.Generator) -> anatomy.Acquisition:
  """Timing of a half sequence: ED (frame 0) → ES (last), or ES → ED if `reverse`.

  The systolic (or diastolic) duration is a whole number of frames, so the end
  frames sit exactly at c = 0 and c = 1 of `anatomy.contraction`.
  """
  fps = int(rng.choice(np.asarray(FPS_CHOICES), p=np.asarray(FPS_PROBS)))
  hr = float(np.clip(heart_rate * math.exp(rng.normal(0.0, 0.03)), 45, 130))
  fpc = 60.0 * fps / hr
  s_target = float(np.clip(0.33 + 0.0013 * (hr - 60.0), 0.3, 0.48))
  if reverse:
    n = max(3, int(round((1.0 - s_target) * fpc)))
    sys_frac, es, ed = 1.0 - n / fpc, 0, n
  else:
    n = max(3, int(round(s_target * fpc)))
    sys_frac, es, ed = n / fpc, n, 0
  return dataclasses.replace(acq, fps=fps, num_frames=n + 1, heart_rate=hr, es_frame=es,
                             ed_frame=ed, systolic_fraction=sys_frac, frames_per_cycle=fpc)


def biplane_volumes_ml(views: dict, c) -> np.ndarray:
  """Biplane method-of-discs LV volume (mL) at contraction c (scalar or (K,))."""
  (h4, a4), (h2, a2) = views["4CH"], views["2CH"]
  out = []
  for cc in np.atleast_1d(np.asarray(c, np.float64)):
    _, w4, big_l = anatomy.lv_half_widths(h4, float(cc))
    _, w2, _ = anatomy.lv_half_widths(h2, float(cc))
    out.append(volumes.discs_volume(2.0 * w4 * a4.spacing, big_l * a4.spacing,
                                    2.0 * w2 * a2.spacing))
  return np.asarray(out)


# ----------------------------------------------------------------------------
# Rendering.


def render_view(heart: anatomy.Heart, acq: anatomy.Acquisition, view: str,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(frames uint8 (T, S, S), labels uint8 (T, S, S)) of one half sequence."""
  frames = rendering.render_clip(heart, acq, rng, view)
  c, phase = anatomy.clip_contraction(acq)
  labels = anatomy.label_maps(heart, c, phase, acq.systolic_fraction, view, acq.size)
  return frames, labels


# ----------------------------------------------------------------------------
# Files.


def nifti_gz_bytes(arr: np.ndarray, spacing_mm: float) -> bytes:
  """`.nii.gz` bytes of a (T, H, W) or (H, W) array as SimpleITK lays it out
  (nibabel array = arr.T, zooms (col, row[, 1])); gzip mtime 0, no file name."""
  arr = np.asarray(arr)
  zooms = [float(spacing_mm)] * 2 + [1.0] * (arr.ndim - 2)
  img = nib.Nifti1Image(np.ascontiguousarray(arr.T), np.diag(zooms + [1.0] * (4 - len(zooms))))
  img.header.set_zooms(zooms)
  img.header.set_xyzt_units("mm", "sec")
  return gzip.compress(img.to_bytes(), compresslevel=_GZIP_LEVEL, mtime=0)


def cfg_text(entries: dict) -> str:
  return "".join(f"{k}: {entries[k]}\n" for k in CFG_KEYS)


def _patient_task(args) -> list:
  out_dir, seed, index, size, reverse_prob, subset = args
  rng = np.random.default_rng([seed, _CAMUS_CODE, index])
  subject = subjects.adult_subject(rng)
  views, ratio = view_geometry(subject, rng, size)
  edv, esv = biplane_volumes_ml(views, [0.0, 1.0])
  true_ef = 100.0 * (edv - esv) / edv
  worst = max((views[v][1].quality for v in VIEWS), key=subjects.QUALITIES.index)
  label, sd = subjects.label_noise(true_ef, worst, rng)
  label_text = f"{float(label):.1f}"
  patient = patient_id(index)
  folder = pathlib.Path(out_dir) / "database_nifti" / patient
  folder.mkdir(parents=True, exist_ok=True)
  per_view = []
  for v, view in enumerate(VIEWS):
    vrng = np.random.default_rng([seed, _CAMUS_CODE, index, 1 + v])
    heart, acq = views[view]
    acq = half_cycle(acq, subject.heart_rate, bool(vrng.random() < reverse_prob), vrng)
    frames, labels = render_view(heart, acq, view, vrng)
    spacing_mm = 10.0 * acq.spacing
    prefix = folder / f"{patient}_{view}"
    files = {"half_sequence": frames, "half_sequence_gt": labels,
             "ED": frames[acq.ed_frame], "ED_gt": labels[acq.ed_frame],
             "ES": frames[acq.es_frame], "ES_gt": labels[acq.es_frame]}
    for tag, arr in files.items():
      pathlib.Path(f"{prefix}_{tag}.nii.gz").write_bytes(nifti_gz_bytes(arr, spacing_mm))
    cfg = {"ED": acq.ed_frame + 1, "ES": acq.es_frame + 1, "NbFrame": acq.num_frames,
           "Sex": subject.sex, "Age": int(round(subject.age)),
           "ImageQuality": QUALITY_NAMES[acq.quality], "EF": label_text, "FrameRate": acq.fps}
    (folder / f"Info_{view}.cfg").write_text(cfg_text(cfg), encoding="utf-8")
    per_view += [cfg["ImageQuality"], acq.num_frames, cfg["ED"], cfg["ES"], acq.fps,
                 jobs.fmt(spacing_mm, 6), int(acq.dropout), int(acq.shadow)]
  heart4, acq4 = views["4CH"]
  fmt = jobs.fmt
  return [patient, fmt(true_ef, 6), fmt(sd, 2), worst, label_text, fmt(edv, 6), fmt(esv, 6),
          subset, subject.subgroup, fmt(subject.age, 3), subject.sex, fmt(subject.weight, 2),
          fmt(subject.height, 2), fmt(subject.bsa, 4), fmt(subject.heart_rate, 2),
          fmt(heart4.lv_axes(0.0)[2] * acq4.spacing, 4), fmt(ratio, 4),
          fmt(heart4.f_long, 4), fmt(heart4.f_rad, 4), *per_view]


def write_camus(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                workers: int | None = None, progress: bool = False, overwrite: bool = False,
                size: int = 256, reverse_prob: float = 0.1) -> int:
  """Writes a CAMUS NIfTI tree (database_nifti/, database_split/, ground_truth.csv).

  Args:
    out: the CAMUS root (what `read_camus` and the `Camus` builder take).
    num_subjects: patients (patient0001 …), each with a 2CH and a 4CH half sequence.
    seed: same seed, same bytes (whatever `workers`).
    size: frame height and width S in pixels.
    reverse_prob: probability, per view, that the half sequence runs ES → ED.
  Returns the number of half sequences written (2 per patient).
  """
  if int(num_subjects) < 1:
    raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
  if int(size) < 32:
    raise ValueError(f"size must be >= 32 pixels, got {size}")
  if not 0.0 <= float(reverse_prob) <= 1.0:
    raise ValueError(f"reverse_prob must be in [0, 1], got {reverse_prob}")
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite, ("database_nifti", "database_split", "ground_truth.csv"))
  (out / "database_nifti").mkdir(parents=True, exist_ok=True)
  subsets = camus_split(num_subjects, seed)
  tasks = [(str(out), int(seed), i, int(size), float(reverse_prob), subsets[i])
           for i in range(int(num_subjects))]
  rows = jobs.run_tasks(_patient_task, tasks, workers, progress, "camus")
  split_dir = out / "database_split"
  split_dir.mkdir(parents=True, exist_ok=True)
  for subset in SUBSETS:
    names = [patient_id(i) for i, s in enumerate(subsets) if s == subset]
    (split_dir / f"subgroup_{subset}.txt").write_text("".join(n + "\n" for n in names))
  jobs.write_csv(out / "ground_truth.csv", GROUND_TRUTH_COLUMNS, rows)
  return 2 * len(rows)


write_camus.generator_version = GENERATOR_VERSION
