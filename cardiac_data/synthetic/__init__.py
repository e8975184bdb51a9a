"""Synthetic cohorts written in the published on-disk layouts.

Modules (the public API every writer uses):
  subjects        per-subject truth: body size, subgroup, EF, heart rate, quality tier,
                  label noise (`Subject`, `adult_subject`, `pediatric_subject`)
  anatomy         heart geometry, contraction, LV contours/chords/volumes, the painted
                  polygons and label masks (`Heart`, `Acquisition`,
                  `make_heart_and_acquisition`, `polygons`, `label_maps`)
  rendering       echogenicity, speckle, beam and display (`render_clip`)
  jobs            output folders, parallel per-subject tasks, CSV tables
  echonet_writer  EchoNet-Dynamic and EchoNet-Pediatric layouts
  camus_writer    CAMUS 2023 NIfTI layout (2CH and 4CH half sequences)
  seg_domains     three-vendor partially labelled segmentation scenario
  dense_writer    short-axis DENSE cohort in the StrainNet layout
  cache           generate-once cache of cohorts (`ensure_cohort`)

`WRITERS` maps a dataset name to a writer
`fn(out, num_subjects, seed=0, *, workers=None, progress=False, overwrite=False,
**params) -> int` (number of videos/cases written). Layouts register here with
`register_writer`; `launch.synthesize` and `cache.ensure_cohort` look names up in
this table.
"""
from __future__ import annotations

from typing import Callable

from cardiac_data.synthetic import camus_writer, dense_writer, echonet_writer, seg_domains

WRITERS: dict[str, Callable[..., int]] = {}


def register_writer(name: str, fn: Callable[..., int], version: str) -> None:
  """Adds a cohort writer; `version` enters the cache key of its cohorts."""
  fn.generator_version = version
  WRITERS[name] = fn


def get_writer(name: str) -> Callable[..., int]:
  """The writer registered under `name` (KeyError naming the known ones otherwise)."""
  if name not in WRITERS:
    raise KeyError(f"unknown synthetic dataset {name!r}; known: {', '.join(sorted(WRITERS))}")
  return WRITERS[name]


register_writer("echonet_dynamic", echonet_writer.write_echonet_dynamic,
                version=echonet_writer.GENERATOR_VERSION)
register_writer("echonet_pediatric", echonet_writer.write_echonet_pediatric,
                version=echonet_writer.GENERATOR_VERSION)
register_writer("camus", camus_writer.write_camus, version=camus_writer.GENERATOR_VERSION)
register_writer("dense", dense_writer.write_dense, version=dense_writer.GENERATOR_VERSION)
register_writer("seg_domains", seg_domains.write_seg_domains,
                version=seg_domains.GENERATOR_VERSION)
