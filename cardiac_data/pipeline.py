"""Grain input pipeline over TFDS array_record data sources.

  builder = builders.build("echonet_pediatric", manual_dir, data_dir)
  splits = builders.pediatric_cv_splits(test_fold=0)
  train_src = data_source(builder, splits["train"])
  pre = attributes.AttributePreprocessor.fit(builders.raw_attributes(train_src), spec)
  cfg = PipelineConfig(frames=16, batch_size=8)
  train_it = make_loader(train_src, cfg, train=True, preprocessor=pre)     # infinite
  for batch in make_loader(data_source(builder, splits["test"]), cfg, train=False,
                           preprocessor=pre):                              # one pass
    ...

Batches are dicts of numpy arrays: `video` float32 (B, T, H, W, 1), `ef` float32
(B,), `attr_cont` float32 (B, C), `attr_cont_missing` bool (B, C), `attr_cat`
int32 (B, K), `mask` bool (B,) (False on padding), `index` int64 (B,) (the
example's index in the split, −1 on padding) and `clip_start` int64 (B,).

Training: one shuffled order of the split per epoch, the same on every host; host
shard_index of shard_count reads only its block of rows of every global batch
(batch_size per host × shard_count), so the hosts' batches together are the one-host
batch; clip start and augmentation come from a
generator seeded by (seed, epoch, index), so batches are identical for any
worker_count. Evaluation: one pass in index order; 'center' gives one clip per
video, 'all' one item per (video, clip start) with starts 0, stride, 2·stride…
(average predictions over items with the same `index`); the last batch is padded
with mask False so every item is counted exactly once, and every host yields
the same number of batches (`num_eval_batches`, the `len` of the `EvalPass` that
make_loader returns, whose iteration shows a progress bar).
"""
from __future__ import annotations

import dataclasses
import gc
import math
import sys
from typing import Any, Mapping, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from cardiac_data import builders
from cardiac_data import host
from cardiac_data import transforms

NORMALIZATIONS = ("scale", "meanstd")


