"""Two augmented views of each training clip (AdaCon §III-C: the batch and its
augmented copy form the positive pairs {x_i, x'_i}).

Each view is an independent draw, in JAX from the step's RNG, of what the published
code does (zero-pad `pad` pixels, random crop back to the frame size) plus a
brightness/contrast jitter, on the clip the input pipeline loaded (itself augmented
when config.data.augment is on)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def random_view(key, clip, *, pad: int, brightness: float = 0.0, contrast: float = 0.0):
  """One view of `clip` (T, H, W, C): pad-crop shift, then x·c + b with
  c ~ U[1 − contrast, 1 + contrast], b ~ U[−brightness, brightness] (normalised units)."""
  k_shift, k_b, k_c = jax.random.split(key, 3)
  x = clip
  if pad:
    top, left = jax.random.randint(k_shift, (2,), 0, 2 * pad + 1)
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    x = jax.lax.dynamic_slice(x, (0, top, left, 0), clip.shape)
  c = jax.random.uniform(k_c, (), minval=1.0 - contrast, maxval=1.0 + contrast)
  b = jax.random.uniform(k_b, (), minval=-brightness, maxval=brightness)
  return x * c + b


def random_views(key, video, *, pad: int, brightness: float = 0.0, contrast: float = 0.0):
  """`random_view` of every clip of a batch (B, T, H, W, C), one key per clip (vmap)."""
  keys = jax.random.split(key, video.shape[0])
  fn = lambda k, v: random_view(k, v, pad=pad, brightness=brightness, contrast=contrast)  # noqa: E731
  return jax.vmap(fn)(keys, video)
