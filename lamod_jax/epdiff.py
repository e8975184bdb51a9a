"""Eulerian EPDiff geodesic shooting (the paper's Eqs. 2 and 3) in JAX.

  dv/dt = −K[(Dv)ᵀm + (Dm)v + m div v],   m = Lv        (Eq. 3)
  dφ_t/dt = v_t ∘ φ_t                                   (Eq. 2)

with periodic central differences and the metric of `lamod_jax.metric`,
integrated over t ∈ [0, 1] with `n_steps` Euler or classical RK4 steps in a
`lax.scan`. m = Lv is applied as the finite-difference stencil whose Fourier
symbol defines L (identical to the FFT form for integer s), so each right-hand
side costs one real FFT pair (for K) per channel. Two discretisations of the
bracket (`scheme`): "conservative" (default; (Dm)v + m div v written as the flux
Σ_j ∂_j(v_j m), which makes ad*_v the exact transpose of ad_v, so the energy
⟨Lv, v⟩ is conserved up to the time-stepping error and rough momenta stay
stable; fused stencils with a hand-written VJP) and "advective" (the three
terms as written, as the reference re-implementation; energy error floor
≈ 2e-5 / 2e-4 at 1 / 3 px on 128², and it blows up for rough momenta).

Conventions (see `lamod_jax.metric`): fields are (d, H, W) or (d, D, H, W),
channel 0 = x = column index (last axis), 1 = y = row index, 2 = z (3D);
unit pixel spacing; v in pixels per unit time. Transformations are returned as
*positions*: φ(x) = x + u(x), shape (d, *spatial), same channel order
(`identity_grid` is the identity); displacements are periodic.

  * φ₁: the Lagrangian ODE du/dt = v_t(x + u), integrated jointly with v by the
    same scheme (RK4 on the coupled system) with bilinear / trilinear
    interpolation of v_t (periodic).
  * φ₁⁻¹, `inverse_method="transport"` (default): the inverse displacement
    w = φ_t⁻¹ − id obeys ∂w/∂t = −v − (Dw)v; integrated jointly with v with
    central differences. No interpolation, so it is cheap to differentiate, and
    its error does not grow with the number of steps; RK4 needs
    dt·max|v| ≲ 2.8 px per step for stability.
  * φ₁⁻¹, `inverse_method="semi_lagrangian"`: φ⁻¹_{t+dt}(x) = φ⁻¹_t(X) with X the
    departure point of the characteristic through x, found with bilinear
    interpolation (Euler: X = x − dt v_t(x), as lagomorph; RK4: a backward RK4
    step through v_{t+dt}, the RK4 dense output at t + dt/2 and v_t).
    Unconditionally stable, but each step smooths φ⁻¹ by one interpolation.

The warped source is S∘φ₁⁻¹ (`warp`, clamped borders by default).
"""
from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lamod_jax import metric as metric_lib
from lamod_jax.metric import Metric

INTEGRATORS = ("euler", "rk4")
INVERSE_METHODS = ("transport", "semi_lagrangian")
ADSTAR_FORMS = ("conservative", "advective")
BOUNDARIES = ("wrap", "border")


class Geodesic(NamedTuple):
  """Result of `shoot`.

  v: (n_steps + 1, d, *spatial) velocities at t = k / n_steps if
    `return_all`, else v_1 with shape (d, *spatial).
  phi: φ₁ as positions (d, *spatial), or None if not requested.
  phi_inv: φ₁⁻¹ as positions (d, *spatial), or None if not requested.
  """
  v: jax.Array
  phi: jax.Array | None
  phi_inv: jax.Array | None


@functools.lru_cache(maxsize=64)
def _identity_np(shape: tuple[int, ...]) -> np.ndarray:
  grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
  return np.stack([grids[len(shape) - 1 - c] for c in range(len(shape))])


def identity_grid(spatial_shape, dtype=jnp.float32) -> jax.Array:
  """Identity positions (d, *spatial): channel 0 = column index x, 1 = row index y."""
  return jnp.asarray(_identity_np(tuple(int(n) for n in spatial_shape)), dtype=dtype)


