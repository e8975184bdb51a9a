"""The test suite; its folders mirror the packages (tests/<package>/test_*.py).

  pytest -n 2 -q -m "not distributed" tests && pytest -q -m distributed tests
                                       # everything (what .ci/run runs): the multi-process
                                       # tests last, alone (they start 3 JAX processes)
  pytest -m "not slow" -q tests        # without the end-to-end runs
"""
import pathlib

#: The repository root.
ROOT = pathlib.Path(__file__).resolve().parent.parent
