"""Multi-domain partially labelled echo segmentation scenario (Islam et al., MELBA 2026, §4.2),
written in the real datasets' published layouts.

Three synthetic "vendors" image the same heart model (`anatomy`, `camus_writer`'s two
views) with different looks, standing in for the paper's datasets. Each is written
as that dataset is distributed, so the real readers (`cardiac_data.seg_frames`) load it:

  folder     layout                       views   structures annotated
  camus/     CAMUS 2023 NIfTI             2CH+4CH LV, LVM, LA (label maps, ED and ES)
  unity/     Unity Imaging labels + PNG   2CH     LV, LVM, LA (curves; LVM by the
                                                  epicardial curve `curve-lv-epi`)
  echonet/   EchoNet-Dynamic              4CH     LV (VolumeTracings chords, 112×112 AVI)

A vendor style (`VendorStyle`) changes
  * speckle size: the clip is rendered at `render_scale`·S pixels and resized to S,
    so speckle grains and blur scale by 1/render_scale;
  * gain and contrast: display map u ↦ clip(gain·u^gamma), u the rendered grey / 255;
  * sector shape: the fan's half-angle, and a flat top (a footprint) of `flat_top`
    × S pixels from a sector apex moved above the image.

Labels per layout:
  * CAMUS: the painted polygons rasterised at S (`anatomy.label_maps`), as `_gt` NIfTI;
    each half sequence holds two frames, ED (frame 1) and ES (frame 2).
  * Unity: the painted polygons' arcs (LV cavity hinge → apex → hinge, LA, epicardium)
    as curve control points (every `UNITY_POINT_STRIDE`-th vertex and both ends; the
    reader's natural cubic spline through them closed by the straight segment between
    its ends redraws the polygon); frames `01-<sha256>-0000` (ED) and `-0001` (ES).
  * EchoNet: the LV as EchoNet tracings (long axis, then 20 disc chords) at frames 0
    (ED) and 1 (ES) of a two-frame 112×112 AVI; the reader's mask is the chord polygon.

Splits are per patient, ~80/10/10 within each domain (§4.4): CAMUS through
`database_split/`, EchoNet through the FileList's Split column; Unity publishes none,
so its reader draws a seeded split per video. `ground_truth.csv` (top level) has one
row per case: domain, patient, view, split (Unity's: '' = the reader's), TrueEF
(biplane volumetric EF of the patient's LV), spacing. Determinism: case (d, i) draws
from default_rng([seed, 4, d, i, ...]).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib

import cv2
import numpy as np

from cardiac_data import unity
from cardiac_data import video as video_io
from cardiac_data.synthetic import (anatomy, camus_writer, echonet_writer, jobs, rendering,
                                    subjects)

GENERATOR_VERSION = "seg-domains-2"
DOMAINS = ("camus", "unity", "echonet")
SPLITS = ("train", "val", "test")
VIEWS = camus_writer.VIEWS                      # ("2CH", "4CH")
#: EchoNet-Dynamic frames are 112×112 (its tracings are in that grid).
ECHONET_SIZE = 112
#: Unity curves keep every k-th polygon vertex as a spline control point.
UNITY_POINT_STRIDE = 4
_CODE = 4


@dataclasses.dataclass(frozen=True)
class VendorStyle:
  """How one vendor's images look (see the module docstring)."""
  render_scale: float = 1.0       # > 1: finer speckle, < 1: coarser
  gain: float = 1.0
  gamma: float = 1.0              # < 1 lifts dark tissue (lower contrast)
  half_angle_deg: tuple = (36.0, 44.0)
  flat_top: float = 0.0           # footprint width / S (0 = a pointed sector)


STYLES = {
    "camus": VendorStyle(),
    "unity": VendorStyle(render_scale=0.6, gain=1.2, gamma=0.75, half_angle_deg=(46.0, 50.0)),
    "echonet": VendorStyle(render_scale=1.5, gain=0.85, gamma=1.4, half_angle_deg=(40.0, 44.0),
                           flat_top=0.2),
}
DOMAIN_VIEWS = {"camus": ("2CH", "4CH"), "unity": ("2CH",), "echonet": ("4CH",)}


