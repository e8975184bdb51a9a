"""Unity Imaging: curve labels → segmentation masks, and a reader of the PNG release.

Published layout (release `ImperialAIEchocardiographyDataset_2020-12-05`:
`labels.zip` and `png-cache.zip`):

- Frames are PNG files. A frame code is 72 characters, `CC-<64 hex>-NNNN`: class
  `CC` (`01` development, `02` external), the video hash and the zero-padded frame
  index; the video id is `code[:-5]`. UnityImaging/scantensus-echo (`UnityO`)
  stores a frame at `<png_root>/<code[:2]>/<code[3:5]>/<code[5:7]>/<code>.png` with
  `png_root` = `ROOT/png-cache` (`ROOT/png_cache` is also accepted): `png_path`.
- Labels JSON (`convert_firebase_to_labels.py`, `ScantensusPT/datasets/unity.py`):
  `{frame_code: {"labels": {name: LABEL}}}`, in one of two schemas, both read by
  `read_unity_labels`:
  (A) LABEL = `{"type": T, "x": "x1 x2 …", "y": "y1 y2 …"}`;
  (B) LABEL = a list of such instances, of which the published code reads the
  first (`labels[name][0]`); an empty list means the label is missing.
  Coordinates are space-separated floats in original PNG pixels; T ∈ {'curve',
  'point', 'off' (structure absent: a true negative), 'blurred' (present but
  unclear: unknown)}. An optional boolean `"straight_segment"` joins a curve's
  points by straight segments (a polyline); otherwise the points are the control
  points of a natural cubic spline parameterised by normalised cumulative chord
  length (UnityImaging/scantensus `Scantensus/utils/heatmaps.py`
  `interpolate_curve`).

Masks: a structure's curve (e.g. `curve-lv-endo`, mitral hinge → apex → hinge) is
closed by the straight segment between its ends and rasterised (pixel centres
inside, `volumes.polygon_mask`); a straight-segment curve is rasterised as the
polygon of its control points. Label set of a frame: a structure is annotated when
its curve is a 'curve' or 'off' (empty mask); 'blurred', 'point' or missing leaves
it out. Apical names: `curve-lv-endo` (LV), `curve-la-endo` (LA); no apical LV
epicardium curve is published, so LVM is not in the default `STRUCTURE_CURVES`
and needs an explicit curve name (`SYNTHETIC_CURVES` holds the names this
codebase's built-in Unity-like cohort writes, `curve-lv-epi` among them).

Splits: Unity publishes none. `read_unity` splits by video (every frame of a video
in the same split): the sorted video ids of the kept frames are permuted with
`np.random.default_rng([seed, 23])`; the first round(test_fraction · n) are test,
the next round(val_fraction · n) val, the rest train (with ≥ 3 videos, at least one
each of val and test and at least one train video).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import re

import numpy as np
from scipy import interpolate

from cardiac_data import volumes
from cardiac_data.echonet import ReadResult
from cardiac_data.errors import BadValueError, DataFormatError, SkipLog

TYPES = ("curve", "point", "off", "blurred")
# Types that annotate a structure (its mask is known: the curve's inside, or empty).
ANNOTATED_TYPES = ("curve", "off")
# Label id → curve name (the published apical names); LVM (2) is absent unless a
# curve name is configured.
STRUCTURE_CURVES = {1: "curve-lv-endo", 3: "curve-la-endo"}
# The curve names this codebase's built-in Unity-like cohort writes. `curve-lv-epi`
# is not a published Unity name. LVM = inside the epicardial curve and outside the
# LV cavity, because `frame_masks` draws the LV last.
SYNTHETIC_CURVES = {1: "curve-lv-endo", 2: "curve-lv-epi", 3: "curve-la-endo"}

FRAME_CODE_RE = re.compile(r"^\d\d-[0-9a-f]{64}-\d{4}$", re.IGNORECASE | re.ASCII)
PNG_ROOTS = ("png-cache", "png_cache")

SKIP_MALFORMED_CODE = "malformed frame code"
SKIP_NO_STRUCTURE = "no configured structure labelled"
SKIP_NO_PNG = "PNG frame not found"
NOTE_DUPLICATE = "frames labelled in more than one labels file (later file wins)"


# ------------------------------------------------------------------------------- labels


def _floats(value, path: str, where: str, axis: str) -> np.ndarray:
  """Space-separated numbers (or a JSON list of numbers) → float64 array."""
  items = value if isinstance(value, (list, tuple)) else str(value).split()
  try:
    out = np.array([float(v) for v in items], np.float64)
  except (TypeError, ValueError) as e:
    raise DataFormatError(path, f"{where}: {axis} is not a list of numbers ({e})") from None
  if not np.isfinite(out).all():
    raise DataFormatError(path, f"{where}: {axis} holds a non-finite value")
  return out


def _straight_flag(value, path: str, where: str) -> bool:
  if value is None:
    return False
  if isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1)):
    return bool(value)
  raise DataFormatError(path, f"{where}: straight_segment must be a boolean, got {value!r}")


def _parse_label(lab, path: str, frame: str, name: str) -> dict | None:
  """One LABEL of either schema → {'type', 'points', 'straight'}, or None if missing."""
  where = f"frame {frame!r}, label {name!r}"
  if isinstance(lab, list):                          # Schema B: instances; the first counts.
    if not lab:
      return None
    lab = lab[0]
    where += " (first instance)"
  kind = lab.get("type") if isinstance(lab, dict) else None
  if kind not in TYPES:
    got = kind if isinstance(lab, dict) else type(lab).__name__
    raise DataFormatError(path, f"{where}: type {got!r} is not one of {TYPES}")
  x = _floats(lab.get("x", ""), path, where, "x")
  y = _floats(lab.get("y", ""), path, where, "y")
  if x.shape != y.shape:
    raise DataFormatError(path, f"{where}: {x.size} x values but {y.size} y values")
  if kind == "curve" and x.size < 2:
    raise DataFormatError(path, f"{where}: a curve needs ≥ 2 points")
  return {"type": kind, "points": np.stack([x, y], 1),
          "straight": _straight_flag(lab.get("straight_segment"), path, where)}


def read_unity_labels(path: str | os.PathLike) -> dict[str, dict[str, dict]]:
  """Reads one Unity labels JSON (schema A or B, module docstring).

  The file holds frames at its top level (the whole labels export, or any part of
  it).

  Args:
    path: the JSON file.

  Returns:
    {frame_code: {name: {'type': T, 'points': (n, 2) float64 (x, y), 'straight':
    bool}}}; labels given as an empty instance list (schema B) are left out.

  Raises:
    DataFormatError: (a ValueError) naming the file, and the frame and label where
      one is at fault: missing file, invalid JSON, a frame without a 'labels'
      object, an unknown type, non-numeric or mismatched coordinates, a curve of
      fewer than 2 points, a non-boolean straight_segment.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataFormatError(path, "labels file not found")
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataFormatError(path, f"not valid JSON ({e})") from None
  if not isinstance(raw, dict):
    raise DataFormatError(path, "top level must be an object of frame codes")
  out = {}
  for frame, entry in raw.items():
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not isinstance(labels, dict):
      raise DataFormatError(path, f"frame {frame!r} has no 'labels' object")
    parsed = {name: _parse_label(lab, path, frame, name) for name, lab in labels.items()}
    out[frame] = {name: lab for name, lab in parsed.items() if lab is not None}
  return out