def auto_worker_count(cores: int | None = None) -> int:
  """Grain workers for `worker_count=-1`: half the usable cores, at most 8 (the other
  half runs the train step, e.g. with config.sharding.cpu_devices=0; benchmarks/train_loop.py)."""
  cores = host.usable_cores() if cores is None else cores
  return max(0, min(8, int(cores) // 2))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Options of the input pipeline; invalid values raise ValueError naming the field.

  Attributes:
    frames, period: clip length and temporal stride (keep every period-th frame).
    sampling: 'clip' (contiguous strided clip) or 'mcsdr' (crop a fraction of the
      period-subsampled video, then resample linearly to `frames`).
    eval_protocol: 'center' or 'all' (every `eval_stride`-th start; 'clip' only).
    short_video: 'pad' (zero frames after the end) or 'loop' (wrap around).
    image_size: output frame size (resized from the stored size if different).
    normalization: 'scale' (x/255) or 'meanstd' ((x − mean)/std, 0..255 units,
      fitted with `fit_normalization` on training videos).
    augment: training augmentation on/off; pad (zero-pad each side, random crop
      back), max_rotation (degrees, uniform ±), brightness (± fraction of 255),
      contrast (factor 1 ± contrast), blur_prob/blur_sigma (Gaussian blur).
    mcsdr_p_train, mcsdr_p_test, mcsdr_min_frames: MCSDR crop fractions.
    batch_size, drop_remainder: training batches (evaluation never drops).
    seed: shuffling and per-example RNG.
    worker_count: grain worker processes (0: in-process; -1: `auto_worker_count`,
      half the usable cores, at most 8); worker_buffer_size;
      read_threads and prefetch: threads and buffered batches per process.
    shard_index, shard_count: this host (jax.process_index/count()); in training it
      reads its block of batch_size rows of every global batch.
  """
  frames: int = 16
  period: int = 1
  sampling: str = "clip"
  eval_protocol: str = "center"
  eval_stride: int = 1
  short_video: str = "pad"
  image_size: int = 112
  normalization: str = "scale"
  mean: float | None = None
  std: float | None = None
  augment: bool = True
  pad: int = 6
  max_rotation: float = 10.0
  brightness: float = 0.1
  contrast: float = 0.1
  blur_prob: float = 0.2
  blur_sigma: tuple[float, float] = (0.1, 1.0)
  mcsdr_p_train: tuple[float, float] = (0.9, 1.0)
  mcsdr_p_test: float = 0.95
  mcsdr_min_frames: int = 16
  batch_size: int = 8
  drop_remainder: bool = True
  seed: int = 0
  worker_count: int = 0
  worker_buffer_size: int = 2
  read_threads: int = 2
  prefetch: int = 4
  shard_index: int = 0
  shard_count: int = 1

  def __post_init__(self):
    def bad(field, why):
      raise ValueError(f"PipelineConfig.{field}: {why}, got {getattr(self, field)!r}")
    for field in ("frames", "period", "eval_stride", "image_size", "batch_size",
                  "shard_count", "mcsdr_min_frames", "worker_buffer_size", "prefetch"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        bad(field, "must be a positive integer")
    v = self.worker_count
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < -1:
      bad("worker_count", "must be a non-negative integer, or -1 (auto)")
    if v == -1:
      object.__setattr__(self, "worker_count", auto_worker_count())
    for field in ("read_threads", "pad", "seed", "shard_index"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        bad(field, "must be a non-negative integer")
    if self.shard_index >= self.shard_count:
      bad("shard_index", f"must be < shard_count={self.shard_count}")
    choices = {"sampling": transforms.SAMPLINGS, "eval_protocol": transforms.EVAL_PROTOCOLS,
               "short_video": transforms.SHORT_VIDEO_MODES, "normalization": NORMALIZATIONS}
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        bad(field, f"must be one of {allowed}")
    if self.sampling == "mcsdr" and self.eval_protocol != "center":
      bad("eval_protocol", "must be 'center' with sampling='mcsdr' (MCSDR's one centred crop)")
    if self.normalization == "meanstd":
      if self.mean is None or not math.isfinite(self.mean):
        bad("mean", "must be a finite number with normalization='meanstd'")
      if self.std is None or not (math.isfinite(self.std) and self.std > 0):
        bad("std", "must be a positive number with normalization='meanstd'")
    if not 0 <= self.max_rotation < 180:
      bad("max_rotation", "must be in [0, 180) degrees")
    if not 0 <= self.brightness <= 1:
      bad("brightness", "must be in [0, 1]")
    if not 0 <= self.contrast < 1:
      bad("contrast", "must be in [0, 1)")
    if not 0 <= self.blur_prob <= 1:
      bad("blur_prob", "must be in [0, 1]")
    lo, hi = _pair(self, "blur_sigma")
    if not 0 < lo <= hi:
      bad("blur_sigma", "must be (low, high) with 0 < low <= high")
    lo, hi = _pair(self, "mcsdr_p_train")
    if not 0 < lo <= hi <= 1:
      bad("mcsdr_p_train", "must be (low, high) with 0 < low <= high <= 1")
    if not 0 < self.mcsdr_p_test <= 1:
      bad("mcsdr_p_test", "must be in (0, 1]")

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> PipelineConfig:
    """From a dict / ConfigDict; an unknown key raises ValueError naming it."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
      if key not in known:
        raise ValueError(f"PipelineConfig: unknown field {key!r} (known: {sorted(known)})")
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})

  def replace(self, **changes) -> PipelineConfig:
    return self.from_mapping({**dataclasses.asdict(self), **changes})

  @property
  def mean_std(self) -> tuple[float, float]:
    return (0.0, 255.0) if self.normalization == "scale" else (float(self.mean), float(self.std))


def _pair(cfg: PipelineConfig, field: str) -> tuple[float, float]:
  v = getattr(cfg, field)
  try:
    lo, hi = (float(x) for x in v)
  except (TypeError, ValueError):
    raise ValueError(f"PipelineConfig.{field}: must be a pair (low, high), got {v!r}") from None
  return lo, hi


def data_source(builder: tfds.core.DatasetBuilder, split: str):
  """The array_record data source of a built builder (any config) and split, what
  `tfds.data_source` returns, without constructing the builder again; no TensorFlow."""
  return builder.as_data_source(split=split)


def frame_counts(source: Sequence[Mapping[str, Any]]) -> list[int]:
  """Frames per example: from the builder's metadata, else by reading every example."""
  counts = builders.split_metadata(source, "num_frames")
  if counts is None:
    counts = [int(np.asarray(source[i]["video"]).shape[0]) for i in range(len(source))]
  return [int(c) for c in counts]


def fit_normalization(source: Sequence[Mapping[str, Any]], *, num_videos: int = 128,
                      seed: int = 0) -> tuple[float, float]:
  """Pixel mean and std (0..255 units) over up to `num_videos` random training videos
  (EchoNet's `get_mean_and_std`); pass them as PipelineConfig(mean=, std=)."""
  n = len(source)
  if n == 0:
    raise ValueError("fit_normalization: empty source")
  idx = np.random.default_rng(seed).permutation(n)[:num_videos]
  total = total_sq = count = 0.0
  for i in sorted(idx):
    v = np.asarray(source[int(i)]["video"], np.float64)
    total += v.sum()
    total_sq += np.square(v).sum()
    count += v.size
  mean = total / count
  return float(mean), float(math.sqrt(max(total_sq / count - mean * mean, 0.0)))