def central_diff(f: jax.Array, c: int) -> jax.Array:
  """Periodic central difference of `f` (…, *spatial) along direction c (0 = x)."""
  axis = f.ndim - 1 - c
  return 0.5 * (jnp.roll(f, -1, axis) - jnp.roll(f, 1, axis))


def ad_star(v: jax.Array, m: jax.Array, form: str = "conservative",
            diff=central_diff) -> jax.Array:
  """ad*_v m = (Dv)ᵀm + (Dm)v + m div v, the bracket of Eq. 3 (Dv_ij = ∂_j v_i).

  form="advective" discretises the three terms as written, each with central
  differences (the reference implementation's scheme). form="conservative"
  writes the last two as one flux, (Dm)v + m div v = Σ_j ∂_j(v_j m), so that
  ad*_v is exactly the discrete transpose of ad_v w = (Dv)w − (Dw)v. Then
  ⟨v, ad*_v m⟩ = ⟨ad_v v, m⟩ = 0 and the energy ⟨Lv, v⟩ is conserved by the
  semi-discrete flow, which keeps rough momenta (e.g. from mask edges) stable.
  """
  if form not in ADSTAR_FORMS:
    raise ValueError(f"ad_star form must be one of {ADSTAR_FORMS}, got {form!r}")
  d = v.shape[0]
  dv = [diff(v, j) for j in range(d)]   # dv[j][i] = ∂_j v_i
  out = []
  if form == "conservative":
    flux = sum(diff(v[j] * m, j) for j in range(d))   # flux[i] = Σ_j ∂_j(v_j m_i)
    for i in range(d):
      out.append(sum(dv[i][j] * m[j] for j in range(d)) + flux[i])
    return jnp.stack(out)
  dm = [diff(m, j) for j in range(d)]   # dm[j][i] = ∂_j m_i
  div = sum(dv[j][j] for j in range(d))
  for i in range(d):
    term = sum(dv[i][j] * m[j] for j in range(d))         # ((Dv)ᵀ m)_i
    term = term + sum(dm[j][i] * v[j] for j in range(d))  # ((Dm) v)_i
    out.append(term + m[i] * div)
  return jnp.stack(out)


def interpolate(f: jax.Array, pos: jax.Array, boundary: str = "wrap") -> jax.Array:
  """Bilinear (2D) / trilinear (3D) samples of `f` at positions `pos`.

  Args:
    f: (..., *spatial) array; the last d axes are the grid.
    pos: (d, *out_spatial) positions in pixels, channel 0 = x (column).
    boundary: "wrap" (periodic, for displacements and velocities) or "border"
      (clamp to the edge value, lagomorph's clamp; used for images).
  Returns:
    (..., *out_spatial) samples.
  """
  if boundary not in BOUNDARIES:
    raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
  d = pos.shape[0]
  spatial = f.shape[-d:]
  flat = f.reshape(f.shape[:-d] + (-1,))
  strides = [int(np.prod(spatial[a + 1:])) for a in range(d)]
  idx, wts = [], []
  for a in range(d):
    n = spatial[a]
    p = pos[d - 1 - a].astype(f.dtype)
    if boundary == "border":
      p = jnp.clip(p, 0.0, n - 1.0)
    p0 = jnp.floor(p)
    t = p - p0
    i0 = p0.astype(jnp.int32)
    if boundary == "wrap":
      i0 = jnp.mod(i0, n)
      i1 = jnp.where(i0 == n - 1, 0, i0 + 1)
    else:
      i1 = jnp.minimum(i0 + 1, n - 1)
    idx.append((i0 * strides[a], i1 * strides[a]))
    wts.append((1.0 - t, t))
  out = None
  for corner in itertools.product((0, 1), repeat=d):
    lin = sum(idx[a][corner[a]] for a in range(d))
    w = functools.reduce(lambda x, y: x * y, [wts[a][corner[a]] for a in range(d)])
    term = w * jnp.take(flat, lin, axis=-1, mode="clip")
    out = term if out is None else out + term
  return out


