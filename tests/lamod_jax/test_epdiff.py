"""Tests for lamod_jax.metric, .epdiff, .lagomorph and .diagnostics.

Reference numbers come from a numpy float64 re-implementation of the same
shooting (kept outside the repository): 128², α = 2, γ = 1, s = 2, v0 = (g, 0.5 g) with g
a unit-peak Gaussian of σ = 12 px ("1 px"), and ×3 for "3 px".
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from lamod_jax import diagnostics
from lamod_jax import epdiff
from lamod_jax import lagomorph
from lamod_jax.metric import Metric


def gaussian_v0(n=128, amp=1.0, sigma=12.0):
  y, x = np.mgrid[:n, :n].astype(np.float64)
  g = np.exp(-((x - n / 2) ** 2 + (y - n / 2) ** 2) / (2 * sigma ** 2))
  return amp * np.stack([g, 0.5 * g])


def numpy_fluid_l(v, alpha, gamma, s):
  """(γ − αΔ)^s with the periodic 5/7-point Laplacian, brute force in numpy."""
  out = np.array(v, dtype=np.float64)
  for _ in range(s):
    lap = -2 * (out.ndim - 1) * out
    for axis in range(1, out.ndim):
      lap = lap + np.roll(out, 1, axis) + np.roll(out, -1, axis)
    out = gamma * out - alpha * lap
  return out


# ----------------------------------------------------------------- metric


@pytest.mark.parametrize("shape", [(2, 24, 40), (3, 8, 12, 10)])
def test_metric_matches_stencil_self_adjoint_and_inverts(x64, shape):
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=shape), rng.normal(size=shape)
  m = Metric(alpha=2.0, gamma=1.0, s=2)
  la = np.asarray(m.flat(jnp.asarray(a)))
  np.testing.assert_allclose(la, numpy_fluid_l(a, 2.0, 1.0, 2), atol=1e-10)
  ka, kb = np.asarray(m.sharp(jnp.asarray(a))), np.asarray(m.sharp(jnp.asarray(b)))
  assert abs(np.sum(ka * b) - np.sum(a * kb)) < 1e-10
  assert np.max(np.abs(np.asarray(m.flat(m.sharp(jnp.asarray(a)))) - a)) < 1e-12
  assert np.max(np.abs(np.asarray(m.sharp(jnp.asarray(la))) - a)) < 1e-12
  # The stencil form of L used inside the integrator equals the FFT form.
  lm = np.asarray(epdiff.apply_l(jnp.asarray(a), m, None))
  np.testing.assert_allclose(lm, la, atol=1e-10)


def test_metric_symbol_extremes():
  l_hat, _ = Metric(alpha=2.0, gamma=1.0, s=2).symbols((128, 128))
  assert l_hat[0, 0] == pytest.approx(1.0)
  assert l_hat.max() == pytest.approx(289.0)


def test_band_limited_metric(x64):
  rng = np.random.default_rng(1)
  m = Metric(band_limit=4)
  a, b = rng.normal(size=(2, 32, 32)), rng.normal(size=(2, 32, 32))
  ka = np.asarray(m.sharp(jnp.asarray(a)))
  spec = np.abs(np.fft.fft2(ka))
  k = np.abs(np.fft.fftfreq(32) * 32)
  outside = (k[:, None] > 4) | (k[None, :] > 4)
  assert spec[:, outside].max() < 1e-10 * spec.max()
  kb = np.asarray(m.sharp(jnp.asarray(b)))
  assert abs(np.sum(ka * b) - np.sum(a * kb)) < 1e-10
  pa = m.project(jnp.asarray(a))  # K L = identity on band-limited fields only
  np.testing.assert_allclose(np.asarray(m.sharp(m.flat(pa))), np.asarray(pa), atol=1e-12)


@pytest.mark.parametrize("shape,metric", [
    ((2, 12, 16), Metric()), ((2, 12, 16), Metric(alpha=0.5, gamma=2.0, s=1)),
    ((3, 6, 8, 10), Metric(s=1.5))])
def test_fused_operators_match_reference_and_autodiff(x64, shape, metric):
  """The fused ad*_v(Lv) / inverse transport and their hand-written VJPs."""
  rng = np.random.default_rng(5)
  v, w, g = (jnp.asarray(rng.normal(size=shape)) for _ in range(3))

  def ref(v):
    return epdiff.ad_star(v, metric.flat(v), "conservative")

  def t_ref(w, v):
    return -v - sum(epdiff.central_diff(w, j) * v[j] for j in range(shape[0]))

  @jax.jit
  def compare(v, w, g):
    fused = functools.partial(epdiff.fused_adstar_l, metric=metric)
    out = {"fwd": (fused(v), ref(v)),
           "vjp": (jax.vjp(fused, v)[1](g)[0], jax.vjp(ref, v)[1](g)[0]),
           "t_fwd": (epdiff.inverse_transport(w, v), t_ref(w, v))}
    for k, (a, b) in enumerate(zip(jax.vjp(epdiff.inverse_transport, w, v)[1](g),
                                   jax.vjp(t_ref, w, v)[1](g))):
      out[f"t_vjp{k}"] = (a, b)
    out["vdot"] = (jnp.sum(v * fused(v)), jnp.sum(jnp.abs(fused(v))))
    return out

  out = compare(v, w, g)
  for key in ("fwd", "vjp", "t_fwd", "t_vjp0", "t_vjp1"):
    np.testing.assert_allclose(np.asarray(out[key][0]), np.asarray(out[key][1]),
                               atol=1e-11, err_msg=key)
  # ⟨v, ad*_v m⟩ = 0 exactly for the conservative form (energy conservation).
  assert abs(float(out["vdot"][0])) < 1e-12 * float(out["vdot"][1])


# ------------------------------------------------------------ interpolation


def test_interpolate_matches_scipy_wrap_and_border(x64):
  rng = np.random.default_rng(2)
  f = rng.normal(size=(12, 16))
  pos = np.stack([rng.uniform(-5, 21, size=(12, 16)), rng.uniform(-5, 17, size=(12, 16))])
  coords = np.stack([pos[1], pos[0]])  # scipy wants (row, col)
  ref_wrap = scipy.ndimage.map_coordinates(f, coords, order=1, mode="grid-wrap")
  got = epdiff.interpolate(jnp.asarray(f), jnp.asarray(pos), "wrap")
  np.testing.assert_allclose(np.asarray(got), ref_wrap, atol=1e-12)
  ref_border = scipy.ndimage.map_coordinates(f, coords, order=1, mode="nearest")
  got = epdiff.interpolate(jnp.asarray(f), jnp.asarray(pos), "border")
  np.testing.assert_allclose(np.asarray(got), ref_border, atol=1e-12)


# ---------------------------------------------------------------- shooting

# Small non-square grid shared by several tests so that they reuse one compile.
SMALL = (24, 32)


def small_v0(amp=2.0, sigma=4.0):
  y, x = np.mgrid[:SMALL[0], :SMALL[1]].astype(np.float64)
  g = np.exp(-((x - 15.0) ** 2 + (y - 11.0) ** 2) / (2 * sigma ** 2))
  return amp * np.stack([g, -0.7 * g])


# Reference drift (max_t |E_t − E_0| / E_0) at 128², 10 steps.
DRIFT_REF = {("euler", 1.0): 1.06e-3, ("euler", 3.0): 1.02e-2,
             ("rk4", 1.0): 1.7e-5, ("rk4", 3.0): 1.7e-4}


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
def test_energy_drift_consistency_and_trivial_geodesics(x64, integrator):
  m = Metric()
  run = functools.partial(epdiff.shoot, metric=m, n_steps=10, integrator=integrator,
                          return_all=True)
  for amp in (1.0, 3.0):
    v0 = jnp.asarray(gaussian_v0(amp=amp))
    ref = DRIFT_REF[(integrator, amp)]
    # The reference's scheme (advective ad*) reproduces its numbers ...
    adv = run(v0, scheme="advective", compute_phi=False, compute_phi_inv=False)
    drift = float(diagnostics.energy_drift(diagnostics.geodesic_energy(adv.v, m)))
    assert 0.8 * ref < drift < 1.25 * ref, (integrator, amp, drift)
    # ... the default conservative scheme has only the time-stepping error left.
    geo = run(v0)
    assert geo.v.shape == (11, 2, 128, 128)
    drift = float(diagnostics.energy_drift(diagnostics.geodesic_energy(geo.v, m)))
    if integrator == "euler":
      assert 0.8 * ref < drift < 1.25 * ref, (integrator, amp, drift)
    else:
      assert drift < 1e-3 * ref, (integrator, amp, drift)
    np.testing.assert_allclose(np.asarray(geo.v), np.asarray(adv.v), atol=2e-3 * amp)
    ux = np.abs(np.asarray(epdiff.displacement(geo.phi))[0]).max()
    assert 0.985 * amp < ux < 1.005 * amp   # reference: 1.00 px / 2.96–3.00 px
    # φ (Lagrangian, interpolated) and φ⁻¹ (transport) come from different schemes.
    for a, b in ((geo.phi, geo.phi_inv), (geo.phi_inv, geo.phi)):
      err = diagnostics.inverse_consistency(a, b)
      tol = 0.01 * amp if integrator == "rk4" else 0.03 * amp
      assert float(err["max"]) < tol, (integrator, amp, err)
  # v0 = 0 and a constant v0 are preserved exactly (same compiled function).
  ident = np.asarray(epdiff.identity_grid((128, 128), jnp.float64))
  geo = run(jnp.zeros((2, 128, 128)))
  assert np.max(np.abs(np.asarray(geo.v))) == 0.0
  assert np.max(np.abs(np.asarray(geo.phi) - ident)) == 0.0
  assert np.max(np.abs(np.asarray(geo.phi_inv) - ident)) == 0.0
  c = np.array([0.7, -0.3]).reshape(2, 1, 1)
  geo = run(jnp.asarray(np.broadcast_to(c, (2, 128, 128))))
  assert np.max(np.abs(np.asarray(geo.v) - c)) < 1e-12
  assert np.max(np.abs(np.asarray(geo.phi) - ident - c)) < 1e-12
  assert np.max(np.abs(np.asarray(geo.phi_inv) - ident + c)) < 1e-12


def test_conservative_scheme_stable_for_rough_momentum(x64):
  """m0 = white noise (v0 = K m0, max 3 px): the advective scheme blows up."""
  m = Metric()
  v0 = m.sharp(jnp.asarray(np.random.default_rng(4).normal(size=(2,) + SMALL)))
  v0 = 3.0 * v0 / jnp.abs(v0).max()
  cons = epdiff.shoot(v0, m, 10)
  assert float(jnp.abs(cons.v).max()) < 2.0 * 3.0
  e0, e1 = float(m.energy(v0)), float(m.energy(cons.v))
  assert abs(e1 - e0) < 1e-4 * e0
  adv = epdiff.shoot(v0, m, 10, scheme="advective", compute_phi=False,
                     compute_phi_inv=False)
  assert not float(jnp.abs(adv.v).max()) < 3.0 * 3.0   # grows (or is NaN)


def test_rk4_fourth_order_in_time(x64):
  v0 = jnp.asarray(gaussian_v0(n=32, amp=2.0, sigma=4.0))
  run = functools.partial(epdiff.shoot, v0, Metric(), integrator="rk4",
                          compute_phi=False, compute_phi_inv=False)
  v4, v8, v16 = (np.asarray(run(n_steps=n).v) for n in (4, 8, 16))
  # Richardson: |v_n − v_2n| / |v_2n − v_4n| = 2^p for a p-th order scheme.
  order = np.log2(np.abs(v4 - v8).max() / np.abs(v8 - v16).max())
  assert 3.7 < order < 4.3, order


def test_semi_lagrangian_inverse_agrees_with_transport(x64):
  v0 = jnp.asarray(small_v0(amp=1.5, sigma=5.0))
  sl = epdiff.shoot(v0, n_steps=10, inverse_method="semi_lagrangian")
  tr = epdiff.shoot(v0, n_steps=10)
  # Different schemes, the same map up to their spatial errors (0.017 / 0.024 px
  # here, measured as ‖φ_ref∘φ⁻¹ − id‖ against a 100-step φ; they differ by 0.033).
  diff = np.abs(np.asarray(sl.phi_inv) - np.asarray(tr.phi_inv)).max()
  assert 1e-3 < diff < 0.05
  assert float(diagnostics.inverse_consistency(sl.phi, sl.phi_inv)["max"]) < 0.05
  assert float(diagnostics.inverse_consistency(sl.phi, tr.phi_inv)["max"]) < 0.05


def test_vmap_equals_loop_and_float32_matches_float64():
  v0s = jnp.asarray(np.stack([small_v0(a) for a in (0.5, 2.0, -1.5)]), jnp.float32)
  run = functools.partial(epdiff.shoot, metric=Metric(), n_steps=10, integrator="rk4")
  batched = jax.vmap(run)(v0s)
  for i in range(v0s.shape[0]):
    single = run(v0s[i])
    for a, b in zip(batched, single):
      np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), atol=1e-5)
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    single64 = run(jnp.asarray(small_v0(2.0)))
    assert single64.v.dtype == jnp.float64
  finally:
    jax.config.update("jax_enable_x64", old)
  single32 = run(v0s[1])
  assert single32.v.dtype == jnp.float32
  rel = np.abs(np.asarray(single32.v) - np.asarray(single64.v)).max() / 2.0
  assert rel < 1e-5
  for a, b in ((single32.phi, single64.phi), (single32.phi_inv, single64.phi_inv)):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-4


def test_2d_equals_replicated_3d(x64):
  v2 = small_v0(amp=1.5)
  v3 = np.zeros((3, 4) + SMALL)
  v3[:2] = v2[:, None]          # channels x, y; no motion along z
  g2 = epdiff.shoot(jnp.asarray(v2), n_steps=10)
  g3 = epdiff.shoot(jnp.asarray(v3), n_steps=10)
  for a2, a3 in ((g2.v, g3.v), (g2.phi, g3.phi), (g2.phi_inv, g3.phi_inv)):
    a3 = np.asarray(a3)
    for z in range(4):
      np.testing.assert_allclose(a3[:2, z], np.asarray(a2), atol=1e-12)
  z_ident = np.broadcast_to(np.arange(4.0)[:, None, None], (4,) + SMALL)
  np.testing.assert_allclose(np.asarray(g3.phi)[2], z_ident, atol=1e-12)
  np.testing.assert_allclose(np.asarray(g3.phi_inv)[2], z_ident, atol=1e-12)


# --------------------------------------------------------------- lagomorph


def test_lagomorph_form_gap_matches_reference(x64):
  """Relative max error of v at t = 0.9 against converged Eulerian EPDiff."""
  m = lagomorph.fluid_metric()
  expected = {(1.0, "lagomorph"): 3.8e-2, (1.0, "transpose_det"): 1.3e-3,
              (3.0, "lagomorph"): 1.3e-1, (3.0, "transpose_det"): 2.4e-2}
  for amp in (1.0, 3.0):
    v0 = jnp.asarray(gaussian_v0(amp=amp))
    # 40 RK4 steps are converged in time here (the error is ~1e-7 of v).
    ref = np.asarray(epdiff.shoot(v0, m, 40, "rk4", return_all=True, compute_phi=False,
                                  compute_phi_inv=False).v[36])
    for kind in ("lagomorph", "transpose_det"):
      geo = lagomorph.shoot_v0(v0, m, 10, coadjoint_kind=kind)
      assert geo.v.shape == (10, 2, 128, 128)
      err = np.abs(np.asarray(geo.v[-1]) - ref).max() / np.abs(ref).max()
      want = expected[(amp, kind)]
      assert 0.85 * want < err < 1.15 * want, (amp, kind, err)


def test_lagomorph_zero_and_layout(x64):
  geo = lagomorph.expmap(jnp.zeros((2, 128, 128)), n_steps=10)  # compiled above
  ident = np.asarray(epdiff.identity_grid((128, 128), jnp.float64))
  assert np.abs(np.asarray(geo.phi_inv) - ident).max() == 0.0
  assert np.abs(np.asarray(geo.phi) - ident).max() == 0.0
  assert np.abs(np.asarray(geo.v)).max() == 0.0
  u = np.random.default_rng(3).normal(size=(2, 16, 20))
  lago = np.asarray(lagomorph.to_lagomorph_layout(jnp.asarray(u)))
  np.testing.assert_array_equal(lago[0], u[1])   # lagomorph channel 0 = rows (y)
  np.testing.assert_array_equal(np.asarray(lagomorph.from_lagomorph_layout(lago)), u)


# ------------------------------------------------------------- diagnostics


def test_jacobian_determinant_affine_and_folding(x64):
  ident = np.asarray(epdiff.identity_grid((20, 24), jnp.float64))
  a = np.array([[0.2, -0.1], [0.3, -0.4]])          # u = A x, det(I + A) closed form
  phi = ident + np.einsum("ij,j...->i...", a, ident)
  det = np.asarray(diagnostics.jacobian_determinant(jnp.asarray(phi)))
  np.testing.assert_allclose(det, np.linalg.det(np.eye(2) + a), atol=1e-12)
  s = diagnostics.jacobian_summary(jnp.asarray(phi))
  assert float(s["frac_nonpositive"]) == 0.0
  fold = ident.copy()
  fold[0, :, 10:] = 2 * 10 - ident[0, :, 10:]          # mirror x ≥ 10: det = −1 there
  s = diagnostics.jacobian_summary(jnp.asarray(fold))
  assert float(s["min"]) < 0.0
  assert 0.5 < float(s["frac_nonpositive"]) < 0.65


# --------------------------------------------------------------- bad input


def test_bad_input_raises_naming_argument():
  good = np.zeros((2, 16, 16), np.float32)
  with pytest.raises(ValueError, match="v0"):
    epdiff.shoot(np.zeros((16, 16), np.float32))
  with pytest.raises(ValueError, match="v0"):
    epdiff.shoot(np.zeros((3, 16, 16), np.float32))      # 3 channels on a 2-D grid
  with pytest.raises(ValueError, match="v0"):
    epdiff.shoot(np.zeros((2, 2, 16), np.float32))       # axis too small for the FFT
  bad = good.copy()
  bad[0, 3, 4] = np.nan
  with pytest.raises(ValueError, match="v0.*NaN"):
    epdiff.shoot(bad)
  with pytest.raises(ValueError, match="band_limit"):
    epdiff.shoot(good, Metric(band_limit=8))             # 2·8 ≥ 16: nothing to cut
  with pytest.raises(ValueError, match="integrator"):
    epdiff.shoot(good, integrator="rk45")
  with pytest.raises(ValueError, match="Metric"):
    Metric(alpha=-1.0)
  with pytest.raises(ValueError, match="image"):
    epdiff.warp(jnp.zeros((16, 15)), jnp.asarray(good))
  with pytest.raises(ValueError, match="m0.*NaN"):
    lagomorph.expmap(bad)
  with pytest.raises(ValueError, match="phi_inv"):
    diagnostics.inverse_consistency(jnp.asarray(good), jnp.zeros((2, 8, 8)))
