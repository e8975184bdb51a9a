"""Synthetic cohorts written in the published on-disk layouts.

`WRITERS` maps a dataset name to a writer
`fn(out, num_subjects, seed=0, *, workers=None, progress=False, overwrite=False,
**params) -> int` (number of videos/cases written). Other layouts (CAMUS, DENSE)
register here with `register_writer`; `launch.synthesize` and
`cache.ensure_cohort` look names up in this table.
"""
from __future__ import annotations

from typing import Callable

from cardiac_data.synthetic import camus_writer, dense_writer, echo, seg_domains

WRITERS: dict[str, Callable[..., int]] = {
    "echonet_dynamic": echo.write_echonet_dynamic,
    "echonet_pediatric": echo.write_echonet_pediatric,
}


def register_writer(name: str, fn: Callable[..., int], version: str) -> None:
  """Adds a cohort writer; `version` enters the cache key of its cohorts."""
  fn.generator_version = version
  WRITERS[name] = fn


def get_writer(name: str) -> Callable[..., int]:
  if name not in WRITERS:
    raise KeyError(f"unknown synthetic dataset {name!r}; known: {', '.join(sorted(WRITERS))}")
  return WRITERS[name]


register_writer("camus", camus_writer.write_camus, version=camus_writer.GENERATOR_VERSION)
register_writer("dense", dense_writer.write_dense, version=dense_writer.GENERATOR_VERSION)
register_writer("seg_domains", seg_domains.write_seg_domains,
                version=seg_domains.GENERATOR_VERSION)
