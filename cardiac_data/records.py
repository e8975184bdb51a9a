"""Dataset-independent record types returned by every reader.

Readers parse a published layout into a list of records; everything downstream
(TFDS builders, grain pipelines, evaluation) sees only these types. A record keeps
paths, labels and raw demographics; pixels are read lazily.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class EchoRecord:
  """One echo video with its labels.

  Attributes:
    key: identifier joining the tables: the video file name without `.avi`.
    dataset: 'echonet_dynamic', 'echonet_pediatric', 'camus', ...
    view: 'A4C', 'PSAX', '2CH', '4CH'.
    video_path: path of the clip file (AVI; NIfTI/MHD half sequence for CAMUS).
    split: one of SPLITS after the dataset's official rule.
    ef: ejection fraction label in percent (NaN when unknown).
    edv, esv: volumes in mL (NaN when the layout has none).
    fps, num_frames, height, width: from the table where the layout has them,
      else from the container.
    attributes: raw demographics as read (e.g. Age, Sex, Weight, Height); missing
      values are None. Preprocessing is fitted later on the training split only.
    fold: integer fold for layouts with folds (EchoNet-Pediatric), else None.
    ed_frame, es_frame: 0-based frame indices of end-diastole / end-systole, or
      None when the layout does not give them.
    traces: frame index -> float32 polygon (N, 2) of (x, y) pixel coordinates of
      the LV endocardial contour at that frame, closed implicitly.
    mask_paths: for layouts with label images (CAMUS): 'ED'/'ES'/'sequence' -> path.
  """
  key: str
  dataset: str
  view: str
  video_path: str
  split: str
  ef: float = math.nan
  edv: float = math.nan
  esv: float = math.nan
  fps: float = math.nan
  num_frames: int = -1
  height: int = -1
  width: int = -1
  attributes: Mapping[str, object] = dataclasses.field(default_factory=dict)
  fold: int | None = None
  ed_frame: int | None = None
  es_frame: int | None = None
  traces: Mapping[int, np.ndarray] = dataclasses.field(default_factory=dict)
  mask_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f"{self.key}: split must be one of {SPLITS}, got {self.split!r}")
