"""Cardiac imaging datasets: readers for the published on-disk layouts, a synthetic
cohort written in those layouts, TFDS builders (array_record) and grain pipelines."""
