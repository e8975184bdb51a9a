"""EchoNet-Dynamic and EchoNet-Pediatric A4C cohorts in their published layouts.

One subject (`subjects`) → one heart (`anatomy`) → one rendered clip
(`rendering`) per video, written with its FileList row, tracings and ground truth.

Orientation: every clip is written as the released AVIs look, apex (and the
sector apex) at the top, atria at the bottom, LV on the image right. For
EchoNet-Pediatric this is the orientation *after* the vertical flip that its
preprocessing applied to the apex-down A4C DICOMs, so readers must not flip the
synthetic (or real released) pediatric A4C clips again.

Tracings: the truncated ellipse of the A4C plane at the ED/ES frames (rendered
frames hit c = 0 and c = 1 exactly). EchoNet-Dynamic rows per traced frame are the
long axis (X1,Y1 = apex, X2,Y2 = middle of the mitral plane) then the 20 disc
chords at the disc middles from apex to base (X1,Y1 on the lateral wall); the ES
block comes first, then the next ED. EchoNet-Pediatric rows are contour points
(odd count, default 41) from the lateral mitral hinge through the apex to the
septal hinge.

Labels: FileList EF = TrueEF + N(0, sd) with sd 2 / 3.5 / 6 points for good /
medium / poor quality (`subjects.label_noise`); Dynamic EDV/ESV are measured
volumes (EDV with its own error, ESV = EDV·(1 − EF/100)). `ground_truth.csv` holds
the truth, with `PlaneEF` the single-plane disc EF of the tracings
(`anatomy.lv_volume_px`).

Determinism: subject i draws from `np.random.default_rng([seed, dataset_code, i,
...])`, so a parallel run writes the same bytes as a serial one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib

import numpy as np

from cardiac_data import video as video_io
from cardiac_data import volumes
from cardiac_data.synthetic import anatomy, jobs, rendering, subjects

GENERATOR_VERSION = "echo-4"

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
_DYNAMIC_CODE, _PEDIATRIC_CODE = 1, 2   # rng stream tags of the two layouts.


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
  fmt = jobs.fmt
  return [name, fmt(100.0 * (edv_ml - esv_ml) / edv_ml, 6), fmt(sd, 2), acq.quality,
          fmt(label, 6), fmt(edv_ml, 6), fmt(esv_ml, 6), acq.ed_frame, acq.es_frame,
          fmt(acq.heart_rate, 2), acq.fps, acq.num_frames, fmt(acq.systolic_fraction, 4),
          subject.subgroup, fmt(acq.spacing, 6), fmt(acq.spacing * acq.sector_radius, 2),
          fmt(subject.age, 3), subject.sex, fmt(subject.weight, 2), fmt(subject.height, 2),
          fmt(subject.bsa, 4), patient_id, int(acq.dropout), int(acq.shadow),
          fmt(float(volumes.ejection_fraction(anatomy.lv_volume_px(heart, 0.0),
                                              anatomy.lv_volume_px(heart, 1.0))), 6)]


def _volumes_ml(heart: anatomy.Heart, acq: anatomy.Acquisition) -> tuple[float, float]:
  cm3 = acq.spacing**3
  return (anatomy.lv_true_volume_px(heart, 0.0) * cm3,
          anatomy.lv_true_volume_px(heart, 1.0) * cm3)


def _dynamic_task(args) -> VideoResult:
  out_dir, seed, index, size = args
  rng = np.random.default_rng([seed, _DYNAMIC_CODE, index])
  subject = subjects.adult_subject(rng)
  heart, acq = anatomy.make_heart_and_acquisition(
      subject, rng, size=size, fps_choices=(30, 40, 50, 60), fps_probs=(0.07, 0.08, 0.75, 0.1))
  frames = rendering.render_clip(heart, acq, rng)
  name = dynamic_file_name(seed, index)
  video_io.write_video(os.path.join(out_dir, "Videos", name + ".avi"), frames, acq.fps)
  edv, esv = _volumes_ml(heart, acq)
  label, sd = subjects.label_noise(100.0 * (edv - esv) / edv, acq.quality, rng)
  label = float(label)
  # Measured volumes: EDV with its own error, ESV consistent with the EF label.
  tier = subjects.QUALITIES.index(acq.quality)
  edv_meas = edv * math.exp(rng.normal(0.0, 0.05 + 0.03 * tier))
  esv_meas = edv_meas * (1.0 - label / 100.0)
  fmt = jobs.fmt
  filelist = [name, fmt(label, 8), fmt(esv_meas, 8), fmt(edv_meas, 8), size, size,
              acq.fps, acq.num_frames, dynamic_split(name)]
  tracings = []
  for frame, cc in ((acq.es_frame, 1.0), (acq.ed_frame, 0.0)):  # ES block first, as EchoNet
    axis, chords = anatomy.lv_chords(heart, cc)
    tracings.append([name + ".avi", *(fmt(v, 6) for v in axis.reshape(-1)), frame])
    for ch in chords:
      tracings.append([name + ".avi", *(fmt(v, 6) for v in ch.reshape(-1)), frame])
  truth = [_truth_row(name, subject, heart, acq, label, sd, edv, esv, "")]
  return VideoResult([filelist], tracings, truth)


def _pediatric_task(args) -> VideoResult:
  out_dir, seed, index, size, second_video_prob, tracing_points = args
  rng = np.random.default_rng([seed, _PEDIATRIC_CODE, index])
  subject = subjects.pediatric_subject(rng)
  patient = _cr_id(seed, index, 0)
  fold = pediatric_split(patient)
  n_videos = 2 if rng.random() < second_video_prob else 1
  result = VideoResult([], [], [])
  for j in range(n_videos):
    vrng = np.random.default_rng([seed, _PEDIATRIC_CODE, index, 1, j])
    heart, acq = anatomy.make_heart_and_acquisition(
        subject, vrng, size=size, fps_choices=(30, 40, 50, 60, 70),
        fps_probs=(0.15, 0.15, 0.4, 0.2, 0.1), quality_shift=0.3 * j)
    frames = rendering.render_clip(heart, acq, vrng)
    accession = _cr_id(seed, 2 * index + (j if vrng.random() < 0.4 else 0), 1)
    instance = int(vrng.integers(1, 120)) + 200 * j
    name = f"{patient}-{accession}-{instance:06d}.avi"
    video_io.write_video(os.path.join(out_dir, "A4C", "Videos", name), frames, acq.fps)
    edv, esv = _volumes_ml(heart, acq)
    label, sd = subjects.label_noise(100.0 * (edv - esv) / edv, acq.quality, vrng)
    label = float(label)
    height = "" if vrng.random() < 0.08 else jobs.fmt(subject.height, 1)
    weight = "" if vrng.random() < 0.02 else jobs.fmt(subject.weight, 1)
    result.filelist.append([name, jobs.fmt(label, 2), subject.sex, int(subject.age), weight,
                            height, fold])
    for frame, cc in ((acq.es_frame, 1.0), (acq.ed_frame, 0.0)):
      for x, y in anatomy.lv_contour(heart, cc, tracing_points):
        result.tracings.append([name, jobs.fmt(x, 4), jobs.fmt(y, 4), frame])
    result.truth.append(_truth_row(name, subject, heart, acq, label, sd, edv, esv, patient))
  return result


def _write_tables(results: list[VideoResult], tables: dict) -> int:
  """Writes each field ('filelist', 'tracings', 'truth') of the results to its
  (path, columns) in `tables`; returns the number of videos."""
  for field, (path, columns) in tables.items():
    jobs.write_csv(path, columns, (r for res in results for r in getattr(res, field)))
  return sum(len(res.filelist) for res in results)


def write_echonet_dynamic(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                          workers: int | None = None, progress: bool = False,
                          overwrite: bool = False, size: int = 112) -> int:
  """Writes an EchoNet-Dynamic tree (FileList.csv, VolumeTracings.csv, Videos/).

  One video per subject. Returns the number of videos written.
  """
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite,
                      ("FileList.csv", "VolumeTracings.csv", "Videos", "ground_truth.csv"))
  (out / "Videos").mkdir(parents=True, exist_ok=True)
  tasks = [(str(out), int(seed), i, int(size)) for i in range(int(num_subjects))]
  results = jobs.run_tasks(_dynamic_task, tasks, workers, progress, "echonet_dynamic")
  return _write_tables(results, {
      "filelist": (out / "FileList.csv", DYNAMIC_FILELIST_COLUMNS),
      "tracings": (out / "VolumeTracings.csv", DYNAMIC_TRACING_COLUMNS),
      "truth": (out / "ground_truth.csv", GROUND_TRUTH_COLUMNS)})


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
  jobs.prepare_output(out, overwrite, ("A4C", "ground_truth.csv"))
  (out / "A4C" / "Videos").mkdir(parents=True, exist_ok=True)
  tasks = [(str(out), int(seed), i, int(size), float(second_video_prob), int(tracing_points))
           for i in range(int(num_subjects))]
  results = jobs.run_tasks(_pediatric_task, tasks, workers, progress, "echonet_pediatric")
  return _write_tables(results, {
      "filelist": (out / "A4C" / "FileList.csv", PEDIATRIC_FILELIST_COLUMNS),
      "tracings": (out / "A4C" / "VolumeTracings.csv", PEDIATRIC_TRACING_COLUMNS),
      "truth": (out / "ground_truth.csv", GROUND_TRUTH_COLUMNS)})


write_echonet_dynamic.generator_version = GENERATOR_VERSION
write_echonet_pediatric.generator_version = GENERATOR_VERSION
