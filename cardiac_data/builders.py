"""TFDS builders (array_record, no TensorFlow) for EchoNet-Dynamic, EchoNet-Pediatric, CAMUS.

Each builder reads the published layout from `manual_dir` with the readers in
`cardiac_data.echonet` / `cardiac_data.camus` (the synthetic cohort is just a
`manual_dir` pointing at the generated tree) and writes one example per video:

  key          Text      the record key (file name without `.avi`; CAMUS patient)
  video        uint8     (T, S, S) greyscale, every frame resized to S×S (raw bytes in
                         zstd-compressed array_record records: ~2.5x the AVI size
                         on the synthetic cohort, read ~3x faster than AVI decoding)
  num_frames   int32     T
  orig_height, orig_width  int32  frame size before resizing
  resized      bool      whether the frames were resized
  ef, edv, esv, fps  float32   NaN where the layout has none
  attributes   float32   (A,) raw demographics, `raw_attribute_matrix` (NaN missing,
                         categorical as category index)
  ed_frame, es_frame  int32  0-based, −1 if none
  ed_mask, es_mask    uint8 (S, S) label maps at ED/ES; has_masks bool
  fold         int32     EchoNet-Pediatric fold 0–9, else −1

Arrays are `tfds.features.Tensor` (the Image feature needs TensorFlow). Splits:
Dynamic and CAMUS train/val/test; Pediatric `fold0`…`fold9`, so cross-validation
run s reads test = `fold{s}`, val = `fold{(s+1)%10}` and trains on the rest
(`pediatric_cv_splits`). Examples keep the reader's order (integer keys,
shuffling disabled) so index i of a split is the i-th kept video; grain shuffles
at read time. Videos that fail to decode or are truncated are skipped, counted
per split and reason and summarised (SkipLog) in one line at the end of the build,
as is the number of resized videos; the counts per split, per-index frame counts,
EF and raw attributes are kept in the dataset's metadata (`split_metadata`).

Resizing: 'stretch' resizes H×W to S×S directly; 'pad' zero-pads to a square
first (keeps the aspect ratio, the CAMUS default). Videos use cv2.INTER_AREA to
shrink (INTER_LINEAR to enlarge), masks INTER_NEAREST.

Reader options (`READER_DEFAULTS`: strict, require_tracings / require_masks, CAMUS
release, split_list_dir, fold) are builder options: a non-default value gets its
own config name (`make_config`), hence its own build folder. A build is redone when
manual_dir (or a CAMUS split_list_dir outside it) changes (`build_fingerprint`).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import logging
import cv2
import numpy as np
import tensorflow_datasets as tfds

from cardiac_data import attributes as attributes_lib
from cardiac_data import errors
from cardiac_data import records as records_lib
from cardiac_data import transforms

#: Seconds between progress lines while a split is written.
BUILD_PROGRESS_S = 30.0

DEFAULT_SIZE = 112
RESIZE_MODES = ("stretch", "pad")
_VERSION = "1.1.0"
_FORMAT = "array_record"
NUM_PEDIATRIC_FOLDS = 10

# Raw attributes stored per dataset (the layouts' demographics).
DEFAULT_ATTRIBUTES: dict[str, attributes_lib.AttributeSpec] = {
    "echonet_dynamic": attributes_lib.DYNAMIC_SPEC,
    "echonet_pediatric": attributes_lib.PEDIATRIC_SPEC,
    "camus": attributes_lib.CAMUS_SPEC,
}


@dataclasses.dataclass(eq=False, kw_only=True)
class EchoConfig(tfds.core.BuilderConfig):
  """Which view, output size and reader options a built dataset holds.

  Attributes:
    view: 'A4C' (Dynamic, Pediatric), 'PSAX' (Pediatric), '2CH'/'4CH' (CAMUS).
    size: output frame size S (frames become S×S).
    resize_mode: 'stretch' or 'pad' (see module docstring).
    continuous, categorical: the attribute spec of the `attributes` vector.
    reader_kwargs: extra keyword arguments of the reader, as sorted (key, value)
      pairs (e.g. (('require_tracings', True),), CAMUS (('release', 'nifti'),));
      only those that differ from the builder's READER_DEFAULTS, which name the
      config (`make_config`), so other reader options build another dataset.
  """
  view: str = "A4C"
  size: int = DEFAULT_SIZE
  resize_mode: str = "stretch"
  continuous: tuple[str, ...] = ()
  categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()
  reader_kwargs: tuple[tuple[str, Any], ...] = ()

  def attribute_names(self) -> list[str]:
    return list(self.continuous) + [name for name, _ in self.categorical]

  def attribute_spec(self) -> attributes_lib.AttributeSpec:
    return attributes_lib.AttributeSpec(self.continuous, dict(self.categorical))


def _config_name(view: str, size: int, extra: Mapping[str, Any]) -> str:
  """'a4c' for defaults, else 'a4c_s64' and/or a short hash of the other options."""
  name = view.lower()
  if size != DEFAULT_SIZE:
    name += f"_s{size}"
  if extra:
    digest = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode())
    name += "_" + digest.hexdigest()[:8]
  return name


def _features(size: int, num_attr: int) -> tfds.features.FeaturesDict:
  zlib = tfds.features.Encoding.ZLIB
  f32, i32 = np.float32, np.int32
  return tfds.features.FeaturesDict({
      "key": tfds.features.Text(),
      # Raw bytes: array_record already compresses each record (zstd:3); zlib on
      # top saves nothing and inflates ~10x slower than a copy.
      "video": tfds.features.Tensor(shape=(None, size, size), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      "num_frames": tfds.features.Scalar(dtype=i32),
      "orig_height": tfds.features.Scalar(dtype=i32),
      "orig_width": tfds.features.Scalar(dtype=i32),
      "resized": tfds.features.Scalar(dtype=np.bool_),
      "ef": tfds.features.Scalar(dtype=f32),
      "edv": tfds.features.Scalar(dtype=f32),
      "esv": tfds.features.Scalar(dtype=f32),
      "fps": tfds.features.Scalar(dtype=f32),
      "attributes": tfds.features.Tensor(shape=(num_attr,), dtype=f32),
      "ed_frame": tfds.features.Scalar(dtype=i32),
      "es_frame": tfds.features.Scalar(dtype=i32),
      "ed_mask": tfds.features.Tensor(shape=(size, size), dtype=np.uint8, encoding=zlib),
      "es_mask": tfds.features.Tensor(shape=(size, size), dtype=np.uint8, encoding=zlib),
      "has_masks": tfds.features.Scalar(dtype=np.bool_),
      "fold": tfds.features.Scalar(dtype=i32),
  })


def resize_to_square(image: np.ndarray, size: int, mode: str, *, nearest: bool = False
                     ) -> np.ndarray:
  """Resizes (T, H, W) or (H, W) to size×size by `mode` ('stretch' or 'pad')."""
  if mode == "pad":
    image = transforms.pad_to_square(image)
  elif mode != "stretch":
    raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")
  if image.shape[-2:] == (size, size):
    return image
  if nearest:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
  squeeze = image.ndim == 2
  out = transforms.resize_frames(image[None] if squeeze else image, size)
  return out[0] if squeeze else out


def _nan_to_none(values: np.ndarray) -> list:
  return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, float).ravel()]


def _none_to_nan(values: Sequence) -> np.ndarray:
  return np.array([math.nan if v is None else v for v in values], np.float32)


def _int_or(value: int | None, default: int = -1) -> int:
  return default if value is None else int(value)


# Configs made by `make_config` beyond BUILDER_CONFIGS, by (dataset, config name): one
# object per name, which `get_builder_config` finds (see there).
_MADE_CONFIGS: dict[tuple[str, str], EchoConfig] = {}


def _options(config: EchoConfig) -> tuple:
  return (config.view, config.size, config.resize_mode, config.continuous, config.categorical,
          config.reader_kwargs)


def _default_configs(dataset: str, views: Sequence[str], resize_mode: str) -> list[EchoConfig]:
  spec = DEFAULT_ATTRIBUTES[dataset]
  return [EchoConfig(name=v.lower(), view=v, resize_mode=resize_mode, continuous=spec.continuous,
                     categorical=tuple(spec.categorical.items()),
                     description=f"{v}, {DEFAULT_SIZE}x{DEFAULT_SIZE}, {resize_mode}")
          for v in views]


def metadata(info: tfds.core.DatasetInfo) -> dict[str, Any]:
  """The builder's metadata dict (loaded from disk when needed)."""
  meta = info.metadata
  return dict(meta.items()) if meta is not None else {}


