"""Fluid metric L = (γ − αΔ)^s and its inverse K = L⁻¹ on a periodic grid.

The operator of the paper's Eq. 3: L maps a velocity v to its momentum m = Lv,
K = L⁻¹ maps a momentum back to a velocity. Both are diagonal in Fourier space,
with the symbol of the discrete (5-point in 2D, 7-point in 3D) periodic Laplacian:

  λ(k) = γ + α Σ_a 2(1 − cos(2π k_a / N_a)),   L̂(k) = λ(k)^s,   K̂ = 1 / L̂.

`s = 2` (the default) is lagomorph's `FluidMetric([α, 0, γ])`, which squares the
symbol; α = 2, γ = 1 are LaMoD's registration defaults (L̂(0) = 1, max L̂ = 289
on 128²). `band_limit` gives a FLASH-style band-limited K that keeps only the
Fourier modes with |k_a| ≤ band_limit on every axis.

Conventions shared by all of lamod_jax:
  * A vector field has shape (d, H, W) in 2D or (d, D, H, W) in 3D, channel first.
    Channel 0 is x (the column / width index, last array axis), channel 1 is y
    (the row / height index), channel 2 is z (the slice / depth index, 3D only):
    channel c lives along array axis ``ndim - 1 - c``.
  * Unit grid spacing: a velocity of 1 moves a point by one pixel per unit time,
    and a geodesic runs over t ∈ [0, 1], so v0 is "pixels per shooting interval".
  * Boundaries are periodic for the metric and for the finite differences.
  * Inner products are plain sums over pixels and channels: ⟨a, b⟩ = Σ a·b.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

MIN_SIZE = 4  # smallest grid axis: central differences and K need a few modes.


def spatial_axes(n_spatial: int) -> tuple[int, ...]:
  """The last `n_spatial` axes (negative indices), where fields keep space."""
  return tuple(range(-n_spatial, 0))


def validate_field(name: str, v, n_spatial: int | None = None) -> None:
  """Raises ValueError unless `v` is a (d, *spatial) field with d = 2 or 3.

  Only static properties are checked, so it is safe inside jit and vmap.
  """
  shape = tuple(np.shape(v))
  if len(shape) not in (3, 4):
    raise ValueError(
        f"{name}: expected a vector field of shape (2, H, W) or (3, D, H, W), "
        f"got shape {shape}")
  d = len(shape) - 1
  if shape[0] != d:
    raise ValueError(
        f"{name}: a {d}-D field needs {d} channels first (channel 0 = x), "
        f"got shape {shape}")
  if n_spatial is not None and d != n_spatial:
    raise ValueError(f"{name}: expected a {n_spatial}-D field, got shape {shape}")
  validate_grid(name, shape[1:])


def validate_grid(name: str, spatial_shape) -> None:
  """Raises ValueError for grids the periodic FFT metric cannot serve."""
  spatial_shape = tuple(spatial_shape)
  if len(spatial_shape) not in (2, 3):
    raise ValueError(f"{name}: only 2-D and 3-D grids are supported, got {spatial_shape}")
  if any(int(n) < MIN_SIZE for n in spatial_shape):
    raise ValueError(
        f"{name}: every grid axis needs at least {MIN_SIZE} points, got {spatial_shape}")


def check_finite(name: str, x) -> None:
  """Raises ValueError if a concrete array holds NaN or inf.

  Traced values (inside jit/vmap/grad) cannot be inspected and are let through:
  call the public API on concrete arrays to get the check.
  """
  try:
    arr = np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  if not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
  if not np.all(np.isfinite(arr)):
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    raise ValueError(f"{name}: contains {bad} NaN/inf value(s)")


@functools.lru_cache(maxsize=64)
def _symbols(alpha: float, gamma: float, s: float, band_limit: int | None,
             shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  """(L̂, K̂) in float64 on the rfftn grid of `shape` (last axis halved)."""
  lam = np.full([1] * len(shape), gamma, dtype=np.float64)
  mask = np.ones([1] * len(shape), dtype=bool)
  for a, n in enumerate(shape):
    last = a == len(shape) - 1
    k = np.fft.rfftfreq(n) * n if last else np.fft.fftfreq(n) * n
    view = [1] * len(shape)
    view[a] = k.size
    k = k.reshape(view)
    lam = lam + alpha * 2.0 * (1.0 - np.cos(2.0 * np.pi * k / n))
    if band_limit is not None:
      mask = mask & (np.abs(np.round(k)) <= band_limit)
  l_hat = lam ** s
  k_hat = np.where(mask, 1.0 / l_hat, 0.0)
  return l_hat, k_hat


def apply_symbol(x: jax.Array, symbol: np.ndarray, n_spatial: int) -> jax.Array:
  """Multiplies the rfftn of `x` over its last `n_spatial` axes by `symbol`."""
  axes = spatial_axes(n_spatial)
  xh = jnp.fft.rfftn(x, axes=axes)
  sym = jnp.asarray(symbol, dtype=jnp.real(xh).dtype)
  return jnp.fft.irfftn(xh * sym, s=x.shape[-n_spatial:], axes=axes).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class Metric:
  """L = (γ − αΔ)^s with periodic boundaries; hashable, so usable as a static arg.

  Attributes:
    alpha: weight of the discrete Laplacian (smoothness), > 0.
    gamma: weight of the identity, > 0 (keeps L invertible).
    s: power of the operator (2 = lagomorph / LaMoD, 1 = FLASH / PyCA).
    band_limit: None for the full operator, or the highest |k| kept on every
      axis (FLASH's truncX = 16 corresponds to band_limit = 8). L stays the full
      operator and K = P L⁻¹ with P the projection onto the kept modes, so
      K L v = v holds for band-limited v only.
  """
  alpha: float = 2.0
  gamma: float = 1.0
  s: float = 2.0
  band_limit: int | None = None

  def __post_init__(self):
    if not (self.alpha > 0 and self.gamma > 0 and self.s > 0):
      raise ValueError(
          f"Metric: alpha, gamma and s must be > 0, got alpha={self.alpha}, "
          f"gamma={self.gamma}, s={self.s}")
    if self.band_limit is not None and int(self.band_limit) < 1:
      raise ValueError(f"Metric: band_limit must be >= 1 or None, got {self.band_limit}")

  def symbols(self, spatial_shape) -> tuple[np.ndarray, np.ndarray]:
    """(L̂, K̂) as float64 numpy arrays on the rfftn grid of `spatial_shape`."""
    spatial_shape = tuple(int(n) for n in spatial_shape)
    validate_grid("Metric grid", spatial_shape)
    if self.band_limit is not None and any(
        2 * self.band_limit >= n for n in spatial_shape):
      raise ValueError(
          f"Metric.band_limit={self.band_limit} keeps every mode of grid "
          f"{spatial_shape}: it must be < N/2 on every axis")
    return _symbols(float(self.alpha), float(self.gamma), float(self.s),
                    None if self.band_limit is None else int(self.band_limit),
                    spatial_shape)

  def flat(self, v: jax.Array) -> jax.Array:
    """m = L v for a field (d, *spatial) (lagomorph's `flat`)."""
    validate_field("v", v)
    return apply_symbol(v, self.symbols(v.shape[1:])[0], v.ndim - 1)

  def sharp(self, m: jax.Array) -> jax.Array:
    """v = K m = L⁻¹ m for a field (d, *spatial) (lagomorph's `sharp`)."""
    validate_field("m", m)
    return apply_symbol(m, self.symbols(m.shape[1:])[1], m.ndim - 1)

  def sqrt_sharp(self, z: jax.Array) -> jax.Array:
    """K^{1/2} z: whitening map, ⟨L K^{1/2} z, K^{1/2} z⟩ = ‖P z‖²."""
    validate_field("z", z)
    return apply_symbol(z, np.sqrt(self.symbols(z.shape[1:])[1]), z.ndim - 1)

  def project(self, v: jax.Array) -> jax.Array:
    """Band-limit projection (identity for the full metric)."""
    if self.band_limit is None:
      return v
    validate_field("v", v)
    mask = (self.symbols(v.shape[1:])[1] > 0).astype(np.float64)
    return apply_symbol(v, mask, v.ndim - 1)

  def energy(self, v: jax.Array) -> jax.Array:
    """⟨Lv, v⟩ = Σ m·v (sum over pixels and channels)."""
    return jnp.sum(self.flat(v) * v)