def domain_split(num_subjects: int, seed: int, domain: int) -> np.ndarray:
  """Split index (0 train, 1 val, 2 test) of each patient of one domain: a seeded
  permutation puts round(10 %) (at least 1 from 3 patients on) in val and in test."""
  n = int(num_subjects)
  k = max(1, int(round(0.1 * n))) if n >= 3 else 0
  perm = np.random.default_rng([int(seed), _CODE, 100, int(domain)]).permutation(n)
  out = np.zeros(n, np.int8)
  out[perm[:k]] = 1
  out[perm[k:2 * k]] = 2
  return out


def scale_heart(heart: anatomy.Heart, k: float) -> anatomy.Heart:
  """The heart in pixels of a frame k times larger (pixel centres at integers:
  x ↦ (x + ½)·k − ½)."""
  return dataclasses.replace(
      heart, apex=(np.asarray(heart.apex) + 0.5) * k - 0.5, a=heart.a * k, b=heart.b * k,
      wall=heart.wall * k, rv_width=heart.rv_width * k, la_len=heart.la_len * k,
      la_width=heart.la_width * k, swing=np.asarray(heart.swing) * k)


def vendor_sector(acq: anatomy.Acquisition, half_angle: float, flat_top: float):
  """`acq` with the vendor's fan: half-angle, and with flat_top > 0 the sector apex
  moved up so that the fan crosses row 0 over flat_top·size pixels (a footprint);
  the fan keeps its bottom edge."""
  apex = np.asarray(acq.sector_apex, np.float64)
  radius = acq.sector_radius
  if flat_top > 0:
    lift = 0.5 * flat_top * acq.size / math.tan(half_angle) + apex[1]
    apex = apex - np.array([0.0, lift])
    radius = radius + lift
  return dataclasses.replace(acq, half_angle=half_angle, sector_apex=apex, sector_radius=radius)


def apply_style(frames: np.ndarray, style: VendorStyle, size: int) -> np.ndarray:
  """Resize rendered uint8 frames to S and apply the display map: uint8 (T, S, S)."""
  interp = cv2.INTER_AREA if frames.shape[-1] > size else cv2.INTER_LINEAR
  out = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
  u = out.astype(np.float64) / 255.0
  u = np.clip(style.gain * u**style.gamma, 0.0, 1.0)
  return np.round(255.0 * u).astype(np.uint8)


@dataclasses.dataclass
class View:
  """One rendered view of a case at ED and ES: images (2, S, S), the heart in output
  pixels, its contraction c and phase of the two frames, the pixel spacing (mm)."""
  name: str
  images: np.ndarray
  heart: anatomy.Heart
  c: np.ndarray
  phase: np.ndarray
  systolic_fraction: float
  spacing_mm: float

  def label_maps(self) -> np.ndarray:
    """uint8 (2, S, S) {0 bg, 1 LV, 2 LVM, 3 LA} (`anatomy.label_maps`)."""
    return anatomy.label_maps(self.heart, self.c, self.phase, self.systolic_fraction,
                              self.name, self.images.shape[-1])


def render_case(seed: int, domain: str, index: int, size: int):
  """The case's views (`View`, ED and ES each) and the patient's biplane volumetric EF."""
  d = DOMAINS.index(domain)
  style = STYLES[domain]
  rng = np.random.default_rng([seed, _CODE, d, index])
  subject = subjects.adult_subject(rng)
  render = max(32, int(round(size * style.render_scale)))
  views, _ = camus_writer.view_geometry(subject, rng, render)
  edv, esv = camus_writer.biplane_volumes_ml(views, [0.0, 1.0])
  out = []
  for v, view in enumerate(DOMAIN_VIEWS[domain]):
    vrng = np.random.default_rng([seed, _CODE, d, index, 1 + v])
    heart, acq = views[view]
    half = math.radians(vrng.uniform(*style.half_angle_deg))
    # Two frames: ED (c = 0) then ES (c = 1); render_clip pins both exactly.
    acq = vendor_sector(dataclasses.replace(acq, num_frames=2, ed_frame=0, es_frame=1), half,
                        style.flat_top)
    frames = rendering.render_clip(heart, acq, vrng, view)
    c, phase = anatomy.clip_contraction(acq)
    out.append(View(view, apply_style(frames, style, size), scale_heart(heart, size / render),
                    c, phase, acq.systolic_fraction, 10.0 * acq.spacing * render / size))
  return out, float(100.0 * (edv - esv) / edv)


