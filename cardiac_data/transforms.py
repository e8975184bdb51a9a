"""Clip sampling, resizing, augmentation and normalisation for echo videos.

Pure numpy/OpenCV functions on greyscale videos (T, H, W), plus the grain
transforms that the pipeline (`cardiac_data.pipeline`) chains. Every random
choice takes an explicit `np.random.Generator`; the pipeline derives one per
example from (seed, epoch, index) with `example_rng`, so a run is reproducible
whatever the number of loader workers.

Clip protocols (results are not comparable across them):
  * 'clip' sampling: `frames` frames, one every `period` source frames, from a
    start that is uniform over the valid starts (training), centred ('center'
    evaluation) or every `stride`-th start ('all' evaluation, predictions averaged
    per video; AdaCon/EchoNet `clips="all"`). A video shorter than the clip span
    is zero-padded at the end ('pad', as EchoNet/AdaCon) or looped ('loop').
  * 'mcsdr' sampling (MCSDR `valid_crop_resize`): keep every `period`-th frame,
    crop a contiguous fraction p of them (training p ~ U[0.9, 1] at a random
    offset, at least min(16, L) frames; evaluation p = 0.95 centred), then
    resample time linearly to `frames` (PyTorch `interpolate(..., 'bilinear',
    align_corners=False)` along time).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Sequence

import cv2
import grain
import numpy as np

cv2.setNumThreads(1)

SAMPLINGS = ("clip", "mcsdr")
EVAL_PROTOCOLS = ("center", "all")
SHORT_VIDEO_MODES = ("pad", "loop")


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  """The generator of one example in one epoch; independent of worker count."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


# ---------------------------------------------------------------------------
# Temporal sampling.


def clip_span(frames: int, period: int) -> int:
  """Number of source frames covered by a clip of `frames` at `period`."""
  return (frames - 1) * period + 1


def last_start(num_frames: int, frames: int, period: int) -> int:
  """Largest start whose clip fits in the video (0 for a short video)."""
  return max(num_frames - clip_span(frames, period), 0)


def random_start(num_frames: int, frames: int, period: int,
                 rng: np.random.Generator) -> int:
  """Uniform over all starts whose clip fits (0 for a short video)."""
  return int(rng.integers(0, last_start(num_frames, frames, period) + 1))


def center_start(num_frames: int, frames: int, period: int) -> int:
  """Start of the clip centred in the video (0 for a short video)."""
  return last_start(num_frames, frames, period) // 2


def all_starts(num_frames: int, frames: int, period: int, stride: int = 1) -> np.ndarray:
  """Every `stride`-th start 0, stride, … up to the last start that fits."""
  return np.arange(0, last_start(num_frames, frames, period) + 1, stride, dtype=np.int64)


def clip_indices(num_frames: int, start: int, frames: int, period: int,
                 short_video: str = "pad") -> tuple[np.ndarray, np.ndarray]:
  """Frame indices of a clip and a validity flag per clip frame.

  'pad': indices past the end are invalid (the frame is zero-filled by
  `gather_frames`); 'loop': indices wrap around (always valid).
  """
  idx = start + period * np.arange(frames, dtype=np.int64)
  if short_video == "loop":
    return idx % num_frames, np.ones(frames, bool)
  if short_video != "pad":
    raise ValueError(f"short_video must be one of {SHORT_VIDEO_MODES}, got {short_video!r}")
  valid = idx < num_frames
  return np.minimum(idx, num_frames - 1), valid


