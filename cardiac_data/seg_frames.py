"""Labelled echo frames for partial-label segmentation, from the datasets as distributed.

One reader per published layout turns a dataset root into cases (`Case`: a patient's
view, or one Unity frame), each loading its labelled frames with the label set its
annotation protocol gives that frame (`label_set`, bool[4] over {bg, LV, LVM, LA}):

  dataset            frames                                   label set
  camus              ED and ES of 2CH and 4CH (label maps),   {bg, LV, LVM, LA}
                     or every frame of the half sequences
                     (`frames='half_sequence'`, `_half_sequence_gt`)
  echonet_dynamic    the traced frames (ED, ES by area), LV   {bg, LV}
  echonet_pediatric  mask rasterised from VolumeTracings
  unity              each labelled PNG frame; curves drawn    the structures whose curve
                     as the published code draws them         is 'curve' or 'off'

Readers are `cardiac_data.camus`, `.echonet` and `.unity`; their skips (a bad cfg value,
a video without two tracings, a missing PNG) are counted there. The TFDS builders
below (`SegCamus`, `SegEchonetDynamic`, `SegEchonetPediatric`, `SegUnity`; array_record,
no TensorFlow) store one example per frame:

  key, group   Text     frame key; the patient (CAMUS, Pediatric), video (Dynamic, Unity)
  view         Text     '2CH', '4CH', 'A4C', 'PSAX', or '' (Unity: not given)
  phase        int32    0 ED, 1 ES, −1 another or unknown frame
  image        uint8    (S, S) greyscale, zero-padded to a square then resized
  label        uint8    (S, S) {0 bg, 1 LV, 2 LVM, 3 LA} (nearest-neighbour resize)
  label_set    bool     (4,)
  spacing_mm   float32  (2,) (row, col) of the S×S image; NaN where the layout has none

A case that fails to load (an unreadable file, a label value outside 0..3) is skipped and
counted per reason, summarised once at the end of the build. Splits are the datasets'
own (CAMUS split lists, Dynamic's Split column, Pediatric's folds around `test_fold`);
Unity publishes none, so `unity.read_unity` draws a seeded split per video.

`load_domains(config.data)` builds every configured source (config.data.sources: a
domain name → dataset, root and reader options) and returns the frames as arrays for
`segmentation.task`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from cardiac_data import builders
from cardiac_data import errors
from cardiac_data import pipeline
from cardiac_data import records as records_lib
from cardiac_data import sources as sources_lib

NUM_CLASSES = 4
STRUCTURES = ("lv", "lvm", "la")
SPLITS = records_lib.SPLITS
VIEW_CODES = {"2CH": 0, "4CH": 1, "A4C": 1}          # for EF from masks; others −1
FRAME_MODES = ("ed_es", "half_sequence")
#: Reader options of each dataset and their defaults (config.data.sources.<domain>).
OPTIONS: dict[str, dict[str, Any]] = {
    "camus": {"release": "auto", "split_list_dir": "", "fold": -1, "views": ("2CH", "4CH"),
              "frames": "ed_es", "strict": False},
    "echonet_dynamic": {"strict": False},
    "echonet_pediatric": {"view": "A4C", "test_fold": 0, "strict": False},
    "unity": {"curves": {"lv": "curve-lv-endo", "lvm": "curve-lv-epi", "la": "curve-la-endo"},
              "split_seed": 0, "val_fraction": 0.1, "test_fraction": 0.1, "strict": False},
}
DATASETS = tuple(OPTIONS)
_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class Case:
  """A unit of reading: `load()` returns its labelled frames (`Frame` dicts)."""
  key: str
  group: str
  view: str
  split: str
  load: Callable[[], list[dict]]


def _frame(key, phase, image, label, label_set, spacing) -> dict:
  return {"key": key, "phase": int(phase), "image": np.asarray(image),
          "label": np.asarray(label), "label_set": np.asarray(label_set, bool),
          "spacing": tuple(float(s) for s in spacing)}


ALL_SET = np.ones(NUM_CLASSES, bool)
LV_SET = np.array([True, True, False, False])
NO_SPACING = (math.nan, math.nan)


# ------------------------------------------------------------------------------ readers


def _camus_frames(rec: records_lib.EchoRecord, frames: str) -> list[dict]:
  from cardiac_data import camus  # pylint: disable=g-import-not-at-top
  arr, spacing = camus.read_camus_volume(rec.video_path)
  video = camus.to_uint8_image(arr if arr.ndim == 3 else arr[None], rec.video_path)
  phases = {rec.ed_frame: 0, rec.es_frame: 1}
  if frames == "half_sequence":
    path = rec.mask_paths.get("sequence")
    if path is None:
      raise errors.DataFormatError(rec.video_path, "frames='half_sequence' needs the "
                                   "half sequence's ground truth (…_half_sequence_gt)")
    labels = camus.read_camus_labels(path)
    if labels.shape != video.shape:
      raise errors.DataFormatError(path, f"label shape {labels.shape} differs from the "
                                   f"sequence's {video.shape}")
    return [_frame(f"{rec.key}_{t:03d}", phases.get(t, -1), video[t], labels[t], ALL_SET,
                   spacing) for t in range(len(video))]
  out = []
  for phase, frame in (("ED", rec.ed_frame), ("ES", rec.es_frame)):
    labels = camus.read_camus_labels(rec.mask_paths[phase])
    labels = labels[0] if labels.ndim == 3 and labels.shape[0] == 1 else labels
    if labels.shape != video.shape[1:]:
      raise errors.DataFormatError(rec.mask_paths[phase], f"label shape {labels.shape} differs "
                                   f"from the frame's {video.shape[1:]}")
    out.append(_frame(f"{rec.key}_{phase}", phases[frame], video[frame], labels, ALL_SET,
                      spacing))
  return out


def _traced_frames(rec: records_lib.EchoRecord) -> list[dict]:
  from cardiac_data import clips  # pylint: disable=g-import-not-at-top
  video = clips.load_clip(rec)
  masks = clips.load_masks(rec)
  out = []
  for phase, frame in ((0, rec.ed_frame), (1, rec.es_frame)):
    if frame is None or frame >= len(video):
      raise errors.DataFormatError(rec.video_path, f"traced frame {frame} is not in the video "
                                   f"({len(video)} frames)")
    out.append(_frame(f"{rec.key}_{'ED' if phase == 0 else 'ES'}", phase, video[frame],
                      masks[frame], LV_SET, NO_SPACING))
  return out


def _unity_frames(rec, curves: Mapping[int, str]) -> list[dict]:
  from cardiac_data import unity  # pylint: disable=g-import-not-at-top
  image, label, label_set = unity.load_frame(rec, curves)
  return [_frame(rec.key, -1, image, label, label_set, NO_SPACING)]


def unity_curves(option: Mapping[str, str]) -> dict[int, str]:
  """{label id: curve name} from the `curves` option ({'lv': name, 'lvm': …, 'la': …};
  an empty name leaves the structure out)."""
  unknown = sorted(set(option) - set(STRUCTURES))
  if unknown:
    raise ValueError(f"curves: unknown structure(s) {unknown}; known: {list(STRUCTURES)}")
  return {1 + STRUCTURES.index(s): str(name) for s, name in option.items() if name}


def read_cases(dataset: str, root: str | os.PathLike, options: Mapping[str, Any]
               ) -> tuple[list[Case], errors.SkipLog]:
  """The cases of `dataset` under `root` with reader `options` (see OPTIONS), and the
  readers' counted skips."""
  opts = check_options(dataset, options)
  skips = errors.SkipLog(f"{dataset} (segmentation frames)")
  cases = []

  def merge(result):
    for reason, n in result.skips.counts.items():
      skips.counts[reason] += n
    return result.records

  if dataset == "camus":
    from cardiac_data import camus  # pylint: disable=g-import-not-at-top
    for view in opts["views"]:
      recs = merge(camus.read_camus(
          root, view=view, release=opts["release"],
          split_list_dir=opts["split_list_dir"] or None,
          fold=None if opts["fold"] == -1 else int(opts["fold"]), strict=opts["strict"],
          require_masks=True))
      cases += [Case(r.key, r.key.split("_")[0], r.view, r.split,
                     functools.partial(_camus_frames, r, opts["frames"])) for r in recs]
  elif dataset in ("echonet_dynamic", "echonet_pediatric"):
    from cardiac_data import echonet  # pylint: disable=g-import-not-at-top
    if dataset == "echonet_dynamic":
      recs = merge(echonet.read_echonet_dynamic(root, require_tracings=True,
                                                strict=opts["strict"]))
      group = lambda key: key
    else:
      recs = merge(echonet.read_echonet_pediatric(
          root, view=opts["view"], test_fold=int(opts["test_fold"]), require_tracings=True,
          strict=opts["strict"]))
      group = lambda key: key.split("-")[0]      # {patient}-{accession}-{instance}
    cases = [Case(r.key, group(r.key), r.view, r.split, functools.partial(_traced_frames, r))
             for r in recs]
  else:
    from cardiac_data import unity  # pylint: disable=g-import-not-at-top
    curves = unity_curves(opts["curves"])
    recs = merge(unity.read_unity(root, curves=curves, seed=int(opts["split_seed"]),
                                  val_fraction=float(opts["val_fraction"]),
                                  test_fraction=float(opts["test_fraction"]),
                                  strict=opts["strict"]))
    cases = [Case(r.key, r.video, "", r.split, functools.partial(_unity_frames, r, curves))
             for r in recs]
  return cases, skips


