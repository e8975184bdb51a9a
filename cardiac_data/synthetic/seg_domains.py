"""Multi-domain partially labelled echo segmentation scenario (Islam et al., MELBA 2026, §4.2).

Three synthetic "vendors" image the same heart model (`anatomy`, `camus_writer`'s two
views) with different looks, standing in for the paper's datasets:

  domain   stands for        views       labels annotated (before any withholding)
  camus    CAMUS             2CH + 4CH   LV, LVM, LA (all)
  unity    Unity Imaging     2CH         LV, LVM, LA (the task withholds LA, §5.3)
  echonet  EchoNet-Dynamic   4CH         LV only (LVM and LA set to background)

A vendor style (`VendorStyle`) changes
  * speckle size: the clip is rendered at `render_scale`·S pixels and resized to S,
    so speckle grains and blur scale by 1/render_scale;
  * gain and contrast: display map u ↦ clip(gain·u^gamma), u the rendered grey / 255;
  * sector shape: the fan's half-angle, and a flat top (a footprint) of `flat_top`
    × S pixels from a sector apex moved above the image.
Labels are the painted polygons rasterised at S (`anatomy.label_maps` on the
heart mapped to S pixels), so they are exact whatever the render size.

Each case is one (patient, view) at ED and ES (two images). Written layout:

  scenario.npz   image uint8 (N, S, S), label uint8 (N, S, S) {0 bg, 1 LV, 2 LVM, 3 LA}
                 (full labels; the task withholds per its config), domain int8 (index
                 into DOMAINS), patient int32, view int8 (0 2CH, 1 4CH), phase int8
                 (0 ED, 1 ES), split int8 (0 train, 1 val, 2 test), spacing_mm float32
  ground_truth.csv  one row per case: domain, patient, view, split, TrueEF (biplane
                 volumetric EF of the patient's LV), spacing

Splits are per patient, ~80/10/10 within each domain (same proportions in every
split, §4.4). Determinism: case (d, i) draws from default_rng([seed, 4, d, i, ...]).
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import cv2
import numpy as np

from cardiac_data.seg_scenario import DOMAIN_LABELS, DOMAINS, SPLITS
from cardiac_data.synthetic import anatomy, camus_writer, jobs, rendering, subjects

GENERATOR_VERSION = "seg-domains-1"
VIEWS = camus_writer.VIEWS                      # ("2CH", "4CH")
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


def render_case(seed: int, domain: str, index: int, size: int):
  """Images (V, 2, S, S), labels (V, 2, S, S) (ED, ES per view), the views, the
  patient's biplane volumetric EF, and the pixel spacing (mm)."""
  d = DOMAINS.index(domain)
  style = STYLES[domain]
  rng = np.random.default_rng([seed, _CODE, d, index])
  subject = subjects.adult_subject(rng)
  render = max(32, int(round(size * style.render_scale)))
  views, _ = camus_writer.view_geometry(subject, rng, render)
  edv, esv = camus_writer.biplane_volumes_ml(views, [0.0, 1.0])
  images, labels, spacing = [], [], []
  for v, view in enumerate(DOMAIN_VIEWS[domain]):
    vrng = np.random.default_rng([seed, _CODE, d, index, 1 + v])
    heart, acq = views[view]
    half = math.radians(vrng.uniform(*style.half_angle_deg))
    # Two frames: ED (c = 0) then ES (c = 1); render_clip pins both exactly.
    acq = vendor_sector(dataclasses.replace(acq, num_frames=2, ed_frame=0, es_frame=1), half,
                        style.flat_top)
    frames = rendering.render_clip(heart, acq, vrng, view)
    images.append(apply_style(frames, style, size))
    c, phase = anatomy.clip_contraction(acq)
    lab = anatomy.label_maps(scale_heart(heart, size / render), c, phase,
                             acq.systolic_fraction, view, size)
    keep = np.isin(lab, (0,) + DOMAIN_LABELS[domain])
    labels.append(np.where(keep, lab, 0).astype(np.uint8))
    spacing.append(10.0 * acq.spacing * render / size)
  return (np.stack(images), np.stack(labels), DOMAIN_VIEWS[domain],
          float(100.0 * (edv - esv) / edv), spacing)


def _case_task(args):
  seed, domain, index, size = args
  return render_case(seed, domain, index, size)


def write_seg_domains(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                      workers: int | None = None, progress: bool = False,
                      overwrite: bool = False, size: int = 64) -> int:
  """Writes scenario.npz and ground_truth.csv (see the module docstring).

  Args:
    num_subjects: patients per domain.
    size: image height and width S.
  Returns the number of images written.
  """
  if int(num_subjects) < 1:
    raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
  if int(size) < 32:
    raise ValueError(f"size must be >= 32 pixels, got {size}")
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite, ("scenario.npz", "ground_truth.csv"))
  out.mkdir(parents=True, exist_ok=True)
  tasks = [(int(seed), dom, i, int(size)) for dom in DOMAINS for i in range(int(num_subjects))]
  results = jobs.run_tasks(_case_task, tasks, workers, progress, "seg_domains")
  arrays = {k: [] for k in ("image", "label", "domain", "patient", "view", "phase", "split",
                            "spacing_mm")}
  rows = []
  splits = {dom: domain_split(num_subjects, seed, d) for d, dom in enumerate(DOMAINS)}
  for (_, dom, i, _), (imgs, labs, views, ef, spacing) in zip(tasks, results):
    d = DOMAINS.index(dom)
    for v, view in enumerate(views):
      for phase in (0, 1):
        arrays["image"].append(imgs[v, phase])
        arrays["label"].append(labs[v, phase])
        arrays["domain"].append(d)
        arrays["patient"].append(i)
        arrays["view"].append(VIEWS.index(view))
        arrays["phase"].append(phase)
        arrays["split"].append(splits[dom][i])
        arrays["spacing_mm"].append(spacing[v])
      rows.append([dom, i, view, SPLITS[splits[dom][i]], jobs.fmt(ef, 6),
                   jobs.fmt(spacing[v], 6)])
  dtypes = dict(image=np.uint8, label=np.uint8, domain=np.int8, patient=np.int32, view=np.int8,
                phase=np.int8, split=np.int8, spacing_mm=np.float32)
  np.savez_compressed(out / "scenario.npz",
                      **{k: np.asarray(v, dtypes[k]) for k, v in arrays.items()})
  jobs.write_csv(out / "ground_truth.csv",
                 ("Domain", "Patient", "View", "Split", "TrueEF", "SpacingMM"), rows)
  return len(arrays["image"])


write_seg_domains.generator_version = GENERATOR_VERSION
