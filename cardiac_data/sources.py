"""From `config.data` to TFDS data sources: the built-in synthetic cohort or a real
dataset root, built once into array_record (with the reader options of
`config.data.reader`) and split by the official rule; a split a caller needs but the
data has no case of is an error naming it."""
from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any, Sequence

from absl import logging

from cardiac_data import builders
from cardiac_data import errors
from cardiac_data import pipeline
from cardiac_data import records
from cardiac_data.synthetic import cache

#: config.data.reader fields and their defaults (configs/common.py: ef_data).
READER_FIELDS = {"strict": False, "require_tracings": False, "release": "auto",
                 "split_list_dir": "", "fold": -1}
#: The fields only the CAMUS reader has.
CAMUS_FIELDS = ("release", "split_list_dir", "fold")
CAMUS_RELEASES = ("auto", "nifti", "mhd")


def cache_root(data_cfg) -> pathlib.Path:
  return pathlib.Path(data_cfg.cache_dir) if data_cfg.cache_dir else cache.default_cache_dir()


def dataset_root(data_cfg, **writer_kwargs) -> pathlib.Path:
  """`data.root` if set (real data, as distributed), else the synthetic cohort of
  config.data.synthetic (extra keys and `writer_kwargs` go to its writer)."""
  if data_cfg.root:
    root = pathlib.Path(os.path.expanduser(data_cfg.root))
    if not root.is_dir():
      raise errors.DataFormatError(root, f"config.data.root: folder not found (dataset "
                                   f"{data_cfg.dataset!r})")
    return root
  syn = dict(data_cfg.synthetic)
  num_subjects, seed = syn.pop("num_subjects"), syn.pop("seed")
  return cache.ensure_cohort(data_cfg.dataset, num_subjects, seed,
                             cache_dir=str(cache_root(data_cfg)), progress=True,
                             **syn, **writer_kwargs)


def default_tfds_dir(data_cfg, root: pathlib.Path) -> pathlib.Path:
  """One TFDS folder per dataset root (`<cache>/tfds/<root name>-<path hash>`), so two
  cohorts of one dataset (say the smoke and the default one) never rebuild each other."""
  digest = hashlib.sha1(os.path.realpath(root).encode()).hexdigest()[:8]
  return cache_root(data_cfg) / "tfds" / f"{root.name}-{digest}"


def reader_options(data_cfg) -> dict[str, Any]:
  """The reader keyword arguments of the build, from `config.data.reader`:

  strict: an unexpected value in a FileList row / CAMUS cfg raises (True) or skips
    that item, counted (False).
  require_tracings: drop (and count) videos with fewer than 2 traced frames
    (EchoNet), patients without ED/ES ground truth (CAMUS: `require_masks`).
  release ('auto', 'nifti', 'mhd'), split_list_dir ('' = the release's default),
    fold (-1 = none; k = vital's subGroup{k}_*.txt lists): CAMUS only; on another
    dataset they must keep their defaults (ValueError naming the field).
  Options equal to the reader's defaults are left to the builder's defaults, so
  the default options keep the default build; others build their own dataset.
  """
  r = data_cfg.reader
  r = r.to_dict() if hasattr(r, "to_dict") else dict(r)
  unknown = sorted(set(r) - set(READER_FIELDS))
  if unknown:
    raise ValueError(f"config.data.reader: unknown field(s) {unknown}; fields: "
                     f"{list(READER_FIELDS)}")
  r = {**READER_FIELDS, **r}
  dataset = data_cfg.dataset
  out = {"strict": bool(r["strict"])}
  if dataset != "camus":
    for name in CAMUS_FIELDS:
      if r[name] != READER_FIELDS[name]:
        raise ValueError(f"config.data.reader.{name}={r[name]!r}: a CAMUS option "
                         f"(config.data.dataset={dataset!r}); leave it {READER_FIELDS[name]!r}")
    out["require_tracings"] = bool(r["require_tracings"])
    return out
  out["require_masks"] = bool(r["require_tracings"])
  if r["release"] not in CAMUS_RELEASES:
    raise ValueError(f"config.data.reader.release={r['release']!r} is not one of "
                     f"{CAMUS_RELEASES}")
  out["release"] = r["release"]
  split_dir = r["split_list_dir"]
  if split_dir:
    split_dir = os.path.abspath(os.path.expanduser(split_dir))
    if not os.path.isdir(split_dir):
      raise errors.DataFormatError(split_dir, "config.data.reader.split_list_dir: folder "
                                   "not found")
  out["split_list_dir"] = split_dir or None
  fold = r["fold"]
  if int(fold) != fold or fold < -1:
    raise ValueError(f"config.data.reader.fold={fold!r}: -1 (none) or a fold number k >= 0 "
                     "(subGroup{k}_*.txt)")
  out["fold"] = None if fold == -1 else int(fold)
  return out


