"""Evaluation metrics and paper-ready plots shared by every method."""
