"""LaMoD in JAX: EPDiff geodesic shooting and LDDMM registration (issue 4).

Modules: `metric` (L = (γ − αΔ)^s, K = L⁻¹ by FFT), `epdiff` (Eulerian EPDiff,
Eq. 3, Euler/RK4, φ₁ and φ₁⁻¹, warps), `flash` (the same equations in a
band of Fourier modes, FLASH), `lagomorph` (LaMoD's lagomorph
integrated form), `registration` (geodesic-shooting LDDMM with optax) and
`diagnostics` (Jacobian determinant, energy, inverse consistency).
Layout everywhere: fields (d, H, W) / (d, D, H, W), channel 0 = x (columns).
"""
from __future__ import annotations

from lamod_jax import diagnostics
from lamod_jax import epdiff
from lamod_jax import flash
from lamod_jax import lagomorph
from lamod_jax import metric
from lamod_jax import registration
from lamod_jax.epdiff import Geodesic
from lamod_jax.epdiff import shoot
from lamod_jax.epdiff import warp
from lamod_jax.metric import Metric
from lamod_jax.registration import RegistrationConfig
from lamod_jax.registration import register
from lamod_jax.registration import register_batch
