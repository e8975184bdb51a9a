"""Clip sampling, augmentation and the grain pipeline (shapes, eval pass, determinism)."""
from __future__ import annotations

import gc
import itertools
import logging
import pickle

import cv2
import numpy as np
import pytest

from cardiac_data import attributes
from cardiac_data import builders
from cardiac_data import host
from cardiac_data import pipeline
from cardiac_data import transforms as T
from tests import conftest
from tests import fixtures

S = 8


def ramp_source(lengths, num_attr=0, seed=0):
  """In-memory examples whose frame t has every pixel equal to t (so a clip shows its indices)."""
  rng = np.random.default_rng(seed)
  out = []
  for i, n in enumerate(lengths):
    video = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, S, S)).copy()
    attr = rng.normal(size=num_attr).astype(np.float32)
    if num_attr:
      attr[rng.integers(num_attr)] = np.nan
    out.append({"video": video, "ef": np.float32(40 + i), "attributes": attr})
  return out


def frame_ids(batch_video):
  """Frame index shown by each clip frame of a 'scale'-normalised ramp batch: (B, T)."""
  return np.rint(batch_video[..., 0].mean(axis=(2, 3)) * 255).astype(int)


def cfg(**kw):
  base = dict(frames=4, period=2, image_size=S, batch_size=3, augment=False, read_threads=0)
  return pipeline.PipelineConfig(**{**base, **kw})


# ------------------------------------------------------------------------ clip sampling


@pytest.mark.parametrize("num_frames,frames,period", [(1, 4, 1), (5, 8, 1), (16, 4, 3),
                                                      (40, 16, 2), (31, 16, 2)])
def test_clip_indices_in_range_and_period_respected(num_frames, frames, period):
  rng = np.random.default_rng(0)
  last = T.last_start(num_frames, frames, period)
  assert last == max(0, num_frames - (frames - 1) * period - 1)
  for _ in range(20):
    start = T.random_start(num_frames, frames, period, rng)
    assert 0 <= start <= last
    idx, valid = T.clip_indices(num_frames, start, frames, period, "pad")
    assert idx.shape == (frames,) and np.all((0 <= idx) & (idx < num_frames))
    raw = start + period * np.arange(frames)
    np.testing.assert_array_equal(valid, raw < num_frames)
    np.testing.assert_array_equal(idx[valid], raw[valid])
    lidx, lvalid = T.clip_indices(num_frames, start, frames, period, "loop")
    np.testing.assert_array_equal(lidx, raw % num_frames)
    assert lvalid.all()
  if num_frames >= T.clip_span(frames, period):
    starts = {T.random_start(num_frames, frames, period, rng) for _ in range(400)}
    assert starts == set(range(last + 1))  # uniform over every valid start


@pytest.mark.parametrize("num_frames", [16, 17, 30, 31, 100])
def test_center_clip_is_centred(num_frames):
  start = T.center_start(num_frames, 8, 2)
  before, after = start, num_frames - (start + T.clip_span(8, 2))
  assert before >= 0 and after >= 0 and abs(before - after) <= 1


@pytest.mark.parametrize("stride", [1, 3])
def test_all_covers_every_start(stride):
  for num_frames in (3, 15, 16, 40):
    brute = [s for s in range(num_frames) if s + T.clip_span(4, 5) <= num_frames] or [0]
    np.testing.assert_array_equal(T.all_starts(num_frames, 4, 5, stride), brute[::stride])


