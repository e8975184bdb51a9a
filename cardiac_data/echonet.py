"""Readers for EchoNet-Dynamic and EchoNet-Pediatric (A4C, PSAX) as distributed.

Both return a `ReadResult`: one `EchoRecord` per FileList row that has a video
(pixels are read later, by `cardiac_data.clips`), plus a `SkipLog` of counted
per-item faults. Structural faults (missing file or folder, missing or renamed
column, duplicate rows, a non-numeric tracing coordinate) raise `DataFormatError`
naming the file and row; `row` is the line number in the CSV (the header is line
1). One unexpected value in a FileList row (a non-numeric or out-of-range EF, a Sex
code outside M/F, a Split outside TRAIN/VAL/TEST or 0-9, ...) skips that row,
counted per column with its row number (`strict=False`, the default); with
`strict=True` it raises `BadValueError` (a DataFormatError) naming the file and row.

Conventions:
- `key` is the file name without `.avi`; names are normalised on both tables
  before joining (FileList and VolumeTracings disagree on the extension).
- Splits: Dynamic's `Split` column (TRAIN/VAL/TEST); Pediatric's integer fold
  with test = `test_fold`, val = (test_fold + 1) % 10, train = the rest
  (echonet `scripts/cross_validate_pediatric.py`).
- Traced frames whose `Frame` is not an integer (`No Systolic`, ...) are
  counted and dropped; the video keeps its other traced frames. ED/ES are the
  largest/smallest traced polygons, not the CSV order.
- Frame size, FPS and frame count come from the video header (`check_files`):
  Pediatric's FileList has none, and Dynamic's FileList is known to state sizes
  some videos do not have (768x1024 for a 112x112 AVI). Dynamic rows whose
  FileList disagrees with the header are counted in `ReadResult.notes` (and
  warned about); a header that cannot be read leaves Dynamic with its FileList
  values (Pediatric with unknown ones), also counted.
- Videos that are not 112 x 112 are kept with their true size (the pipeline
  resizes) and counted in `ReadResult.notes`. Their tracings are mapped to the
  video's own pixel grid: EchoNet tracings are coordinates of the 112 x 112
  frame, so when all of a video's points lie inside that grid they are scaled
  (pixel centre to pixel centre); points beyond it are taken as native.
- Logs give counts only, never file names (patient identifiers).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
from typing import Iterable, Mapping

from absl import logging
import numpy as np
import pandas as pd

from cardiac_data import tracings as tracings_lib
from cardiac_data import video as video_lib
from cardiac_data.errors import BadValueError, DataFormatError, SkipLog, VideoDecodeError
from cardiac_data.records import EchoRecord

DYNAMIC_FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                            "NumberOfFrames", "Split")
DYNAMIC_TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
PEDIATRIC_FILELIST_COLUMNS = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
PEDIATRIC_TRACING_COLUMNS = ("FileName", "X", "Y", "Frame")
PEDIATRIC_VIEWS = ("A4C", "PSAX")
NUM_PEDIATRIC_FOLDS = 10

NOTE_NOT_112 = "videos not 112x112 (kept at their true size)"
NOTE_VIDEO_WITHOUT_ROW = "videos without a FileList row (ignored)"
NOTE_TRACINGS_WITHOUT_ROW = "traced videos without a FileList row (ignored)"
NOTE_NOT_PROBED = "videos whose header could not be read (decoding left to the builder)"
NOTE_SIZE_DISAGREES = ("FileList rows whose FrameHeight x FrameWidth is not the video's "
                       "(the video's size used)")
NOTE_FPS_DISAGREES = "FileList rows whose FPS is not the video header's (the header's used)"
NOTE_FRAMES_DISAGREES = ("FileList rows whose NumberOfFrames is not the video header's "
                         "(the header's used)")

SKIP_NO_VIDEO = "FileList row without a video file"
SKIP_BAD_FRAME = "tracing row whose Frame is not an integer (e.g. 'No Systolic')"
SKIP_FEW_POINTS = "traced frame with too few points for a polygon"
SKIP_FRAME_RANGE = "traced frame beyond the video length"
SKIP_FEW_TRACES = "video with fewer than 2 traced frames (require_tracings)"
SKIP_BAD_VALUE = "FileList row with an unexpected {column} value"

_MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "none", "null"})


@dataclasses.dataclass
class ReadResult:
  """Records of one dataset/view plus the per-item faults that were skipped.

  `notes` counts things that are not skips but go in the summary (e.g. videos
  that are not 112 x 112, videos without a FileList row).
  """
  records: list[EchoRecord]
  skips: SkipLog
  notes: dict[str, int] = dataclasses.field(default_factory=dict)

  def _counts(self) -> str:
    by_split = collections.Counter(r.split for r in self.records)
    parts = [f"{len(self.records)} records (" + ", ".join(
        f"{s} {by_split.get(s, 0)}" for s in ("train", "val", "test")) + ")"]
    parts += [f"{n} {what}" for what, n in self.notes.items() if n]
    return f"{self.skips.name}: " + "; ".join(parts)

  def summary(self) -> str:
    """Counts per split, notes and skips; never file names."""
    return f"{self._counts()}\n{self.skips.summary()}"

  def log_summary(self) -> None:
    logging.info(self._counts())
    self.skips.log_summary()


# ----------------------------------------------------------------------------- CSV helpers


def normalize_name(name: str) -> str:
  """File name -> key: strips whitespace and a trailing '.avi' (any case)."""
  name = str(name).strip()
  return name[:-4] if name.lower().endswith(".avi") else name


def normalize_names(names: pd.Series) -> pd.Series:
  """Vectorised `normalize_name`."""
  unique = pd.unique(names)
  return names.map(dict(zip(unique, map(normalize_name, unique))))


def read_table(path: str | os.PathLike, columns: Iterable[str]) -> pd.DataFrame:
  """Reads a CSV as strings; raises DataFormatError if a column is missing.

  The returned frame keeps the original row index, so `row_number(i)` is the
  line number in the file. Blank lines are dropped; cells are stripped.
  """
  path = os.fspath(path)
  columns = tuple(columns)
  if not os.path.isfile(path):
    raise DataFormatError(path, "file not found")
  try:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
  except pd.errors.EmptyDataError:
    raise DataFormatError(path, f"empty file; expected columns {list(columns)}") from None
  except (pd.errors.ParserError, UnicodeDecodeError) as e:
    raise DataFormatError(path, f"cannot parse as CSV: {e}") from None
  df.columns = [str(c).strip() for c in df.columns]
  missing = [c for c in columns if c not in df.columns]
  if missing:
    raise DataFormatError(
        path, f"missing column(s) {missing}; expected columns {list(columns)}, "
        f"found {list(df.columns)}")
  df = df[list(columns)].apply(lambda s: s.str.strip())
  return df[~(df == "").all(axis=1)]


def row_number(index: int) -> int:
  """Line number in the CSV of the data row with pandas index `index`."""
  return int(index) + 2


def numeric_faults(df: pd.DataFrame, column: str, *, required: bool, integer: bool = False,
                   lo: float | None = None, hi: float | None = None, positive: bool = False
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
  """float64 values of a string column (NaN where empty) and its checks: a list of
  (bool per row: the value passes, what a failing value 'is'), in the order reported.

  Checks: a number, finite, present (with `required`), an integer (`integer`), in
  [lo, hi], positive.
  """
  text = df[column]
  try:  # Fast path; any unparsable cell falls back to the per-cell check below.
    values = text.astype(np.float64).to_numpy()
  except (ValueError, TypeError):
    values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
  empty = text.str.lower().isin(_MISSING_TEXT).to_numpy()
  checks = [
      (~np.isnan(values) | empty, "is not a number"),
      (np.isnan(values) | np.isfinite(values), "is not finite"),
  ]
  if required:
    checks.append((~empty, "is missing (empty or NaN)"))
  if integer:
    checks.append((np.isnan(values) | (values == np.round(values)), "is not an integer"))
  with np.errstate(invalid="ignore"):
    if lo is not None:
      checks.append((np.isnan(values) | (values >= lo), f"is below {lo:g}"))
    if hi is not None:
      checks.append((np.isnan(values) | (values <= hi), f"is above {hi:g}"))
    if positive:
      checks.append((np.isnan(values) | (values > 0), "is not positive"))
  return values, checks


def category_faults(df: pd.DataFrame, column: str, allowed: tuple[str, ...], *,
                    allow_missing: bool) -> tuple[list[str | None], list[tuple[np.ndarray, str]]]:
  """Upper-cased values (None where missing) and the check 'one of `allowed`'."""
  values = df[column].str.upper()
  missing = df[column].str.lower().isin(_MISSING_TEXT)
  ok = (values.isin(allowed) | (missing & allow_missing)).to_numpy()
  names = ", ".join(allowed[:-1]) + " or " + allowed[-1]
  return [None if m else v for v, m in zip(values, missing)], [(ok, f"is not {names}")]


def raise_first_fault(df: pd.DataFrame, column: str, path: str | os.PathLike,
                      faults: list[tuple[np.ndarray, str]],
                      error: type[DataFormatError] = DataFormatError) -> None:
  """`error` naming the file, row and value of the first failing check, if any."""
  for ok, what in faults:
    if not np.all(ok):
      i = int(np.flatnonzero(~ok)[0])
      raise error(path, f"{column}={df[column].iloc[i]!r} {what}", row=row_number(df.index[i]))


def numeric_column(df: pd.DataFrame, column: str, path: str | os.PathLike, *,
                   required: bool, integer: bool = False, lo: float | None = None,
                   hi: float | None = None, positive: bool = False) -> np.ndarray:
  """float64 values of a string column; NaN where empty (if not required).

  Raises DataFormatError naming the file and row for a non-numeric, infinite,
  empty-but-required, non-integer (with `integer`) or out-of-range value (a
  FileList's per-row checks go through RowChecks instead).
  """
  values, faults = numeric_faults(df, column, required=required, integer=integer, lo=lo, hi=hi,
                                  positive=positive)
  raise_first_fault(df, column, path, faults)
  return values


class RowChecks:
  """The value checks of one table's rows (a FileList), strict or counted.

  With `strict`, the first unexpected value raises BadValueError naming the file,
  row and value (columns in the order checked). Otherwise every row with an
  unexpected value is marked in `bad` and counted once in `skips` (reason
  `SKIP_BAD_VALUE` naming the column; examples give the row number and the value,
  never the file name), and the reader leaves it out.
  """

  def __init__(self, df: pd.DataFrame, path: str | os.PathLike, skips: SkipLog, *,
               strict: bool):
    self.df, self.path, self.skips, self.strict = df, path, skips, bool(strict)
    self.bad = np.zeros(len(df), bool)

  def numeric(self, column: str, **checks) -> np.ndarray:
    """float64 values of the column (keyword checks as `numeric_faults`); a bad row's
    value is meaningless (the row is left out)."""
    values, faults = numeric_faults(self.df, column, **checks)
    self._record(column, faults)
    return values

  def category(self, column: str, allowed: tuple[str, ...], *, allow_missing: bool
               ) -> list[str | None]:
    """Upper-cased values of the column (None where missing, if allowed)."""
    values, faults = category_faults(self.df, column, allowed, allow_missing=allow_missing)
    self._record(column, faults)
    return values

  def _record(self, column: str, faults: list[tuple[np.ndarray, str]]) -> None:
    if self.strict:
      raise_first_fault(self.df, column, self.path, faults, BadValueError)
      return
    text = self.df[column]
    name = os.path.basename(os.fspath(self.path))
    for ok, what in faults:
      for i in np.flatnonzero(~ok & ~self.bad):
        self.skips.skip(SKIP_BAD_VALUE.format(column=column),
                        f"{name} row {row_number(self.df.index[i])}: {column}="
                        f"{text.iloc[i]!r} {what}")
      self.bad |= ~ok


def check_unique(keys: pd.Series, path: str | os.PathLike) -> None:
  """Raises DataFormatError listing the rows of the first duplicated key."""
  dup = keys.duplicated(keep=False)
  if dup.any():
    first = keys[dup].iloc[0]
    rows = [row_number(i) for i in keys.index[keys == first]]
    raise DataFormatError(
        path, f"duplicate FileName {first!r} in rows {rows} ({keys[dup].nunique()} "
        "duplicated name(s) in all; names are compared without '.avi')", row=rows[1])


def list_videos(video_dir: str | os.PathLike) -> dict[str, str]:
  """key -> file name of every `.avi` in the folder; DataFormatError if missing."""
  video_dir = os.fspath(video_dir)
  if not os.path.isdir(video_dir):
    raise DataFormatError(video_dir, "video folder not found")
  return {name[:-4]: name for name in os.listdir(video_dir) if name.lower().endswith(".avi")}


def _optional(value: float) -> float | None:
  return None if np.isnan(value) else float(value)


# ------------------------------------------------------------------------------ tracings


def read_tracings(path: str | os.PathLike, columns: tuple[str, ...],
                  skips: SkipLog) -> dict[str, dict[int, np.ndarray]]:
  """key -> frame -> float64 (n, len(columns) - 2) coordinate rows in file order.

  Rows whose Frame is not a non-negative integer are counted in `skips` and
  dropped; a non-numeric coordinate raises DataFormatError naming the row.
  """
  df = read_table(path, columns)
  frame = pd.to_numeric(df["Frame"], errors="coerce").to_numpy(np.float64)
  with np.errstate(invalid="ignore"):
    good = np.isfinite(frame) & (frame == np.round(frame)) & (frame >= 0)
  for i in np.flatnonzero(~good):
    skips.skip(SKIP_BAD_FRAME, f"row {row_number(df.index[i])}")
  df = df[good]
  frame = frame[good].astype(np.int64)
  coord_cols = columns[1:-1]
  coords = np.stack([numeric_column(df, c, path, required=True) for c in coord_cols], axis=1) \
      if len(df) else np.zeros((0, len(coord_cols)))
  keys = normalize_names(df["FileName"]).to_numpy()
  out: dict[str, dict[int, np.ndarray]] = collections.defaultdict(dict)
  if len(df):
    groups = pd.DataFrame({"k": keys, "f": frame}).groupby(["k", "f"], sort=False).indices
    for (key, f), idx in groups.items():
      out[key][int(f)] = coords[np.sort(idx)]
  return dict(out)


def _read_filelist(path: pathlib.Path, columns: tuple[str, ...], skips: SkipLog, strict: bool):
  """(table, normalised keys, its RowChecks, EF) of a FileList; keys unique (else
  DataFormatError), EF a number in 0..100 (else a bad row, see RowChecks)."""
  df = read_table(path, columns)
  keys = normalize_names(df["FileName"])
  check_unique(keys, path)
  checks = RowChecks(df, path, skips, strict=strict)
  return df, keys, checks, checks.numeric("EF", required=True, lo=0, hi=100)


def _rows_with_video(df: pd.DataFrame, keys: pd.Series, bad: np.ndarray,
                     videos: Mapping[str, str] | None, skips: SkipLog):
  """Yields (position, key, 'FileList.csv row N') of rows without a bad value (already
  counted) whose video exists (counts the rest)."""
  for i, key in enumerate(keys):
    if bad[i]:
      continue
    where = f"FileList.csv row {row_number(df.index[i])}"
    if videos is not None and key not in videos:
      skips.skip(SKIP_NO_VIDEO, where)
      continue
    yield i, key, where


def _build_traces(raw: Mapping[int, np.ndarray], to_polygon, num_frames: int,
                  size: tuple[int, int], skips: SkipLog, where: str,
                  require_tracings: bool) -> dict[int, np.ndarray] | None:
  """Polygons per frame, scaled to the video grid; drops (and counts) bad frames.

  Returns None (counted) when `require_tracings` and fewer than 2 frames remain.
  """
  traces = {}
  for f, rows in sorted(raw.items()):
    if num_frames > 0 and f >= num_frames:
      skips.skip(SKIP_FRAME_RANGE, where)
      continue
    try:
      traces[f] = to_polygon(rows)
    except ValueError:
      skips.skip(SKIP_FEW_POINTS, where)
  grid = tracings_lib.TRACING_GRID
  if traces and size[0] > 0 and size[1] > 0 and tuple(size) != grid:
    pts = np.concatenate(list(traces.values()))
    if pts.min() >= -0.5 and pts[:, 0].max() <= grid[1] - 0.5 and pts[:, 1].max() <= grid[0] - 0.5:
      traces = {f: tracings_lib.scale_polygon(p, grid, size) for f, p in traces.items()}
  if require_tracings and len(traces) < 2:
    skips.skip(SKIP_FEW_TRACES, where)
    return None
  return traces


def _pediatric_polygon(rows: np.ndarray) -> np.ndarray:
  if rows.shape[0] < 3:
    raise ValueError(f"need at least 3 contour points, got {rows.shape[0]}")
  return rows.astype(np.float32)


def _ed_es(traces: Mapping[int, np.ndarray]) -> tuple[int | None, int | None]:
  return tracings_lib.ed_es_by_area(traces) if len(traces) >= 2 else (None, None)


# ------------------------------------------------------------------------- EchoNet-Dynamic


def read_echonet_dynamic(root: str | os.PathLike, *, require_tracings: bool = False,
                         check_files: bool = True, strict: bool = False) -> ReadResult:
  """Reads `root/{FileList.csv, VolumeTracings.csv, Videos/}` (EchoNet-Dynamic).

  Args:
    root: the folder holding FileList.csv.
    require_tracings: drop (and count) videos with fewer than 2 traced frames, as
      echonet's `echo.py` does; otherwise keep them with ed/es_frame None.
    check_files: check that each video exists (one directory listing), counting
      rows without a video as skips and videos without a row in `notes`, and read
      each video's header: its frame size, FPS and frame count replace the
      FileList's (rows that disagree are counted in `notes` and warned about;
      tracings are scaled by the true size). A header that cannot be read leaves
      the FileList's values (counted). Without it the FileList's values are used.
    strict: raise BadValueError on the first unexpected FileList value; otherwise
      such a row is skipped and counted (see RowChecks).
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataFormatError(root, "EchoNet-Dynamic root folder not found")
  skips = SkipLog("EchoNet-Dynamic")
  notes = collections.Counter()
  filelist = root / "FileList.csv"
  df, keys, checks, ef = _read_filelist(filelist, DYNAMIC_FILELIST_COLUMNS, skips, strict)
  esv = checks.numeric("ESV", required=False, lo=0)
  edv = checks.numeric("EDV", required=False, lo=0)
  height = checks.numeric("FrameHeight", required=True, integer=True, lo=1)
  width = checks.numeric("FrameWidth", required=True, integer=True, lo=1)
  fps = checks.numeric("FPS", required=True, positive=True)
  nframes = checks.numeric("NumberOfFrames", required=True, integer=True, lo=1)
  splits = checks.category("Split", ("TRAIN", "VAL", "TEST"), allow_missing=False)

  raw_traces = read_tracings(root / "VolumeTracings.csv", DYNAMIC_TRACING_COLUMNS, skips)
  videos = list_videos(root / "Videos") if check_files else None
  records = []
  for i, key, where in _rows_with_video(df, keys, checks.bad, videos, skips):
    name = videos[key] if videos is not None else key + ".avi"
    path = root / "Videos" / name
    size, rate, count = (int(height[i]), int(width[i])), float(fps[i]), int(nframes[i])
    if check_files:
      size, rate, count = _dynamic_header(path, size, rate, count, notes)
    if size != tracings_lib.TRACING_GRID:
      notes[NOTE_NOT_112] += 1
    traces = _build_traces(raw_traces.get(key, {}), tracings_lib.dynamic_chords_to_polygon,
                           count, size, skips, where, require_tracings)
    if traces is None:
      continue
    ed, es = _ed_es(traces)
    records.append(EchoRecord(
        key=key, dataset="echonet_dynamic", view="A4C", video_path=str(path),
        split=splits[i].lower(), ef=float(ef[i]), edv=float(edv[i]), esv=float(esv[i]),
        fps=rate, num_frames=count, height=size[0], width=size[1],
        ed_frame=ed, es_frame=es, traces=traces))
  _note_unmatched(notes, set(keys), videos, raw_traces)
  disagree = [f"{notes[what]} {what}" for what in (NOTE_SIZE_DISAGREES, NOTE_FPS_DISAGREES,
                                                  NOTE_FRAMES_DISAGREES) if notes[what]]
  if disagree:
    logging.warning("EchoNet-Dynamic: FileList.csv disagrees with the video headers: %s",
                    "; ".join(disagree))
  result = ReadResult(records, skips, dict(notes))
  result.log_summary()
  return result


