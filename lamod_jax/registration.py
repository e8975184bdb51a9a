"""LDDMM registration by geodesic shooting (the paper's Eq. 1 with Eqs. 2–3).

  E(v0) = ½⟨Lv0, v0⟩ + 1/(2σ²) ‖S∘φ₁⁻¹ − I‖²

S is the source (moving) image, I the target (fixed) image, φ₁⁻¹ comes from
shooting v0 (`lamod_jax.epdiff.shoot`, lagomorph's integrated form with
`form="lagomorph"`, or FLASH's band-limited shooting with `form="flash"`,
`lamod_jax.flash`), and sums run over pixels (unit spacing). With
`form="flash"` only the band P v0 (|k_a| ≤ metric.band_limit) is shot and the
regulariser is FLASH's ½⟨L Pv0, Pv0⟩; the other forms use ½⟨Lv0, v0⟩.
Gradients are `jax.grad` through the `lax.scan` of the integrator, with
`jax.checkpoint` on each step so memory does not grow with the number of steps.

The optimiser (optax) works on whitened coordinates z with v0 = K^{1/2} z, so
the regulariser is ½‖z‖² (for the full metric) and plain Adam / SGD steps are
well conditioned whatever α, γ, s. Images are (H, W) or (D, H, W) float arrays;
a batch of pairs adds a leading axis and is optimised with `jax.vmap` (each
pair independently, same hyper-parameters). Everything runs under one `jit`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lamod_jax import epdiff
from lamod_jax import flash
from lamod_jax import lagomorph as lagomorph_lib
from lamod_jax import metric as metric_lib
from lamod_jax.metric import Metric

FORMS = ("eulerian", "lagomorph", "flash")
OPTIMIZERS = ("adam", "lbfgs")


@dataclasses.dataclass(frozen=True)
class RegistrationConfig:
  """Hyper-parameters of `register` (hashable: one compilation per config).

  Attributes:
    metric: the operator L (default α = 2, γ = 1, s = 2 as LaMoD).
    sigma: image noise level σ of Eq. 1, in image intensity units (0.03 as
      LaMoD; for binary masks the data term then outweighs ½⟨Lv0, v0⟩).
    n_steps: time steps of the shooting.
    integrator: "rk4" or "euler" (Eulerian and flash forms).
    form: "eulerian" (Eq. 3 on the full grid), "lagomorph" (LaMoD's integrated
      form, Euler) or "flash" (Eqs. 2–3 in the Fourier band |k_a| ≤ c with
      c = metric.band_limit, which must be set and < N/2; `lamod_jax.flash`).
    n_iter: optimiser iterations.
    optimizer: "adam" or "lbfgs" (optax.lbfgs with its zoom line search).
    learning_rate: Adam step size in whitened units (≈ pixels of v0 per
      step); ignored by L-BFGS.
    boundary: image boundary for S∘φ₁⁻¹, "border" (clamp) or "wrap".
    inverse_method: how the Eulerian form integrates φ⁻¹ ("transport" or
      "semi_lagrangian", see `lamod_jax.epdiff`).
    scheme: discretisation of ad* in the Eulerian form ("conservative" or
      "advective", see `lamod_jax.epdiff.ad_star`).
    checkpoint: rematerialise each shooting step in the backward pass.
  """
  metric: Metric = Metric()
  sigma: float = 0.03
  n_steps: int = 10
  integrator: str = "rk4"
  form: str = "eulerian"
  n_iter: int = 100
  optimizer: str = "adam"
  learning_rate: float = 0.2
  boundary: str = "border"
  inverse_method: str = "transport"
  scheme: str = "conservative"
  checkpoint: bool = True

  def __post_init__(self):
    if self.form not in FORMS:
      raise ValueError(f"RegistrationConfig.form must be one of {FORMS}, got {self.form!r}")
    if self.form == "flash" and self.metric.band_limit is None:
      raise ValueError(
          "RegistrationConfig.form='flash' needs metric.band_limit (c: the Fourier modes "
          "|k| <= c kept per axis, c < N/2), got None")
    if self.integrator not in epdiff.INTEGRATORS:
      raise ValueError(
          f"RegistrationConfig.integrator must be one of {epdiff.INTEGRATORS}, "
          f"got {self.integrator!r}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(
          f"RegistrationConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
    if self.boundary not in epdiff.BOUNDARIES:
      raise ValueError(
          f"RegistrationConfig.boundary must be one of {epdiff.BOUNDARIES}, "
          f"got {self.boundary!r}")
    if self.inverse_method not in epdiff.INVERSE_METHODS:
      raise ValueError(
          f"RegistrationConfig.inverse_method must be one of {epdiff.INVERSE_METHODS}, "
          f"got {self.inverse_method!r}")
    if self.scheme not in epdiff.ADSTAR_FORMS:
      raise ValueError(
          f"RegistrationConfig.scheme must be one of {epdiff.ADSTAR_FORMS}, "
          f"got {self.scheme!r}")
    if not self.sigma > 0:
      raise ValueError(f"RegistrationConfig.sigma must be > 0, got {self.sigma}")
    if int(self.n_steps) < 1 or int(self.n_iter) < 0:
      raise ValueError(
          f"RegistrationConfig: n_steps must be >= 1 and n_iter >= 0, got "
          f"{self.n_steps}, {self.n_iter}")


class RegistrationResult(NamedTuple):
  """Output of `register` (leading batch axis on every leaf for a batch).

  v0: optimal initial velocity (d, *spatial), pixels, channel 0 = x.
  phi, phi_inv: φ₁ and φ₁⁻¹ as positions (d, *spatial).
  warped: S∘φ₁⁻¹, same shape as the source.
  loss: (n_iter + 1,) objective E before each step and at the end.
  regularity, data: the two terms of E at v0.
  """
  v0: jax.Array
  phi: jax.Array
  phi_inv: jax.Array
  warped: jax.Array
  loss: jax.Array
  regularity: jax.Array
  data: jax.Array


def end_maps(v0, config: RegistrationConfig, want_phi: bool = False):
  """(φ₁⁻¹, φ₁ or None) for v0 under the configured form."""
  if config.form == "lagomorph":
    geo = lagomorph_lib.shoot_v0(v0, config.metric, config.n_steps, return_all=False,
                                 checkpoint=config.checkpoint)
    return geo.phi_inv, (geo.phi if want_phi else None)
  if config.form == "flash":
    geo = flash.shoot(v0, config.metric, config.n_steps, config.integrator,
                      compute_phi=want_phi, compute_phi_inv=True,
                      checkpoint=config.checkpoint)
    return geo.phi_inv, geo.phi
  geo = epdiff.shoot(v0, config.metric, config.n_steps, config.integrator,
                     compute_phi=want_phi, compute_phi_inv=True,
                     inverse_method=config.inverse_method, scheme=config.scheme,
                     checkpoint=config.checkpoint)
  return geo.phi_inv, geo.phi


def _evaluate(v0, source, target, config: RegistrationConfig, want_phi: bool = False):
  """(regularity, data, S∘φ₁⁻¹, φ₁⁻¹, φ₁ or None) at v0."""
  phi_inv, phi = end_maps(v0, config, want_phi)
  warped = epdiff.warp(source, phi_inv, config.boundary)
  if config.form == "flash":
    reg = 0.5 * flash.energy(v0, config.metric)
  else:
    reg = 0.5 * config.metric.energy(v0)
  data = jnp.sum((warped - target) ** 2) / (2.0 * config.sigma ** 2)
  return reg, data, warped, phi_inv, phi


def energy_terms(v0: jax.Array, source: jax.Array, target: jax.Array,
                 config: RegistrationConfig = RegistrationConfig()):
  """(regularity ½⟨Lv0, v0⟩, data 1/(2σ²)‖S∘φ₁⁻¹ − I‖²) for one pair (for
  form="flash" the regularity is ½⟨L Pv0, Pv0⟩ of the band projection)."""
  return _evaluate(v0, source, target, config)[:2]


def objective(v0: jax.Array, source: jax.Array, target: jax.Array,
              config: RegistrationConfig = RegistrationConfig()) -> jax.Array:
  """E(v0) of Eq. 1 for one pair; differentiable with `jax.grad`."""
  reg, data = energy_terms(v0, source, target, config)
  return reg + data


def _register_one(source, target, z0, config: RegistrationConfig):
  metric = config.metric

  def loss_fn(z):
    return objective(metric.sqrt_sharp(z), source, target, config)

  if config.optimizer == "adam":
    opt = optax.adam(config.learning_rate)
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(carry, _):
      z, opt_state = carry
      value, grad = value_and_grad(z)
      updates, opt_state = opt.update(grad, opt_state, z)
      return (optax.apply_updates(z, updates), opt_state), value
  else:
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry, _):
      z, opt_state = carry
      value, grad = value_and_grad(z, state=opt_state)
      updates, opt_state = opt.update(grad, opt_state, z, value=value, grad=grad,
                                      value_fn=loss_fn)
      return (optax.apply_updates(z, updates), opt_state), value

  (z, _), losses = jax.lax.scan(step, (z0, opt.init(z0)), None, length=config.n_iter)
  v0 = metric.sqrt_sharp(z)
  reg, data, warped, phi_inv, phi = _evaluate(v0, source, target, config, want_phi=True)
  loss = jnp.concatenate([losses, (reg + data)[None]])
  return RegistrationResult(v0=v0, phi=phi, phi_inv=phi_inv, warped=warped,
                            loss=loss, regularity=reg, data=data)


@functools.lru_cache(maxsize=32)
def _compiled(config: RegistrationConfig, batched: bool):
  fn = functools.partial(_register_one, config=config)
  if batched:
    fn = jax.vmap(fn)
  return jax.jit(fn)


def _initial_z(v0_init, field_shape: tuple[int, ...], d: int, dtype,
               metric: Metric) -> jax.Array:
  """Whitened start z0 = L^{1/2} v0_init (zeros when no start is given)."""
  if v0_init is None:
    return jnp.zeros(field_shape, dtype)
  if tuple(np.shape(v0_init)) != field_shape:
    raise ValueError(f"v0_init: expected shape {field_shape}, got {np.shape(v0_init)}")
  metric_lib.check_finite("v0_init", v0_init)
  l_hat = metric.symbols(field_shape[-d:])[0]
  return metric_lib.apply_symbol(jnp.asarray(v0_init, dtype), np.sqrt(l_hat), d)


def _check_images(source, target, batched: bool):
  want = (3, 4) if batched else (2, 3)
  for name, img in (("source", source), ("target", target)):
    shape = tuple(np.shape(img))
    if len(shape) not in want:
      layout = "(B, H, W) or (B, D, H, W)" if batched else "(H, W) or (D, H, W)"
      raise ValueError(f"{name}: expected an image of shape {layout}, got {shape}")
    metric_lib.validate_grid(name, shape[1:] if batched else shape)
    metric_lib.check_finite(name, img)
  if np.shape(source) != np.shape(target):
    raise ValueError(
        f"target: shape {np.shape(target)} does not match source {np.shape(source)}")


def _as_float(x) -> jax.Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def register(source: jax.Array, target: jax.Array,
             config: RegistrationConfig = RegistrationConfig(),
             v0_init: jax.Array | None = None) -> RegistrationResult:
  """Registers one pair: finds v0 minimising E(v0) so that S∘φ₁⁻¹ ≈ I.

  Args:
    source: S, (H, W) or (D, H, W) float image (moving).
    target: I, same shape (fixed).
    config: `RegistrationConfig`.
    v0_init: optional (d, *spatial) starting velocity (pixels, channel 0 = x).
  Returns:
    `RegistrationResult` with v0, φ₁, φ₁⁻¹, S∘φ₁⁻¹ and the loss history.
  """
  _check_images(source, target, batched=False)
  source, target = _as_float(source), _as_float(target)
  target = target.astype(source.dtype)
  d = source.ndim
  z0 = _initial_z(v0_init, (d,) + source.shape, d, source.dtype, config.metric)
  return _compiled(config, False)(source, target, z0)


def register_batch(sources: jax.Array, targets: jax.Array,
                   config: RegistrationConfig = RegistrationConfig(),
                   v0_init: jax.Array | None = None) -> RegistrationResult:
  """Registers a batch of pairs (B, H, W) / (B, D, H, W) with `jax.vmap`.

  Each pair is optimised independently (same as looping `register`); every
  leaf of the result gets a leading batch axis.
  """
  _check_images(sources, targets, batched=True)
  sources, targets = _as_float(sources), _as_float(targets)
  targets = targets.astype(sources.dtype)
  d = sources.ndim - 1
  shape = (sources.shape[0], d) + sources.shape[1:]
  z0 = _initial_z(v0_init, shape, d, sources.dtype, config.metric)
  return _compiled(config, True)(sources, targets, z0)
