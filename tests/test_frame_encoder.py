"""FrameEncoder normalisation modes: 'frame' makes each frame's features blind to that
frame's intensity scale (per-frame GroupNorm after bias-free convolutions), 'clip'
keeps frame-to-frame contrast (the statistics are shared by the clip's frames)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcsdr_jax import encoders


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