def warp(image: jax.Array, phi: jax.Array, boundary: str = "border") -> jax.Array:
  """S∘φ: samples `image` (..., *spatial) at the positions φ (d, *spatial).

  With φ = φ₁⁻¹ from `shoot` this is the deformed source S∘φ₁⁻¹ of Eq. 1.
  Leading image axes (channels) are kept.
  """
  d = phi.shape[0]
  if image.ndim < d or image.shape[-d:] != phi.shape[1:]:
    raise ValueError(
        f"image: spatial shape {image.shape[-d:]} does not match phi grid {phi.shape[1:]}")
  return interpolate(image, phi, boundary)


def laplacian(f: jax.Array, n_spatial: int) -> jax.Array:
  """Periodic 5-point (2D) / 7-point (3D) Laplacian over the last n_spatial axes."""
  out = -2.0 * n_spatial * f
  for axis in range(f.ndim - n_spatial, f.ndim):
    out = out + jnp.roll(f, 1, axis) + jnp.roll(f, -1, axis)
  return out


def apply_l(v: jax.Array, metric: Metric, l_hat) -> jax.Array:
  """m = L v; a stencil when s is an integer (identical to the Fourier symbol)."""
  nsp = v.shape[0]
  s = float(metric.s)
  if s == int(s) and 1 <= s <= 4:
    m = v
    for _ in range(int(s)):
      m = metric.gamma * m - metric.alpha * laplacian(m, nsp)
    return m
  return metric_lib.apply_symbol(v, l_hat, nsp)


# ------------------------------------------------------------------------------
# Fused periodic stencils. The operator r = ad*_v(Lv) (conservative form) is
# written with one periodic padding per field and static windows into it, so
# XLA fuses it into a few loops, and it has a hand-written VJP built from the
# exact discrete identities  ⟨ad*_v m, g⟩ = ⟨m, ad_v g⟩ = −⟨ad*_g m, v⟩  (with
# ad_v g = (Dv)g − (Dg)v), which hold because ∂ᵀ = −∂ for periodic central
# differences and L is self-adjoint:  v̄ = L(ad_v ḡ) − ad*_ḡ(Lv).


def _wrap_pad(x: jax.Array, r: int, nsp: int) -> jax.Array:
  """Periodic padding by r on each side of the last nsp axes."""
  return jnp.pad(x, [(0, 0)] * (x.ndim - nsp) + [(r, r)] * nsp, mode="wrap")


def _window(p: jax.Array, halo: int, shift, out_halo: int, nsp: int) -> jax.Array:
  """Window of a field padded by `halo`, shifted by `shift` (one int per array
  axis), keeping a halo of `out_halo` around the original grid."""
  lead = p.ndim - nsp
  start = [0] * lead + [halo - out_halo + s for s in shift]
  stop = list(p.shape[:lead]) + [p.shape[lead + a] - halo + out_halo + shift[a]
                                 for a in range(nsp)]
  return jax.lax.slice(p, start, stop)


def _step(nsp: int, c: int, k: int) -> tuple[int, ...]:
  """Shift by k along direction c (0 = x = last array axis)."""
  shift = [0] * nsp
  shift[nsp - 1 - c] = k
  return tuple(shift)


def _cdiff(p: jax.Array, halo: int, c: int, out_halo: int, nsp: int) -> jax.Array:
  """Central difference along direction c of a padded field (halo ≥ out_halo + 1)."""
  return 0.5 * (_window(p, halo, _step(nsp, c, 1), out_halo, nsp)
                - _window(p, halo, _step(nsp, c, -1), out_halo, nsp))


@functools.lru_cache(maxsize=16)
def _l_taps(alpha: float, gamma: float, s: int, nsp: int):
  """Non-zero taps (shift, weight) of the stencil (γ − αΔ)^s, Δ the 2d+1-point Laplacian."""
  base = np.zeros((3,) * nsp)
  centre = (1,) * nsp
  base[centre] = gamma + 2.0 * nsp * alpha
  for a in range(nsp):
    for k in (0, 2):
      idx = list(centre)
      idx[a] = k
      base[tuple(idx)] = -alpha
  kernel = np.ones((1,) * nsp)
  for _ in range(s):
    out = np.zeros(tuple(n + 2 for n in kernel.shape))
    for idx in itertools.product(*[range(n) for n in kernel.shape]):
      sl = tuple(slice(i, i + 3) for i in idx)
      out[sl] += kernel[idx] * base
    kernel = out
  return tuple((tuple(int(i) - s for i in idx), float(kernel[idx]))
               for idx in zip(*np.nonzero(kernel)))


