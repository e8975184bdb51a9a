"""Smoothed Gaussian noise ε' = K(ε) (LaMoD Eqs. 6 and 8, after SADIR).

K is a separable Gaussian kernel over chosen axes (LaMoD: the (T, H, W) axes of the
latent), weights w_n ∝ exp(−n²/2σ²) for n = −r..r normalised to sum 1, applied with
reflect padding (torch/numpy 'reflect': no edge repeat) as LaMoD's depthwise conv3d.
Away from the borders each voxel then has variance Π_axes Σ_n w_n², e.g. (0.1927)² for
LaMoD's size 3, σ = 3 over three axes; `unit_variance=True` divides by that factor so the
interior variance is 1 (the published code does not). Cov(K ε) = A Aᵀ with A the
(padded) convolution matrix, a Kronecker product over the axes.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.losses import NoiseFn


def gaussian_weights(size: int, sigma: float) -> np.ndarray:
  """1-D kernel (size,), odd size, normalised to sum 1."""
  if size < 1 or size % 2 == 0 or sigma <= 0:
    raise ValueError(f"smoothing kernel: need an odd size >= 1 and sigma > 0, "
                     f"got size={size}, sigma={sigma}")
  n = np.arange(size) - size // 2
  w = np.exp(-0.5 * (n / sigma) ** 2)
  return w / w.sum()


def smooth(x, axes, size: int = 3, sigma: float = 3.0, unit_variance: bool = False):
  """K(x): the normalised Gaussian kernel along each of `axes`, reflect padding."""
  w = gaussian_weights(size, sigma)
  r = size // 2
  gain = 1.0
  for ax in axes:
    ax = ax % x.ndim
    if r and x.shape[ax] <= r:
      raise ValueError(f"smoothing kernel of size {size} needs axis {ax} longer than {r}, "
                       f"got shape {x.shape}")
    pad = [(0, 0)] * x.ndim
    pad[ax] = (r, r)
    p = jnp.pad(x, pad, mode="reflect")
    n = x.shape[ax]
    x = sum(float(w[k]) * jax.lax.slice_in_dim(p, k, k + n, axis=ax) for k in range(size))
    gain *= math.sqrt(float(np.sum(w ** 2)))
  return x / gain if unit_variance else x


def smoothed_noise(size: int = 3, sigma: float = 3.0, axes=(-4, -3, -2),
                   unit_variance: bool = False) -> NoiseFn:
  """A `noise_fn(key, shape, dtype)` drawing K(ε), ε ~ N(0, I), for the diffusion core."""
  gaussian_weights(size, sigma)   # validates

  def noise_fn(key, shape, dtype=jnp.float32):
    eps = jax.random.normal(key, shape, dtype)
    return smooth(eps, axes, size, sigma, unit_variance)

  return noise_fn
