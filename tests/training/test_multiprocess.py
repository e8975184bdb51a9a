"""Multi-process JAX for real: two processes on localhost with 4 CPU devices each (gloo
collectives), started here, train the tasks' smoke configs; their per-step losses equal
one process with 8 devices, a checkpoint written by either restores in the other, and a
killed 2-process run resumes (tests/multiprocess_train_worker.py does the training).

Three launches: the 1-process and the 2-process one run side by side, each restoring
the other's checkpoint once it is written; the 2-process one is killed (SIGKILL) after
the checkpoint of its restored run's next step, and a last 2-process launch resumes it. All
share an XLA compilation cache and compile without LLVM optimisation
(--xla_backend_optimization_level=0: both sides alike; these runs are all compilation).
Ports are chosen free; every process is killed on failure or timeout.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import tests

# Three JAX processes at a time: run alone, after the rest of the suite (.ci/run).
pytestmark = pytest.mark.distributed

WORKER = str(tests.ROOT / "tests" / "multiprocess_train_worker.py")
TIMEOUT_S = 600
TASKS = ("mcsdr", "adacon", "segmentation", "lamod")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


class Launch:
  """`processes` worker processes × (8 / processes) CPU devices running `jobs`."""

  def __init__(self, name: str, processes: int, jobs: list[dict], root):
    self.logs = [root / f"{name}_process_{i}.log" for i in range(processes)]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(f"--xla_force_host_platform_device_count={8 // processes} "
                          "--xla_backend_optimization_level=0"),
               JAX_COMPILATION_CACHE_DIR=str(root / "xla"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    if processes > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{free_port()}",
                 JAX_NUM_PROCESSES=str(processes))
    self.procs, self.killed = [], False
    for i, log in enumerate(self.logs):
      with open(log, "w") as f:
        self.procs.append(subprocess.Popen(
            [sys.executable, WORKER, json.dumps(jobs)], cwd=str(tests.ROOT), stdout=f,
            stderr=subprocess.STDOUT, env=dict(env, JAX_PROCESS_ID=str(i))))

  def failed(self) -> bool:
    return not self.killed and any(p.poll() not in (None, 0) for p in self.procs)

  def done(self) -> bool:
    return all(p.poll() == 0 for p in self.procs)

  def kill(self) -> None:
    self.killed = True
    for p in self.procs:
      if p.poll() is None:
        p.kill()
      p.wait()

  def tails(self) -> str:
    return "\n".join(f"--- {log.name} (exit {p.poll()}):\n{log.read_text()[-2000:]}"
                     for p, log in zip(self.procs, self.logs))


def wait_until(condition, launches, what: str) -> None:
  """Polls `condition` until true; raises with the logs if a launch fails or time runs out."""
  deadline = time.monotonic() + TIMEOUT_S
  while not condition():
    failed = [l for l in launches if l.failed()]
    if failed or time.monotonic() > deadline:
      raise AssertionError(f"waiting for {what}: "
                           f"{'a worker failed' if failed else 'timed out'}\n"
                           + "\n".join(l.tails() for l in launches))
    time.sleep(0.5)


def losses(out) -> dict:
  return json.loads((out / "losses.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{name: losses.json} of each job: `one` / `two`, 2 steps of every task with 1 × 8
  and 2 × 4 devices; `from_two`, steps 3-4 of MCSDR in 1 process from `two`'s
  checkpoint; `from_one`, step 3 in 2 processes from `one`'s, killed (SIGKILL) in its
  pause after the step-3 checkpoint (its losses_so_far.json); `resumed`, step 4 in 2 new
  processes from `from_one`'s step-3 checkpoint."""
  root = tmp_path_factory.mktemp("multiprocess")
  d = {name: root / name for name in ("one", "two", "from_one", "from_two", "resumed")}
  mcsdr = dict(steps=4, tasks=["mcsdr"])
  kill_marker = d["from_one"] / "mcsdr" / "losses_so_far.json"
  launches = []
  try:
    one = Launch("one", 1, [
        dict(out=str(d["one"]), steps=2),
        dict(out=str(d["from_two"]), resume_from=str(d["two"]),
             after=str(d["two"] / "losses.json"), **mcsdr)], root)
    two = Launch("two", 2, [
        dict(out=str(d["two"]), steps=2),
        dict(out=str(d["from_one"]), resume_from=str(d["one"]),
             after=str(d["one"] / "losses.json"), save_every=1,
             pause_after_save=TIMEOUT_S, **mcsdr)], root)
    launches += [one, two]
    wait_until(lambda: one.done() and kill_marker.exists(), launches,
               f"the 1-process launch and {kill_marker}")
    two.kill()           # SIGKILL, in its pause after the step-3 checkpoint.
    resumed = Launch("resumed", 2, [dict(out=str(d["resumed"]),
                                         resume_from=str(d["from_one"]), **mcsdr)], root)
    launches.append(resumed)
    wait_until(resumed.done, launches, "the resumed 2-process run")
  finally:
    for launch in launches:
      launch.kill()
  out = {name: losses(path) for name, path in d.items() if name != "from_one"}
  assert not (d["from_one"] / "losses.json").exists()     # It was killed before the end.
  out["from_one"] = {"losses": {"mcsdr": json.loads(kill_marker.read_text())}}
  return out


@pytest.mark.slow
def test_two_processes_train_as_one(runs):
  one, two = runs["one"], runs["two"]
  assert (one["processes"], one["devices"]) == (1, 8)
  assert (two["processes"], two["devices"]) == (2, 8)
  assert set(one["losses"]) == set(two["losses"]) == set(TASKS)
  for task in TASKS:
    a, b = one["losses"][task], two["losses"][task]
    assert list(a) == list(b) == ["1", "2"], task
    for step in a:
      assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), (task, step)


@pytest.mark.slow
def test_checkpoints_restore_across_process_counts(runs):
  """Step 3 from the 2-process checkpoint in 1 process equals step 3 from the 1-process
  checkpoint in 2 processes (each process count restores the other's sharded state)."""
  a, b = runs["from_two"]["losses"]["mcsdr"], runs["from_one"]["losses"]["mcsdr"]
  assert runs["from_two"]["processes"] == 1
  assert list(a) == ["3", "4"] and list(b) == ["3"]
  assert b["3"] == pytest.approx(a["3"], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(runs):
  """Two processes killed (SIGKILL) after their step-3 checkpoint; two new ones resume
  from it and train step 4 with the loss of the run never killed."""
  resumed = runs["resumed"]
  assert resumed["processes"] == 2
  assert list(resumed["losses"]["mcsdr"]) == ["4"]
  assert resumed["losses"]["mcsdr"]["4"] == pytest.approx(
      runs["from_two"]["losses"]["mcsdr"]["4"], rel=1e-5, abs=1e-6)


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