def split_names(data_cfg, builder, required: Sequence[str] = records.SPLITS
                ) -> dict[str, str]:
  """role ('train'/'val'/'test') -> split name(s) of the build, for the roles that
  have cases; raises DataFormatError naming the root and split for a `required`
  role without a case."""
  present = {name for name, info in builder.info.splits.items() if info.num_examples > 0}
  if data_cfg.dataset == "echonet_pediatric":
    names = builders.pediatric_cv_splits(data_cfg.test_fold, builder, required=())
  else:
    names = {role: role for role in records.SPLITS if role in present}
  for role in required:
    if role not in records.SPLITS:
      raise ValueError(f"required split {role!r} is not one of {records.SPLITS}")
    if role not in names:
      raise errors.DataFormatError(_root_text(data_cfg), f"split {role!r} has no "
                                   f"cases ({_why_empty(data_cfg, builder, role, present)})")
  return names


def _root_text(data_cfg) -> str:
  if data_cfg.root:
    return f"config.data.root={data_cfg.root}"
  return f"config.data.root='' (the synthetic {data_cfg.dataset} cohort)"


def _why_empty(data_cfg, builder, role: str, present: set[str]) -> str:
  """Why a split of the build has no case, in the dataset's own terms."""
  dataset = data_cfg.dataset
  if dataset == "echonet_dynamic":
    why = ("the FileList's Split column has only "
           + ("/".join(s.upper() for s in records.SPLITS if s in present) or "no usable row"))
  elif dataset == "echonet_pediatric":
    folds = builders.pediatric_cv_splits(data_cfg.test_fold)[role]
    why = (f"config.data.test_fold={data_cfg.test_fold} puts {folds.replace('+', ', ')} in "
           f"{role}, and no video of the FileList's Split column is in "
           f"{'them' if '+' in folds else 'it'}; folds with videos: {sorted(present)}")
  else:
    why = (f"no patient of the split lists (or, 2019 release without lists, of "
           f"training/ + testing/) is in {role}; splits with cases: {sorted(present)}")
  skipped = builders.skip_summary(builder).get("reader", {})
  if skipped:
    why += f"; the reader skipped {sum(skipped.values())} item(s): " + "; ".join(
        f"{n} × {reason}" for reason, n in skipped.items())
  return why


def load_sources(data_cfg, attribute_spec=None, required: Sequence[str] = records.SPLITS):
  """Returns (builder, {role: tfds data source}) for the roles ('train', 'val', 'test')
  that have cases; a role in `required` without a case raises DataFormatError naming
  the root and the split (a FileList whose Split column has only TEST cannot train,
  but can be scored with required=('test',))."""
  root = dataset_root(data_cfg)
  tfds_dir = data_cfg.tfds_dir or str(default_tfds_dir(data_cfg, root))
  builder = builders.build(data_cfg.dataset, root, tfds_dir, view=data_cfg.view,
                           size=data_cfg.image_size, attributes=attribute_spec,
                           **reader_options(data_cfg))
  splits = split_names(data_cfg, builder, required)
  sources = {role: pipeline.data_source(builder, name) for role, name in splits.items()}
  logging.info("%s: %s", data_cfg.dataset,
               ", ".join(f"{role} {len(src)}" for role, src in sources.items()))
  return builder, sources