def _stencil_power(metric: Metric) -> int | None:
  s = float(metric.s)
  return int(s) if s == int(s) and 1 <= s <= 4 else None


def _l_with_halo(v: jax.Array, metric: Metric, halo: int) -> jax.Array:
  """m = Lv on the grid plus a periodic halo of `halo` cells."""
  nsp = v.shape[0]
  s = _stencil_power(metric)
  if s is None:
    l_hat = metric.symbols(v.shape[1:])[0]
    return _wrap_pad(metric_lib.apply_symbol(v, l_hat, nsp), halo, nsp)
  r = s + halo
  p = _wrap_pad(v, r, nsp)
  taps = _l_taps(float(metric.alpha), float(metric.gamma), s, nsp)
  return sum(w * _window(p, r, shift, halo, nsp) for shift, w in taps)


def _adstar_padded(a_p: jax.Array, a_halo: int, m1: jax.Array, nsp: int) -> jax.Array:
  """ad*_a m = (Da)ᵀm + Σ_j ∂_j(a_j m) from a padded a (halo ≥ 1) and m (halo 1)."""
  mc = _window(m1, 1, (0,) * nsp, 0, nsp)
  a1 = _window(a_p, a_halo, (0,) * nsp, 1, nsp)
  flux = sum(_cdiff(a1[j] * m1, 1, j, 0, nsp) for j in range(nsp))
  out = [sum(_cdiff(a_p[j], a_halo, i, 0, nsp) * mc[j] for j in range(nsp))
         for i in range(nsp)]
  return jnp.stack(out) + flux


def _ad_padded(v_p: jax.Array, g_p: jax.Array, nsp: int) -> jax.Array:
  """ad_v g = (Dv)g − (Dg)v from v and g padded by 1."""
  zero = (0,) * nsp
  vc, gc = _window(v_p, 1, zero, 0, nsp), _window(g_p, 1, zero, 0, nsp)
  out = vc * 0.0
  for j in range(nsp):
    out = out + _cdiff(v_p, 1, j, 0, nsp) * gc[j] - _cdiff(g_p, 1, j, 0, nsp) * vc[j]
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def fused_adstar_l(v: jax.Array, metric: Metric) -> jax.Array:
  """ad*_v(Lv) in the conservative form (equal to `ad_star(v, L v)`), fused."""
  nsp = v.shape[0]
  return _adstar_padded(_wrap_pad(v, 1, nsp), 1, _l_with_halo(v, metric, 1), nsp)


def _fused_fwd(v, metric):
  return fused_adstar_l(v, metric), v


def _fused_bwd(metric, v, g):
  nsp = v.shape[0]
  v_p, g_p = _wrap_pad(v, 1, nsp), _wrap_pad(g, 1, nsp)
  m1 = _l_with_halo(v, metric, 1)
  l_ad = _l_with_halo(_ad_padded(v_p, g_p, nsp), metric, 0)
  return (l_ad - _adstar_padded(g_p, 1, m1, nsp),)


fused_adstar_l.defvjp(_fused_fwd, _fused_bwd)


@jax.custom_vjp
def inverse_transport(w: jax.Array, v: jax.Array) -> jax.Array:
  """∂w/∂t = −v − (Dw)v for the inverse displacement w = φ_t⁻¹ − id (fused)."""
  nsp = v.shape[0]
  w_p = _wrap_pad(w, 1, nsp)
  return -v - sum(_cdiff(w_p, 1, j, 0, nsp) * v[j] for j in range(nsp))


def _transport_fwd(w, v):
  return inverse_transport(w, v), (w, v)


def _transport_bwd(res, g):
  # w̄ = Σ_j ∂_j(v_j ḡ) (∂ᵀ = −∂);  v̄_j = −ḡ_j − Σ_i ḡ_i ∂_j w_i.
  w, v = res
  nsp = v.shape[0]
  w_p = _wrap_pad(w, 1, nsp)
  vg_p = _wrap_pad(v[:, None] * g[None], 1, nsp)   # [j, i] = v_j ḡ_i
  w_bar = sum(_cdiff(vg_p[j], 1, j, 0, nsp) for j in range(nsp))
  v_bar = jnp.stack([-g[j] - jnp.sum(g * _cdiff(w_p, 1, j, 0, nsp), axis=0)
                     for j in range(nsp)])
  return w_bar, v_bar


