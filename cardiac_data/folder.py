"""A bare folder of echo videos (no FileList) as a data source for scoring
(`launch.predict --videos=DIR`): every `*.avi` under the folder, sorted by path, read on
access and resized as the dataset's builder resizes (`builders.resize_to_square`), with
no label (EF NaN) and attributes from an optional CSV.

The attributes CSV has a `FileName` column (with or without `.avi`) and one column per
attribute the model takes, in its dataset's units and codes (EchoNet-Pediatric: Age,
Sex M/F, Weight, Height). A video without a row, or an empty cell, is a missing
attribute: the model's learned missing embedding stands in. A value that is not a
number or not one of the attribute's categories raises, naming the file and row.
Videos whose header cannot be read are skipped and counted (logged once, no names).
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping

from absl import logging
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import builders
from cardiac_data import errors
from cardiac_data import video as video_lib

VIDEO_SUFFIXES = (".avi",)


def _key(name: str) -> str:
  name = os.path.basename(str(name).strip())
  return name[:-4] if name.lower().endswith(".avi") else name


def read_attribute_csv(path: str | os.PathLike, spec: attributes_lib.AttributeSpec
                       ) -> dict[str, dict[str, Any]]:
  """{video key: {attribute: value}} from a CSV with FileName + attribute columns."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.DataFormatError(path, "attributes CSV not found")
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  if "FileName" not in df.columns:
    raise errors.DataFormatError(path, f"no FileName column (columns: {list(df.columns)})")
  names = list(spec.continuous) + list(spec.categorical)
  absent = [n for n in names if n not in df.columns]
  if absent:
    logging.warning("%s: no column for attribute(s) %s; they are missing for every video",
                    path.name, absent)
  out = {}
  for i, row in df.iterrows():
    key = _key(row["FileName"])
    if key in out:
      raise errors.DataFormatError(path, f"video {key!r} has two rows", row=int(i) + 2)
    values = {n: (row[n].strip() if n in df.columns else "") for n in names}
    for n in spec.continuous:
      if values[n]:
        try:
          values[n] = float(values[n])
        except ValueError:
          raise errors.DataFormatError(path, f"{n}={values[n]!r} is not a number",
                                       row=int(i) + 2) from None
    for n, cats in spec.categorical.items():
      if values[n] and values[n] not in cats:
        raise errors.DataFormatError(path, f"{n}={values[n]!r} is not one of {cats}",
                                     row=int(i) + 2)
    out[key] = {n: (v if v != "" else None) for n, v in values.items()}
  return out


class _Case:
  def __init__(self, key: str, attributes: Mapping[str, Any]):
    self.key = key
    self.attributes = attributes


class VideoFolder:
  """Sequence of example dicts {'video' uint8 (T, S, S), 'ef' NaN, 'attributes' raw
  (n_attr,)} over the AVIs of `folder`, in the layout the pipeline reads
  (cardiac_data.pipeline.make_loader); `keys` are the file names without `.avi`."""

  def __init__(self, folder: str | os.PathLike, *, dataset: str, view: str, image_size: int,
               spec: attributes_lib.AttributeSpec | None = None,
               attributes: Mapping[str, Mapping[str, Any]] | None = None):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
      raise errors.DataFormatError(folder, "--videos: folder not found")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
      raise errors.DataFormatError(folder, "--videos: no .avi file in this folder")
    skips = errors.SkipLog(f"videos in {folder.name}")
    self.paths, self.num_frames = [], []
    for p in paths:
      try:
        info = video_lib.probe_video(p)
      except errors.VideoDecodeError:
        skips.skip("video header unreadable")
        continue
      if info.num_frames < 1:
        skips.skip("video has no frame")
        continue
      self.paths.append(p)
      self.num_frames.append(info.num_frames)
    skips.log_summary()
    if not self.paths:
      raise errors.DataFormatError(folder, f"--videos: none of the {len(paths)} videos reads")
    self.keys = [_key(p.name) for p in self.paths]
    spec = spec or attributes_lib.AttributeSpec()
    attributes = attributes or {}
    unknown = set(attributes) - set(self.keys)
    if unknown:
      logging.warning("attributes CSV: %d row(s) name no video of the folder", len(unknown))
    cases = [_Case(k, attributes.get(k, {})) for k in self.keys]
    self.raw_attributes = attributes_lib.raw_attribute_matrix(cases, spec)
    self.resize_mode = builders.BUILDERS[dataset].make_config(view=view).resize_mode
    self.image_size = int(image_size)
    self.labels = np.full(len(self.paths), np.nan)      # no FileList, no label
    logging.info("%d videos to score (%d with attributes)", len(self.paths),
                 sum(k in attributes for k in self.keys))

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    video = video_lib.read_video(self.paths[index])
    return {"video": builders.resize_to_square(video, self.image_size, self.resize_mode),
            "ef": np.float32(np.nan), "attributes": self.raw_attributes[index]}
