"""Band-limited (FLASH) geodesic shooting: EPDiff in a finite set of Fourier modes.

Zhang & Fletcher, "Finite-dimensional Lie algebras for fast diffeomorphic image
registration", IPMI 2015 (FLASH): velocities and momenta keep only the Fourier
modes |k_a| ≤ c on every axis (c = `Metric.band_limit`, n = 2c + 1 modes per
axis), and the LaMoD paper's Eqs. 2–3 (see `lamod_jax.epdiff`) are integrated
in that band, on tiny grids whatever the image size:

  dv/dt = −K P[(Dv)ᵀm + Σ_j ∂_j(v_j m)],   m = Lv                 (Eq. 3)
  ∂w/∂t = −v − P[(Dw)v],   w = φ_t⁻¹ − id                         (Eq. 2)

`Band.ad_star` is the bracket of Eq. 3 (the conservative form, epdiff's default
`scheme`), `Band.transport` the map equation of Eq. 2 (FLASH's û recursion).
P is the projection onto the band. The symbols are the full-grid code's, on the
image grid N (not n): D_a = i·sin(2πk_a/N_a) (central difference),
L̂ = (γ + α Σ_a 2(1 − cos 2πk_a/N_a))^s, K̂ = 1/L̂, so as c grows (and exactly for
N ≥ 3c + 1 with a band-limited metric) the band velocities equal
`epdiff.shoot`'s.

Layout: the real cosine/sine basis of the band. Along each axis index 0 is the
constant, 1..c are cos(2πkx/N) and c+1..2c are sin(2πkx/N), k = 1..c; a field
(d, *spatial) becomes real coefficients (d, n, …, n) (channel 0 = x, the last
axis, as everywhere in lamod_jax). Real coefficients are Hermitian symmetric by
construction and have no redundancy, so `jax.grad` needs no complex care;
`to_complex` gives FLASH's centred complex cube (the forward-normalised FFT's
coefficients, norm="forward").

Products are pseudo-spectral truncated products: evaluate both factors on an
M-point grid per axis (`Band.grid`), multiply pointwise, take the band's
Fourier coefficients back (`Band.ungrid`). This equals the exact convolution
truncated to the band iff M ≥ 3c + 1 (the 3/2 rule; default M = 3c + 1), and
aliases below. The transforms are separable dense DFT matrices between the n
band coefficients and M (or N) points per axis: at n ≈ 15 and M ≈ 22 they cost
fewer operations than padded FFTs, carry the 1/M normalisation like
norm="forward" (coefficients do not depend on the grid), and leave no room for
misplaced zero padding.

Maps: φ₁⁻¹ − id is w(1) of the transport equation above. φ₁ − id is the same
equation integrated over the stored band velocities of the time-reversed field
ṽ_s = −v_{1−s}, whose flow at s = 1 is φ₁⁻¹ (so its inverse map is φ₁); RK4
uses the third-order dense output of v at the half steps. Both are synthesised
on the full grid once at the end (`Band.from_band`, plus the identity), so the
only full-grid work of a registration objective is that synthesis, the analysis
of v0 (`Band.to_band`) and the warp.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lamod_jax import epdiff
from lamod_jax import metric as metric_lib
from lamod_jax.metric import Metric

INTEGRATORS = epdiff.INTEGRATORS
_HI = jax.lax.Precision.HIGHEST   # no TF32 / bf16 passes for the DFT matrices


def _frozen(a: np.ndarray) -> np.ndarray:
  a.setflags(write=False)
  return a


@functools.lru_cache(maxsize=256)
def _synthesis(points: int, c: int) -> np.ndarray:
  """(points, n) float64: the basis [1, cos kθ, sin kθ] (k = 1..c) at θ_p = 2πp/points."""
  k = np.arange(1, c + 1)
  ang = 2.0 * np.pi * ((np.arange(points)[:, None] * k[None, :]) % points) / points
  return _frozen(np.concatenate([np.ones((points, 1)), np.cos(ang), np.sin(ang)], axis=1))


@functools.lru_cache(maxsize=256)
def _analysis(points: int, c: int) -> np.ndarray:
  """(n, points) float64: band coefficients from samples at θ_p = 2πp/points.

  The discrete Fourier coefficients (1/points normalisation, norm="forward")
  of the kept modes; exact for trigonometric polynomials whose modes alias
  nothing into the band (degree < points − c).
  """
  scale = np.full(2 * c + 1, 2.0 / points)
  scale[0] = 1.0 / points
  return _frozen(scale[:, None] * _synthesis(points, c).T)


@functools.lru_cache(maxsize=64)
def _to_complex(c: int) -> np.ndarray:
  """(n, n) complex: real basis → centred complex coefficients (index c + k ↔ mode k)."""
  t = np.zeros((2 * c + 1, 2 * c + 1), np.complex128)
  t[c, 0] = 1.0
  for k in range(1, c + 1):
    t[c + k, k] = t[c - k, k] = 0.5
    t[c + k, c + k], t[c - k, c + k] = -0.5j, 0.5j
  return _frozen(t)


def _contract(f: jax.Array, mats) -> jax.Array:
  """Applies mats[a] (out, in) along the a-th of the last len(mats) axes of f."""
  nd = len(mats)
  for a in reversed(range(nd)):
    mat = jnp.asarray(mats[a], f.dtype)
    if a == nd - 1:
      f = jnp.matmul(f, mat.T, precision=_HI)
    elif a == nd - 2:
      f = jnp.matmul(mat, f, precision=_HI)
    else:
      axis = f.ndim - nd + a
      f = jnp.moveaxis(jnp.tensordot(mat, f, axes=(1, axis), precision=_HI), 0, axis)
  return f


@dataclasses.dataclass(frozen=True)
class Band:
  """The Fourier modes |k_a| ≤ limit of the image grid `spatial` (hashable).

  Attributes:
    spatial: the full image grid N, in array-axis order ((H, W) or (D, H, W)).
    limit: c, the highest |k| kept on every axis (n = 2c + 1 modes per axis);
      0 < c < N/2 on every axis.
    eval_size: M, the points per axis of the grid on which products are taken;
      None → 3c + 1, the smallest that is exact (M ≤ 3c aliases; M ≥ 2c + 1).
  Band arrays hold the real cosine/sine coefficients in their last d axes
  (see the module docstring); leading axes (channels, batch) are kept.
  """
  spatial: tuple[int, ...]
  limit: int
  eval_size: int | None = None

  def __post_init__(self):
    spatial = tuple(int(n) for n in self.spatial)
    metric_lib.validate_grid("Band.spatial", spatial)
    c = int(self.limit)
    if c < 1 or any(2 * c >= n for n in spatial):
      raise ValueError(
          f"band_limit={self.limit} must be >= 1 and < N/2 on every axis of the grid "
          f"{spatial} (it keeps n = 2·band_limit + 1 modes per axis)")
    m = 3 * c + 1 if self.eval_size is None else int(self.eval_size)
    if m < 2 * c + 1:
      raise ValueError(f"Band.eval_size={m} must be >= 2·band_limit + 1 = {2 * c + 1}")
    object.__setattr__(self, "spatial", spatial)
    object.__setattr__(self, "limit", c)
    object.__setattr__(self, "eval_size", m)

  @property
  def n(self) -> int:
    """Coefficients per axis, 2c + 1."""
    return 2 * self.limit + 1

  @property
  def d(self) -> int:
    return len(self.spatial)

  @property
  def shape(self) -> tuple[int, ...]:
    """Band array shape of a vector field, (d, n, …, n)."""
    return (self.d,) + (self.n,) * self.d

  # -- Transforms ------------------------------------------------------------------

  def to_band(self, v: jax.Array) -> jax.Array:
    """Band coefficients (…, n, …, n) of a full-grid field (…, *spatial): P v."""
    return _contract(v, [_analysis(n, self.limit) for n in self.spatial])

  def from_band(self, f: jax.Array) -> jax.Array:
    """The field on the full grid (…, *spatial) (zero-padded inverse DFT)."""
    return _contract(f, [_synthesis(n, self.limit) for n in self.spatial])

  def grid(self, f: jax.Array) -> jax.Array:
    """Samples (…, M, …, M) of a band field on the evaluation grid."""
    return _contract(f, [_synthesis(self.eval_size, self.limit)] * self.d)

  def ungrid(self, g: jax.Array) -> jax.Array:
    """Band part (…, n, …, n) of samples on the evaluation grid."""
    return _contract(g, [_analysis(self.eval_size, self.limit)] * self.d)

  def product(self, f: jax.Array, g: jax.Array) -> jax.Array:
    """Truncated product P(f g) of band fields (pseudo-spectral on the M-grid)."""
    return self.ungrid(self.grid(f) * self.grid(g))

  def diff(self, f: jax.Array, j: int) -> jax.Array:
    """∂_j f (direction j, 0 = x = last axis), symbol i·sin(2πk/N): the periodic
    central difference of the full grid, exact on the band."""
    axis = f.ndim - 1 - j
    c = self.limit
    n_full = self.spatial[self.d - 1 - j]
    shape = [1] * f.ndim
    shape[axis] = c
    s = jnp.asarray(np.sin(2.0 * np.pi * np.arange(1, c + 1) / n_full).reshape(shape), f.dtype)
    cos = jax.lax.slice_in_dim(f, 1, c + 1, axis=axis)
    sin = jax.lax.slice_in_dim(f, c + 1, 2 * c + 1, axis=axis)
    zero = jnp.zeros_like(jax.lax.slice_in_dim(f, 0, 1, axis=axis))
    return jnp.concatenate([zero, s * sin, -s * cos], axis=axis)

  def to_complex(self, f: jax.Array) -> jax.Array:
    """FLASH's centred complex cube: [..., c + k_z, c + k_y, c + k_x] = f̂_k,
    the coefficients of np.fft.fftn(field, norm="forward") in the band."""
    t = _to_complex(self.limit)
    return _contract(jnp.asarray(f).astype(jnp.result_type(f, jnp.complex64)), [t] * self.d)

  def from_complex(self, fc: jax.Array) -> jax.Array:
    """Inverse of `to_complex` (the real part of a Hermitian-symmetric cube)."""
    t_inv = np.linalg.inv(_to_complex(self.limit))
    return jnp.real(_contract(jnp.asarray(fc), [t_inv] * self.d))

  # -- Metric ----------------------------------------------------------------------

  def symbols(self, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """(L̂, K̂) on the band (n, …, n), float64: the metric's symbols on the N-grid."""
    return _band_symbols(float(metric.alpha), float(metric.gamma), float(metric.s),
                         self.spatial, self.limit)

  def inner(self, f: jax.Array, g: jax.Array) -> jax.Array:
    """⟨f, g⟩ = Σ over the full grid's pixels (and all leading axes) of f·g."""
    return jnp.sum(_gram(self.spatial, self.limit).astype(f.dtype) * f * g)

  def energy(self, v: jax.Array, metric: Metric) -> jax.Array:
    """⟨Lv, v⟩ (sum over pixels and channels) of a band field v (d, n, …, n)."""
    return self.inner(jnp.asarray(self.symbols(metric)[0], v.dtype) * v, v)

  # -- The equations (each implemented once) --------------------------------------

  def ad_star(self, v: jax.Array, m: jax.Array) -> jax.Array:
    """P ad*_v m = P[(Dv)ᵀm] + Σ_j ∂_j P[v_j m] (Eq. 3, conservative form)."""
    d = self.d
    gv, gm = self.grid(v), self.grid(m)
    gdv = self.grid(jnp.stack([self.diff(v, j) for j in range(d)]))   # [j, i] = ∂_j v_i
    dvt_m = jnp.stack([sum(gdv[i, j] * gm[j] for j in range(d)) for i in range(d)])
    terms = self.ungrid(jnp.concatenate([dvt_m[None], gv[:, None] * gm[None]]))
    return terms[0] + sum(self.diff(terms[1 + j], j) for j in range(d))

  def transport(self, w: jax.Array, v: jax.Array) -> jax.Array:
    """∂w/∂t = −v − P[(Dw)v] for w = φ_t⁻¹ − id of the flow of v (Eq. 2)."""
    d = self.d
    gv = self.grid(v)
    gdw = self.grid(jnp.stack([self.diff(w, j) for j in range(d)]))   # [j, i] = ∂_j w_i
    return -v - self.ungrid(sum(gdw[j] * gv[j] for j in range(d)))


