"""MCSDR: conditional score-based diffusion regression of LVEF (Flax/JAX)."""