# ------------------------------------------------------------------------------- curves


def interpolate_curve(points, num: int = 100) -> np.ndarray:
  """`num` points (x, y) on the natural cubic spline through the control points,
  parameterised by normalised cumulative chord length (2 points: the segment);
  repeated consecutive control points are dropped. (A `straight_segment` curve needs
  no interpolation: `frame_masks` rasterises the polygon of its control points.)

  Raises ValueError for fewer than 2 control points, coinciding ones, or num < 2.
  """
  p = np.asarray(points, np.float64)
  if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
    raise ValueError(f"curve control points must be (n ≥ 2, 2), got shape {p.shape}")
  if num < 2:
    raise ValueError(f"num must be ≥ 2, got {num}")
  seg = np.hypot(*np.diff(p, axis=0).T)
  chord = np.r_[0.0, np.cumsum(seg)]
  if chord[-1] <= 0:
    raise ValueError("curve control points coincide")
  keep = np.r_[True, seg > 0]                      # repeated points break the spline
  t, p = chord[keep] / chord[-1], p[keep]
  t[-1] = 1.0
  u = np.linspace(0.0, 1.0, num)
  if len(t) == 2:
    return p[0] + u[:, None] * (p[1] - p[0])
  return interpolate.CubicSpline(t, p, bc_type="natural")(u)