# ------------------------------------------------------------------------------ layouts


def _write_camus(root: pathlib.Path, index: int, views: list[View], ef: float) -> None:
  patient = camus_writer.patient_id(index)
  folder = root / "database_nifti" / patient
  folder.mkdir(parents=True, exist_ok=True)
  for view in views:
    labels = view.label_maps()
    prefix = folder / f"{patient}_{view.name}"
    files = {"half_sequence": view.images, "half_sequence_gt": labels,
             "ED": view.images[0], "ED_gt": labels[0], "ES": view.images[1], "ES_gt": labels[1]}
    for tag, arr in files.items():
      pathlib.Path(f"{prefix}_{tag}.nii.gz").write_bytes(
          camus_writer.nifti_gz_bytes(arr, view.spacing_mm))
    cfg = {"ED": 1, "ES": 2, "NbFrame": 2, "Sex": "F", "Age": 60, "ImageQuality": "Good",
           "EF": f"{ef:.1f}", "FrameRate": 50}
    (folder / f"Info_{view.name}.cfg").write_text(camus_writer.cfg_text(cfg), encoding="utf-8")


def unity_frame_code(seed: int, index: int, frame: int) -> str:
  """'01-<64 hex>-NNNN': the Unity frame code of case `index`, frame `frame`."""
  digest = hashlib.sha256(f"seg-unity-{seed}-{index}".encode()).hexdigest()
  return f"01-{digest}-{frame:04d}"


def unity_curves(view: View, t: int) -> dict:
  """{curve name: (n, 2) control points (x, y)} of frame t: the arcs of the painted
  LV cavity, LA and epicardium (`anatomy.polygons`), every UNITY_POINT_STRIDE-th
  vertex plus both ends."""
  fills, _, _ = anatomy.polygons(view.heart, view.c[t:t + 1], view.phase[t:t + 1],
                                 view.systolic_fraction)
  out = {}
  for label, fill in ((1, anatomy.LV), (2, anatomy.MYOCARDIUM), (3, anatomy.LA)):
    pts = np.asarray(fills[fill][0][0], np.float64)
    keep = sorted(set(range(0, len(pts), UNITY_POINT_STRIDE)) | {len(pts) - 1})
    out[unity.SYNTHETIC_CURVES[label]] = pts[keep]
  return out


def _write_unity(root: pathlib.Path, seed: int, index: int, views: list[View]) -> dict:
  """Writes the PNG frames; returns the labels JSON entries of the case."""
  (view,) = views
  entries = {}
  for t in (0, 1):
    code = unity_frame_code(seed, index, t)
    path = pathlib.Path(unity.png_path(root / "png-cache", code))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), view.images[t]):
      raise OSError(f"{path}: could not write the PNG frame")
    entries[code] = {"labels": {
        name: {"type": "curve", "x": " ".join(f"{v:.3f}" for v in pts[:, 0]),
               "y": " ".join(f"{v:.3f}" for v in pts[:, 1])}
        for name, pts in unity_curves(view, t).items()}}
  return entries


def echonet_file_name(seed: int, index: int) -> str:
  return "0X" + hashlib.sha1(f"seg-echonet-{seed}-{index}".encode()).hexdigest()[:16].upper()


