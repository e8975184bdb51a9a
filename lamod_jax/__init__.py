"""LaMoD in JAX: EPDiff geodesic shooting, LDDMM registration and latent motion diffusion."""
