"""AVI video I/O with one pinned decoder (OpenCV, as EchoNet-Dynamic uses).

Echo videos in EchoNet-Dynamic/-Pediatric are MJPG AVI with three identical grey
channels. `read_video` returns greyscale uint8 frames (T, H, W); `write_video`
writes the same layout (3-channel MJPG AVI) so synthetic cohorts load through the
same path as the real data.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from cardiac_data.errors import VideoDecodeError

cv2.setNumThreads(1)  # Loader workers are processes; do not oversubscribe cores.


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  num_frames: int
  height: int
  width: int
  fps: float


def probe_video(path: str | os.PathLike) -> VideoInfo:
  """Container metadata without decoding frames."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VideoDecodeError(path, "video file not found")
  cap = cv2.VideoCapture(path)
  try:
    if not cap.isOpened():
      raise VideoDecodeError(path, "cannot open video (not an AVI/MJPG file?)")
    return VideoInfo(
        num_frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        fps=float(cap.get(cv2.CAP_PROP_FPS)))
  finally:
    cap.release()


def read_video(path: str | os.PathLike, *, expect_frames: int | None = None) -> np.ndarray:
  """Decodes all frames as greyscale uint8, shape (T, H, W).

  Raises VideoDecodeError if the file is missing, cannot be opened, has no frame,
  or (with `expect_frames`, e.g. FileList's NumberOfFrames or the container's
  count) decodes fewer frames than expected (a truncated file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VideoDecodeError(path, "video file not found")
  cap = cv2.VideoCapture(path)
  frames = []
  try:
    if not cap.isOpened():
      raise VideoDecodeError(path, "cannot open video (not an AVI/MJPG file?)")
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
      frames.append(frame)
  finally:
    cap.release()
  if not frames:
    raise VideoDecodeError(path, "video has no decodable frame")
  expected = expect_frames if expect_frames is not None else declared
  if expected and len(frames) < expected:
    raise VideoDecodeError(
        path, f"truncated video: decoded {len(frames)} of {expected} frames")
  return np.stack(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
  """Writes greyscale uint8 frames (T, H, W) as a 3-channel MJPG AVI."""
  path = os.fspath(path)
  frames = np.asarray(frames)
  if frames.ndim != 3 or frames.dtype != np.uint8:
    raise ValueError(f"write_video expects uint8 (T, H, W), got {frames.dtype} {frames.shape}")
  t, h, w = frames.shape
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h))
  if not writer.isOpened():
    raise OSError(f"{path}: cannot open a video writer")
  try:
    for frame in frames:
      writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
  finally:
    writer.release()