def _annotated(lab: dict | None) -> bool:
  return lab is not None and lab["type"] in ANNOTATED_TYPES


def frame_masks(frame_labels: dict, shape, curves: dict | None = None,
                num: int = 200) -> tuple[np.ndarray, np.ndarray]:
  """Label map and label set of one frame (module docstring).

  Later structures in `curves` overwrite earlier ones; the LV (1) is drawn last so
  that its cavity wins over an overlapping LA curve, and cuts the cavity out of
  an epicardial curve (LVM, 2).

  Args:
    frame_labels: one frame of `read_unity_labels` ({name: label}).
    shape: (H, W) of the frame.
    curves: label id → curve name; default `STRUCTURE_CURVES`.
    num: samples along a spline curve (a straight-segment curve is rasterised as
      the polygon of its control points).

  Returns:
    (label map uint8 (H, W), label set bool[4] with background always True).
  """
  curves = dict(STRUCTURE_CURVES if curves is None else curves)
  out = np.zeros(shape, np.uint8)
  label_set = np.zeros(4, bool)
  label_set[0] = True
  for label in sorted(curves, key=lambda c: (c == 1, c)):
    lab = frame_labels.get(curves[label])
    if not _annotated(lab):
      continue
    label_set[label] = True
    if lab["type"] == "curve":
      if lab.get("straight", False):
        contour = np.asarray(lab["points"], np.float64)
      else:
        contour = interpolate_curve(lab["points"], num)
      out[volumes.polygon_mask(contour, shape)] = label
  return out, label_set


# ------------------------------------------------------------------------------- release


def png_path(png_root: str | os.PathLike, frame_code: str) -> str:
  """The PNG of a frame: `<png_root>/<code[:2]>/<code[3:5]>/<code[5:7]>/<code>.png`.

  Args:
    png_root: the `png-cache` folder.
    frame_code: `CC-<64 hex>-NNNN` (hex in either case).

  Raises:
    ValueError: the code does not match `^\\d\\d-[0-9a-f]{64}-\\d{4}$`.
  """
  code = str(frame_code)
  if not FRAME_CODE_RE.fullmatch(code):
    raise ValueError(f"malformed Unity frame code {code!r}: expected CC-<64 hex>-NNNN")
  return os.path.join(os.fspath(png_root), code[:2], code[3:5], code[5:7], code + ".png")


@dataclasses.dataclass(frozen=True)
class UnityFrame:
  """One labelled Unity frame.

  Attributes:
    key: the frame code.
    video: the video id (`key[:-5]`).
    png_path: the frame's PNG.
    split: 'train', 'val' or 'test' (by video; module docstring).
    labels: the frame's labels as `read_unity_labels` gives them.
  """
  key: str
  video: str
  png_path: str
  split: str
  labels: dict = dataclasses.field(compare=False, hash=False, repr=False)