def test_short_video_zero_padded_or_looped():
  video = np.arange(1, 6, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
  idx, valid = T.clip_indices(5, 0, 8, 1, "pad")
  clip = T.gather_frames(video, idx, valid)
  np.testing.assert_array_equal(clip[:, 0, 0], [1, 2, 3, 4, 5, 0, 0, 0])
  idx, valid = T.clip_indices(5, 0, 8, 1, "loop")
  np.testing.assert_array_equal(T.gather_frames(video, idx, valid)[:, 0, 0],
                                [1, 2, 3, 4, 5, 1, 2, 3])


def test_per_example_rng_is_deterministic_and_seed_dependent():
  kw = dict(pad=6, max_rotation=10, brightness=0.1, contrast=0.1, blur_prob=0.5,
            blur_sigma=(0.1, 1.0))
  def draw(seed, epoch, index):
    rng = T.example_rng(seed, epoch, index)
    return T.random_start(200, 16, 2, rng), T.sample_augment_params(rng, **kw)
  assert draw(3, 1, 7) == draw(3, 1, 7)
  others = [draw(4, 1, i) != draw(3, 1, i) for i in range(5)]
  assert all(others)
  assert any(draw(3, 2, i) != draw(3, 1, i) for i in range(5))


# ----------------------------------------------------------------------------- MCSDR


def torch_linear_positions(length, frames):
  """PyTorch `interpolate(..., align_corners=False)` source coordinates, written out."""
  scale = length / frames
  return [min(max((j + 0.5) * scale - 0.5, 0.0), length - 1) for j in range(frames)]


def test_mcsdr_test_resampling_equals_np_interp_on_a_ramp():
  num_frames, period, frames = 50, 2, 16
  ramp = np.broadcast_to((np.arange(num_frames) * 3.0)[:, None, None], (num_frames, 2, 2))
  clip = T.mcsdr_clip(ramp, frames, period, train=False)
  sub = ramp[::period, 0, 0]                   # 25 frames
  length = int(np.floor(0.95 * len(sub)))      # 23
  bias = int(0.05 * len(sub) / 2)              # 0
  want = np.interp(torch_linear_positions(length, frames), np.arange(length),
                   sub[bias:bias + length])
  np.testing.assert_allclose(clip[:, 0, 0], want, rtol=0, atol=1e-4)
  assert clip.shape == (frames, 2, 2) and clip.dtype == np.float32


def test_mcsdr_resampling_matches_per_pixel_interp_and_train_crop_bounds():
  rng = np.random.default_rng(1)
  video = rng.integers(0, 256, size=(37, 3, 3)).astype(np.uint8)
  pos = T.linear_time_positions(37, 16)
  got = T.resample_time(video, pos)
  want = np.apply_along_axis(lambda v: np.interp(pos, np.arange(37), v), 0,
                             video.astype(float))
  np.testing.assert_allclose(got, want, atol=1e-3)
  for _ in range(50):
    begin, length = T.mcsdr_crop(40, train=True, rng=rng)
    assert 36 <= length <= 40 and 0 <= begin <= 40 - length
    begin, length = T.mcsdr_crop(10, train=True, rng=rng)
    assert (begin, length) == (0, 10)  # min(16, L) frames


# ----------------------------------------------------------------------- augmentation


def test_spatial_and_photometric_ops():
  rng = np.random.default_rng(2)
  clip = rng.uniform(0, 255, size=(3, 12, 12)).astype(np.float32)
  np.testing.assert_array_equal(T.pad_crop(clip, 4, 4, 4), clip)
  shifted = T.pad_crop(clip, 4, 0, 4)  # content moves down by 4 rows, zeros above
  np.testing.assert_array_equal(shifted[:, 4:], clip[:, :-4])
  assert np.all(shifted[:, :4] == 0)
  np.testing.assert_allclose(T.rotate(clip, 90.0), np.rot90(clip, k=1, axes=(1, 2)), atol=1e-3)
  m = clip.mean()
  np.testing.assert_allclose(T.brightness_contrast(clip, 0.02, 1.1),
                             np.clip(1.1 * (clip - m) + m + 5.1, 0, 255), rtol=1e-5)
  flat = np.full((2, 9, 9), 77.0, np.float32)
  np.testing.assert_allclose(T.gaussian_blur(flat, 1.5), flat, atol=1e-4)
  ref = cv2.GaussianBlur(clip[1], (0, 0), 0.8, borderType=cv2.BORDER_REFLECT_101)
  np.testing.assert_allclose(T.gaussian_blur(clip, 0.8)[1], ref)


# ------------------------------------------------------------------------- bad config


@pytest.mark.parametrize("changes,field", [
    (dict(frames=0), "frames"), (dict(frames=-3), "frames"), (dict(period=0), "period"),
    (dict(eval_protocol="median"), "eval_protocol"), (dict(sampling="random"), "sampling"),
    (dict(sampling="mcsdr", eval_protocol="all"), "eval_protocol"),
    (dict(short_video="mirror"), "short_video"), (dict(normalization="meanstd"), "mean"),
    (dict(normalization="meanstd", mean=30.0, std=0.0), "std"),
    (dict(shard_index=2, shard_count=2), "shard_index"),
    (dict(blur_sigma=(1.0, 0.5)), "blur_sigma"),
    (dict(mcsdr_p_train=(0.9, 1.2)), "mcsdr_p_train"), (dict(batch_size=2.5), "batch_size"),
])
def test_invalid_config_field_is_named(changes, field):
  with pytest.raises(ValueError, match=rf"PipelineConfig\.{field}\b"):
    cfg(**changes)


def test_unknown_config_field_is_named():
  with pytest.raises(ValueError, match="'frame'"):
    pipeline.PipelineConfig.from_mapping({"frame": 16})
  assert pipeline.PipelineConfig.from_mapping({"frames": 8, "blur_sigma": [0.2, 0.4]}).frames == 8


# --------------------------------------------------------------------------- pipeline


def test_batch_shapes_dtypes_and_attributes():
  src = ramp_source([20, 9, 30, 12, 25], num_attr=3)
  spec = attributes.AttributeSpec(("a", "b"), {"c": ("x", "y", "z")})
  raw = np.stack([e["attributes"] for e in src])
  raw[:, 2] = [0, 1, 2, np.nan, 1]
  for e, r in zip(src, raw):
    e["attributes"] = r
  pre = attributes.AttributePreprocessor.fit(raw[:3], spec)
  batch = next(pipeline.make_loader(src, cfg(augment=True), train=True, preprocessor=pre))
  want = {"video": ((3, 4, S, S, 1), np.float32), "ef": ((3,), np.float32),
          "attr_cont": ((3, 2), np.float32), "attr_cont_missing": ((3, 2), np.bool_),
          "attr_cat": ((3, 1), np.int32), "mask": ((3,), np.bool_), "index": ((3,), np.int64),
          "clip_start": ((3,), np.int64)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == want
  ref = pre.transform(raw[batch["index"]])
  np.testing.assert_allclose(batch["attr_cont"], ref["continuous"])
  np.testing.assert_array_equal(batch["attr_cont_missing"], ref["continuous_missing"])
  np.testing.assert_array_equal(batch["attr_cat"], ref["categorical"])
  np.testing.assert_array_equal(batch["ef"], [40 + i for i in batch["index"]])
  assert batch["mask"].all()


@pytest.mark.parametrize("protocol", ["center", "all"])
def test_eval_pass_counts_each_item_once_with_padding(protocol):
  lengths = [20, 9, 30, 12, 25, 7, 16]
  src = ramp_source(lengths)
  c = cfg(eval_protocol=protocol, eval_stride=2)
  if protocol == "center":
    want = [(i, T.center_start(n, 4, 2)) for i, n in enumerate(lengths)]
  else:
    want = [(i, s) for i, n in enumerate(lengths) for s in range(0, max(n - 7, 0) + 1, 2)]
  seen = []
  batches = list(pipeline.make_loader(src, c, train=False))
  assert len(batches) == pipeline.num_eval_batches(src, c) == -(-len(want) // 3)
  for b in batches:
    assert b["video"].shape == (3, 4, S, S, 1)
    assert np.all(b["index"][~b["mask"]] == -1) and np.all(b["video"][~b["mask"]] == 0)
    for i, s, ids in zip(b["index"][b["mask"]], b["clip_start"][b["mask"]],
                         frame_ids(b["video"])[b["mask"]]):
      seen.append((int(i), int(s)))
      idx, valid = T.clip_indices(lengths[i], s, 4, 2, "pad")
      np.testing.assert_array_equal(ids, np.where(valid, idx, 0))
  assert seen == want
  # Two hosts: the same number of batches, disjoint items that cover the split.
  shards = [list(pipeline.make_loader(src, c.replace(shard_index=k, shard_count=2), train=False))
            for k in range(2)]
  assert len(shards[0]) == len(shards[1])
  items = [(int(i), int(s)) for sh in shards for b in sh
           for i, s in zip(b["index"][b["mask"]], b["clip_start"][b["mask"]])]
  assert sorted(items) == sorted(want)


def test_eval_pass_knows_its_length_and_shows_progress_when_iterated(capsys):
  src = ramp_source([20, 9, 30, 12, 25, 7, 16])
  c = cfg(eval_protocol="all", eval_stride=2)
  n = pipeline.num_eval_batches(src, c)
  loader = pipeline.make_loader(src, c, train=False, desc="eval val")
  assert len(loader) == n and loader.desc == "eval val"
  assert len(list(loader)) == n and list(loader) == []
  err = capsys.readouterr().err
  assert err.count(f"eval val: 100%") == 1 and f"{n}/{n}" in err
  # Looking at one batch (an example batch for init) prints no bar.
  assert next(pipeline.make_loader(src, c, train=False))["video"].shape[0] == 3
  assert capsys.readouterr().err == ""
  assert pipeline.make_loader(src, c, train=False).desc == "eval"


def test_builder_config_logged_once_and_tfds_does_not_warn(tmp_path, caplog):
  """A non-default size used to make TFDS warn "Using custom data configuration" at
  every builder construction (each data source, each grain worker) and "Variant
  folder ... has no dataset_info.json" before the first build; the build logged its
  skips and resized videos once per split."""
  fx = fixtures.write_echonet_dynamic(tmp_path / "src", num_videos=4)
  with caplog.at_level(logging.INFO, logger="absl"):
    b = builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=20)
    sources = [pipeline.data_source(b, split) for split in ("train", "val", "test")]
    # The built builder gives the data sources (its info is read from disk once).
    assert sum("Load dataset info" in r.getMessage() for r in caplog.records) == 1
    # A grain worker unpickles the source, which constructs the builder again.
    copy = pickle.loads(pickle.dumps(sources[0]))
    assert copy[0]["video"].shape[1:] == (20, 20)
    assert builders.build("echonet_dynamic", fx.root, tmp_path / "tfds", size=20) is b
  messages = [r.getMessage() for r in caplog.records]
  assert not [m for m in messages if "custom data configuration" in m or "Variant folder" in m]
  assert sum("builder config a4c_s20" in m for m in messages) == 1
  # The build's summary: one line over the splits (per split in the metadata).
  assert [m for m in messages if "resized" in m] == [
      "echonet_dynamic/a4c_s20: resized 4 of 4 video(s) to 20x20"]


def test_training_epochs_shuffle_shards_and_determinism():
  src = ramp_source([20, 9, 30, 12, 25])
  c = cfg(batch_size=1, drop_remainder=False, augment=True)
  def run(**kw):
    return list(pipeline.make_loader(src, c.replace(**kw), train=True, num_epochs=2))
  a, b, other = run(), run(), run(seed=1)
  order = [int(x["index"][0]) for x in a]
  assert sorted(order[:5]) == sorted(order[5:]) == list(range(5))
  assert order[:5] != order[5:] or a[0]["clip_start"] != a[5]["clip_start"]
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, other))
  # Two hosts of 2 rows each take the rows of the one-host batches of 4, in blocks.
  one = list(pipeline.make_loader(src, c.replace(batch_size=4, drop_remainder=True),
                                  train=True, num_epochs=2))
  hosts = [run(shard_index=k, shard_count=2, batch_size=2, drop_remainder=True)
           for k in range(2)]
  assert len(one) == len(hosts[0]) == len(hosts[1]) == 2
  for step, whole in enumerate(one):
    for key in whole:
      joined = np.concatenate([hosts[0][step][key], hosts[1][step][key]])
      np.testing.assert_array_equal(joined, whole[key])


