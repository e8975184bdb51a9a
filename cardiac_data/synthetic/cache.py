"""Generate-once cache of synthetic cohorts.

`ensure_cohort('echonet_pediatric', 2000, seed=0)` returns the root of a cohort
generated with exactly these parameters, generating it on first use. Layout:

  CACHE/<dataset>-<hash12>/            the cohort root (what the readers take)
  CACHE/<dataset>-<hash12>/cohort.json  parameters + generator version (written last)
  CACHE/<dataset>-<hash12>.lock         advisory lock while generating

The hash covers (dataset, generator version, num_subjects, seed, params). A cohort
is generated in a temporary sibling folder and renamed into place only when
complete, so a killed run never leaves a folder that looks complete; concurrent
callers serialise on the lock file and the later ones reuse the result.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import time

from absl import logging

from cardiac_data import synthetic

MARKER = "cohort.json"


def default_cache_dir() -> pathlib.Path:
  """$CARDIAC_DATA_CACHE, else ~/.cache/cardiac_jax."""
  env = os.environ.get("CARDIAC_DATA_CACHE")
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "cardiac_jax"


def cohort_key(dataset: str, num_subjects: int, seed: int, **params) -> dict:
  """The parameters that identify a cohort (JSON-serialisable)."""
  writer = synthetic.get_writer(dataset)
  return {"dataset": dataset,
          "generator_version": getattr(writer, "generator_version", "unversioned"),
          "num_subjects": int(num_subjects), "seed": int(seed),
          "params": {k: params[k] for k in sorted(params)}}


def cohort_dir_name(key: dict) -> str:
  """'<dataset>-<12 hex digits of the key's sha256>': the cohort's folder name."""
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
  return f"{key['dataset']}-{digest}"


@contextlib.contextmanager
def file_lock(path: pathlib.Path):
  """Exclusive advisory lock (fcntl on POSIX; a polled O_EXCL file elsewhere)."""
  try:
    import fcntl
  except ImportError:  # pragma: no cover - non-POSIX fallback.
    fcntl = None
  if fcntl is not None:
    with open(path, "a+") as fh:
      fcntl.flock(fh, fcntl.LOCK_EX)
      try:
        yield
      finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
    return
  while True:  # pragma: no cover
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      break
    except FileExistsError:
      time.sleep(0.5)
  try:  # pragma: no cover
    yield
  finally:  # pragma: no cover
    os.close(fd)
    os.unlink(path)


def _is_complete(root: pathlib.Path, key: dict) -> bool:
  marker = root / MARKER
  if not marker.is_file():
    return False
  try:
    return json.loads(marker.read_text())["key"] == key
  except (ValueError, KeyError):
    return False


def ensure_cohort(dataset: str, num_subjects: int, seed: int, cache_dir: str | None = None,
                  *, workers: int | None = None, progress: bool = False,
                  **params) -> pathlib.Path:
  """Root of the cached cohort, generating it first if needed.

  Args:
    dataset: a name in `cardiac_data.synthetic.WRITERS`.
    num_subjects, seed, **params: passed to the writer; all enter the cache key.
    cache_dir: parent folder; default `default_cache_dir()`.
    workers, progress: generation settings that do not change the output (not in
      the key).
  """
  key = cohort_key(dataset, num_subjects, seed, **params)
  cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
  cache.mkdir(parents=True, exist_ok=True)
  name = cohort_dir_name(key)
  root = cache / name
  if _is_complete(root, key):
    return root
  with file_lock(cache / f"{name}.lock"):
    if _is_complete(root, key):  # Another process finished it while we waited.
      return root
    # Holding the lock, any temporary folder for this name is left from a killed run.
    for stale in cache.glob(f".tmp-{name}-*"):
      shutil.rmtree(stale, ignore_errors=True)
    if root.exists():  # Incomplete or foreign content under the final name.
      shutil.rmtree(root)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=cache))
    logging.info("Generating synthetic cohort %s (%d subjects, seed %d) in %s",
                 dataset, num_subjects, seed, root)
    start = time.time()
    count = synthetic.get_writer(dataset)(tmp, num_subjects, seed, workers=workers,
                                          progress=progress, **params)
    seconds = time.time() - start
    (tmp / MARKER).write_text(json.dumps(
        {"key": key, "count": count, "seconds": round(seconds, 2)}, indent=1))
    os.replace(tmp, root)
    logging.info("Wrote %d items in %.1f s", count, seconds)
  return root
