"""Multi-process JAX for real: two processes on localhost with 4 CPU devices each (gloo
collectives), started here, train the tasks' smoke configs; their per-step losses equal
one process with 8 devices, and a checkpoint written by either restores in the other
(tests/multiprocess_train_worker.py does the training). Ports are chosen free, every
process is killed on failure or timeout."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import tests

WORKER = str(tests.ROOT / "tests" / "multiprocess_train_worker.py")
TIMEOUT_S = 900
TASKS = ("mcsdr", "adacon", "segmentation", "lamod")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_worker(processes: int, out, cache, *args, kill_when=None) -> dict | None:
  """Runs the worker as `processes` processes × (8 / processes) CPU devices; returns
  process 0's losses.json. Raises with the processes' stderr tails on failure.
  `kill_when`: a path; once it exists every process is killed (SIGKILL) and None is
  returned."""
  out.mkdir(parents=True, exist_ok=True)
  # One XLA compilation cache for the module's launches: a resumed run reuses the
  # executables its process count compiled before (compilation dominates these runs).
  base = dict(os.environ, JAX_PLATFORMS="cpu", CARDIAC_DATA_CACHE=str(cache),
              XLA_FLAGS=f"--xla_force_host_platform_device_count={8 // processes}",
              JAX_COMPILATION_CACHE_DIR=str(cache / "xla"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  if processes > 1:
    base.update(JAX_COORDINATOR_ADDRESS=f"localhost:{free_port()}",
                JAX_NUM_PROCESSES=str(processes))
  procs, logs = [], []
  try:
    for i in range(processes):
      env = dict(base, JAX_PROCESS_ID=str(i)) if processes > 1 else base
      log = open(out / f"process_{i}.log", "w")
      logs.append(log)
      procs.append(subprocess.Popen([sys.executable, WORKER, str(out), *args], env=env,
                                    cwd=str(tests.ROOT), stdout=log, stderr=subprocess.STDOUT))
    if kill_when is not None:
      deadline = time.monotonic() + TIMEOUT_S
      while not kill_when.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
          raise AssertionError(f"{kill_when} never appeared (exit codes "
                               f"{[p.poll() for p in procs]})")
        time.sleep(0.5)
      for p in procs:
        p.kill()
      return None
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for log in logs:
      log.close()
  if any(codes):
    tails = "\n".join((out / f"process_{i}.log").read_text()[-2000:] for i in range(processes))
    raise AssertionError(f"worker exit codes {codes}:\n{tails}")
  return json.loads((out / "losses.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(root, cache, one, two): 2 steps of every task with 1 process × 8 devices and 2 × 4."""
  root = tmp_path_factory.mktemp("multiprocess")
  cache = root / "cache"
  one = run_worker(1, root / "one", cache, "--steps=2")    # also builds the data once
  two = run_worker(2, root / "two", cache, "--steps=2")
  return root, cache, one, two


@pytest.fixture(scope="module")
def step3(runs):
  """Step 3 of MCSDR resumed from the 2-process checkpoint in 1 process, and from the
  1-process checkpoint in 2 processes."""
  root, cache, _, _ = runs
  from_two = run_worker(1, root / "from_two", cache, "--steps=3", "--tasks=mcsdr",
                        f"--resume_from={root / 'two'}")
  from_one = run_worker(2, root / "from_one", cache, "--steps=3", "--tasks=mcsdr",
                        f"--resume_from={root / 'one'}")
  return from_two["losses"]["mcsdr"], from_one["losses"]["mcsdr"]


@pytest.mark.slow
def test_two_processes_train_as_one(runs):
  _, _, one, two = runs
  assert (one["processes"], one["devices"]) == (1, 8)
  assert (two["processes"], two["devices"]) == (2, 8)
  assert set(one["losses"]) == set(two["losses"]) == set(TASKS)
  for task in TASKS:
    a, b = one["losses"][task], two["losses"][task]
    assert list(a) == list(b) == ["1", "2"], task
    for step in a:
      assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), (task, step)


@pytest.mark.slow
def test_checkpoints_restore_across_process_counts(step3):
  """Step 3 from the 2-process checkpoint in 1 process equals step 3 from the 1-process
  checkpoint in 2 processes (each process count restores the other's sharded state)."""
  a, b = step3
  assert list(a) == list(b) == ["3"]
  assert b["3"] == pytest.approx(a["3"], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(runs, step3):
  """Two processes are killed (SIGKILL) after their step-1 checkpoint; two new ones
  resume from it and train steps 2 and 3, with the losses of the runs never killed."""
  root, cache, one, _ = runs
  killed = root / "killed"
  marker = killed / "mcsdr" / "checkpoints" / "last" / "1"
  assert run_worker(2, killed, cache, "--steps=3", "--tasks=mcsdr", "--save_every=1",
                    "--pause_after_save=600", kill_when=marker) is None
  assert not (killed / "losses.json").exists()
  resumed = run_worker(2, root / "resumed", cache, "--steps=3", "--tasks=mcsdr",
                       f"--resume_from={killed}")["losses"]["mcsdr"]
  assert list(resumed) == ["2", "3"]
  assert resumed["2"] == pytest.approx(one["losses"]["mcsdr"]["2"], rel=1e-5, abs=1e-6)
  assert resumed["3"] == pytest.approx(step3[0]["3"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("env,kind", [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "node0:1234"}, "explicit"),
    ({"JAX_DISTRIBUTED": "auto"}, "auto"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}, "slurm"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),       # one task: one process
    ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "t0"}, None),                   # a single-host TPU VM
])
def test_the_environment_decides_whether_to_start_jax_distributed(env, kind):
  from training import sharding  # pylint: disable=g-import-not-at-top
  assert sharding.cluster_kind(env) == kind
