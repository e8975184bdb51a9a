"""Shared training machinery: one linear train loop, checkpoints, metric writers."""