class _Pick(grain.transforms.Map):
  """k -> element `position(k)` of a random-access dataset."""

  def __init__(self, order: grain.MapDataset, rows: int, index: int, count: int):
    self._order, self._rows, self._index, self._count = order, rows, index, count

  def map(self, k: int):
    b = self._rows
    return self._order[(k // b) * b * self._count + self._index * b + k % b]


def host_rows(order: grain.MapDataset, rows: int, index: int, count: int) -> grain.MapDataset:
  """The elements of `order` that host `index` of `count` contributes when batches of
  rows·count elements are cut from `order` and each host takes `rows` consecutive rows
  of every batch (block `index`): `training.sharding.global_batch` then reassembles
  exactly the batch a one-host run takes, so losses do not depend on the host count.
  Only whole global batches are taken (a finite `order`'s last partial one is dropped)."""
  length = len(order) // (rows * count) * rows
  return grain.MapDataset.range(length).map(_Pick(order, rows, index, count))


class _WithEpoch(grain.transforms.MapWithIndex):
  """(position in the repeated order, index) -> (index, epoch, start=−1)."""

  def __init__(self, epoch_length: int):
    self._n = epoch_length

  def map_with_index(self, position: int, index: int) -> tuple[int, int, int]:
    return int(index), position // self._n, -1


def eval_items(num_frames: Sequence[int], cfg: PipelineConfig) -> list[tuple[int, int, int]]:
  """(index, epoch=0, start) of every evaluation item of the split, in order."""
  if cfg.eval_protocol == "center" or cfg.sampling == "mcsdr":
    return [(i, 0, -1) for i in range(len(num_frames))]
  return [(i, 0, int(s)) for i, t in enumerate(num_frames)
          for s in transforms.all_starts(int(t), cfg.frames, cfg.period, cfg.eval_stride)]


def _shard_eval_items(items: list, cfg: PipelineConfig) -> list:
  per_host = -(-len(items) // cfg.shard_count)
  num_batches = -(-per_host // cfg.batch_size)
  mine = items[cfg.shard_index::cfg.shard_count]
  return mine + [(-1, 0, -1)] * (num_batches * cfg.batch_size - len(mine))


def num_eval_batches(source: Sequence[Mapping[str, Any]], cfg: PipelineConfig,
                     num_frames: Sequence[int] | None = None) -> int:
  """Batches of one evaluation pass on every host."""
  if cfg.eval_protocol == "all":
    counts = frame_counts(source) if num_frames is None else num_frames
    items = eval_items(counts, cfg)
  else:
    items = range(len(source))
  return -(-(-(-len(items) // cfg.shard_count)) // cfg.batch_size)


def _num_attributes(source: Sequence[Mapping[str, Any]]) -> int:
  info = getattr(source, "dataset_info", None)
  if info is not None:
    return int(info.features["attributes"].shape[0])
  return int(np.asarray(source[0].get("attributes", np.zeros((0,)))).shape[0]) if len(source) else 0


class _OwnedArrays(grain.transforms.Map):
  """Copies a batch out of grain's shared memory into ordinary arrays (main process).

  With worker_count > 0 every array of a batch arrives as a SharedMemoryArray whose
  segment is unlinked by a background thread once the array is garbage collected;
  arrays a caller still holds near exit (an example batch, the index/mask arrays an
  evaluation keeps) are not unlinked in time, and the resource tracker reports
  "leaked shared_memory objects" at shutdown. The copy (~6 MB for 8 clips of
  16×112×112) frees each segment as soon as its batch is read; values are unchanged.
  """

  def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in batch.items()}


class EvalPass:
  """One evaluation pass (`make_loader(..., train=False)`): the batches in order, their
  number (`len`), and a progress bar on stderr while a loop iterates it.

  The bar (tqdm, like the training bar: refreshed every second on a terminal, every
  30 s in a log file) starts when the pass is iterated (`for batch in loader`), so
  `next(loader)` alone, to look at one batch, prints nothing. After the last batch
  the pass closes its grain iterator and worker processes. With workers, grain's
  prefetch threads end on a StopIteration whose traceback (a reference cycle) holds
  each worker's last batch in shared memory; a garbage collection then frees them,
  else the resource tracker reports them as leaked at exit.
  """

  def __init__(self, iterator: grain.DatasetIterator, num_batches: int, desc: str, *,
               workers: bool = False):
    self.num_batches = num_batches
    self.desc = desc
    self._it = iterator
    self._workers = workers
    self._bar = None
    self._served = 0
    self._closed = False

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> EvalPass:
    if self._bar is None:
      # position=0: drawn in place of an open training bar, not below it with cursor
      # movements that show up as '\x1b[A' in a log file.
      self._bar = tqdm.tqdm(total=self.num_batches, desc=self.desc, unit="batch",
                            position=0, dynamic_ncols=True,
                            mininterval=1.0 if sys.stderr.isatty() else 30.0)
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._served == self.num_batches:
      self.close()
      raise StopIteration
    try:
      batch = next(self._it)
    except StopIteration:
      self.close()
      raise
    self._served += 1
    if self._bar is not None:
      self._bar.update(1)
    return batch

  def close(self) -> None:
    """Ends the pass: closes the progress bar and the grain iterator (idempotent)."""
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
    self._it.close()
    if self._workers:
      gc.collect()


def make_dataset(source: Sequence[Mapping[str, Any]], cfg: PipelineConfig, *, train: bool,
                 preprocessor: Any = None, num_epochs: int | None = None,
                 num_frames: Sequence[int] | None = None,
                 start_batch: int = 0) -> grain.IterDataset:
  """Batched grain IterDataset over `source` (a tfds data source or a sequence of
  example dicts with `video`, `ef`, `attributes`).

  train=True: shuffled, augmented, `num_epochs` passes (None: infinite).
  train=False: one pass by `cfg.eval_protocol`, padded with mask False.
  `preprocessor`: an AttributePreprocessor fitted on the training split only.
  `num_frames`: frames per example for the 'all' protocol (default: metadata).
  `start_batch` (train): skip that many batches by random access, so a run resumed
  at step s sees exactly the batches an uninterrupted run sees from step s on.
  """
  return _make_dataset(source, cfg, train=train, preprocessor=preprocessor,
                       num_epochs=num_epochs, num_frames=num_frames, start_batch=start_batch)[0]


def _make_dataset(source, cfg, *, train, preprocessor, num_epochs, num_frames, start_batch
                  ) -> tuple[grain.IterDataset, int | None]:
  """`make_dataset` and, for evaluation, its number of batches (None in training)."""
  if not isinstance(cfg, PipelineConfig):
    raise TypeError(f"cfg must be a PipelineConfig, got {type(cfg).__name__}")
  n = len(source)
  if n == 0:
    raise ValueError("make_dataset: the data source is empty")
  mean, std = cfg.mean_std
  load = transforms.LoadClip(source, cfg, train=train, num_attr=_num_attributes(source),
                             mean=mean, std=std)
  if train:
    if num_epochs is not None and num_epochs <= 0:
      raise ValueError(f"make_dataset: num_epochs must be positive or None, got {num_epochs}")
    ds = grain.MapDataset.range(n).shuffle(seed=cfg.seed).repeat(num_epochs)
    ds = ds.map_with_index(_WithEpoch(n))
    if cfg.shard_count > 1:     # This host's block of rows of every global batch.
      ds = host_rows(ds, cfg.batch_size, cfg.shard_index, cfg.shard_count)
    ds = ds.map(load).batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    if start_batch:
      ds = ds[start_batch:]
  else:
    counts = (num_frames if num_frames is not None
              else frame_counts(source) if cfg.eval_protocol == "all" else [0] * n)
    items = _shard_eval_items(eval_items(counts, cfg), cfg)
    ds = grain.MapDataset.source(items).map(load).batch(cfg.batch_size, drop_remainder=False)
  ds = ds.map(transforms.PreprocessAttributes(transforms.preprocessor_json(preprocessor)))
  num_batches = None if train else len(ds)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads,
                                            prefetch_buffer_size=cfg.prefetch))
  if cfg.worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=cfg.worker_count, per_worker_buffer_size=cfg.worker_buffer_size))
    it = it.map(_OwnedArrays())
  return it, num_batches


def make_loader(source: Sequence[Mapping[str, Any]], cfg: PipelineConfig, *, train: bool,
                preprocessor: Any = None, num_epochs: int | None = None,
                num_frames: Sequence[int] | None = None, start_batch: int = 0,
                desc: str | None = None):
  """Batches of `make_dataset(...)`.

  train=True: a grain iterator (checkpointable: get_state/set_state; `close()` ends its
  worker processes). train=False: an `EvalPass` (its `len` is the number of batches,
  with a progress bar named `desc`, default 'eval <split>').
  """
  ds, num_batches = _make_dataset(source, cfg, train=train, preprocessor=preprocessor,
                                  num_epochs=num_epochs, num_frames=num_frames,
                                  start_batch=start_batch)
  if train:
    return iter(ds)
  if desc is None:
    split = getattr(source, "split", None)
    desc = f"eval {split}" if isinstance(split, str) else "eval"
  return EvalPass(iter(ds), num_batches, desc, workers=cfg.worker_count > 0)
