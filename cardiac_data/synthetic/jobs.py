"""Job helpers shared by the cohort writers: output folders, parallel tasks, CSV files.

Every writer (`echonet_writer`, `camus_writer`, `seg_domains`, `dense_writer`)
clears its layout items with `prepare_output`, runs one task per subject with
`run_tasks` (same results in the same order for any worker count) and writes its
tables with `write_csv`, numbers formatted by `fmt`.
"""
from __future__ import annotations

import concurrent.futures
import csv
import io
import multiprocessing
import os
import pathlib
import shutil
from typing import Callable, Iterable, Sequence


def fmt(x: float, digits: int) -> str:
  """`x` with `digits` decimals: the number format of every written table."""
  return f"{x:.{digits}f}"


def write_csv(path: pathlib.Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
  """Writes `header` then `rows` as UTF-8 CSV with '\\n' line ends."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  w.writerows(rows)
  path.write_text(buf.getvalue(), encoding="utf-8")


def run_tasks(fn: Callable, tasks: list, workers: int | None, progress: bool,
              desc: str) -> list:
  """[fn(t) for t in tasks], in worker processes when there are several, with a progress bar."""
  from tqdm import tqdm  # Local: keeps worker start-up light.
  workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
  bar = tqdm(total=len(tasks), desc=desc, unit="subject", disable=not progress,
             dynamic_ncols=True)
  results = []
  try:
    if workers == 1 or len(tasks) < 4:
      for t in tasks:
        results.append(fn(t))
        bar.update(1)
    else:
      # 'spawn': safe when the caller has already started JAX threads.
      ctx = multiprocessing.get_context("spawn")
      chunk = max(1, min(16, len(tasks) // (4 * workers)))
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        for res in ex.map(fn, tasks, chunksize=chunk):
          results.append(res)
          bar.update(1)
  finally:
    bar.close()
  return results


def prepare_output(out: pathlib.Path, overwrite: bool, layout_items: Sequence[str]) -> None:
  """Removes the `layout_items` under `out` if `overwrite`, else refuses to write over them."""
  existing = [p for p in layout_items if (out / p).exists()]
  if existing and not overwrite:
    raise FileExistsError(f"{out}: already holds {', '.join(existing)}; "
                          "choose another output folder or pass overwrite=True (--overwrite)")
  for p in existing:
    target = out / p
    shutil.rmtree(target) if target.is_dir() else target.unlink()
