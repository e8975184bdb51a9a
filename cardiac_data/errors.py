"""Errors and counted skips for data readers.

A structural fault (missing folder, renamed column, duplicate key) raises
`DataFormatError` naming the file and, where it applies, the row. A per-item fault
in a large dataset (one video that does not decode; with a reader's `strict=False`,
one unexpected value in a FileList row or a CAMUS cfg, `BadValueError`) is recorded
in a `SkipLog`, counted per reason and summarised once at the end, so a run never
stops deep inside a worker and never trains on a silent zero.
"""
from __future__ import annotations

import collections
import dataclasses
import os

from absl import logging


class DataFormatError(ValueError):
  """Input that does not follow the published layout; says which file and row."""

  def __init__(self, path: str | os.PathLike, message: str, row: int | None = None):
    where = str(path) if row is None else f"{path}, row {row}"
    super().__init__(f"{where}: {message}")
    self.path = str(path)
    self.row = row
    self.message = message


class BadValueError(DataFormatError):
  """One unexpected value of one item (a Sex code outside M/F, a non-numeric EF):
  raised by a reader with `strict=True`; otherwise the item is a counted skip."""


class VideoDecodeError(DataFormatError):
  """A video file that cannot be opened, has no frames, or is truncated."""


@dataclasses.dataclass
class SkipLog:
  """Counts items skipped for per-item faults, by reason.

  Items are identified by an index, a row number or an opaque key in the log, never
  by patient identifiers: `summary()` prints counts and at most 3 example keys per
  reason.
  """
  name: str
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: dict = dataclasses.field(default_factory=dict)

  def skip(self, reason: str, key: str = "") -> None:
    self.counts[reason] += 1
    self.examples.setdefault(reason, [])
    if key and len(self.examples[reason]) < 3:
      self.examples[reason].append(key)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def summary(self) -> str:
    if not self.counts:
      return f"{self.name}: no items skipped"
    parts = [f"{n} × {reason}" + (f" (e.g. {'; '.join(self.examples[reason])})"
                                  if self.examples.get(reason) else "")
             for reason, n in self.counts.most_common()]
    return f"{self.name}: skipped {self.total} item(s): " + "; ".join(parts)

  def log_summary(self) -> None:
    if self.counts:
      logging.warning(self.summary())
    else:
      logging.info(self.summary())
