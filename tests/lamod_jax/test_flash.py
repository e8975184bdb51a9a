"""Tests for lamod_jax.flash (band-limited FLASH shooting) and registration's form="flash".

References: full-grid `epdiff.shoot` (with the full metric, and with a band-limited
metric, where the velocities must agree to rounding for N ≥ 3c + 1), numpy FFTs and a
brute-force direct convolution of complex Fourier coefficients, exact trigonometric
evaluation of the band maps, and central finite differences.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamod_jax import epdiff
from lamod_jax import flash
from lamod_jax import registration
from lamod_jax.metric import Metric


def band_field(spatial, c0, amp, seed=0, d=None):
  """A smooth random field (d, *spatial) with modes |k| ≤ c0 only, max |v| = amp."""
  d = len(spatial) if d is None else d
  band = flash.Band(tuple(spatial), c0)
  rng = np.random.default_rng(seed)
  k = np.concatenate([[0], np.arange(1, c0 + 1), np.arange(1, c0 + 1)])
  damp = np.exp(-0.1 * sum(np.meshgrid(*[k ** 2] * len(spatial), indexing="ij")))
  coef = rng.normal(size=(d,) + (band.n,) * len(spatial)) * damp
  v = np.asarray(band.from_band(jnp.asarray(coef)))
  return amp * v / np.abs(v).max()


def rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def centred_fft(field, c):
  """FFT coefficients (norm="forward") of the band |k| ≤ c, centred: index c + k."""
  f = np.fft.fftn(np.asarray(field), axes=tuple(range(-field.ndim, 0)), norm="forward")
  idx = np.r_[np.arange(-c, 0), np.arange(0, c + 1)]      # modes −c..c as numpy indices
  return f[np.ix_(*[idx] * field.ndim)]


def direct_convolution(a, b, c):
  """Brute force Σ_{p+q=k} a_p b_q for |k_i|, |p_i|, |q_i| ≤ c (centred arrays)."""
  nd = a.ndim
  out = np.zeros_like(a)
  for p in itertools.product(range(-c, c + 1), repeat=nd):
    for q in itertools.product(range(-c, c + 1), repeat=nd):
      k = tuple(pi + qi for pi, qi in zip(p, q))
      if all(abs(ki) <= c for ki in k):
        out[tuple(ki + c for ki in k)] += a[tuple(pi + c for pi in p)] * b[
            tuple(qi + c for qi in q)]
  return out


def trig_eval(coef, band, pos):
  """Exact value of band coefficients (d, n, n) at positions pos (2, P) (x, y)."""
  c = band.limit
  k = np.arange(1, c + 1)

  def basis(p, n):
    ang = 2.0 * np.pi * np.outer(p, k) / n
    return np.concatenate([np.ones((p.size, 1)), np.cos(ang), np.sin(ang)], axis=1)

  by, bx = basis(pos[1], band.spatial[0]), basis(pos[0], band.spatial[1])
  return np.einsum("cyx,py,px->cp", np.asarray(coef), by, bx)


# --------------------------------------------------------------------------- (a)


def test_band_shooting_converges_to_full_grid(x64):
  """v0 with modes |k| ≤ 4 on 64², 2 px: c = 4, 8, 16 approach full-grid EPDiff."""
  n = 64
  v0 = jnp.asarray(band_field((n, n), 4, 2.0))
  ident = epdiff.identity_grid((n, n), jnp.float64)
  full = epdiff.shoot(v0, Metric(), 10, "rk4", compute_phi=False)
  errs_v, errs_w = [], []
  for c in (4, 8, 16):
    geo = flash.shoot(v0, Metric(band_limit=c), 10, "rk4", compute_phi=False)
    errs_v.append(rel(geo.v, full.v))
    errs_w.append(rel(geo.phi_inv - ident, full.phi_inv - ident))
  # measured: v 8.7e-2, 6.3e-3, 4.0e-5; φ₁⁻¹ − id 7.1e-2, 6.3e-3, 7.3e-5
  assert errs_v[0] > 2e-2 and errs_w[0] > 2e-2, (errs_v, errs_w)   # the test can fail
  assert errs_v[0] > 5 * errs_v[1] > 25 * errs_v[2], errs_v
  assert errs_w[0] > 5 * errs_w[1] > 25 * errs_w[2], errs_w
  assert errs_v[2] < 2e-4 and errs_w[2] < 3e-4, (errs_v, errs_w)
  # With the same band-limited metric the full grid (N = 64 ≥ 3c + 1) computes the same
  # truncated products: the velocities agree to rounding, at every step.
  m = Metric(band_limit=8)
  geo = flash.shoot(v0, m, 10, "rk4", return_all=True, compute_phi=False,
                    compute_phi_inv=False)
  ref = epdiff.shoot(v0, m, 10, "rk4", return_all=True, compute_phi=False,
                     compute_phi_inv=False)
  assert geo.v.shape == (11, 2, n, n)
  assert rel(geo.v, ref.v) < 1e-12


# --------------------------------------------------------------------------- (b)


@pytest.mark.parametrize("spatial,c", [((16, 16), 3), ((8, 8, 10), 2)])
def test_truncated_product_is_direct_convolution(x64, spatial, c):
  rng = np.random.default_rng(1)
  exact = flash.Band(spatial, c)
  assert exact.eval_size == 3 * c + 1
  f, g = (jnp.asarray(rng.normal(size=(exact.n,) * len(spatial))) for _ in range(2))
  fc, gc = (centred_fft(exact.from_band(x), c) for x in (f, g))
  np.testing.assert_allclose(np.asarray(exact.to_complex(f)), fc, atol=1e-13)
  np.testing.assert_allclose(np.asarray(exact.from_complex(fc)), np.asarray(f), atol=1e-13)
  ref = direct_convolution(fc, gc, c)
  scale = np.abs(ref).max()
  # measured max error / max |ref|: ≈ 7e-16 at M = 3c + 1 and 3c + 4; 0.49–0.51 at
  # M = 3c, 1.1–1.2 at M = n
  for m in (3 * c + 1, 3 * c + 4):
    band = flash.Band(spatial, c, m)
    got = np.asarray(band.to_complex(band.product(f, g)))
    assert np.abs(got - ref).max() < 1e-12 * scale, m
  for m in (3 * c, 2 * c + 1):    # 3c folds mode 2c onto −c; n = 2c + 1 aliases more
    band = flash.Band(spatial, c, m)
    got = np.asarray(band.to_complex(band.product(f, g)))
    assert np.abs(got - ref).max() > 1e-2 * scale, m


def test_band_operators_match_full_grid(x64):
  """to_band = FFT truncation, diff = central difference, energy = ⟨Lv, v⟩, and
  ad* / transport = the full-grid operators projected (N = 32 ≥ 3c + 1)."""
  n, c = 32, 6
  band = flash.Band((n, n), c)
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, n, n))
  k = np.fft.fftfreq(n) * n
  mask = (np.abs(k)[:, None] <= c) & (np.abs(k)[None, :] <= c)
  proj = np.real(np.fft.ifft2(np.fft.fft2(x) * mask))
  np.testing.assert_allclose(np.asarray(band.from_band(band.to_band(jnp.asarray(x)))), proj,
                             atol=1e-12)
  v, w = (band.to_band(jnp.asarray(rng.normal(size=(2, n, n)))) for _ in range(2))
  vf, wf = band.from_band(v), band.from_band(w)
  for j in range(2):
    np.testing.assert_allclose(np.asarray(band.from_band(band.diff(v, j))),
                               np.asarray(epdiff.central_diff(vf, j)), atol=1e-12)
  metric = Metric(alpha=2.0, gamma=1.0, s=2)
  np.testing.assert_allclose(float(band.energy(v, metric)), float(metric.energy(vf)),
                             rtol=1e-12)
  l_hat = jnp.asarray(band.symbols(metric)[0])
  ref = band.to_band(epdiff.ad_star(vf, metric.flat(vf)))
  np.testing.assert_allclose(np.asarray(band.ad_star(v, l_hat * v)), np.asarray(ref),
                             atol=1e-10 * float(jnp.abs(ref).max()))
  ref = band.to_band(epdiff.inverse_transport(wf, vf))
  np.testing.assert_allclose(np.asarray(band.transport(w, v)), np.asarray(ref), atol=1e-12)


# --------------------------------------------------------------------------- (c)


def test_energy_conserved_along_rk4_geodesic(x64):
  n, metric = 64, Metric(band_limit=8)
  band = flash.band_of(metric, (n, n))
  v0 = band.to_band(jnp.asarray(band_field((n, n), 8, 3.0, seed=3)))
  drift = {}
  for integrator in ("rk4", "euler"):
    vs = flash.shoot_band(v0, metric, band, 10, integrator, return_all=True,
                          compute_phi=False, compute_phi_inv=False).v
    e = np.array([float(band.energy(v, metric)) for v in vs])
    drift[integrator] = np.abs(e - e[0]).max() / e[0]
  # measured: rk4 8.3e-8, euler 1.3e-2 (only the time stepping breaks conservation)
  assert drift["rk4"] < 1e-6 and drift["euler"] > 1e3 * drift["rk4"], drift


# --------------------------------------------------------------------------- (d)


@pytest.mark.parametrize("integrator", ["rk4", "euler"])
def test_flash_objective_grad_matches_finite_differences(x64, integrator):
  n = 32
  cfg = registration.RegistrationConfig(form="flash", metric=Metric(band_limit=5),
                                        integrator=integrator, n_steps=6, sigma=0.2)
  y, x = np.mgrid[:n, :n].astype(np.float64)
  blob = lambda cx, cy, s: np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))  # noqa: E731
  source, target = jnp.asarray(blob(15.0, 16.0, 4.0)), jnp.asarray(blob(17.0, 15.0, 4.5))
  rng = np.random.default_rng(0)
  smooth = Metric(alpha=2.0, gamma=1.0, s=1)
  v0 = 3.0 * smooth.sharp(jnp.asarray(rng.normal(size=(2, n, n))))
  h = smooth.sharp(jnp.asarray(rng.normal(size=(2, n, n))))
  energy = jax.jit(lambda v: registration.objective(v, source, target, cfg))
  grad = jax.jit(jax.grad(energy))(v0)
  eps = 1e-5
  fd = (float(energy(v0 + eps * h)) - float(energy(v0 - eps * h))) / (2 * eps)
  an = float(jnp.sum(grad * h))
  assert abs(an) > 1e-3
  assert abs(fd - an) < 1e-6 * abs(an) + 1e-9, (fd, an)
  # Only the band is shot and regularised: the gradient is band-limited.
  band = flash.band_of(cfg.metric, (n, n))
  np.testing.assert_allclose(np.asarray(band.from_band(band.to_band(grad))),
                             np.asarray(grad), atol=1e-10 * float(jnp.abs(grad).max()))


def test_register_flash_recovers_a_shot_deformation():
  """register (Adam on whitened v0, autodiff through the band shooting) with form="flash"."""
  n = 32
  y, x = np.mgrid[:n, :n].astype(np.float64)
  r = np.hypot(x - n / 2 + 0.5, y - n / 2 + 0.5)
  source = ((r >= 5.0) & (r <= 9.0)).astype(np.float32)
  cfg = registration.RegistrationConfig(form="flash", metric=Metric(band_limit=6),
                                        integrator="euler", n_steps=5, n_iter=40)
  true_v0 = jnp.asarray(band_field((n, n), 3, 2.0, seed=8), jnp.float32)
  target = (np.asarray(epdiff.warp(jnp.asarray(source),
                                   registration.end_maps(true_v0, cfg)[0])) > 0.5)
  res = registration.register(source, target.astype(np.float32), cfg)
  ssd0 = np.sum((source - target) ** 2)
  ssd1 = np.sum((np.asarray(res.warped) - target) ** 2)
  assert ssd1 < 0.1 * ssd0, (ssd0, ssd1)          # measured: 51 → 0.84
  assert float(res.loss[-1]) < 0.1 * float(res.loss[0])   # measured: 2.8e4 → 1.2e3
  np.testing.assert_allclose(float(res.regularity + res.data), float(res.loss[-1]), rtol=1e-5)
  # the optimum is band-limited (the whitening K^{1/2} of the band-limited metric)
  band = flash.band_of(cfg.metric, (n, n))
  np.testing.assert_allclose(np.asarray(band.from_band(band.to_band(res.v0))),
                             np.asarray(res.v0), atol=1e-5)


# --------------------------------------------------------------------------- (e)


def test_phi_composes_with_phi_inv(x64):
  """φ₁ (transport backwards over the stored band velocities) inverts φ₁⁻¹."""
  n, c = 64, 16
  metric = Metric(band_limit=c)
  band = flash.band_of(metric, (n, n))
  v0 = jnp.asarray(band_field((n, n), 4, 2.0))
  errs, geos = {}, {}
  ident = np.asarray(epdiff.identity_grid((n, n), jnp.float64)).reshape(2, -1)
  for integrator in ("rk4", "euler"):
    geo = geos[integrator] = flash.shoot_band(band.to_band(v0), metric, band, 10, integrator)
    w = np.asarray(band.from_band(geo.w)).reshape(2, -1)
    u = np.asarray(band.from_band(geo.u)).reshape(2, -1)
    assert np.abs(u).max() > 1.5                      # the maps move ~2 px
    # φ₁(φ₁⁻¹(x)) = φ₁⁻¹(x) + u(φ₁⁻¹(x)), u evaluated exactly from its band coefficients
    fwd = np.abs(w + trig_eval(geo.u, band, ident + w)).max()
    bwd = np.abs(u + trig_eval(geo.w, band, ident + u)).max()
    errs[integrator] = (fwd, bwd)
  # measured (px): rk4 (6.9e-3, 8.8e-3), the same at 20 or 40 steps and at c = 24: the
  # O(h²) floor of the central-difference symbol D = i·sin(2πk/N) that both maps are
  # transported with (with i·2πk/N it falls to 2e-5 at c = 24); euler (0.124, 0.136).
  assert max(errs["rk4"]) < 1.5e-2, errs
  assert min(errs["euler"]) > 8 * max(errs["rk4"]), errs
  # RK4 order in time for both maps (φ₁ uses the dense output at the half steps).
  fine = flash.shoot_band(band.to_band(v0), metric, band, 40, "rk4")
  for name in ("u", "w"):
    diff = float(jnp.abs(getattr(fine, name) - getattr(geos["rk4"], name)).max())
    assert diff < 1e-6, (name, diff)    # measured: u 7.8e-8, w 1.4e-7 (Euler: 5.8e-3)
  # shoot's full-grid maps are the band maps synthesised plus the identity.
  full = flash.shoot(v0, metric, 10, "rk4")
  for got, coef in ((full.phi, geos["rk4"].u), (full.phi_inv, geos["rk4"].w)):
    np.testing.assert_allclose(np.asarray(got).reshape(2, -1),
                               ident + np.asarray(band.from_band(coef)).reshape(2, -1),
                               atol=1e-12)


# --------------------------------------------------------------------------- (f)


def test_3d_matches_full_grid_and_replicated_2d(x64):
  n = 16
  metric = Metric(band_limit=3)
  v2 = band_field((n, n), 2, 1.5, seed=4)
  v3 = np.concatenate([np.broadcast_to(v2[:, None], (2, 8, n, n)),
                       np.zeros((1, 8, n, n))])
  geo3 = flash.shoot(jnp.asarray(v3), metric, 5, "rk4")
  geo2 = flash.shoot(jnp.asarray(v2), metric, 5, "rk4")
  assert geo3.phi.shape == (3, 8, n, n)
  for a3, a2 in ((geo3.v, geo2.v), (geo3.phi, geo2.phi), (geo3.phi_inv, geo2.phi_inv)):
    np.testing.assert_allclose(np.asarray(a3[:2, 3]), np.asarray(a2), atol=1e-12)
  np.testing.assert_allclose(np.asarray(geo3.v[2]), 0.0, atol=1e-12)
  # A genuinely 3-D field: the band velocities equal full-grid EPDiff with the same
  # band-limited metric (16 ≥ 3c + 1).
  v0 = jnp.asarray(band_field((12, n, n), 3, 1.5, seed=5))
  got = flash.shoot(v0, metric, 5, "rk4", compute_phi=False, compute_phi_inv=False)
  ref = epdiff.shoot(v0, metric, 5, "rk4", compute_phi=False, compute_phi_inv=False)
  assert rel(got.v, ref.v) < 1e-12


def test_jit_vmap_float32():
  """vmap equals a loop; float32 matches float64."""
  n, metric = 32, Metric(band_limit=5)
  v0s = np.stack([band_field((n, n), 3, 2.0, seed=s) for s in (6, 7)]).astype(np.float32)
  run = functools.partial(flash.shoot, metric=metric, n_steps=5, integrator="rk4")
  batched = jax.jit(jax.vmap(run))(jnp.asarray(v0s))
  for i in range(2):
    single = run(jnp.asarray(v0s[i]))
    for a, b in zip(batched, single):
      np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), atol=1e-5)
  assert batched.phi_inv.dtype == jnp.float32
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    ref = run(jnp.asarray(v0s[0], jnp.float64))
    assert ref.phi_inv.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(batched.phi_inv[0]), np.asarray(ref.phi_inv),
                               atol=2e-4)
  finally:
    jax.config.update("jax_enable_x64", old)


# --------------------------------------------------------------------------- (g)


def test_missing_or_too_large_band_limit_raises():
  v0 = jnp.zeros((2, 32, 32))
  with pytest.raises(ValueError, match="band_limit is None"):
    flash.shoot(v0, Metric(), 2)
  with pytest.raises(ValueError, match="band_limit=16 must be .* < N/2"):
    flash.shoot(v0, Metric(band_limit=16), 2)
  with pytest.raises(ValueError, match=r"band_limit=5 .* \(20, 8\)"):
    flash.shoot(jnp.zeros((2, 20, 8)), Metric(band_limit=5), 2)
  with pytest.raises(ValueError, match="form='flash' needs metric.band_limit"):
    registration.RegistrationConfig(form="flash")
  cfg = registration.RegistrationConfig(form="flash", metric=Metric(band_limit=16))
  with pytest.raises(ValueError, match="band_limit"):
    registration.objective(v0, v0[0], v0[0], cfg)
  with pytest.raises(ValueError, match="eval_size"):
    flash.Band((32, 32), 5, eval_size=10)
  band = flash.Band((32, 32), 5)
  with pytest.raises(ValueError, match="v0: expected band coefficients"):
    flash.shoot_band(v0, Metric(), band, 2)


def test_task_config_switch_reaches_the_registration():
  """config.registration.form='flash' with band_limit gives the LaMoD task a flash
  RegistrationConfig (its l_reg then shoots in the band); bad values name the field."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import lamod_dense  # pylint: disable=g-import-not-at-top
  from lamod_jax import task as task_lib  # pylint: disable=g-import-not-at-top
  r = lamod_dense.get_config().registration
  default = task_lib.registration_config(r, 32)
  assert default.form == "eulerian" and default.metric.band_limit is None
  r = ml_collections.ConfigDict(r.to_dict())
  r.form, r.band_limit = "flash", 7
  cfg = task_lib.registration_config(r, 32)
  assert cfg.form == "flash" and cfg.metric.band_limit == 7
  v0 = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32)), jnp.float32)
  img = jnp.zeros((32, 32))
  reg_flash = registration.energy_terms(v0, img, img, cfg)[0]
  assert float(reg_flash) == pytest.approx(0.5 * float(flash.energy(v0, cfg.metric)), rel=1e-5)
  assert float(reg_flash) < 0.5 * float(default.metric.energy(v0))   # only the band is kept
  r.band_limit = 16
  with pytest.raises(ValueError, match="config.registration.band_limit=16"):
    task_lib.registration_config(r, 32)
  r.band_limit = None
  with pytest.raises(ValueError, match="config.registration.band_limit"):
    task_lib.registration_config(r, 32)
