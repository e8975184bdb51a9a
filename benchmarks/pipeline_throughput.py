"""Clips/s of the grain pipeline from array_record vs decoding the AVI per item.

  python -m benchmarks.pipeline_throughput [--num_videos=48] [--workers=2] [--json=PATH]

Both paths produce the same items, in the same order, with the same clip
sampling (16 frames at 112 x 112, random start from example_rng(seed, epoch,
index), /255 normalisation, no augmentation), in the same process:
  * array_record: `pipeline.make_loader` over `tfds.data_source` with `--workers`
    grain worker processes, `--epochs` passes (worker start-up included in
    `array_record_clips_per_s`, excluded from `..._steady`, timed from the moment
    every worker has delivered a batch);
  * AVI: `clips.load_clip(record)` (OpenCV decode of the whole video) + the same
    clip sampling, one item after another.
The cohort is the built-in synthetic EchoNet-Dynamic cohort (`ensure_cohort`) or,
if that is unavailable, a temporary tree of 112 x 112 AVIs.
"""
from __future__ import annotations

from evaluation.devices import cpu_name

import json
import os
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

_NUM_VIDEOS = flags.DEFINE_integer("num_videos", 48, "Videos in the synthetic cohort.")
_WORKERS = flags.DEFINE_integer("workers", 2, "grain worker processes.")
_FRAMES = flags.DEFINE_integer("frames", 16, "Clip length.")
_PERIOD = flags.DEFINE_integer("period", 1, "Temporal stride.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 4, "Passes over the items (array_record path).")
_IN_PROCESS = flags.DEFINE_bool("in_process", True, "Also time the pipeline with 0 workers.")
_CACHE = flags.DEFINE_string("cache_dir", None, "Synthetic cohort cache (default: the project's).")
_JSON = flags.DEFINE_string("json", None, "Write the numbers to this JSON file.")


def _fallback_tree(root: str, num_videos: int, seed: int) -> str:
  """EchoNet-Dynamic-like tree of moving-blob AVIs (used when ensure_cohort is missing)."""
  from cardiac_data import video as video_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "Videos"), exist_ok=True)
  yy, xx = np.mgrid[:112, :112]
  rows = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
  for i in range(num_videos):
    t = int(rng.integers(60, 200))
    r = 20 + 8 * np.sin(2 * np.pi * np.arange(t)[:, None, None] / 40)
    frames = np.where((yy - 56) ** 2 + (xx - 56) ** 2 < r ** 2, 30, 150)
    frames = np.clip(frames + rng.normal(0, 20, frames.shape), 0, 255).astype(np.uint8)
    video_lib.write_video(os.path.join(root, "Videos", f"0XBENCH{i:04d}.avi"), frames, 50)
    rows.append(f"0XBENCH{i:04d},60,40,100,112,112,50,{t},{('TRAIN', 'VAL', 'TEST')[i % 3]}")
  with open(os.path.join(root, "FileList.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
  with open(os.path.join(root, "VolumeTracings.csv"), "w") as f:
    f.write("FileName,X1,Y1,X2,Y2,Frame\n")
  return root


def _cohort(num_videos: int, seed: int, cache_dir: str | None, tmp: str) -> str:
  try:
    from cardiac_data.synthetic import cache  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("cardiac_data.synthetic.cache not available; writing a plain AVI tree")
    return _fallback_tree(os.path.join(tmp, "cohort"), num_videos, seed)
  return os.fspath(cache.ensure_cohort("echonet_dynamic", num_videos, seed, cache_dir=cache_dir))


def _avi_pass(records, num_frames_cfg: int, period: int, batch_size: int, seed: int
              ) -> tuple[int, float]:
  from cardiac_data import clips  # pylint: disable=g-import-not-at-top
  from cardiac_data import transforms as T  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  n, pending = 0, []
  for index, rec in enumerate(records):
    video = clips.load_clip(rec)
    rng = T.example_rng(seed, 0, index)
    start = T.random_start(video.shape[0], num_frames_cfg, period, rng)
    idx, valid = T.clip_indices(video.shape[0], start, num_frames_cfg, period, "pad")
    clip = T.gather_frames(video, idx, valid)
    if clip.shape[1:] != (112, 112):
      clip = T.resize_frames(clip, 112)
    pending.append(T.normalize(clip, 0.0, 255.0))
    if len(pending) == batch_size or index == len(records) - 1:
      np.stack(pending)
      n += len(pending)
      pending = []
  return n, time.perf_counter() - t0


def _grain_pass(src, cfg, epochs: int) -> dict:
  """Total rate (worker start-up included) and steady rate: from the moment every
  worker has delivered its first batch to the end."""
  from cardiac_data import pipeline  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  it = pipeline.make_loader(src, cfg, train=True, num_epochs=epochs)
  arrivals, counts = [], []
  for batch in it:
    arrivals.append(time.perf_counter())
    counts.append(int(batch["mask"].sum()))
  if hasattr(it, "close"):
    it.close()
  total = arrivals[-1] - t0
  warm = min(max(cfg.worker_count, 1), len(arrivals) - 1)
  steady = arrivals[-1] - arrivals[warm - 1] if warm > 0 else float("nan")
  return {"clips": sum(counts), "seconds": total, "startup_s": arrivals[0] - t0,
          "clips_per_s": sum(counts) / total,
          "clips_per_s_steady": sum(counts[warm:]) / steady if steady > 0 else float("nan")}


def run(*, num_videos: int = 48, workers: int = 2, frames: int = 16, period: int = 1,
        batch_size: int = 8, epochs: int = 4, in_process: bool = True, seed: int = 0,
        cache_dir: str | None = None, json_path: str | None = None) -> dict:
  """Times both paths on the same items; returns (and optionally writes) the numbers."""
  from cardiac_data import builders  # pylint: disable=g-import-not-at-top
  from cardiac_data import echonet  # pylint: disable=g-import-not-at-top
  from cardiac_data import pipeline  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    root = _cohort(num_videos, seed, cache_dir, tmp)
    t_cohort = time.perf_counter() - t0
    t0 = time.perf_counter()
    builder = builders.build("echonet_dynamic", root, os.path.join(tmp, "tfds"), size=112)
    t_build = time.perf_counter() - t0
    splits = "+".join(s for s in ("train", "val", "test") if s in builder.info.splits)
    src = pipeline.data_source(builder, splits)
    # Same items in the same order: the source's index i is record by_key[key_i].
    by_key = {r.key: r for r in echonet.read_echonet_dynamic(root).records}
    records = [by_key[src[i]["key"].decode()] for i in range(len(src))]
    cfg = pipeline.PipelineConfig(frames=frames, period=period, image_size=112,
                                  batch_size=batch_size, drop_remainder=False, augment=False,
                                  seed=seed, worker_count=workers, read_threads=1)
    n_avi, s_avi = _avi_pass(records, frames, period, batch_size, seed)
    grain_workers = _grain_pass(src, cfg, epochs)
    result = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "num_items": len(src),
        "clip_shape": [frames, 112, 112], "period": period, "batch_size": batch_size,
        "workers": workers, "epochs": epochs, "cohort_s": t_cohort, "build_s": t_build,
        "avi_clips_per_s": n_avi / s_avi,
        "array_record_clips_per_s": grain_workers["clips_per_s"],
        "array_record_clips_per_s_steady": grain_workers["clips_per_s_steady"],
        "array_record_startup_s": grain_workers["startup_s"],
    }
    if in_process:
      result["array_record_in_process_clips_per_s"] = _grain_pass(
          src, cfg.replace(worker_count=0), epochs)["clips_per_s"]
  result["ratio"] = result["array_record_clips_per_s"] / result["avi_clips_per_s"]
  result["ratio_steady"] = result["array_record_clips_per_s_steady"] / result["avi_clips_per_s"]
  if json_path:
    with open(json_path, "w") as f:
      json.dump(result, f, indent=2)
  return result


def main(argv):
  del argv
  r = run(num_videos=_NUM_VIDEOS.value, workers=_WORKERS.value, frames=_FRAMES.value,
          period=_PERIOD.value, batch_size=_BATCH.value, epochs=_EPOCHS.value,
          in_process=_IN_PROCESS.value, cache_dir=_CACHE.value, json_path=_JSON.value)
  print(f"CPU: {r['cpu']} ({r['cpu_count']} cores); {r['num_items']} videos, "
        f"clips {tuple(r['clip_shape'])}, period {r['period']}, batch {r['batch_size']}")
  print(f"array_record + grain, {r['workers']} workers: {r['array_record_clips_per_s']:.1f} "
        f"clips/s with start-up ({r['array_record_startup_s']:.1f} s to the first batch), "
        f"{r['array_record_clips_per_s_steady']:.1f} clips/s once every worker runs")
  if "array_record_in_process_clips_per_s" in r:
    print(f"array_record + grain, in process:  "
          f"{r['array_record_in_process_clips_per_s']:.1f} clips/s")
  print(f"AVI decode per item (load_clip):    {r['avi_clips_per_s']:.1f} clips/s")
  print(f"ratio array_record / AVI: {r['ratio']:.2f} ({r['ratio_steady']:.2f} steady)")
  if _JSON.value:
    print(f"wrote {_JSON.value}")


if __name__ == "__main__":
  app.run(main)
