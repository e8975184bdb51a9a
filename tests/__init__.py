"""The test suite; its folders mirror the packages (tests/<package>/test_*.py).

  pytest -n 2 -q tests                 # everything (what .ci/run runs)
  pytest -m "not slow" -q tests        # without the end-to-end runs
"""
import pathlib

#: The repository root.
ROOT = pathlib.Path(__file__).resolve().parent.parent