# The readers (pandas, nibabel, SimpleITK, scikit-image) are imported where they
# are used: grain workers unpickle this module with every data source, and only
# building needs them (~1.5 s less start-up per worker).


def _load_or_error(rec: records_lib.EchoRecord) -> np.ndarray | Exception:
  from cardiac_data import clips  # pylint: disable=g-import-not-at-top
  try:
    return np.asarray(clips.load_clip(rec))
  except (errors.DataFormatError, OSError) as e:  # VideoDecodeError is a DataFormatError.
    return e


def load_ahead(items: Sequence[Any], load: Callable[[Any], Any], threads: int | None = None
               ) -> Iterator[Any]:
  """`load(item)` of each item in order, run by a few threads ahead of use (OpenCV, zlib
  and the NIfTI/PNG readers release the GIL); at most 2·threads results are held. `load`
  returns a per-item error instead of raising it (as `_load_or_error`)."""
  threads = threads or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(load, item))
      if len(pending) >= 2 * threads:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


class _EchoBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared generation for the echo builders; subclasses name the reader and splits."""

  VERSION = tfds.core.Version(_VERSION)
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Split metadata lists the example keys."}
  DATASET = ""
  READER_DEFAULTS: dict[str, Any] = {}

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", _FORMAT)
    config = kwargs.get("config")
    if isinstance(config, EchoConfig):
      # A copy of a known config (e.g. unpickled in a grain worker) is swapped for the
      # known object, which TFDS compares by identity; a config first seen here (in a
      # worker process) becomes known. A different config under a known name is left
      # for TFDS to reject.
      known = self.get_builder_config(config.name)
      if known is None:
        known = _MADE_CONFIGS.setdefault((self.DATASET, config.name), config)
      if _options(known) == _options(config):
        kwargs["config"] = known
    super().__init__(**kwargs)
    self.skip_log = errors.SkipLog(self.name)
    self.resize_counts: dict[str, tuple[int, int]] = {}  # split -> (resized, written)

  @classmethod
  def get_builder_config(cls, name: str, version: Any = None) -> EchoConfig | None:
    """A registered config (BUILDER_CONFIGS) or one `make_config` made, by name.

    TFDS warns "Using custom data configuration" each time a builder is constructed
    with a config it does not find here (every builder of a non-default size, in
    every grain worker); `make_config` logs a new config once instead.
    """
    return (super().get_builder_config(name, version)
            or _MADE_CONFIGS.get((cls.DATASET, name)))

  def is_prepared(self) -> bool:
    # TFDS warns "Variant folder ... has no dataset_info.json" about a dataset that is
    # simply not built yet; only an existing folder is worth its check.
    return self.data_path.exists() and super().is_prepared()

  @classmethod
  def make_config(cls, view: str | None = None, size: int = DEFAULT_SIZE,
                  resize_mode: str | None = None, attributes: Any = None,
                  **reader_kwargs) -> EchoConfig:
    """A config for `view`/`size`; a non-default option gets its own config name.

    `attributes` is an AttributeSpec-like object (fields `continuous`, `categorical`)
    or None for the dataset's default.
    """
    default = cls.BUILDER_CONFIGS[0]
    view = view or default.view
    views = [c.view for c in cls.BUILDER_CONFIGS]
    if view not in views:
      raise ValueError(f"{cls.DATASET}: view must be one of {views}, got {view!r}")
    if int(size) <= 0:
      raise ValueError(f"{cls.DATASET}: size must be positive, got {size}")
    resize_mode = resize_mode or default.resize_mode
    if resize_mode not in RESIZE_MODES:
      raise ValueError(f"{cls.DATASET}: resize_mode must be one of {RESIZE_MODES}, "
                       f"got {resize_mode!r}")
    cont, cat = default.continuous, default.categorical
    if attributes is not None:
      cont = tuple(attributes.continuous)
      cat = tuple((k, tuple(v)) for k, v in dict(attributes.categorical).items())
    for key in reader_kwargs:
      if key not in cls.READER_DEFAULTS:
        raise ValueError(f"{cls.DATASET}: unknown builder option {key!r} (options: view, size, "
                         f"resize_mode, attributes, {', '.join(cls.READER_DEFAULTS)})")
    extra = {k: v for k, v in sorted(reader_kwargs.items())
             if cls.READER_DEFAULTS.get(k, object()) != v}
    naming = dict(extra)
    if resize_mode != default.resize_mode:
      naming["resize_mode"] = resize_mode
    if (cont, cat) != (default.continuous, default.categorical):
      naming["attributes"] = [cont, cat]
    name = _config_name(view, int(size), naming)
    known = cls.get_builder_config(name)  # TFDS wants the known object itself.
    if known is not None:
      return known
    config = EchoConfig(name=name, view=view, size=int(size),
                        resize_mode=resize_mode, continuous=cont, categorical=cat,
                        reader_kwargs=tuple(extra.items()),
                        description=f"{view}, {size}x{size}, {resize_mode}")
    _MADE_CONFIGS[(cls.DATASET, name)] = config
    logging.info("%s: builder config %s (%s%s)", cls.DATASET, name, config.description,
                 "".join(f"; {k}={v!r}" for k, v in naming.items() if k != "resize_mode"))
    return config

  def log_build_summary(self) -> None:
    """After generation: the skips (a warning if any) and the resized videos, each
    in one line over all splits (per split in the metadata)."""
    self.skip_log.log_summary()
    resized = sum(r for r, _ in self.resize_counts.values())
    written = sum(n for _, n in self.resize_counts.values())
    if resized:
      cfg = self.builder_config
      logging.info("%s/%s: resized %d of %d video(s) to %dx%d", self.name, cfg.name,
                   resized, written, cfg.size, cfg.size)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=_features(cfg.size, len(cfg.attribute_names())),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  # Subclasses: read the layout, and assign records to split names.
  def _read(self, root: str):
    raise NotImplementedError

  def _split_of(self, record: records_lib.EchoRecord) -> str:
    return record.split

  def _split_names(self) -> list[str]:
    return list(records_lib.SPLITS)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    result = self._read(root)
    reader_skips = getattr(result, "skips", None)
    if reader_skips is not None:
      for reason, n in reader_skips.counts.items():
        self.skip_log.counts[f"reader: {reason}"] += n
    meta = self.info.metadata
    meta.clear()
    meta["dataset"] = self.DATASET
    meta["attribute_names"] = self.builder_config.attribute_names()
    meta["attribute_spec"] = self.builder_config.attribute_spec().to_json()
    meta["reader_skips"] = dict(reader_skips.counts) if reader_skips is not None else {}
    meta["reader_notes"] = {k: int(v) for k, v in dict(getattr(result, "notes", {})).items()}
    meta["source_fingerprint"] = build_fingerprint(root, self.builder_config)
    meta["splits"] = {}
    by_split: dict[str, list] = {name: [] for name in self._split_names()}
    for i, rec in enumerate(result.records):
      split = self._split_of(rec)
      if split not in by_split:
        self.skip_log.skip(f"record in none of the splits {list(by_split)}", f"item {i}")
        continue
      by_split[split].append(rec)
    for name, recs in by_split.items():
      if not recs:  # TFDS cannot write an empty split; it is simply absent.
        logging.warning("%s/%s: split %s has no record; omitted", self.name,
                        self.builder_config.name, name)
    return {name: self._generate_examples(name, recs) for name, recs in by_split.items() if recs}

  def _generate_examples(self, split: str, recs: Sequence[records_lib.EchoRecord]
                         ) -> Iterator[tuple[int, dict[str, Any]]]:
    from cardiac_data import clips  # pylint: disable=g-import-not-at-top
    cfg = self.builder_config
    log = errors.SkipLog(f"{self.name}/{cfg.name}/{split}")
    spec = cfg.attribute_spec()
    raw = (attributes_lib.raw_attribute_matrix(list(recs), spec) if recs
           else np.zeros((0, len(cfg.attribute_names())), np.float32))
    num_frames, keys, efs, attrs = [], [], [], []
    resized = masks_unreadable = 0
    key = 0
    start = last_log = time.monotonic()
    for i, (rec, video) in enumerate(zip(recs, load_ahead(recs, _load_or_error))):
      if time.monotonic() - last_log > BUILD_PROGRESS_S:
        last_log = time.monotonic()
        logging.info("%s/%s: split %s: %d/%d videos", self.name, cfg.name, split, i, len(recs))
      if isinstance(video, errors.VideoDecodeError):
        log.skip("video does not decode or is truncated", f"item {i}")
        continue
      if isinstance(video, Exception):
        log.skip("clip file unreadable", f"item {i}")
        continue
      if video.ndim != 3 or video.shape[0] == 0:
        log.skip("clip is not a (T, H, W) array", f"item {i}")
        continue
      t, h, w = video.shape
      video = resize_to_square(video.astype(np.uint8), cfg.size, cfg.resize_mode)
      was_resized = (h, w) != (cfg.size, cfg.size)
      resized += was_resized
      ed_mask = es_mask = None
      if rec.ed_frame is not None and rec.es_frame is not None:
        try:
          masks = clips.load_masks(rec)
        except (errors.DataFormatError, OSError):
          masks, masks_unreadable = {}, masks_unreadable + 1
        ed_mask, es_mask = masks.get(rec.ed_frame), masks.get(rec.es_frame)
      has_masks = ed_mask is not None and es_mask is not None
      blank = np.zeros((cfg.size, cfg.size), np.uint8)
      ex = {
          "key": rec.key,
          "video": video,
          "num_frames": t,
          "orig_height": h,
          "orig_width": w,
          "resized": was_resized,
          "ef": np.float32(rec.ef),
          "edv": np.float32(rec.edv),
          "esv": np.float32(rec.esv),
          "fps": np.float32(rec.fps),
          "attributes": raw[i].astype(np.float32),
          "ed_frame": _int_or(rec.ed_frame),
          "es_frame": _int_or(rec.es_frame),
          "ed_mask": (resize_to_square(np.asarray(ed_mask, np.uint8), cfg.size, cfg.resize_mode,
                                       nearest=True) if has_masks else blank),
          "es_mask": (resize_to_square(np.asarray(es_mask, np.uint8), cfg.size, cfg.resize_mode,
                                       nearest=True) if has_masks else blank),
          "has_masks": has_masks,
          "fold": _int_or(rec.fold),
      }
      num_frames.append(t)
      keys.append(rec.key)
      efs.append(float(rec.ef))
      attrs.append(_nan_to_none(raw[i]))
      yield key, ex
      key += 1
    self.resize_counts[split] = (int(resized), key)
    logging.info("%s/%s: split %s: %d examples written (%.0f s)", self.name, cfg.name, split,
                 key, time.monotonic() - start)
    for reason, n in log.counts.items():  # Logged once, by `log_build_summary`.
      self.skip_log.counts[f"{split}: {reason}"] += n
    self.info.metadata["splits"][split] = {
        "num_examples": key,
        "skips": dict(log.counts),
        "resized": int(resized),
        "masks_unreadable": int(masks_unreadable),
        "num_frames": num_frames,
        "key": keys,
        "ef": _nan_to_none(np.array(efs, float)),
        "attributes": attrs,
    }


class EchonetDynamic(_EchoBuilder):
  """EchoNet-Dynamic (10,030 apical-4-chamber videos, EF/EDV/ESV, ED/ES tracings)."""

  DATASET = "echonet_dynamic"
  # 1.2.0: frame size, FPS and frame count from the video header, not the FileList.
  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {**_EchoBuilder.RELEASE_NOTES,
                   "1.2.0": "Frame size, FPS and frame count from the video header (the "
                            "FileList states wrong sizes for some videos)."}
  BUILDER_CONFIGS = _default_configs(DATASET, ("A4C",), "stretch")
  READER_DEFAULTS = {"require_tracings": False, "check_files": True, "strict": False}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request EchoNet-Dynamic at https://echonet.github.io/dynamic/ (research-use
  agreement; do not redistribute), unzip it and pass the folder that holds
  `FileList.csv`, `VolumeTracings.csv` and `Videos/` as manual_dir.
  """

  def _read(self, root):
    from cardiac_data import echonet  # pylint: disable=g-import-not-at-top
    return echonet.read_echonet_dynamic(root, **dict(self.builder_config.reader_kwargs))