def check_options(dataset: str, options: Mapping[str, Any], where: str = "options"
                  ) -> dict[str, Any]:
  """`options` over the dataset's defaults; ValueError naming an unknown option or value."""
  if dataset not in OPTIONS:
    raise ValueError(f"{where}: dataset {dataset!r} is not one of {DATASETS}")
  defaults = OPTIONS[dataset]
  unknown = sorted(set(options) - set(defaults))
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown} for dataset {dataset!r}; "
                     f"options: {sorted(defaults)}")
  out = {**defaults, **dict(options)}
  if dataset == "camus":
    if out["frames"] not in FRAME_MODES:
      raise ValueError(f"{where}.frames={out['frames']!r} is not one of {FRAME_MODES}")
    bad = [v for v in out["views"] if v not in ("2CH", "4CH")]
    if bad or not out["views"]:
      raise ValueError(f"{where}.views={tuple(out['views'])!r}: a non-empty subset of "
                       "('2CH', '4CH')")
    out["views"] = tuple(out["views"])
  if dataset == "unity":
    out["curves"] = dict(out["curves"])
    unity_curves(out["curves"])
  return out


# ------------------------------------------------------------------------------ builders


@dataclasses.dataclass(eq=False, kw_only=True)
class SegConfig(tfds.core.BuilderConfig):
  """Frame size S and the reader options (sorted (key, value) pairs, non-defaults only)."""
  size: int = 64
  reader_kwargs: tuple[tuple[str, Any], ...] = ()


