"""Command-line entry points (absl flags, ml_collections configs)."""
