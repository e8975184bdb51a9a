"""Pixels of a record: the clip (AVI or NIfTI/MHD) and its label maps.

`load_clip` dispatches on the file type of `record.video_path`; every failure
(missing, unreadable, truncated) is a VideoDecodeError naming the file, which the
builder counts as a skip. `load_masks` returns frame -> uint8 label map: EchoNet
tracings rasterised at the video's true size (1 = LV), or CAMUS ground truth
(0 background, 1 LV, 2 myocardium, 3 LA) at ED and ES.
"""
from __future__ import annotations

import os

import numpy as np

from cardiac_data import camus
from cardiac_data import tracings as tracings_lib
from cardiac_data import video as video_lib
from cardiac_data.errors import DataFormatError, VideoDecodeError
from cardiac_data.records import EchoRecord

_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd")


def _is_volume(path: str) -> bool:
  return path.lower().endswith(_VOLUME_SUFFIXES)


def load_clip(record: EchoRecord) -> np.ndarray:
  """uint8 (T, H, W) frames of the record's video (all frames)."""
  path = os.fspath(record.video_path)
  if path.lower().endswith(".avi"):
    return video_lib.read_video(path)
  if _is_volume(path):
    arr, _ = camus.read_camus_volume(path)
    if arr.ndim == 2:
      arr = arr[None]
    return camus.to_uint8_image(arr, path)
  raise VideoDecodeError(path, "unknown video type (expected .avi, .nii, .nii.gz or .mhd)")


def _frame_size(record: EchoRecord) -> tuple[int, int]:
  if record.height > 0 and record.width > 0:
    return record.height, record.width
  info = video_lib.probe_video(record.video_path)
  return info.height, info.width


def load_masks(record: EchoRecord) -> dict[int, np.ndarray]:
  """frame -> uint8 label map (H, W); empty if the record has no labels."""
  if record.mask_paths:
    out = {}
    for phase, frame in (("ED", record.ed_frame), ("ES", record.es_frame)):
      path = record.mask_paths.get(phase)
      if path is None or frame is None:
        continue
      labels = camus.read_camus_labels(path)
      if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
      if labels.ndim != 2:
        raise DataFormatError(path, f"expected a 2D label map, got shape {labels.shape}")
      if record.height > 0 and labels.shape != (record.height, record.width):
        raise DataFormatError(path, f"label map shape {labels.shape} differs from the sequence "
                              f"frame size {(record.height, record.width)}")
      out[int(frame)] = labels
    return out
  if not record.traces:
    return {}
  shape = _frame_size(record)
  return {int(f): tracings_lib.rasterize_polygon(poly, shape).astype(np.uint8)
          for f, poly in record.traces.items()}
