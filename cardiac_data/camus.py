"""Reader for CAMUS: the 2023 NIfTI release and the 2019 MetaImage (MHD) release.

Layouts (one record per patient for the chosen view, key `patientXXXX_<view>`):
- NIfTI: `database_nifti/patientXXXX/patientXXXX_<view>_{ED,ES}[_gt].nii.gz`,
  `..._half_sequence[_gt].nii.gz`, `Info_<view>.cfg`; splits from
  `database_split/subgroup_{training,validation,testing}.txt`.
- MHD: `training/patientXXXX/patientXXXX_<view>_{ED,ES}[_gt].mhd`,
  `..._sequence.mhd`, `Info_<view>.cfg`; `testing/` has no ground truth (EF NaN,
  no masks). Without split lists, `training/` is split deterministically:
  val if int(sha1(patient id)) % 10 == 0, else train (about 45 of 450);
  `testing/` is test.
- Either release with `fold=k`: vital/CRISP lists
  `<split_list_dir or root/listSubGroups>/subGroup{k}_{training,validation,testing}.txt`.

Faults: a missing file, folder, cfg key or ground truth, a malformed cfg line or a
sequence whose frame count is not NbFrame raise `DataFormatError`. One unexpected
cfg value (a non-numeric or out-of-range EF/ED/ES/Age, Sex outside M/F, an unknown
ImageQuality, ED = ES) skips that patient's view, counted (`strict=False`, the
default), or raises `BadValueError` naming the cfg file (`strict=True`).

cfg lines are `Key: value`. ED/ES are 1-based and may come in either order
(ED=1, ES=NbFrame or the reverse); records hold 0-based frames. EF is read from
`EF` (2023) or `LVef` (2019), in percent. Labels: 0 background, 1 LV cavity,
2 myocardium, 3 left atrium.

Orientation: NIfTI is read with nibabel, whose array is the transpose of
SimpleITK's; MHD is read with SimpleITK. Both come back as SimpleITK's
(T, H, W) / (H, W) with the apex at the top, and spacing (row_mm, col_mm),
i.e. SimpleITK's (x, y) spacing reversed.
"""
from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import re

from absl import logging
import nibabel as nib
import numpy as np

from cardiac_data.echonet import ReadResult
from cardiac_data.errors import BadValueError, DataFormatError, SkipLog, VideoDecodeError
from cardiac_data.records import EchoRecord

VIEWS = ("2CH", "4CH")
_VIEW_ALIASES = {"A2C": "2CH", "A4C": "4CH"}
LABELS = {0: "background", 1: "LV", 2: "myocardium", 3: "LA"}
IMAGE_QUALITIES = ("Good", "Medium", "Poor")
SUBSETS = {"train": "training", "val": "validation", "test": "testing"}
MHD_VAL_MODULUS = 10

SKIP_NOT_LISTED = "patient not in any split list"
SKIP_BAD_VALUE = "patient whose Info cfg has an unexpected value"
SKIP_NO_MASKS = "patient without ED/ES ground truth (require_masks)"
NOTE_MISSING_DEMOGRAPHIC = "cfg files without a demographic key (set to None)"
NOTE_NO_GROUND_TRUTH = "patients without ground truth (2019 testing/: EF NaN, no masks)"

_PATIENT_RE = re.compile(r"^patient\d+$")


# ------------------------------------------------------------------------------- volumes


def _sitk():
  """SimpleITK, imported on first use: only the 2019 MetaImage release (.mhd) needs it."""
  import SimpleITK  # pylint: disable=g-import-not-at-top
  return SimpleITK


def _nifti_array(img) -> np.ndarray:
  arr = np.asanyarray(img.dataobj)
  while arr.ndim > 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  return arr


