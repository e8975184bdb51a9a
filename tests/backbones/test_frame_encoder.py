"""FrameEncoder normalisation modes: 'frame' makes each frame's features blind to that
frame's intensity scale (per-frame GroupNorm after bias-free convolutions), 'clip'
keeps frame-to-frame contrast (the statistics are shared by the clip's frames)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backbones import video as encoders


def _fmap(norm, video):
  m = encoders.FrameEncoder(widths=(4, 8), features=8, temporal=0, norm=norm)
  params = m.init(jax.random.key(0), video)
  return lambda v: np.asarray(m.apply(params, v, return_tokens=True)[1])


def test_frame_norm_is_per_frame_and_clip_norm_shares_statistics():
  video = jnp.asarray(np.random.default_rng(0).random((2, 5, 16, 16, 1)), jnp.float32)
  brighter = video.at[:, 1:].multiply(3.0)     # every frame but the first, ×3
  frame, clip = _fmap("frame", video), _fmap("clip", video)
  # 'frame': frame 0 is unchanged, and scaling a frame does not change its features.
  np.testing.assert_allclose(frame(brighter), frame(video), atol=1e-4)
  # 'clip': frame 0's features change when the other frames do (shared statistics),
  # and scaling the whole clip changes nothing.
  assert np.abs(clip(brighter)[:, 0] - clip(video)[:, 0]).max() > 0.1
  np.testing.assert_allclose(clip(video * 3.0), clip(video), atol=1e-4)


def test_unknown_norm_is_a_clear_error():
  with pytest.raises(ValueError, match="encoder_kwargs.norm"):
    _fmap("batch", jnp.zeros((1, 2, 8, 8, 1)))


def test_motion_channels_are_the_deviation_from_the_clip_mean():
  rng = np.random.default_rng(1)
  video = jnp.asarray(rng.random((2, 4, 16, 16, 1)), jnp.float32)
  kw = dict(widths=(4, 8), features=8, temporal=1)
  with_motion = encoders.FrameEncoder(motion=True, **kw)
  plain = encoders.FrameEncoder(motion=False, **kw)
  params = with_motion.init(jax.random.key(0), video)
  kernel = params["params"]["conv0"]["kernel"]            # (5, 5, 2, 4): raw, deviation
  assert kernel.shape[2] == 2
  # A static clip has zero deviation: the motion encoder equals the plain one whose
  # first kernel is the raw-channel slice.
  static = jnp.repeat(video[:, :1], 4, axis=1)
  sliced = jax.tree.map(lambda x: x, params)
  sliced["params"]["conv0"]["kernel"] = kernel[:, :, :1]
  np.testing.assert_allclose(with_motion.apply(params, static), plain.apply(sliced, static),
                             rtol=1e-5, atol=1e-6)
  # With the raw-channel kernel zeroed, a moving clip is seen only through x − mean_t x:
  # adding the same image to every frame changes nothing.
  dev_only = jax.tree.map(lambda x: x, params)
  dev_only["params"]["conv0"]["kernel"] = kernel.at[:, :, 0].set(0.0)
  offset = video + jnp.asarray(rng.random((1, 1, 16, 16, 1)), jnp.float32)
  np.testing.assert_allclose(with_motion.apply(dev_only, offset),
                             with_motion.apply(dev_only, video), rtol=1e-4, atol=1e-5)