@functools.lru_cache(maxsize=64)
def _band_symbols(alpha: float, gamma: float, s: float, spatial: tuple[int, ...],
                  c: int) -> tuple[np.ndarray, np.ndarray]:
  k = np.concatenate([[0], np.arange(1, c + 1), np.arange(1, c + 1)])
  lam = np.full([1] * len(spatial), gamma)
  for a, n in enumerate(spatial):
    view = [1] * len(spatial)
    view[a] = k.size
    lam = lam + alpha * 2.0 * (1.0 - np.cos(2.0 * np.pi * k / n)).reshape(view)
  l_hat = lam ** s
  return _frozen(l_hat), _frozen(1.0 / l_hat)


@functools.lru_cache(maxsize=64)
def _gram(spatial: tuple[int, ...], c: int) -> np.ndarray:
  """Σ_x of the squared basis functions over the grid: Π_a N_a·[1, ½, …, ½]."""
  out = np.ones([1] * len(spatial))
  for a, n in enumerate(spatial):
    w = np.full(2 * c + 1, n / 2.0)
    w[0] = n
    view = [1] * len(spatial)
    view[a] = w.size
    out = out * w.reshape(view)
  return _frozen(out)


def band_of(metric: Metric, spatial_shape, eval_size: int | None = None) -> Band:
  """The `Band` of `metric.band_limit` on a grid; a clear error when it is unset."""
  if metric.band_limit is None:
    raise ValueError(
        "flash: metric.band_limit is None; band-limited shooting keeps the Fourier modes "
        "|k| <= band_limit on every axis and needs it set (e.g. Metric(band_limit=7): "
        "15 modes per axis)")
  return Band(tuple(int(n) for n in spatial_shape), int(metric.band_limit), eval_size)