class EchonetPediatric(_EchoBuilder):
  """EchoNet-Pediatric (A4C and PSAX views, EF, demographics, 10 folds)."""

  DATASET = "echonet_pediatric"
  BUILDER_CONFIGS = _default_configs(DATASET, ("A4C", "PSAX"), "stretch")
  READER_DEFAULTS = {"require_tracings": False, "check_files": True, "strict": False}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request EchoNet-Pediatric at https://echonet.github.io/pediatric/ (research-use
  agreement; do not redistribute), unzip it and pass the folder that holds the
  `A4C/` and `PSAX/` folders (each with `FileList.csv`, `VolumeTracings.csv`,
  `Videos/`), i.e. `.../pediatric_echo_avi/pediatric_echo_avi`, as manual_dir.
  """

  def _read(self, root):
    from cardiac_data import echonet  # pylint: disable=g-import-not-at-top
    return echonet.read_echonet_pediatric(root, view=self.builder_config.view,
                                          **dict(self.builder_config.reader_kwargs))

  def _split_names(self):
    return [f"fold{k}" for k in range(NUM_PEDIATRIC_FOLDS)]

  def _split_of(self, record):
    if record.fold is None:
      return "missing fold"
    return f"fold{record.fold}"


class Camus(_EchoBuilder):
  """CAMUS (500 patients, 2CH/4CH half sequences ED↔ES, ED/ES label maps)."""

  DATASET = "camus"
  BUILDER_CONFIGS = _default_configs(DATASET, ("4CH", "2CH"), "pad")
  READER_DEFAULTS = {"release": "auto", "split_list_dir": None, "fold": None, "strict": False,
                     "require_masks": False}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download CAMUS from https://humanheart-project.creatis.insa-lyon.fr/database/
  (NIfTI release: `database_nifti/` and `database_split/`; or the 2019 MetaImage
  release with `training/` and `testing/`) and pass the folder that holds them
  as manual_dir.
  """

  def _read(self, root):
    from cardiac_data import camus  # pylint: disable=g-import-not-at-top
    return camus.read_camus(root, view=self.builder_config.view,
                            **dict(self.builder_config.reader_kwargs))


