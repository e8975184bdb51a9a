"""A smoke MCSDR run trained once per session, shared by the launcher tests that read a
trained run (launch.sample, launch.predict)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tests


def run_module(module, *args, cache):
  env = dict(os.environ, CARDIAC_DATA_CACHE=str(cache), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=str(tests.ROOT), env=env,
                        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
  """(workdir, cache) of `launch.train --config=configs/pediatric.py:smoke`."""
  cache = tmp_path_factory.mktemp("cache")
  workdir = tmp_path_factory.mktemp("run")
  proc = run_module("launch.train", "--config=configs/pediatric.py:smoke",
                    f"--workdir={workdir}", cache=cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, cache