def test_iterator_state_resumes_the_same_stream():
  src = ramp_source([20, 9, 30, 12, 25])
  c = cfg(batch_size=2, augment=True)
  it = pipeline.make_loader(src, c, train=True)
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  resumed = pipeline.make_loader(src, c, train=True)
  resumed.set_state(state)
  for x in want:
    y = next(resumed)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_mcsdr_sampling_in_the_pipeline():
  src = ramp_source([50, 12])
  c = cfg(sampling="mcsdr", frames=6, period=2, batch_size=2)
  batch = next(pipeline.make_loader(src, c, train=False))
  for b, n in enumerate([50, 12]):
    want = T.mcsdr_clip(src[b]["video"], 6, 2, train=False)[:, 0, 0]
    np.testing.assert_allclose(batch["video"][b, :, 0, 0, 0] * 255, want, atol=1e-3)
  batch = next(pipeline.make_loader(src, c.replace(augment=True), train=True))
  assert batch["video"].shape == (2, 6, S, S, 1) and np.all(batch["clip_start"] == -1)


def test_normalization_meanstd_and_fit():
  src = ramp_source([6, 9])
  mean, std = pipeline.fit_normalization(src, num_videos=10)
  allpix = np.concatenate([e["video"].ravel() for e in src]).astype(np.float64)
  assert (mean, std) == pytest.approx((allpix.mean(), allpix.std()))
  c = cfg(normalization="meanstd", mean=mean, std=std, frames=2, period=1, eval_protocol="center")
  batch = next(pipeline.make_loader(src, c, train=False))
  start = T.center_start(6, 2, 1)
  np.testing.assert_allclose(batch["video"][0, :, 0, 0, 0],
                             (np.arange(start, start + 2) - mean) / std, rtol=1e-5)