def read_camus_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
  """Image (T, H, W) or (H, W) with the apex at the top, and spacing (row_mm, col_mm).

  `.nii`/`.nii.gz` through nibabel (axes reversed to SimpleITK's order), `.mhd`
  through SimpleITK. Raises VideoDecodeError naming the file if it is missing
  or unreadable.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VideoDecodeError(path, "image file not found")
  lower = path.lower()
  try:
    if lower.endswith((".nii", ".nii.gz")):
      img = nib.load(path)
      arr = _nifti_array(img).T  # nibabel (x, y[, t]) -> (t,) y, x
      zooms = img.header.get_zooms()
      spacing = (float(zooms[1]), float(zooms[0]))
    elif lower.endswith(".mhd"):
      sitk = _sitk()
      img = sitk.ReadImage(path)
      arr = sitk.GetArrayFromImage(img)
      sp = img.GetSpacing()
      spacing = (float(sp[1]), float(sp[0]))
    else:
      raise VideoDecodeError(path, "not a NIfTI (.nii, .nii.gz) or MetaImage (.mhd) file")
  except VideoDecodeError:
    raise
  except Exception as e:  # nibabel/SimpleITK raise many types on corrupt files.
    raise VideoDecodeError(path, f"cannot read image: {type(e).__name__}: {e}") from None
  if arr.ndim not in (2, 3) or arr.size == 0:
    raise VideoDecodeError(path, f"expected a 2D image or a 2D+time sequence, got shape {arr.shape}")
  return np.ascontiguousarray(arr), spacing


def volume_shape(path: str | os.PathLike) -> tuple[int, ...]:
  """(T, H, W) or (H, W) from the header only, in read_camus_volume's order."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataFormatError(path, "file not found")
  try:
    if path.lower().endswith(".mhd"):
      reader = _sitk().ImageFileReader()
      reader.SetFileName(path)
      reader.ReadImageInformation()
      shape = tuple(reader.GetSize())
    else:
      shape = tuple(nib.load(path).shape)
      while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
  except Exception as e:  # Corrupt header.
    raise DataFormatError(path, f"cannot read image header: {type(e).__name__}: {e}") from None
  return tuple(int(s) for s in shape[::-1])


def to_uint8_image(arr: np.ndarray, path: str | os.PathLike) -> np.ndarray:
  """Checks greyscale values are in 0..255 and returns uint8 (rounded)."""
  if arr.dtype == np.uint8:
    return arr
  a = np.asarray(arr, np.float64)
  if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255:
    raise VideoDecodeError(path, f"intensities outside 0..255 (min {np.nanmin(a):g}, "
                           f"max {np.nanmax(a):g})")
  return np.rint(a).astype(np.uint8)


def read_camus_labels(path: str | os.PathLike) -> np.ndarray:
  """uint8 label map (H, W) or (T, H, W); DataFormatError if a value is outside {0,1,2,3}."""
  arr, _ = read_camus_volume(path)
  values = np.unique(arr)
  bad = [v.item() for v in values if v not in LABELS]
  if bad:
    raise DataFormatError(path, f"label values {bad[:10]} outside {{0, 1, 2, 3}} "
                          "(background, LV, myocardium, LA)")
  return arr.astype(np.uint8)


# ----------------------------------------------------------------------------------- cfg