BUILDERS: dict[str, type[_EchoBuilder]] = {
    "echonet_dynamic": EchonetDynamic,
    "echonet_pediatric": EchonetPediatric,
    "camus": Camus,
}
_BUILT: dict[tuple[str, str, str, str], tfds.core.DatasetBuilder] = {}


def forget_built() -> None:
  """Forgets the builders `build` returned in this process, so the next `build` checks
  the files on disk again (the source fingerprint) instead of reusing them."""
  _BUILT.clear()


def source_fingerprint(root: str | os.PathLike) -> str:
  """Hash of a manual_dir: its resolved path and the size and mtime of every entry
  down to two levels (folders by their own mtime), so an edited or regenerated
  tree is rebuilt."""
  root = os.path.realpath(os.fspath(root))
  h = hashlib.sha1(root.encode())
  def scan(path, depth):
    with os.scandir(path) as it:
      for e in sorted(it, key=lambda e: e.name):
        st = e.stat()
        h.update(f"{os.path.relpath(e.path, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        if depth < 2 and e.is_dir():
          scan(e.path, depth + 1)
  if os.path.isdir(root):
    scan(root, 1)
  return h.hexdigest()


def build_fingerprint(manual_dir: str | os.PathLike, config: EchoConfig) -> str:
  """`source_fingerprint` of manual_dir, and of a split-list folder the reader options
  name outside it (CAMUS split_list_dir), so edited lists rebuild too."""
  digest = source_fingerprint(manual_dir)
  split_dir = dict(config.reader_kwargs).get("split_list_dir")
  if split_dir:
    digest = hashlib.sha1((digest + source_fingerprint(split_dir)).encode()).hexdigest()
  return digest


def build(dataset_name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
          *, force: bool = False, **config) -> tfds.core.DatasetBuilder:
  """Builds `dataset_name` from `manual_dir` into `data_dir` once, then reuses it.

  `config` goes to the builder's `make_config` (view, size, resize_mode,
  attributes, reader options). A dataset already in `data_dir` is reused while
  its `build_fingerprint` matches `manual_dir`, else regenerated. The skip summary
  is logged at the end of the build and kept in `builder.info.metadata`.
  """
  if dataset_name not in BUILDERS:
    raise ValueError(f"dataset_name must be one of {sorted(BUILDERS)}, got {dataset_name!r}")
  return build_class(BUILDERS[dataset_name], manual_dir, data_dir, force=force, **config)


def build_class(cls, manual_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                force: bool = False, **config) -> tfds.core.DatasetBuilder:
  """`build` for a builder class: one with `DATASET`, `make_config(**config)` (a config
  with `reader_kwargs`), `skip_log` and `log_build_summary()` (also
  `cardiac_data.seg_frames`'s builders)."""
  dataset_name = cls.DATASET
  manual_dir, data_dir = os.fspath(manual_dir), os.fspath(data_dir)
  if not os.path.isdir(manual_dir):
    raise errors.DataFormatError(manual_dir, f"{dataset_name}: manual_dir is not a folder")
  cfg = cls.make_config(**config)
  cache_key = (dataset_name, cfg.name, os.path.realpath(manual_dir), os.path.realpath(data_dir))
  if not force and cache_key in _BUILT:
    return _BUILT[cache_key]
  from cardiac_data.synthetic import cache  # pylint: disable=g-import-not-at-top
  os.makedirs(data_dir, exist_ok=True)
  # One build at a time per dataset/config (e.g. pytest -n 2 sharing a cache).
  lock = os.path.join(data_dir, f".{dataset_name}-{cfg.name}.lock")
  with cache.file_lock(lock):
    builder = cls(config=cfg, data_dir=data_dir)
    fingerprint = build_fingerprint(manual_dir, cfg)
    regenerate = not builder.is_prepared()
    if not regenerate and (force or metadata(builder.info).get("source_fingerprint")
                           != fingerprint):
      logging.warning("%s/%s: %s; rebuilding.", builder.name, cfg.name,
                      "forced" if force else "manual_dir changed since the last build")
      regenerate = True
    if regenerate:
      tfds.disable_progress_bar()    # One line per split instead (`_generate_examples`).
      mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if builder.is_prepared()
              else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
      try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, download_mode=mode))
      except AssertionError as e:
        if "No examples were yielded" not in str(e):
          raise
        raise errors.DataFormatError(manual_dir, f"{dataset_name}: {e} (every video of that "
                                     f"split was skipped; {builder.skip_log.summary()})"
                                     ) from None
      builder.log_build_summary()
      builder = cls(config=cfg, data_dir=data_dir)  # Re-read info and metadata from disk.
  _BUILT[cache_key] = builder
  return builder