def test_tfds_source_batches(tiny_dynamic):
  src = pipeline.data_source(tiny_dynamic.builder, "train")
  c = cfg(frames=8, period=1, image_size=16, batch_size=2, augment=True)
  batch = next(pipeline.make_loader(src, c, train=True))
  assert batch["video"].shape == (2, 8, 16, 16, 1) and batch["video"].dtype == np.float32
  assert 0.0 <= batch["video"].min() and batch["video"].max() <= 1.0
  want = {i: tiny_dynamic.fixture.expected[k]["ef"]
          for i, k in enumerate(tiny_dynamic.keys["train"])}
  np.testing.assert_allclose(batch["ef"], [want[i] for i in batch["index"]], rtol=1e-6)
  test = pipeline.data_source(tiny_dynamic.builder, "test")
  c = c.replace(eval_protocol="all", eval_stride=4, image_size=conftest.TINY_SIZE)
  loader = pipeline.make_loader(test, c, train=False)
  assert loader.desc == "eval test" and len(loader) == pipeline.num_eval_batches(test, c)
  batches = list(loader)
  n_items = sum(int(b["mask"].sum()) for b in batches)
  assert n_items == len(tiny_dynamic.keys["test"]) * len(T.all_starts(16, 8, 1, 4))


def shared_memory_arrays() -> list:
  return [o for o in gc.get_objects() if type(o).__name__ == "SharedMemoryArray"]


