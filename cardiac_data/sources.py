"""From `config.data` to TFDS data sources: the built-in synthetic cohort or a real
dataset root, built once into array_record and split by the official rule."""
from __future__ import annotations

import hashlib
import os
import pathlib

from absl import logging

from cardiac_data import builders
from cardiac_data import errors
from cardiac_data import pipeline
from cardiac_data.synthetic import cache


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


def split_names(data_cfg, builder) -> dict[str, str]:
  if data_cfg.dataset == "echonet_pediatric":
    return builders.pediatric_cv_splits(data_cfg.test_fold, builder)
  return {"train": "train", "val": "val", "test": "test"}


def load_sources(data_cfg, attribute_spec=None):
  """Returns (builder, {"train"|"val"|"test": tfds data source})."""
  root = dataset_root(data_cfg)
  tfds_dir = data_cfg.tfds_dir or str(default_tfds_dir(data_cfg, root))
  builder = builders.build(data_cfg.dataset, root, tfds_dir, view=data_cfg.view,
                           size=data_cfg.image_size, attributes=attribute_spec)
  splits = split_names(data_cfg, builder)
  sources = {role: pipeline.data_source(builder, name) for role, name in splits.items()}
  logging.info("%s: %s", data_cfg.dataset,
               ", ".join(f"{role} {len(src)}" for role, src in sources.items()))
  return builder, sources