def _probe(path: pathlib.Path) -> video_lib.VideoInfo | None:
  """The video's header, or None if it cannot be read."""
  try:
    return video_lib.probe_video(path)
  except VideoDecodeError:
    return None


def _dynamic_header(path: pathlib.Path, size: tuple[int, int], fps: float, num_frames: int,
                    notes) -> tuple[tuple[int, int], float, int]:
  """(size, fps, frame count) of a Dynamic video: the header's where it has them (a
  FileList value that differs is counted in `notes`), else the FileList's."""
  info = _probe(path)
  if info is None:
    notes[NOTE_NOT_PROBED] += 1
    return size, fps, num_frames
  if info.height > 0 and info.width > 0:
    if (info.height, info.width) != size:
      notes[NOTE_SIZE_DISAGREES] += 1
    size = (info.height, info.width)
  if info.fps > 0 and math.isfinite(info.fps):
    if not math.isclose(info.fps, fps, rel_tol=1e-2):
      notes[NOTE_FPS_DISAGREES] += 1
    fps = float(info.fps)
  if info.num_frames > 0:
    if info.num_frames != num_frames:
      notes[NOTE_FRAMES_DISAGREES] += 1
    num_frames = info.num_frames
  return size, fps, num_frames


def _note_unmatched(notes, keys: set[str], videos: Mapping[str, str] | None,
                    raw_traces: Mapping[str, object]) -> None:
  if videos is not None:
    notes[NOTE_VIDEO_WITHOUT_ROW] += len(set(videos) - keys)
  notes[NOTE_TRACINGS_WITHOUT_ROW] += len(set(raw_traces) - keys)