def _write_echonet(root: pathlib.Path, seed: int, index: int, views: list[View], ef: float,
                   split: str) -> tuple[list, list]:
  """Writes the two-frame AVI; returns (FileList row, VolumeTracings rows)."""
  (view,) = views
  name = echonet_file_name(seed, index)
  video_io.write_video(root / "Videos" / f"{name}.avi", view.images, 50.0)
  fmt = jobs.fmt
  tracings = []
  for frame in (1, 0):                       # ES block first, as EchoNet
    axis, chords = anatomy.lv_chords(view.heart, float(view.c[frame]))
    for row in [axis] + list(chords):
      tracings.append([name + ".avi", *(fmt(v, 4) for v in np.reshape(row, -1)), frame])
  size = view.images.shape[-1]
  filelist = [name, fmt(ef, 4), "", "", size, size, 50, 2, split.upper()]
  return filelist, tracings


def _case_task(args):
  out, seed, domain, index, size, split = args
  root = pathlib.Path(out) / domain
  views, ef = render_case(seed, domain, index, ECHONET_SIZE if domain == "echonet" else size)
  result = {"truth": [[domain, index, v.name, split if domain != "unity" else "",
                       jobs.fmt(ef, 6), jobs.fmt(v.spacing_mm, 6)] for v in views]}
  if domain == "camus":
    _write_camus(root, index, views, ef)
  elif domain == "unity":
    result["unity"] = _write_unity(root, seed, index, views)
  else:
    result["echonet"] = _write_echonet(root, seed, index, views, ef, split)
  return result


def write_seg_domains(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                      workers: int | None = None, progress: bool = False,
                      overwrite: bool = False, size: int = 64) -> int:
  """Writes camus/, unity/, echonet/ and ground_truth.csv (see the module docstring).

  Args:
    num_subjects: patients per domain.
    size: CAMUS-like and Unity-like image height and width S (EchoNet-like frames are
      112×112, as EchoNet's).
  Returns the number of labelled images written.
  """
  if int(num_subjects) < 1:
    raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
  if int(size) < 32:
    raise ValueError(f"size must be >= 32 pixels, got {size}")
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite, DOMAINS + ("ground_truth.csv",))
  for dom in DOMAINS:
    (out / dom).mkdir(parents=True, exist_ok=True)
  (out / "echonet" / "Videos").mkdir(parents=True, exist_ok=True)
  splits = {dom: domain_split(num_subjects, seed, d) for d, dom in enumerate(DOMAINS)}
  tasks = [(str(out), int(seed), dom, i, int(size), SPLITS[splits[dom][i]])
           for dom in DOMAINS for i in range(int(num_subjects))]
  results = jobs.run_tasks(_case_task, tasks, workers, progress, "seg_domains")
  # CAMUS split lists.
  split_dir = out / "camus" / "database_split"
  split_dir.mkdir(parents=True, exist_ok=True)
  for k, subset in enumerate(camus_writer.SUBSETS):
    names = [camus_writer.patient_id(i) for i in range(int(num_subjects))
             if splits["camus"][i] == k]
    (split_dir / f"subgroup_{subset}.txt").write_text("".join(n + "\n" for n in names))
  # Unity labels JSON.
  labels = {}
  for r in results:
    labels.update(r.get("unity", {}))
  (out / "unity" / "labels").mkdir(parents=True, exist_ok=True)
  (out / "unity" / "labels" / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
  # EchoNet tables.
  echo = [r["echonet"] for r in results if "echonet" in r]
  jobs.write_csv(out / "echonet" / "FileList.csv", echonet_writer.DYNAMIC_FILELIST_COLUMNS,
                 [f for f, _ in echo])
  jobs.write_csv(out / "echonet" / "VolumeTracings.csv",
                 echonet_writer.DYNAMIC_TRACING_COLUMNS, [row for _, t in echo for row in t])
  jobs.write_csv(out / "ground_truth.csv",
                 ("Domain", "Patient", "View", "Split", "TrueEF", "SpacingMM"),
                 [row for r in results for row in r["truth"]])
  return 2 * sum(len(r["truth"]) for r in results)


write_seg_domains.generator_version = GENERATOR_VERSION