def energy(v: jax.Array, metric: Metric, eval_size: int | None = None) -> jax.Array:
  """⟨L Pv, Pv⟩ of a full-grid field v (d, *spatial), P the band projection."""
  band = band_of(metric, v.shape[1:], eval_size)
  return band.energy(band.to_band(v), metric)


# ------------------------------------------------------------------------ shooting


class BandGeodesic(NamedTuple):
  """Result of `shoot_band`, all band arrays (d, n, …, n).

  v: velocities at t = k / n_steps, (n_steps + 1, d, n, …) if `return_all`,
    else v_1.
  u: φ₁ − id (None if not requested).
  w: φ₁⁻¹ − id (None if not requested).
  """
  v: jax.Array
  u: jax.Array | None
  w: jax.Array | None


def _axpy(a, x, y):
  return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def _rk4_step(rhs, y, dt: float, stage_inputs=None):
  """Classical RK4 step of y' = rhs(y, x) as a scan over its four stages (stage i
  gets stage_inputs[i], e.g. the velocity at the stage's time); returns
  (y(t + dt), the third-order dense output y(t + dt/2))."""
  zero = jax.tree.map(jnp.zeros_like, y)
  dtype = jax.tree.leaves(y)[0].dtype

  def stage(carry, xs):
    k_prev, acc, dense = carry
    a, b, c, x = xs
    k = rhs(_axpy(a * dt, k_prev, y), x)
    return (k, _axpy(b, k, acc), _axpy(c, k, dense)), None

  tableau = (epdiff.RK4_A, epdiff.RK4_B, epdiff.RK4_DENSE)
  coefs = tuple(jnp.asarray(t, dtype) for t in tableau)
  (_, acc, dense), _ = jax.lax.scan(stage, (zero, zero, zero), coefs + (stage_inputs,))
  return _axpy(dt, acc, y), _axpy(dt, dense, y)