# ----------------------------------------------------------------------- EchoNet-Pediatric


def find_pediatric_view_dir(root: str | os.PathLike, view: str, max_depth: int = 5
                            ) -> pathlib.Path:
  """The folder `<view>/` holding FileList.csv, found at or below `root`.

  `root` may be the view folder itself, the folder holding `A4C/` and `PSAX/`,
  or any ancestor of the doubly nested `pediatric_echo_avi/pediatric_echo_avi/`.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataFormatError(root, "EchoNet-Pediatric root folder not found")
  if root.name.upper() == view and (root / "FileList.csv").is_file():
    return root
  if (root / view / "FileList.csv").is_file():
    return root / view
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    here = pathlib.Path(dirpath)
    if here.name.upper() == view and "FileList.csv" in filenames:
      found.append(here)
      dirnames[:] = []
      continue
    depth = len(here.relative_to(root).parts)
    dirnames[:] = sorted(d for d in dirnames if d != "Videos" and not d.startswith(".")
                         ) if depth < max_depth else []
  if not found:
    raise DataFormatError(
        root, f"no {view}/FileList.csv found: expected {root}/{view}/FileList.csv or "
        f".../pediatric_echo_avi/pediatric_echo_avi/{view}/FileList.csv "
        f"(searched {max_depth} levels)")
  if len(found) > 1:
    raise DataFormatError(root, f"several {view}/FileList.csv found, pass one of them as root: "
                          f"{[str(p) for p in found]}")
  return found[0]


def pediatric_split(fold: int, test_fold: int) -> str:
  """Official CV rule: test = test_fold, val = (test_fold + 1) % 10, train = rest."""
  if fold == test_fold:
    return "test"
  if fold == (test_fold + 1) % NUM_PEDIATRIC_FOLDS:
    return "val"
  return "train"


def read_echonet_pediatric(root: str | os.PathLike, *, view: str = "A4C", test_fold: int = 0,
                           require_tracings: bool = False, check_files: bool = True,
                           strict: bool = False) -> ReadResult:
  """Reads `<view>/{FileList.csv, VolumeTracings.csv, Videos/}` (EchoNet-Pediatric).

  Args:
    root: see `find_pediatric_view_dir`.
    view: 'A4C' or 'PSAX'.
    test_fold: run s of the 10-fold CV (test = s, val = (s + 1) % 10).
    require_tracings: drop (and count) videos with fewer than 2 traced frames.
    check_files: check each video exists and read its header (frames, size,
      FPS; the FileList has none of these). Otherwise they stay unknown (-1/NaN).
    strict: raise BadValueError on the first unexpected FileList value; otherwise
      such a row is skipped and counted (see RowChecks).
  Attributes: Age (years), Sex ('M'/'F'), Weight (kg), Height (cm); None if empty.
  """
  view = str(view).upper()
  if view not in PEDIATRIC_VIEWS:
    raise ValueError(f"view must be one of {PEDIATRIC_VIEWS}, got {view!r}")
  if int(test_fold) != test_fold or not 0 <= test_fold < NUM_PEDIATRIC_FOLDS:
    raise ValueError(f"test_fold must be an integer in 0..9, got {test_fold!r}")
  base = find_pediatric_view_dir(root, view)
  skips = SkipLog(f"EchoNet-Pediatric {view}")
  notes = collections.Counter()
  filelist = base / "FileList.csv"
  df, keys, checks, ef = _read_filelist(filelist, PEDIATRIC_FILELIST_COLUMNS, skips, strict)
  age = checks.numeric("Age", required=False, lo=0)
  weight = checks.numeric("Weight", required=False, lo=0)
  height_cm = checks.numeric("Height", required=False, lo=0)
  folds = checks.numeric("Split", required=True, integer=True, lo=0, hi=NUM_PEDIATRIC_FOLDS - 1)
  sex = checks.category("Sex", ("M", "F"), allow_missing=True)

  raw_traces = read_tracings(base / "VolumeTracings.csv", PEDIATRIC_TRACING_COLUMNS, skips)
  videos = list_videos(base / "Videos") if check_files else None
  records = []
  for i, key, where in _rows_with_video(df, keys, checks.bad, videos, skips):
    path = base / "Videos" / (videos[key] if videos is not None else key + ".avi")
    info = _probe(path) if check_files else None
    if check_files and info is None:
      notes[NOTE_NOT_PROBED] += 1
    size = (info.height, info.width) if info else (-1, -1)
    if info and size != tracings_lib.TRACING_GRID:
      notes[NOTE_NOT_112] += 1
    num_frames = info.num_frames if info else -1
    traces = _build_traces(raw_traces.get(key, {}), _pediatric_polygon, num_frames, size,
                           skips, where, require_tracings)
    if traces is None:
      continue
    ed, es = _ed_es(traces)
    attributes = {"Age": _optional(age[i]), "Sex": sex[i],
                  "Weight": _optional(weight[i]), "Height": _optional(height_cm[i])}
    records.append(EchoRecord(
        key=key, dataset="echonet_pediatric", view=view, video_path=str(path),
        split=pediatric_split(int(folds[i]), int(test_fold)), ef=float(ef[i]),
        fps=info.fps if info and info.fps > 0 else float("nan"), num_frames=num_frames,
        height=size[0], width=size[1], attributes=attributes, fold=int(folds[i]),
        ed_frame=ed, es_frame=es, traces=traces))
  _note_unmatched(notes, set(keys), videos, raw_traces)
  result = ReadResult(records, skips, dict(notes))
  result.log_summary()
  return result