inverse_transport.defvjp(_transport_fwd, _transport_bwd)


# Classical RK4 as a loop over stages (one compiled right-hand side): stage i
# evaluates k_i at y + A[i]·dt·k_{i−1}; the step adds dt·Σ B[i] k_i. DENSE[i] are
# the weights of the third-order dense output at θ = 1/2.
RK4_A = (0.0, 0.5, 0.5, 1.0)
RK4_B = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)
RK4_DENSE = (5.0 / 24.0, 1.0 / 6.0, 1.0 / 6.0, -1.0 / 24.0)


def _make_step(metric: Metric, spatial: tuple[int, ...], dtype, dt: float,
               integrator: str, want_phi: bool, want_inv: bool, emit_v: bool,
               inverse_method: str, scheme: str):
  """Builds the scan body for one time step of the coupled (v, u, w) system.

  v is the velocity, u = φ_t − id and w = φ_t⁻¹ − id (None when not wanted).
  """
  nsp = len(spatial)
  l_np, k_np = metric.symbols(spatial)
  ident = identity_grid(spatial, jnp.dtype(dtype))
  transport = want_inv and inverse_method == "transport"

  def rhs(y):
    """Time derivative of the coupled state y = (v, u, w)."""
    v, u, w = y
    if scheme == "conservative":
      r = fused_adstar_l(v, metric)
    else:
      r = ad_star(v, apply_l(v, metric, l_np), scheme)
    dv = -metric_lib.apply_symbol(r, k_np, nsp)
    du = interpolate(v, ident + u, "wrap") if want_phi else None
    dw = None
    if transport:   # ∂w/∂t = −v − (Dw) v
      dw = inverse_transport(w, v)
    return dv, du, dw

  def axpy(a, x, y):
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)

  def active(y):  # the part of the state advanced by the ODE solver
    return (y[0], y[1], y[2] if transport else None)

  def semi_lagrangian(w, v):
    step = -dt * v  # lagomorph's update: φ⁻¹_{t+dt}(x) = φ⁻¹_t(x − dt v_t(x))
    return step + interpolate(w, ident + step, "wrap")

  def euler(y):
    new = axpy(dt, rhs(active(y)), active(y))
    if want_inv and not transport:
      new = (new[0], new[1], semi_lagrangian(y[2], y[0]))
    return new

  def rk4(y):
    y0 = active(y)
    zero = jax.tree.map(jnp.zeros_like, y0)

    def stage(carry, coef):
      k_prev, acc, dense = carry
      a, b, c = coef
      k = rhs(axpy(a * dt, k_prev, y0))
      return (k, axpy(b, k, acc), dense + c * k[0]), None

    coefs = tuple(jnp.asarray(x, dtype) for x in (RK4_A, RK4_B, RK4_DENSE))
    (_, acc, dense), _ = jax.lax.scan(stage, (zero, zero, zero[0]), coefs)
    new = axpy(dt, acc, y0)
    if want_inv and not transport:
      # Backward RK4 for the departure point through v_{t+dt}, v_{t+dt/2}, v_t.
      v, v_new = y[0], new[0]
      v_mid = v + dt * dense
      b2 = interpolate(v_mid, ident - (0.5 * dt) * v_new, "wrap")
      b3 = interpolate(v_mid, ident - (0.5 * dt) * b2, "wrap")
      b4 = interpolate(v, ident - dt * b3, "wrap")
      step = (-dt / 6.0) * (v_new + 2.0 * b2 + 2.0 * b3 + b4)
      new = (new[0], new[1], step + interpolate(y[2], ident + step, "wrap"))
    return new

  one = euler if integrator == "euler" else rk4

  def body(y, _):
    return one(y), (y[0] if emit_v else None)

  return body


@functools.partial(jax.jit, static_argnames=(
    "metric", "n_steps", "integrator", "return_all", "compute_phi",
    "compute_phi_inv", "checkpoint", "inverse_method", "scheme"))
