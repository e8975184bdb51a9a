"""Diagnostics of a geodesic: Jacobian determinant, energy, inverse consistency.

Transformations are positions φ (d, *spatial), channel 0 = x (see
`lamod_jax.metric` for the layout). All functions are jit/vmap friendly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lamod_jax import epdiff
from lamod_jax import metric as metric_lib
from lamod_jax.metric import Metric


def jacobian_matrix(phi: jax.Array) -> jax.Array:
  """Dφ as (*spatial, d, d) with [..., i, j] = ∂φ_i/∂x_j.

  Uses `jnp.gradient` on the displacement φ − id (second-order central
  differences inside, one-sided at the borders), so it is exact for affine maps
  and makes no periodicity assumption.
  """
  metric_lib.validate_field("phi", phi)
  d = phi.shape[0]
  u = epdiff.displacement(phi)
  rows = []
  for i in range(d):
    grads = jnp.gradient(u[i])  # one array per array axis (axis a ↔ channel d-1-a)
    rows.append([grads[d - 1 - j] + (1.0 if i == j else 0.0) for j in range(d)])
  jac = jnp.stack([jnp.stack(r) for r in rows])  # (d, d, *spatial)
  return jnp.moveaxis(jnp.moveaxis(jac, 0, -1), 0, -1)


def jacobian_determinant(phi: jax.Array) -> jax.Array:
  """det Dφ per pixel, shape (*spatial)."""
  jac = jacobian_matrix(phi)
  if jac.shape[-1] == 2:
    return jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
  return jnp.linalg.det(jac)


def jacobian_summary(phi: jax.Array) -> dict[str, jax.Array]:
  """{'min': min det Dφ, 'max': max, 'frac_nonpositive': fraction of pixels with det ≤ 0}."""
  det = jacobian_determinant(phi)
  return {"min": jnp.min(det), "max": jnp.max(det),
          "frac_nonpositive": jnp.mean((det <= 0).astype(det.dtype))}


def geodesic_energy(vs: jax.Array, metric: Metric = Metric()) -> jax.Array:
  """⟨m_t, v_t⟩ = ⟨L v_t, v_t⟩ for a trajectory vs (T, d, *spatial) → (T,)."""
  return jax.vmap(metric.energy)(vs)


def energy_drift(energies: jax.Array) -> jax.Array:
  """max_t |E_t − E_0| / E_0 (0 for a zero geodesic)."""
  e0 = energies[0]
  return jnp.max(jnp.abs(energies - e0)) / jnp.where(e0 == 0, 1.0, e0)


def inverse_consistency(phi: jax.Array, phi_inv: jax.Array,
                        boundary: str = "wrap") -> dict[str, jax.Array]:
  """‖φ∘φ⁻¹ − id‖ per pixel: {'max': …, 'mean': …} in pixels.

  φ∘φ⁻¹(x) = φ⁻¹(x) + u(φ⁻¹(x)) with u = φ − id interpolated bilinearly
  ("wrap" for the periodic maps of `epdiff.shoot`, "border" for lagomorph's).
  Swap the arguments for φ⁻¹∘φ.
  """
  metric_lib.validate_field("phi", phi)
  metric_lib.validate_field("phi_inv", phi_inv)
  if phi.shape != phi_inv.shape:
    raise ValueError(f"phi_inv: shape {phi_inv.shape} does not match phi {phi.shape}")
  comp = phi_inv + epdiff.interpolate(epdiff.displacement(phi), phi_inv, boundary)
  err = jnp.sqrt(jnp.sum(epdiff.displacement(comp) ** 2, axis=0))
  return {"max": jnp.max(err), "mean": jnp.mean(err)}