def gather_frames(video: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """float32 frames video[idx], zero where not valid."""
  clip = video[idx].astype(np.float32)
  clip[~valid] = 0.0
  return clip


def mcsdr_crop(length: int, *, train: bool, rng: np.random.Generator | None = None,
               p_range: tuple[float, float] = (0.9, 1.0), p_test: float = 0.95,
               min_frames: int = 16) -> tuple[int, int]:
  """(begin, cropped length) of MCSDR's contiguous temporal crop of `length` frames."""
  if not train:
    cropped = int(np.floor(length * p_test))
    bias = int((1 - p_test) * length / 2)
    return bias, max(min(cropped, length - bias), 1)
  p = rng.uniform(p_range[0], p_range[1])
  cropped = min(max(int(np.floor(length * p)), min(min_frames, length)), length)
  bias = int(rng.integers(0, length - cropped + 1))
  return bias, cropped


def linear_time_positions(length: int, frames: int) -> np.ndarray:
  """Source positions of `frames` outputs resampled from `length` inputs.

  Half-pixel convention (PyTorch `align_corners=False`): output j reads source
  position (j + 0.5)·length/frames − 0.5, clamped to [0, length − 1].
  """
  pos = (np.arange(frames, dtype=np.float64) + 0.5) * (length / frames) - 0.5
  return np.clip(pos, 0.0, length - 1)


def resample_time(video: np.ndarray, positions: np.ndarray) -> np.ndarray:
  """float32 frames linearly interpolated in time at fractional `positions`."""
  lo = np.floor(positions).astype(np.int64)
  hi = np.minimum(lo + 1, video.shape[0] - 1)
  w = (positions - lo).astype(np.float32)[:, None, None]
  v = video.astype(np.float32)
  return v[lo] * (1.0 - w) + v[hi] * w


def mcsdr_clip(video: np.ndarray, frames: int, period: int, *, train: bool,
               rng: np.random.Generator | None = None,
               p_range: tuple[float, float] = (0.9, 1.0), p_test: float = 0.95,
               min_frames: int = 16) -> np.ndarray:
  """MCSDR clip: every period-th frame, contiguous crop, linear resampling to `frames`."""
  sub = video[::period]
  begin, length = mcsdr_crop(sub.shape[0], train=train, rng=rng, p_range=p_range,
                             p_test=p_test, min_frames=min_frames)
  return resample_time(sub[begin:begin + length], linear_time_positions(length, frames))


# ---------------------------------------------------------------------------
# Spatial operations (all frames of a clip share the same parameters).


def resize_frames(video: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
  """Resizes every frame to (height, width): INTER_AREA to shrink, INTER_LINEAR to enlarge."""
  width = height if width is None else width
  t, h, w = video.shape
  if (h, w) == (height, width):
    return video
  interp = cv2.INTER_AREA if (height <= h and width <= w) else cv2.INTER_LINEAR
  out = np.empty((t, height, width), video.dtype)
  for i in range(t):
    out[i] = cv2.resize(video[i], (width, height), interpolation=interp)
  return out


def pad_to_square(image: np.ndarray) -> np.ndarray:
  """Zero-pads the last two axes symmetrically to a square."""
  h, w = image.shape[-2:]
  s = max(h, w)
  top, left = (s - h) // 2, (s - w) // 2
  pad = [(0, 0)] * (image.ndim - 2) + [(top, s - h - top), (left, s - w - left)]
  return np.pad(image, pad)


def pad_crop(video: np.ndarray, pad: int, top: int, left: int) -> np.ndarray:
  """Zero-pads each side by `pad` and crops the original size at (top, left)."""
  if pad == 0:
    return video
  t, h, w = video.shape
  padded = np.pad(video, ((0, 0), (pad, pad), (pad, pad)))
  return padded[:, top:top + h, left:left + w]


def rotate(video: np.ndarray, angle_deg: float) -> np.ndarray:
  """Rotates every frame about its centre (bilinear, zero border)."""
  if angle_deg == 0:
    return video
  t, h, w = video.shape
  m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle_deg), 1.0)
  out = np.empty_like(video)
  for i in range(t):
    out[i] = cv2.warpAffine(video[i], m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  return out


def brightness_contrast(video: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
  """x' = contrast·(x − mean) + mean + 255·brightness, clipped to [0, 255]."""
  x = video.astype(np.float32)
  m = x.mean()
  return np.clip(contrast * (x - m) + m + 255.0 * brightness, 0.0, 255.0)


def gaussian_blur(video: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur of every frame with standard deviation `sigma` pixels."""
  if sigma <= 0:
    return video
  out = np.empty_like(video)
  for i in range(video.shape[0]):
    out[i] = cv2.GaussianBlur(video[i], (0, 0), sigmaX=float(sigma),
                              borderType=cv2.BORDER_REFLECT_101)
  return out


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """Per-clip augmentation draw."""
  top: int = 0
  left: int = 0
  angle: float = 0.0
  brightness: float = 0.0
  contrast: float = 1.0
  blur_sigma: float = 0.0


def sample_augment_params(rng: np.random.Generator, *, pad: int, max_rotation: float,
                          brightness: float, contrast: float, blur_prob: float,
                          blur_sigma: tuple[float, float]) -> AugmentParams:
  """Draws crop offsets, angle ~ U[±max_rotation], brightness, contrast, blur."""
  top, left = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
  angle = float(rng.uniform(-max_rotation, max_rotation)) if max_rotation > 0 else 0.0
  b = float(rng.uniform(-brightness, brightness)) if brightness > 0 else 0.0
  c = float(rng.uniform(1 - contrast, 1 + contrast)) if contrast > 0 else 1.0
  sigma = 0.0
  if blur_prob > 0 and rng.uniform() < blur_prob:
    sigma = float(rng.uniform(*blur_sigma))
  return AugmentParams(top, left, angle, b, c, sigma)


def augment_clip(clip: np.ndarray, params: AugmentParams, pad: int) -> np.ndarray:
  """Pad/crop, rotation, brightness/contrast, blur (in that order), float32 0..255."""
  x = pad_crop(clip.astype(np.float32), pad, params.top, params.left)
  x = rotate(x, params.angle)
  if params.brightness != 0 or params.contrast != 1:
    x = brightness_contrast(x, params.brightness, params.contrast)
  return gaussian_blur(x, params.blur_sigma)


def normalize(clip: np.ndarray, mean: float, std: float) -> np.ndarray:
  """(x − mean) / std as float32 with a trailing channel axis (T, H, W, 1)."""
  return ((clip.astype(np.float32) - mean) / std)[..., None]


# ---------------------------------------------------------------------------
# Grain transforms.


def _empty_example(cfg: Any, num_attr: int) -> dict[str, np.ndarray]:
  return {
      "video": np.zeros((cfg.frames, cfg.image_size, cfg.image_size, 1), np.float32),
      "ef": np.float32(np.nan),
      "attr_raw": np.full((num_attr,), np.nan, np.float32),
      "index": np.int64(-1),
      "clip_start": np.int64(-1),
      "mask": np.bool_(False),
  }


class LoadClip(grain.transforms.Map):
  """(index, epoch, start) -> processed example dict, reading `source[index]`.

  index < 0 yields an all-zero padding example with mask False. start < 0 means
  "draw or centre the start per `cfg`"; the generator is `example_rng(seed,
  epoch, index)`, so augmentation does not depend on the worker that runs it.
  """

  def __init__(self, source: Sequence[Mapping[str, Any]], cfg: Any, *, train: bool,
               num_attr: int, mean: float, std: float):
    self._source = source
    self._cfg = cfg
    self._train = train
    self._num_attr = num_attr
    self._mean = float(mean)
    self._std = float(std)

  def map(self, element: tuple[int, int, int]) -> dict[str, np.ndarray]:
    index, epoch, start = (int(v) for v in element)
    cfg = self._cfg
    if index < 0:
      return _empty_example(cfg, self._num_attr)
    ex = self._source[index]
    video = np.asarray(ex["video"])
    rng = example_rng(cfg.seed, epoch, index)
    t = video.shape[0]
    if cfg.sampling == "mcsdr":
      clip = mcsdr_clip(video, cfg.frames, cfg.period, train=self._train, rng=rng,
                        p_range=tuple(cfg.mcsdr_p_train), p_test=cfg.mcsdr_p_test,
                        min_frames=cfg.mcsdr_min_frames)
      start = -1
    else:
      if start < 0:
        start = (random_start(t, cfg.frames, cfg.period, rng) if self._train
                 else center_start(t, cfg.frames, cfg.period))
      idx, valid = clip_indices(t, start, cfg.frames, cfg.period, cfg.short_video)
      clip = gather_frames(video, idx, valid)
    if clip.shape[1:] != (cfg.image_size, cfg.image_size):
      clip = resize_frames(clip, cfg.image_size)
    if self._train and cfg.augment:
      params = sample_augment_params(
          rng, pad=cfg.pad, max_rotation=cfg.max_rotation, brightness=cfg.brightness,
          contrast=cfg.contrast, blur_prob=cfg.blur_prob, blur_sigma=tuple(cfg.blur_sigma))
      clip = augment_clip(clip, params, cfg.pad)
    attr = np.asarray(ex.get("attributes", np.zeros((0,), np.float32)), np.float32)
    if attr.shape != (self._num_attr,):
      raise ValueError(f"example {index}: attributes have shape {attr.shape}, "
                       f"expected ({self._num_attr},)")
    return {
        "video": normalize(clip, self._mean, self._std),
        "ef": np.float32(ex["ef"]),
        "attr_raw": attr,
        "index": np.int64(index),
        "clip_start": np.int64(start),
        "mask": np.bool_(True),
    }


class PreprocessAttributes(grain.transforms.Map):
  """Batched `attr_raw` -> attr_cont, attr_cont_missing, attr_cat.

  Takes the fitted preprocessor as its JSON (`AttributePreprocessor.to_json()`),
  so a worker rebuilds it without pickling fitted state. Without one, the three
  outputs are empty (B, 0) arrays.
  """

  def __init__(self, preprocessor_json: str | None):
    self._json = preprocessor_json
    self._pre = None

  def _preprocessor(self):
    if self._pre is None and self._json is not None:
      from cardiac_data import attributes  # pylint: disable=g-import-not-at-top
      self._pre = attributes.AttributePreprocessor.from_json(self._json)
    return self._pre

  def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raw = batch.pop("attr_raw")
    b = raw.shape[0]
    pre = self._preprocessor()
    if pre is None:
      batch["attr_cont"] = np.zeros((b, 0), np.float32)
      batch["attr_cont_missing"] = np.zeros((b, 0), bool)
      batch["attr_cat"] = np.zeros((b, 0), np.int32)
      return batch
    out = pre.transform(raw)
    batch["attr_cont"] = np.asarray(out["continuous"], np.float32)
    batch["attr_cont_missing"] = np.asarray(out["continuous_missing"], bool)
    batch["attr_cat"] = np.asarray(out["categorical"], np.int32)
    return batch


def preprocessor_json(preprocessor: Any | None) -> str | None:
  """JSON of a fitted AttributePreprocessor (or None), checked to be a JSON string."""
  if preprocessor is None:
    return None
  return json.dumps(preprocessor.to_json())