@functools.partial(jax.jit, static_argnames=(
    "metric", "band", "n_steps", "integrator", "return_all", "compute_phi",
    "compute_phi_inv", "checkpoint"))
def _shoot_band(v0, *, metric, band, n_steps, integrator, return_all, compute_phi,
                compute_phi_inv, checkpoint):
  dt = 1.0 / n_steps
  l_np, k_np = band.symbols(metric)
  l_hat, k_hat = jnp.asarray(l_np, v0.dtype), jnp.asarray(k_np, v0.dtype)
  rk4 = integrator == "rk4"
  keep_v = return_all or compute_phi

  def rhs(y, _):
    v, w = y
    dv = -k_hat * band.ad_star(v, l_hat * v)
    return dv, (None if w is None else band.transport(w, v))

  def step(y, _):
    if rk4:
      new, mid = _rk4_step(rhs, y, dt)
    else:
      new, mid = _axpy(dt, rhs(y, None), y), None
    out = (y[0] if keep_v else None, mid[0] if (rk4 and compute_phi) else None)
    return new, out

  if checkpoint:
    step = jax.checkpoint(step, prevent_cse=False)
  y0 = (v0, jnp.zeros_like(v0) if compute_phi_inv else None)
  (v1, w), (vs, mids) = jax.lax.scan(step, y0, None, length=n_steps)
  v_all = jnp.concatenate([vs, v1[None]]) if keep_v else None

  u = None
  if compute_phi:
    # The reversed field ṽ_s = −v_{1−s}: its flow's inverse map at s = 1 is φ₁.
    rev = -v_all[::-1]                                    # ṽ at s = 0, dt, …, 1
    if rk4:
      xs = jnp.stack([rev[:-1], -mids[::-1], -mids[::-1], rev[1:]], axis=1)
    else:
      xs = rev[:-1]

    def back(u, x):
      if rk4:
        return _rk4_step(lambda y, vt: band.transport(y, vt), u, dt, x)[0], None
      return u + dt * band.transport(u, x), None

    if checkpoint:
      back = jax.checkpoint(back, prevent_cse=False)
    u, _ = jax.lax.scan(back, jnp.zeros_like(v0), xs)
  return BandGeodesic(v=v_all if return_all else v1, u=u, w=w)