def _labels_files(root: pathlib.Path) -> list[pathlib.Path]:
  folder = root / "labels"
  if folder.is_dir():
    files = sorted((p for p in folder.rglob("*.json") if p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())
    if files:
      return files
  if (root / "labels.json").is_file():
    return [root / "labels.json"]
  raise DataFormatError(root, "no Unity labels: expected labels/*.json or labels.json")


def split_videos(videos, *, seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.1) -> dict[str, str]:
  """Seeded split of video ids (module docstring): {video: 'train'|'val'|'test'}."""
  if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
    raise ValueError(f"need 0 ≤ val_fraction, test_fraction and a sum < 1, got "
                     f"{val_fraction}, {test_fraction}")
  videos = sorted(set(videos))
  n = len(videos)
  n_test, n_val = round(test_fraction * n), round(val_fraction * n)
  if n >= 3:
    n_test, n_val = max(1, n_test), max(1, n_val)
    while n_test + n_val > n - 1:                   # keep at least one training video
      if n_val >= n_test and n_val > 1:
        n_val -= 1
      else:
        n_test -= 1
  order = np.random.default_rng([seed, 23]).permutation(n)
  split = {}
  for rank, i in enumerate(order):
    split[videos[i]] = ("test" if rank < n_test else
                        "val" if rank < n_test + n_val else "train")
  return split


def read_unity(root: str | os.PathLike, *, curves: dict | None = None, seed: int = 0,
               val_fraction: float = 0.1, test_fraction: float = 0.1,
               strict: bool = False) -> ReadResult:
  """Reads the Unity Imaging release into one `UnityFrame` per labelled frame.

  Args:
    root: the release folder, holding `labels/` (every `*.json` under it, in sorted
      order) or `labels.json`, and `png-cache/` (or `png_cache/`).
    curves: label id → curve name deciding which frames are usable; default
      `STRUCTURE_CURVES`.
    seed, val_fraction, test_fraction: the split by video (module docstring).
    strict: raise on a malformed frame code (BadValueError) or a missing PNG
      (DataFormatError); otherwise the frame is a counted skip.

  Returns:
    ReadResult with records sorted by frame code. A frame labelled in two files
    takes the later file's labels (counted in `notes`). Frames where none of the
    configured curves is a 'curve' or 'off' are counted skips.

  Raises:
    DataFormatError: no labels files, no PNG folder, a malformed labels file.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataFormatError(root, "Unity root folder not found")
  curves = dict(STRUCTURE_CURVES if curves is None else curves)
  png_root = next((root / d for d in PNG_ROOTS if (root / d).is_dir()), None)
  if png_root is None:
    raise DataFormatError(root, f"no PNG folder: expected one of {PNG_ROOTS}")

  notes = collections.Counter()
  frames: dict[str, dict] = {}
  source: dict[str, pathlib.Path] = {}
  for path in _labels_files(root):
    for code, labels in read_unity_labels(path).items():
      if code in frames:
        notes[NOTE_DUPLICATE] += 1
      frames[code] = labels
      source[code] = path

  skips = SkipLog("Unity Imaging")
  kept = []
  for n, code in enumerate(sorted(frames)):
    labels = frames[code]
    try:
      png = png_path(png_root, code)
    except ValueError as e:
      if strict:
        raise BadValueError(source[code], str(e)) from None
      skips.skip(SKIP_MALFORMED_CODE, f"frame #{n}")
      continue
    if not any(_annotated(labels.get(name)) for name in curves.values()):
      skips.skip(SKIP_NO_STRUCTURE, f"frame #{n}")
      continue
    if not os.path.isfile(png):
      if strict:
        raise DataFormatError(png, f"{SKIP_NO_PNG} (labelled in {source[code]})")
      skips.skip(SKIP_NO_PNG, f"frame #{n}")
      continue
    kept.append((code, png, labels))

  split = split_videos((code[:-5] for code, _, _ in kept), seed=seed,
                       val_fraction=val_fraction, test_fraction=test_fraction)
  records = [UnityFrame(code, code[:-5], png, split[code[:-5]], labels)
             for code, png, labels in kept]
  result = ReadResult(records, skips, dict(notes))
  result.log_summary()
  return result


def read_png_grey(path: str | os.PathLike) -> np.ndarray:
  """A PNG as greyscale uint8 (H, W); RGB(A) via cv2's BGR(A)2GRAY.

  Raises:
    DataFormatError: naming the file, if it cannot be read or is not 8-bit.
  """
  import cv2  # Local: only frame loading needs it.
  path = os.fspath(path)
  img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
  if img is None:
    raise DataFormatError(path, "cannot read PNG frame")
  if img.dtype != np.uint8:
    raise DataFormatError(path, f"PNG frame is {img.dtype}, expected 8-bit")
  if img.ndim == 3 and img.shape[2] == 1:
    img = img[:, :, 0]
  elif img.ndim == 3 and img.shape[2] == 3:
    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
  elif img.ndim == 3 and img.shape[2] == 4:
    img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
  elif img.ndim != 2:
    raise DataFormatError(path, f"PNG frame has unexpected shape {img.shape}")
  return np.ascontiguousarray(img)


def load_frame(rec: UnityFrame, curves: dict | None = None,
               num: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Pixels and masks of one frame.

  Args:
    rec: a `read_unity` record.
    curves: label id → curve name; default `STRUCTURE_CURVES`.
    num: samples along a spline curve.

  Returns:
    (image uint8 (H, W), label map uint8 (H, W), label set bool[4]), the masks at
    the PNG's own size.

  Raises:
    DataFormatError: naming the PNG, if it cannot be read or is 16-bit.
  """
  image = read_png_grey(rec.png_path)
  label, label_set = frame_masks(rec.labels, image.shape, curves, num)
  return image, label, label_set