def _shoot(v0, *, metric, n_steps, integrator, return_all, compute_phi,
           compute_phi_inv, checkpoint, inverse_method, scheme):
  spatial = tuple(v0.shape[1:])
  dtype = v0.dtype
  body = _make_step(metric, spatial, dtype, 1.0 / n_steps, integrator,
                    compute_phi, compute_phi_inv, return_all, inverse_method, scheme)
  if checkpoint:
    body = jax.checkpoint(body, prevent_cse=False)
  zeros = jnp.zeros_like(v0)
  carry0 = (metric.project(v0), zeros if compute_phi else None,
            zeros if compute_phi_inv else None)
  (v1, u, w), vs = jax.lax.scan(body, carry0, None, length=n_steps)
  ident = identity_grid(spatial, dtype)
  v_out = jnp.concatenate([vs, v1[None]]) if return_all else v1
  return Geodesic(v=v_out,
                  phi=None if u is None else ident + u,
                  phi_inv=None if w is None else ident + w)


def shoot(v0: jax.Array, metric: Metric = Metric(), n_steps: int = 10,
          integrator: str = "rk4", *, return_all: bool = False,
          compute_phi: bool = True, compute_phi_inv: bool = True,
          inverse_method: str = "transport", scheme: str = "conservative",
          checkpoint: bool = False) -> Geodesic:
  """Geodesic shooting from the initial velocity v0 (Eqs. 2–3).

  Args:
    v0: (2, H, W) or (3, D, H, W) initial velocity in pixels (channel 0 = x).
      With a band-limited metric it is first projected onto the kept modes.
    metric: the operator L (and K = L⁻¹).
    n_steps: number of time steps over t ∈ [0, 1] (dt = 1 / n_steps).
    integrator: "euler" or "rk4".
    return_all: return v at all n_steps + 1 times instead of v_1 only.
    compute_phi / compute_phi_inv: integrate φ₁ and/or φ₁⁻¹ (positions).
    inverse_method: "transport" (default; Eulerian transport of φ⁻¹ with
      central differences, no interpolation) or "semi_lagrangian" (bilinear
      interpolation along backward characteristics). See the module docstring.
    scheme: discretisation of ad*, "conservative" (default; conserves the
      energy exactly up to the time-stepping error, stable for rough momenta)
      or "advective" (the three terms of Eq. 3 as written, as the reference
      re-implementation; its energy has a spatial error floor and it blows up
      for rough momenta at a few pixels). See `ad_star`.
    checkpoint: rematerialise each step under `jax.grad` (memory O(1) in steps).
  Returns:
    a `Geodesic`. Works under jit, vmap and grad (NaN checks then skipped);
    for a batch use `jax.vmap(functools.partial(shoot, ...))(v0s)`.
  """
  metric_lib.validate_field("v0", v0)
  metric_lib.check_finite("v0", v0)
  if integrator not in INTEGRATORS:
    raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
  if inverse_method not in INVERSE_METHODS:
    raise ValueError(
        f"inverse_method must be one of {INVERSE_METHODS}, got {inverse_method!r}")
  if scheme not in ADSTAR_FORMS:
    raise ValueError(f"scheme must be one of {ADSTAR_FORMS}, got {scheme!r}")
  if int(n_steps) < 1:
    raise ValueError(f"n_steps must be >= 1, got {n_steps}")
  v0 = jnp.asarray(v0)
  if not jnp.issubdtype(v0.dtype, jnp.floating):
    v0 = v0.astype(jnp.float32)
  metric.symbols(v0.shape[1:])  # validates band_limit against the grid
  return _shoot(v0, metric=metric, n_steps=int(n_steps), integrator=integrator,
                return_all=bool(return_all), compute_phi=bool(compute_phi),
                compute_phi_inv=bool(compute_phi_inv), checkpoint=bool(checkpoint),
                inverse_method=inverse_method, scheme=scheme)


def displacement(phi: jax.Array) -> jax.Array:
  """u = φ − id for positions φ (d, *spatial)."""
  return phi - identity_grid(phi.shape[1:], phi.dtype)


def positions(u: jax.Array) -> jax.Array:
  """φ = id + u for a displacement u (d, *spatial)."""
  return u + identity_grid(u.shape[1:], u.dtype)