@pytest.mark.multiprocess
def test_two_workers_give_the_same_batches(tiny_dynamic, capfd):
  src = pipeline.data_source(tiny_dynamic.builder, "train")
  c = cfg(frames=8, period=1, image_size=16, batch_size=2, augment=True, blur_prob=0.5)
  want = list(itertools.islice(pipeline.make_loader(src, c, train=True), 4))
  it = pipeline.make_loader(src, c.replace(worker_count=2), train=True)
  got = list(itertools.islice(it, 4))
  it.close()
  for x, y in zip(want, got):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
      assert type(y[k]) is np.ndarray  # Copied out of grain's shared memory.
  # An evaluation pass with workers: the same batches, and no shared-memory segment
  # left for the resource tracker to report as leaked at exit.
  c = c.replace(augment=False)
  want = list(pipeline.make_loader(src, c, train=False))
  got = list(pipeline.make_loader(src, c.replace(worker_count=2), train=False))
  assert len(got) == len(want) and not shared_memory_arrays()
  for x, y in zip(want, got):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # The workers construct the builder (a non-default size) without TFDS warnings.
  assert "custom data configuration" not in capfd.readouterr().err


def test_worker_count_auto_is_half_the_cores(monkeypatch):
  """worker_count=-1 resolves to half the usable cores (at most 8); below -1 is named."""
  monkeypatch.setattr(host.os, "sched_getaffinity", lambda pid: set(range(6)))
  assert pipeline.PipelineConfig(worker_count=-1).worker_count == 3
  assert [pipeline.auto_worker_count(n) for n in (1, 2, 3, 16, 64)] == [0, 1, 1, 8, 8]
  assert pipeline.PipelineConfig(worker_count=2).worker_count == 2
  with pytest.raises(ValueError, match="worker_count.*-1 \\(auto\\)"):
    pipeline.PipelineConfig(worker_count=-2)