def _check_args(v, n_steps: int, integrator: str) -> None:
  metric_lib.check_finite("v0", v)
  if integrator not in INTEGRATORS:
    raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
  if int(n_steps) < 1:
    raise ValueError(f"n_steps must be >= 1, got {n_steps}")


def shoot_band(v0: jax.Array, metric: Metric, band: Band, n_steps: int = 10,
               integrator: str = "rk4", *, return_all: bool = False,
               compute_phi: bool = True, compute_phi_inv: bool = True,
               checkpoint: bool = False) -> BandGeodesic:
  """Geodesic shooting in the band from band coefficients v0 (d, n, …, n).

  The band's limit is used (not `metric.band_limit`); see `shoot` for the rest.
  """
  if tuple(np.shape(v0)) != band.shape:
    raise ValueError(f"v0: expected band coefficients of shape {band.shape}, "
                     f"got {np.shape(v0)}")
  _check_args(v0, n_steps, integrator)
  v0 = jnp.asarray(v0)
  if not jnp.issubdtype(v0.dtype, jnp.floating):
    v0 = v0.astype(jnp.float32)
  return _shoot_band(v0, metric=metric, band=band, n_steps=int(n_steps),
                     integrator=integrator, return_all=bool(return_all),
                     compute_phi=bool(compute_phi), compute_phi_inv=bool(compute_phi_inv),
                     checkpoint=bool(checkpoint))


@functools.partial(jax.jit, static_argnames=(
    "metric", "band", "n_steps", "integrator", "return_all", "compute_phi",
    "compute_phi_inv", "checkpoint"))
def _shoot(v0, *, metric, band, n_steps, integrator, return_all, compute_phi,
           compute_phi_inv, checkpoint):
  geo = _shoot_band(band.to_band(v0), metric=metric, band=band, n_steps=n_steps,
                    integrator=integrator, return_all=return_all, compute_phi=compute_phi,
                    compute_phi_inv=compute_phi_inv, checkpoint=checkpoint)
  ident = epdiff.identity_grid(band.spatial, v0.dtype)
  return epdiff.Geodesic(
      v=band.from_band(geo.v),
      phi=None if geo.u is None else ident + band.from_band(geo.u),
      phi_inv=None if geo.w is None else ident + band.from_band(geo.w))


def shoot(v0: jax.Array, metric: Metric, n_steps: int = 10, integrator: str = "rk4", *,
          return_all: bool = False, compute_phi: bool = True, compute_phi_inv: bool = True,
          checkpoint: bool = False, eval_size: int | None = None) -> epdiff.Geodesic:
  """Band-limited geodesic shooting (Eqs. 2–3) with full-grid input and output.

  Args:
    v0: (2, H, W) or (3, D, H, W) initial velocity in pixels (channel 0 = x);
      projected onto the band |k_a| ≤ metric.band_limit first.
    metric: the operator L; `band_limit` (c < N/2 on every axis) is required.
    n_steps: time steps over t ∈ [0, 1].
    integrator: "euler" or "rk4".
    return_all: v at all n_steps + 1 times instead of v_1 only.
    compute_phi / compute_phi_inv: φ₁ and / or φ₁⁻¹ as positions.
    checkpoint: rematerialise each step under `jax.grad`.
    eval_size: M, points per axis for the products (None: 3c + 1, exact).
  Returns:
    an `epdiff.Geodesic` of full-grid fields (velocities band-limited). Works
    under jit, vmap and grad, in 2D and 3D.
  """
  metric_lib.validate_field("v0", v0)
  _check_args(v0, n_steps, integrator)
  band = band_of(metric, np.shape(v0)[1:], eval_size)
  v0 = jnp.asarray(v0)
  if not jnp.issubdtype(v0.dtype, jnp.floating):
    v0 = v0.astype(jnp.float32)
  return _shoot(v0, metric=metric, band=band, n_steps=int(n_steps), integrator=integrator,
                return_all=bool(return_all), compute_phi=bool(compute_phi),
                compute_phi_inv=bool(compute_phi_inv), checkpoint=bool(checkpoint))
