"""Small fixture trees in the published on-disk formats, for reader and builder tests.

Each writer returns a dataclass with the root and what was written (the expected
parsed values), so a test can check a reader against the writer and can rewrite
one table to inject a bad input (see `write_csv`). Videos are 16 frames of
112 x 112 MJPG (the lead's `write_video`) showing a dark LV ellipse on speckled
tissue that matches the tracings; CAMUS volumes are NIfTI (nibabel, in the
axis order SimpleITK writes) or MetaImage (SimpleITK), with the apex at the top.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from cardiac_data import video as video_lib

DYNAMIC_FILELIST_HEADER = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                           "NumberOfFrames", "Split")
DYNAMIC_TRACING_HEADER = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
PEDIATRIC_FILELIST_HEADER = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
PEDIATRIC_TRACING_HEADER = ("FileName", "X", "Y", "Frame")


# ------------------------------------------------------------------------------- helpers


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]
              ) -> None:
  """Writes rows verbatim (str(value), no quoting) so tests can inject any text."""
  with open(path, "w", encoding="utf-8") as f:
    f.write(",".join(header) + "\n")
    for row in rows:
      f.write(",".join("" if v is None else str(v) for v in row) + "\n")


def ellipse_chords(cx: float, cy: float, a: float, b: float, n_chords: int = 20) -> np.ndarray:
  """EchoNet-Dynamic tracing of an upright ellipse: long axis row + horizontal chords.

  Row 0 is the long axis (apex (cx, cy - b) to base (cx, cy + b)); rows 1.. are
  chords from apex to base with X1 on the left (x = cx - half width), X2 right.
  """
  rows = [(cx, cy - b, cx, cy + b)]
  for y in cy - b + (np.arange(n_chords) + 0.5) * (2 * b / n_chords):
    half = a * np.sqrt(max(0.0, 1 - ((y - cy) / b) ** 2))
    rows.append((cx - half, y, cx + half, y))
  return np.asarray(rows, np.float64)


def ellipse_points(cx: float, cy: float, a: float, b: float, n: int = 40) -> np.ndarray:
  """EchoNet-Pediatric style contour: n points (x, y) around the ellipse."""
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], axis=1)


def lv_video(num_frames: int, size: tuple[int, int], ellipses: Sequence[tuple], seed: int = 0
             ) -> np.ndarray:
  """uint8 (T, H, W): speckled grey tissue with a dark LV ellipse per frame.

  `ellipses[t]` = (cx, cy, a, b) in pixels of this frame size.
  """
  h, w = size
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  frames = np.empty((num_frames, h, w), np.uint8)
  for t, (cx, cy, a, b) in enumerate(ellipses):
    tissue = 150 + 25 * rng.standard_normal((h, w))
    inside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    frames[t] = np.clip(np.where(inside, 25, tissue), 0, 255).astype(np.uint8)
  return frames


def _cycle(num_frames: int, ed: int, es: int, big: tuple, small: tuple) -> list[tuple]:
  """Per-frame ellipses: `big` up to ED, cosine easing to `small` at ES (ed < es), then `small`."""
  big, small = np.asarray(big, np.float64), np.asarray(small, np.float64)
  out = []
  for t in range(num_frames):
    phase = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - ed) / (es - ed), 0.0, 1.0))
    out.append(tuple((1 - phase) * big + phase * small))
  return out


def _scale_ellipse(e: tuple, size: tuple[int, int]) -> tuple:
  """(cx, cy, a, b) on the 112 grid -> the same ellipse on a (h, w) frame (pixel centres)."""
  h, w = size
  return ((e[0] + 0.5) * w / 112 - 0.5, (e[1] + 0.5) * h / 112 - 0.5, e[2] * w / 112,
          e[3] * h / 112)


# ------------------------------------------------------------------------- EchoNet-Dynamic


@dataclasses.dataclass
class DynamicFixture:
  root: pathlib.Path
  filelist: list[list]                    # FileList.csv rows as written
  tracings: list[list]                    # VolumeTracings.csv rows as written
  expected: dict[str, dict]               # key -> ef, esv, edv, split, size, ed, es, chords


def write_echonet_dynamic(root: str | os.PathLike, num_videos: int = 6, *, num_frames: int = 16,
                          sizes: dict[int, tuple[int, int]] | None = None,
                          avi_in_filelist: bool = False, avi_in_tracings: bool = True,
                          seed: int = 0) -> DynamicFixture:
  """EchoNet-Dynamic layout: FileList.csv, VolumeTracings.csv, Videos/<key>.avi.

  Video i has split TRAIN/TRAIN/VAL/TEST (cyclic), 2 traced frames (ES rows
  first for even i, as echo.py assumes, ED first for odd i). `sizes[i]` makes
  video i that size (tracings stay on the 112 grid, as in the real release).
  """
  root = pathlib.Path(root)
  (root / "Videos").mkdir(parents=True, exist_ok=True)
  sizes = sizes or {}
  rng = np.random.default_rng(seed)
  filelist, tracings, expected = [], [], {}
  for i in range(num_videos):
    key = f"0X{rng.integers(0, 16 ** 15):015X}{i}"
    split = ("TRAIN", "TRAIN", "VAL", "TEST")[i % 4]
    h, w = sizes.get(i, (112, 112))
    ed, es = 1 + i % 3, 8 + i % 4
    big = (56.0 + (i % 3), 58.0, 18.0 + i % 4, 34.0)
    small = (big[0], 60.0, big[2] * 0.75, big[3] * 0.85)
    edv, esv = 60.0 + 10 * i, 25.0 + 3 * i
    ef = round(100 * (edv - esv) / edv, 2)
    fps = 50.0
    ellipses = [_scale_ellipse(e, (h, w)) for e in _cycle(num_frames, ed, es, big, small)]
    video_lib.write_video(root / "Videos" / f"{key}.avi", lv_video(num_frames, (h, w), ellipses,
                                                                   seed=i), fps)
    filelist.append([key + (".avi" if avi_in_filelist else ""), ef, esv, edv, h, w, fps,
                     num_frames, split])
    chords = {ed: ellipse_chords(*big), es: ellipse_chords(*small)}
    order = [es, ed] if i % 2 == 0 else [ed, es]
    name = key + (".avi" if avi_in_tracings else "")
    for f in order:
      tracings += [[name, *(f"{v:.6f}" for v in row), f] for row in chords[f]]
    expected[key] = dict(ef=ef, esv=esv, edv=edv, split=split.lower(), size=(h, w), fps=fps,
                         num_frames=num_frames, ed=ed, es=es,
                         chords={f: np.round(c, 6) for f, c in chords.items()})
  write_csv(root / "FileList.csv", DYNAMIC_FILELIST_HEADER, filelist)
  write_csv(root / "VolumeTracings.csv", DYNAMIC_TRACING_HEADER, tracings)
  return DynamicFixture(root, filelist, tracings, expected)


# ----------------------------------------------------------------------- EchoNet-Pediatric


@dataclasses.dataclass
class PediatricFixture:
  root: pathlib.Path                      # what a user would pass (may be an ancestor)
  view_dir: pathlib.Path                  # .../<view>/
  filelist: list[list]
  tracings: list[list]
  expected: dict[str, dict]               # key -> ef, fold, attributes, ed, es, points


def pediatric_name(i: int, rng: np.random.Generator) -> str:
  patient = f"CR{rng.integers(0, 16 ** 7):07x}"
  accession = f"CR{rng.integers(0, 16 ** 7):07x}"
  return f"{patient}-{accession}-{i:06d}.avi"


def write_echonet_pediatric(root: str | os.PathLike, num_videos: int = 6, *, view: str = "A4C",
                            nested: bool = False, with_videos: bool = True,
                            folds: Sequence[int] | None = None, num_frames: int = 16,
                            sizes: dict[int, tuple[int, int]] | None = None,
                            avi_in_tracings: bool = True, seed: int = 0) -> PediatricFixture:
  """EchoNet-Pediatric layout `<view>/{FileList.csv, VolumeTracings.csv, Videos/}`.

  With `nested`, the view folder is `root/pediatric_echo_avi/pediatric_echo_avi/<view>`
  as the zip extracts. Fold of video i is `folds[i]` (default i % 10). Row 1
  has an empty Height and row 2 a 'NaN' Weight (missing attributes). `sizes[i]`
  makes video i that size (tracings stay on the 112 grid).
  """
  root = pathlib.Path(root)
  base = root / "pediatric_echo_avi" / "pediatric_echo_avi" if nested else root
  view_dir = base / view
  (view_dir / "Videos").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed + 1)
  folds = list(folds) if folds is not None else [i % 10 for i in range(num_videos)]
  filelist, tracings, expected = [], [], {}
  for i in range(num_videos):
    name = pediatric_name(i, rng)
    key = name[:-4]
    sex = "MF"[i % 2]
    age = round(1.0 + 1.7 * i, 1)
    weight = None if i == 2 else round(10 + 3.5 * i, 1)
    height = None if i == 1 else round(75 + 6 * i, 1)
    ef = round(50 + 2.5 * i, 1)
    ed, es = 2 + i % 3, 9 + i % 4
    big = (55.0, 57.0, 20.0 - i % 3, 30.0)
    small = (55.0, 59.0, big[2] * 0.7, 25.0)
    if with_videos:
      h, w = (sizes or {}).get(i, (112, 112))
      ellipses = [_scale_ellipse(e, (h, w)) for e in _cycle(num_frames, ed, es, big, small)]
      video_lib.write_video(view_dir / "Videos" / name,
                            lv_video(num_frames, (h, w), ellipses, seed=100 + i), 50.0)
    filelist.append([name, ef, sex, age, "NaN" if weight is None else weight,
                     "" if height is None else height, folds[i]])
    points = {ed: np.round(ellipse_points(*big), 3), es: np.round(ellipse_points(*small), 3)}
    tname = name if avi_in_tracings else key
    for f in ([es, ed] if i % 2 == 0 else [ed, es]):
      tracings += [[tname, f"{x:.3f}", f"{y:.3f}", f] for x, y in points[f]]
    expected[key] = dict(ef=ef, fold=folds[i], ed=ed, es=es, points=points, num_frames=num_frames,
                         attributes={"Age": age, "Sex": sex, "Weight": weight, "Height": height})
  write_csv(view_dir / "FileList.csv", PEDIATRIC_FILELIST_HEADER, filelist)
  write_csv(view_dir / "VolumeTracings.csv", PEDIATRIC_TRACING_HEADER, tracings)
  return PediatricFixture(root, view_dir, filelist, tracings, expected)


# ----------------------------------------------------------------------------------- CAMUS


def camus_sequence(num_frames: int, size: tuple[int, int], ed: int, es: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """(image uint8 (T, H, W), labels uint8 (T, H, W)) of an apical view, apex at the top.

  The sector's apex is the pixel (0, apex_col(size)), left of centre so a
  left-right flip is visible; the LV (1) lies below it, ringed by myocardium
  (2), and the LA (3) at the bottom. The LV is largest at `ed` (0-based).
  """
  h, w = size
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  c = apex_col(size)
  sector = np.abs(xx - c) <= yy * 0.9 + 0.5
  images, labels = [], []
  for t in range(num_frames):
    phase = abs(t - ed) / max(1, abs(es - ed))
    a, b = (0.22 - 0.06 * phase) * w, (0.30 - 0.06 * phase) * h
    cy = 0.08 * h + b + 2
    lv = ((xx - c) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    myo = (((xx - c) / (a + 2)) ** 2 + ((yy - cy) / (b + 2)) ** 2 <= 1) & ~lv
    la = ((xx - c) / (0.18 * w)) ** 2 + ((yy - 0.85 * h) / (0.1 * h)) ** 2 <= 1
    lab = np.zeros((h, w), np.uint8)
    lab[myo], lab[lv], lab[la & ~myo & ~lv] = 2, 1, 3
    img = np.where(sector, 140 + 20 * rng.standard_normal((h, w)), 0)
    img = np.where(lab == 1, 30, np.where(lab == 3, 40, img))
    img[0, c] = 255  # the apex
    images.append(np.clip(img, 0, 255).astype(np.uint8))
    labels.append(lab)
  return np.stack(images), np.stack(labels)


def apex_col(size: tuple[int, int]) -> int:
  return size[1] // 2 - 3


def write_nifti(path: str | os.PathLike, arr: np.ndarray, spacing: tuple[float, float]) -> None:
  """Writes (T, H, W) or (H, W) as SimpleITK would: nibabel array = arr.T, zooms (col, row[, 1])."""
  zooms = [spacing[1], spacing[0]] + [1.0] * (arr.ndim - 2)
  affine = np.diag(zooms + [1.0] * (4 - len(zooms)))
  img = nib.Nifti1Image(np.ascontiguousarray(arr.T), affine)
  img.header.set_zooms(zooms)
  nib.save(img, os.fspath(path))


def write_mhd(path: str | os.PathLike, arr: np.ndarray, spacing: tuple[float, float]) -> None:
  """Writes (T, H, W) or (H, W) as MetaImage (.mhd + .raw); SimpleITK spacing is (x, y[, z])."""
  img = sitk.GetImageFromArray(arr)
  img.SetSpacing((spacing[1], spacing[0]) + (1.0,) * (arr.ndim - 2))
  sitk.WriteImage(img, os.fspath(path))


@dataclasses.dataclass
class CamusFixture:
  root: pathlib.Path
  expected: dict[str, dict]   # key patientXXXX_<view> -> split, ef, ed, es, image, labels, ...


def _cfg_text(entries: dict) -> str:
  return "".join(f"{k}: {v}\n" for k, v in entries.items())


def write_camus(root: str | os.PathLike, release: str = "nifti", *,
                splits: dict[str, str] | None = None, views: Sequence[str] = ("2CH", "4CH"),
                num_frames: int = 5, size: tuple[int, int] = (40, 32),
                spacing: tuple[float, float] = (0.31, 0.154), write_lists: bool = True
                ) -> CamusFixture:
  """CAMUS tree, NIfTI (2023) or MHD (2019) release.

  `splits`: patient -> 'train'/'val'/'test'. NIfTI: all under database_nifti/,
  lists in database_split/ (if `write_lists`). MHD: 'test' patients go to
  testing/ without ground truth or EF, others to training/. Patient k (0-based)
  has ED=1, ES=NbFrame for even k and the reverse for odd k; the NIfTI cfg uses
  `EF`, the MHD cfg `LVedv`, `LVesv`, `LVef`.
  """
  root = pathlib.Path(root)
  splits = splits or {"patient0001": "train", "patient0002": "train", "patient0003": "val",
                      "patient0004": "test"}
  ext = ".nii.gz" if release == "nifti" else ".mhd"
  write = write_nifti if release == "nifti" else write_mhd
  seq_tag = "half_sequence" if release == "nifti" else "sequence"
  expected = {}
  for k, (patient, split) in enumerate(sorted(splits.items())):
    has_gt = release == "nifti" or split != "test"
    if release == "nifti":
      folder = root / "database_nifti" / patient
    else:
      folder = root / ("testing" if split == "test" else "training") / patient
    folder.mkdir(parents=True, exist_ok=True)
    for v, view in enumerate(views):
      ed1, es1 = (1, num_frames) if k % 2 == 0 else (num_frames, 1)
      image, labels = camus_sequence(num_frames, size, ed1 - 1, es1 - 1, seed=10 * k + v)
      prefix = folder / f"{patient}_{view}"
      write(f"{prefix}_{seq_tag}{ext}", image, spacing)
      for phase, f in (("ED", ed1 - 1), ("ES", es1 - 1)):
        write(f"{prefix}_{phase}{ext}", image[f], spacing)
        if has_gt:
          write(f"{prefix}_{phase}_gt{ext}", labels[f], spacing)
      if release == "nifti":
        write(f"{prefix}_{seq_tag}_gt{ext}", labels, spacing)
      edv, esv = 90.0 + 7 * k, 40.0 + 2 * k + v
      ef = round(100 * (edv - esv) / edv, 1)
      cfg = {"ED": ed1, "ES": es1, "NbFrame": num_frames, "Sex": "MF"[k % 2], "Age": 40 + 9 * k,
             "ImageQuality": ("Good", "Medium", "Poor")[k % 3]}
      if release == "nifti":
        cfg.update(EF=ef, FrameRate=30)
      elif has_gt:
        cfg.update(LVedv=edv, LVesv=esv, LVef=ef)
      (folder / f"Info_{view}.cfg").write_text(_cfg_text(cfg))
      expected[f"{patient}_{view}"] = dict(
          split=split, ef=ef if has_gt else float("nan"), ed=ed1 - 1, es=es1 - 1, image=image,
          labels=labels, has_gt=has_gt, cfg=cfg, spacing=spacing,
          edv=edv if release == "mhd" and has_gt else float("nan"),
          esv=esv if release == "mhd" and has_gt else float("nan"))
  if release == "nifti" and write_lists:
    write_split_lists(root / "database_split", splits)
  return CamusFixture(root, expected)


def write_split_lists(folder: str | os.PathLike, splits: dict[str, str],
                      pattern: str = "subgroup_{subset}.txt") -> None:
  """CAMUS split lists, one patient per line (pattern may be 'subGroup3_{subset}.txt')."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  for split, subset in (("train", "training"), ("val", "validation"), ("test", "testing")):
    names = sorted(p for p, s in splits.items() if s == split)
    (folder / pattern.format(subset=subset)).write_text("".join(n + "\n" for n in names))