def skip_summary(builder: tfds.core.DatasetBuilder) -> dict[str, dict[str, int]]:
  """Per split (and 'reader'), the skip counts by reason recorded at build time."""
  meta = metadata(builder.info)
  out = {"reader": dict(meta.get("reader_skips", {}))}
  for split, m in meta.get("splits", {}).items():
    out[split] = dict(m.get("skips", {}))
  return out


def pediatric_cv_splits(test_fold: int, builder: tfds.core.DatasetBuilder | None = None,
                        num_folds: int = NUM_PEDIATRIC_FOLDS,
                        required: Sequence[str] = records_lib.SPLITS) -> dict[str, str]:
  """Official EchoNet-Pediatric cross-validation: test = s, val = (s+1) % 10, train = rest.

  With `builder`, folds without examples (absent splits, only in tiny cohorts)
  are left out of train; a role (train/val/test) left without a fold raises
  ValueError if it is `required`, else is left out of the result.
  """
  if not 0 <= test_fold < num_folds:
    raise ValueError(f"test_fold must be in [0, {num_folds}), got {test_fold}")
  val = (test_fold + 1) % num_folds
  present = set(builder.info.splits) if builder is not None else None
  out = {}
  for role, k in (("test", test_fold), ("val", val)):
    if present is None or f"fold{k}" in present:
      out[role] = f"fold{k}"
    elif role in required:
      raise ValueError(f"test_fold={test_fold}: the {role} fold fold{k} has no example")
  train = [f"fold{k}" for k in range(num_folds) if k not in (test_fold, val)
           and (present is None or f"fold{k}" in present)]
  if train:
    out["train"] = "+".join(train)
  elif "train" in required:
    raise ValueError(f"test_fold={test_fold}: no training fold has an example")
  return {role: out[role] for role in ("train", "val", "test") if role in out}


def split_metadata(source: Any, field: str) -> list | None:
  """Per-index metadata `field` ('num_frames', 'key', 'ef', 'attributes') of a TFDS data
  source, concatenated over a '+'-joined split; None if unavailable (e.g. sliced
  splits or a plain sequence)."""
  info = getattr(source, "dataset_info", None)
  split = getattr(source, "split", None)
  if info is None or not isinstance(split, str) or "[" in split:
    return None
  splits = metadata(info).get("splits", {})
  out = []
  for name in split.split("+"):
    name = name.strip()
    if name not in splits or field not in splits[name]:
      return None
    out.extend(splits[name][field])
  return out


def raw_attributes(source: Any) -> np.ndarray:
  """float32 (N, A) raw attributes of a data source (NaN missing), for fitting
  the AttributePreprocessor on the training split only."""
  rows = split_metadata(source, "attributes")
  if rows is None:
    rows = [np.asarray(source[i]["attributes"], np.float32) for i in range(len(source))]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
  width = len(metadata(source.dataset_info).get("attribute_names", []))
  return (np.stack([_none_to_nan(r) for r in rows]) if rows
          else np.zeros((0, width), np.float32))
