"""Benchmarks: `python -m benchmarks.<name>`; each module exposes `run(...) -> dict`."""