_MADE: dict[tuple[str, str], SegConfig] = {}


def _features(size: int) -> tfds.features.FeaturesDict:
  zlib = tfds.features.Encoding.ZLIB
  return tfds.features.FeaturesDict({
      "key": tfds.features.Text(),
      "group": tfds.features.Text(),
      "view": tfds.features.Text(),
      "phase": tfds.features.Scalar(dtype=np.int32),
      "image": tfds.features.Tensor(shape=(size, size), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      "label": tfds.features.Tensor(shape=(size, size), dtype=np.uint8, encoding=zlib),
      "label_set": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.bool_),
      "spacing_mm": tfds.features.Tensor(shape=(2,), dtype=np.float32),
  })


def _load_or_error(case: Case) -> list[dict] | Exception:
  try:
    return case.load()
  except (errors.DataFormatError, OSError, ValueError) as e:
    return e


def square_spacing(spacing, shape, size: int) -> np.ndarray:
  """(row, col) spacing of an (H, W) image after zero-padding to max(H, W) and resizing
  to size×size."""
  scale = max(shape) / float(size)
  return np.asarray(spacing, np.float32) * np.float32(scale)


class _SegBuilder(tfds.core.GeneratorBasedBuilder):
  """One example per labelled frame (module docstring); subclasses name the dataset."""

  VERSION = tfds.core.Version(_VERSION)
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  DATASET = ""
  BUILDER_CONFIGS = [SegConfig(name="s64", size=64)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Pass the dataset's folder, as distributed, as manual_dir (config.data.sources.<domain>.root).
  """

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self.skip_log = errors.SkipLog(self.name)

  @classmethod
  def get_builder_config(cls, name: str, version: Any = None) -> SegConfig | None:
    return super().get_builder_config(name, version) or _MADE.get((cls.DATASET, name))

  def is_prepared(self) -> bool:
    return self.data_path.exists() and super().is_prepared()

  @classmethod
  def make_config(cls, size: int = 64, **options) -> SegConfig:
    """The config of frame size `size` and reader `options` (non-defaults name it)."""
    if int(size) < 8:
      raise ValueError(f"{cls.DATASET}: size must be >= 8, got {size}")
    opts = check_options(cls.DATASET, options)
    extra = {k: v for k, v in sorted(opts.items()) if OPTIONS[cls.DATASET][k] != v}
    name = f"s{int(size)}"
    if extra:
      digest = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode())
      name += "_" + digest.hexdigest()[:8]
    known = cls.get_builder_config(name)
    if known is not None:
      return known
    frozen = tuple((k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
                   for k, v in extra.items())
    config = SegConfig(name=name, size=int(size), reader_kwargs=frozen,
                       description=f"{cls.DATASET} frames, {size}x{size}")
    _MADE[(cls.DATASET, name)] = config
    return config

  def reader_options(self) -> dict[str, Any]:
    return {k: json.loads(v) if k == "curves" else v
            for k, v in self.builder_config.reader_kwargs}

  def log_build_summary(self) -> None:
    self.skip_log.log_summary()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=_features(self.builder_config.size),
                                 disable_shuffling=True, metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    cases, reader_skips = read_cases(self.DATASET, root, self.reader_options())
    for reason, n in reader_skips.counts.items():
      self.skip_log.counts[f"reader: {reason}"] += n
    meta = self.info.metadata
    meta.clear()
    meta["dataset"] = self.DATASET
    meta["reader_skips"] = dict(reader_skips.counts)
    meta["source_fingerprint"] = builders.build_fingerprint(root, self.builder_config)
    meta["splits"] = {}
    by_split = {s: [c for c in cases if c.split == s] for s in SPLITS}
    return {s: self._generate_examples(s, cs) for s, cs in by_split.items() if cs}

  def _generate_examples(self, split: str, cases: Sequence[Case]):
    size = self.builder_config.size
    log = errors.SkipLog(f"{self.name}/{split}")
    key, start, last = 0, time.monotonic(), time.monotonic()
    for i, (case, frames) in enumerate(zip(cases, builders.load_ahead(cases, _load_or_error))):
      if time.monotonic() - last > builders.BUILD_PROGRESS_S:
        last = time.monotonic()
        logging.info("%s: split %s: %d/%d cases", self.name, split, i, len(cases))
      if isinstance(frames, Exception):
        log.skip(f"case unreadable ({type(frames).__name__})", f"case {i}")
        continue
      for f in frames:
        image, label = f["image"], f["label"]
        if image.ndim != 2 or label.shape != image.shape:
          log.skip("frame and label map shapes differ", f"case {i}")
          continue
        if label.max(initial=0) >= NUM_CLASSES:
          log.skip("label value outside 0..3", f"case {i}")
          continue
        yield key, {
            "key": f["key"], "group": case.group, "view": case.view, "phase": f["phase"],
            "image": builders.resize_to_square(image.astype(np.uint8), size, "pad"),
            "label": builders.resize_to_square(label.astype(np.uint8), size, "pad",
                                               nearest=True),
            "label_set": f["label_set"],
            "spacing_mm": square_spacing(f["spacing"], image.shape, size),
        }
        key += 1
    logging.info("%s: split %s: %d frames written (%.0f s)", self.name, split, key,
                 time.monotonic() - start)
    for reason, n in log.counts.items():
      self.skip_log.counts[f"{split}: {reason}"] += n
    self.info.metadata["splits"][split] = {"num_examples": key, "skips": dict(log.counts)}


class SegCamus(_SegBuilder):
  """CAMUS labelled frames (NIfTI 2023 or MetaImage 2019 release)."""
  DATASET = "camus"


class SegEchonetDynamic(_SegBuilder):
  """EchoNet-Dynamic traced frames with LV masks from VolumeTracings."""
  DATASET = "echonet_dynamic"


class SegEchonetPediatric(_SegBuilder):
  """EchoNet-Pediatric traced frames with LV masks from VolumeTracings."""
  DATASET = "echonet_pediatric"


class SegUnity(_SegBuilder):
  """Unity Imaging labelled PNG frames with masks from the curve labels."""
  DATASET = "unity"


SEG_BUILDERS = {cls.DATASET: cls for cls in (SegCamus, SegEchonetDynamic, SegEchonetPediatric,
                                              SegUnity)}


def build(dataset: str, root, tfds_dir, *, size: int, force: bool = False, **options):
  """The built frames of `dataset` under `root` (built once into `tfds_dir`, rebuilt when
  the root changes; `builders.build_class`)."""
  if dataset not in SEG_BUILDERS:
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
  return builders.build_class(SEG_BUILDERS[dataset], root, tfds_dir, force=force, size=size,
                              **options)


# --------------------------------------------------------------------------- task arrays


def read_split(builder, split: str) -> dict[str, np.ndarray]:
  """Every example of a built split as arrays (strings as lists)."""
  src = pipeline.data_source(builder, split)
  items = [src[i] for i in range(len(src))]
  out = {k: np.stack([it[k] for it in items]) for k in ("image", "label", "label_set",
                                                        "spacing_mm", "phase")}
  for k in ("key", "group", "view"):
    out[k] = [it[k].decode() if isinstance(it[k], bytes) else str(it[k]) for it in items]
  return out


def source_root(data_cfg, name: str, src) -> pathlib.Path:
  """config.data.sources.<name>.root, else config.data.root/<name>, else the built-in
  scenario's <name>/ folder (`cardiac_data.synthetic.seg_domains`)."""
  if src.root:
    root = pathlib.Path(os.path.expanduser(src.root))
    where = f"config.data.sources.{name}.root"
  else:
    root = sources_lib.dataset_root(data_cfg, size=int(data_cfg.image_size)) / name
    where = ("config.data.root" if data_cfg.root else "the built-in scenario") + f" + /{name}"
  if not root.is_dir():
    raise errors.DataFormatError(root, f"{where}: folder not found (domain {name!r}, dataset "
                                 f"{src.dataset!r})")
  return root


def load_domains(data_cfg, names: Sequence[str]) -> dict[str, Any]:
  """Frames of the domains `names` (keys of config.data.sources), concatenated:

  image, label uint8 (N, S, S); label_set bool (N, 4); domain int8 (index into names);
  patient int32 (the group, numbered within its domain); view int8 (VIEW_CODES, −1
  other); phase int8; split int8 (index into SPLITS); spacing_mm float32 (N, 2);
  key list[str]; and 'domains' = names.
  """
  parts = []
  for d, name in enumerate(names):
    if name not in data_cfg.sources:
      raise ValueError(f"config.data: domain {name!r} has no entry in config.data.sources "
                       f"(entries: {sorted(data_cfg.sources)})")
    src = data_cfg.sources[name]
    options = {k: v for k, v in src.items() if k not in ("dataset", "root")}
    if hasattr(options.get("curves"), "to_dict"):
      options["curves"] = options["curves"].to_dict()
    check_options(src.dataset, options, where=f"config.data.sources.{name}")
    root = source_root(data_cfg, name, src)
    tfds_dir = data_cfg.tfds_dir or str(sources_lib.default_tfds_dir(data_cfg, root))
    builder = build(src.dataset, root, tfds_dir, size=int(data_cfg.image_size), **options)
    present = [s for s in SPLITS if s in builder.info.splits]
    for s in present:
      part = read_split(builder, s)
      n = len(part["key"])
      part.update(domain=np.full(n, d, np.int8), split=np.full(n, SPLITS.index(s), np.int8),
                  view=np.array([VIEW_CODES.get(v, -1) for v in part["view"]], np.int8))
      parts.append(part)
    logging.info("segmentation domain %s (%s): %s", name, src.dataset,
                 ", ".join(f"{s} {builder.info.splits[s].num_examples}" for s in present))
  if not parts:
    raise ValueError("config.data.sources: no frames in any domain")
  out = {}
  for k in ("image", "label", "label_set", "spacing_mm", "domain", "split", "view"):
    out[k] = np.concatenate([p[k] for p in parts])
  out["phase"] = np.concatenate([p["phase"] for p in parts]).astype(np.int8)
  groups = [f"{p['domain'][0]}|{g}" for p in parts for g in p["group"]]   # unique per domain
  _, out["patient"] = np.unique(np.asarray(groups, object).astype(str), return_inverse=True)
  out["patient"] = out["patient"].astype(np.int32)
  out["key"] = [k for p in parts for k in p["key"]]
  out["domains"] = tuple(names)
  return out