def read_cfg(path: str | os.PathLike) -> dict[str, str]:
  """`Key: value` lines -> dict; DataFormatError naming the file and line."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataFormatError(path, "cfg file not found")
  out = {}
  with open(path, encoding="utf-8", errors="replace") as f:
    for n, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      if ":" not in line:
        raise DataFormatError(path, f"expected 'Key: value', got {line!r}", row=n)
      key, value = (s.strip() for s in line.split(":", 1))
      if key in out:
        raise DataFormatError(path, f"key {key!r} appears twice", row=n)
      out[key] = value
  return out


def _cfg_number(cfg, key, path, *, integer=False, lo=None, hi=None):
  text = cfg[key]
  try:
    value = float(text)
  except ValueError:
    raise BadValueError(path, f"{key}={text!r} is not a number") from None
  if not np.isfinite(value) or (integer and value != round(value)):
    raise BadValueError(path, f"{key}={text!r} is not {'an integer' if integer else 'finite'}")
  if (lo is not None and value < lo) or (hi is not None and value > hi):
    raise BadValueError(path, f"{key}={text!r} is outside [{lo}, {hi}]")
  return int(value) if integer else value


def _parse_info(cfg: dict[str, str], path: str, *, has_gt: bool, notes) -> dict:
  """Labels and demographics of one Info_<view>.cfg."""
  required = ["ED", "ES", "NbFrame"]
  missing = [k for k in required if k not in cfg]
  ef_key = "EF" if "EF" in cfg else ("LVef" if "LVef" in cfg else None)
  if has_gt and ef_key is None:
    missing.append("EF (or LVef)")
  if missing:
    raise DataFormatError(path, f"missing cfg key(s) {missing}; found {sorted(cfg)}")
  nframes = _cfg_number(cfg, "NbFrame", path, integer=True, lo=1)
  ed = _cfg_number(cfg, "ED", path, integer=True, lo=1, hi=nframes)
  es = _cfg_number(cfg, "ES", path, integer=True, lo=1, hi=nframes)
  if ed == es and nframes > 1:
    raise BadValueError(path, f"ED and ES are the same frame ({ed})")
  out = {"num_frames": nframes, "ed_frame": ed - 1, "es_frame": es - 1,
         "ef": _cfg_number(cfg, ef_key, path, lo=0, hi=100) if ef_key else float("nan")}
  for key, name in (("LVedv", "edv"), ("LVesv", "esv"), ("EDV", "edv"), ("ESV", "esv")):
    if key in cfg:
      out[name] = _cfg_number(cfg, key, path, lo=0)
  out["fps"] = _cfg_number(cfg, "FrameRate", path, lo=0) if cfg.get("FrameRate") else float("nan")
  attrs = {}
  for key in ("Age", "Sex", "ImageQuality"):
    if key not in cfg:
      notes[NOTE_MISSING_DEMOGRAPHIC] += 1
    value = cfg.get(key, "")
    if value.lower() in ("", "nan", "none", "na"):
      attrs[key] = None
    elif key == "Age":
      attrs[key] = _cfg_number(cfg, key, path, lo=0)
    elif key == "Sex":
      if value.upper() not in ("M", "F"):
        raise BadValueError(path, f"Sex={value!r} is not M or F")
      attrs[key] = value.upper()
    else:
      match = [q for q in IMAGE_QUALITIES if q.lower() == value.lower()]
      if not match:
        raise BadValueError(path, f"ImageQuality={value!r} is not one of {IMAGE_QUALITIES}")
      attrs[key] = match[0]
  out["attributes"] = attrs
  return out


# -------------------------------------------------------------------------------- splits


def _read_list(path: pathlib.Path) -> list[tuple[str, int]]:
  if not path.is_file():
    raise DataFormatError(path, "split list not found")
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, start=1):
      if line.strip():
        out.append((line.strip(), n))
  return out


def _read_split_lists(split_dir: pathlib.Path, fold: int | None):
  """(patient -> split, patient -> (split, list file, line)) from subgroup_*.txt
  (or vital's subGroup{fold}_*.txt); DataFormatError if a patient is listed twice."""
  assigned: dict[str, tuple[str, pathlib.Path, int]] = {}
  for split, subset in SUBSETS.items():
    name = f"subgroup_{subset}.txt" if fold is None else f"subGroup{fold}_{subset}.txt"
    path = split_dir / name
    for patient, n in _read_list(path):
      if patient in assigned:
        other = assigned[patient]
        raise DataFormatError(path, f"{patient} is also listed in {other[1].name} line {other[2]}",
                              row=n)
      assigned[patient] = (split, path, n)
  return {p: v[0] for p, v in assigned.items()}, assigned


def mhd_default_split(patient: str) -> str:
  """Deterministic val/train split of the MHD `training/` folder (about 1 in 10 to val)."""
  h = int(hashlib.sha1(patient.encode("utf-8")).hexdigest(), 16)
  return "val" if h % MHD_VAL_MODULUS == 0 else "train"


def _patients(folder: pathlib.Path) -> list[str]:
  if not folder.is_dir():
    raise DataFormatError(folder, "folder not found")
  return sorted(d.name for d in folder.iterdir() if d.is_dir() and _PATIENT_RE.match(d.name))


def _detect_release(root: pathlib.Path) -> tuple[str, pathlib.Path]:
  if (root / "database_nifti").is_dir():
    return "nifti", root / "database_nifti"
  if (root / "training").is_dir():
    return "mhd", root
  patients = _patients(root)
  if patients and any(f.name.endswith(".nii.gz") for f in (root / patients[0]).iterdir()):
    return "nifti", root
  raise DataFormatError(root, "not a CAMUS root: expected database_nifti/ (2023 NIfTI release), "
                        "training/ and testing/ (2019 MHD release), or patientXXXX/ folders "
                        "holding .nii.gz files")


# -------------------------------------------------------------------------------- reader


def read_camus(root: str | os.PathLike, *, view: str = "4CH", release: str = "auto",
               split_list_dir: str | None = None, fold: int | None = None,
               strict: bool = False, require_masks: bool = False) -> ReadResult:
  """Reads CAMUS into one record per patient for `view` ('2CH' or '4CH').

  Args:
    root: the CAMUS folder (holding database_nifti/ and database_split/, or
      training/ and testing/), or database_nifti/ itself.
    release: 'nifti', 'mhd' or 'auto' (from the folder layout).
    split_list_dir: folder of the split lists; default database_split/ next to
      database_nifti/ (NIfTI), root/listSubGroups (with `fold`), none (MHD).
    fold: use vital/CRISP's `subGroup{fold}_*.txt` lists instead.
    strict: raise BadValueError on the first unexpected cfg value; otherwise that
      patient's view is skipped and counted.
    require_masks: drop (and count) patients without ED and ES ground truth (the
      2019 release's testing/), as EchoNet's `require_tracings`.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataFormatError(root, "CAMUS root folder not found")
  view = _VIEW_ALIASES.get(str(view).upper(), str(view).upper())
  if view not in VIEWS:
    raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
  if release == "auto":
    release, data_dir = _detect_release(root)
  elif release == "nifti":
    data_dir = root / "database_nifti" if (root / "database_nifti").is_dir() else root
  elif release == "mhd":
    data_dir = root
  else:
    raise ValueError(f"release must be 'auto', 'nifti' or 'mhd', got {release!r}")

  if fold is not None and (int(fold) != fold or fold < 0):
    raise ValueError(f"fold must be a non-negative integer or None, got {fold!r}")
  if split_list_dir is not None:
    split_dir = pathlib.Path(split_list_dir)
  elif fold is not None:
    split_dir = root / "listSubGroups"
  elif release == "nifti":
    split_dir = data_dir.parent / "database_split"
  else:
    split_dir = None

  skips = SkipLog(f"CAMUS {release} {view}")
  notes = collections.Counter()
  # patient -> (folder, has ground truth)
  if release == "nifti":
    found = {p: (data_dir / p, True) for p in _patients(data_dir)}
  else:
    found = {p: (data_dir / "training" / p, True) for p in _patients(data_dir / "training")}
    testing = data_dir / "testing"
    if testing.is_dir():
      found.update({p: (testing / p, False) for p in _patients(testing)})
    else:
      logging.warning("CAMUS MHD: no testing/ folder; the test split is empty")

  if split_dir is not None:
    split_of, where = _read_split_lists(split_dir, fold)
    for patient, (_, path, n) in where.items():
      if patient not in found:
        raise DataFormatError(path, f"{patient} is listed but its folder is not under {data_dir}",
                              row=n)
  else:
    split_of = {p: (mhd_default_split(p) if gt else "test") for p, (_, gt) in found.items()}

  records = []
  for n, patient in enumerate(sorted(found)):
    if patient not in split_of:
      skips.skip(SKIP_NOT_LISTED)
      continue
    folder, has_gt = found[patient]
    if not has_gt:
      if require_masks:
        skips.skip(SKIP_NO_MASKS, f"patient #{n}")
        continue
      notes[NOTE_NO_GROUND_TRUTH] += 1
    try:
      records.append(_read_patient(folder, patient, view, release, split_of[patient], has_gt,
                                   notes))
    except BadValueError as e:
      if strict:
        raise
      skips.skip(SKIP_BAD_VALUE, f"patient #{n}: {e.message}")
  result = ReadResult(records, skips, dict(notes))
  result.log_summary()
  return result


def _read_patient(folder: pathlib.Path, patient: str, view: str, release: str, split: str,
                  has_gt: bool, notes) -> EchoRecord:
  ext = ".nii.gz" if release == "nifti" else ".mhd"
  seq_tag = "half_sequence" if release == "nifti" else "sequence"
  prefix = f"{patient}_{view}"
  cfg_path = folder / f"Info_{view}.cfg"
  info = _parse_info(read_cfg(cfg_path), str(cfg_path), has_gt=has_gt, notes=notes)
  sequence = folder / f"{prefix}_{seq_tag}{ext}"
  shape = volume_shape(sequence)
  if len(shape) != 3:
    raise DataFormatError(sequence, f"expected a (T, H, W) sequence, got shape {shape}")
  if shape[0] != info["num_frames"]:
    raise DataFormatError(sequence, f"has {shape[0]} frames but {cfg_path.name} says "
                          f"NbFrame={info['num_frames']}")
  mask_paths = {}
  if has_gt:
    for phase in ("ED", "ES"):
      gt = folder / f"{prefix}_{phase}_gt{ext}"
      if not gt.is_file():
        raise DataFormatError(gt, "ground-truth file not found")
      mask_paths[phase] = str(gt)
    seq_gt = folder / f"{prefix}_{seq_tag}_gt{ext}"
    if seq_gt.is_file():
      mask_paths["sequence"] = str(seq_gt)
  return EchoRecord(
      key=prefix, dataset="camus", view=view, video_path=str(sequence), split=split,
      ef=info["ef"], edv=info.get("edv", float("nan")), esv=info.get("esv", float("nan")),
      fps=info["fps"], num_frames=shape[0], height=shape[1], width=shape[2],
      attributes=info["attributes"], ed_frame=info["ed_frame"], es_frame=info["es_frame"],
      mask_paths=mask_paths)
