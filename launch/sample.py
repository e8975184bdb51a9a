"""Sampler and posterior-size study of a trained MCSDR run (MCSDR §V "Impact of key
hyperparameters", Fig. 7; `mcsdr_jax.sampling_study` holds the study).

  python -m launch.sample --config=configs/pediatric.py[:variant] [--workdir=DIR] [--split=test]
      [--samplers=ddpm,ddim5,ddim10,ddim20,ddim50,pf_ode] [--ks=1,5,10,20,40,100]
      [--config.a.b=value]

--config and --workdir are launch.train's flags (the same config, the same default
workdir); the run's best checkpoint (else its last) is restored, after checking that it
was written by a config with the same model (`training.runs.load_run`). Writes
WORKDIR/sampling_study.json and WORKDIR/plots/sampling_study.png
(evaluation.plots.sampling_study_plot).
"""
from __future__ import annotations

import os

from absl import app
from absl import flags

from evaluation import plots
from launch import logs
from launch import train as train_launch  # Defines --config and --workdir.
from mcsdr_jax import sampling_study
from training import runs
from training import writers


def run_study(config, workdir: str, split: str = "test",
              samplers=sampling_study.DEFAULT_SAMPLERS, ks=sampling_study.DEFAULT_KS, *,
              run=None) -> dict:
  """Runs both sweeps on `split` of WORKDIR's run; writes and returns the study.

  `run`: (task, params, checkpoint info) of `training.runs.load_run` if already loaded
  (its jitted samplers are reused). Arguments are checked before anything is loaded."""
  settings = sampling_study.plan(config, samplers, ks)
  workdir = os.path.abspath(workdir)
  task, params, ckpt = run if run is not None else runs.load_run(config, workdir)
  study = sampling_study.run_sweeps(task, params, config, split, settings)
  study["checkpoint"] = ckpt
  writers.write_json(os.path.join(workdir, "sampling_study.json"), study)
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  plots.sampling_study_plot(os.path.join(workdir, "plots", "sampling_study.png"), study)
  return study


def _define_flags():
  """The study's own flags (--config and --workdir come from launch.train)."""
  flags.DEFINE_string("split", "test", "Split to sample (train, val or test).")
  flags.DEFINE_list("samplers", list(sampling_study.DEFAULT_SAMPLERS),
                    "Sampler sweep at K = config.sampling.num_samples: ddpm, ddimN, pf_ode, "
                    "pf_odeN.")
  flags.DEFINE_list("ks", [str(k) for k in sampling_study.DEFAULT_KS],
                    f"K sweep with {sampling_study.K_SWEEP_SAMPLER}: posterior samples per "
                    "case (≥ 1).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_libraries()
  from training import sharding  # pylint: disable=g-import-not-at-top
  sharding.maybe_initialize_distributed()   # Before any other JAX call (multi-process runs).
  f = flags.FLAGS
  workdir = f.workdir or train_launch.default_workdir(f["config"].config_filename)
  study = run_study(f.config, workdir, f.split, f.samplers, f.ks)
  print(sampling_study.format_table(study))
  print(f"Wrote {os.path.join(workdir, 'sampling_study.json')} and "
        f"{os.path.join(workdir, 'plots', 'sampling_study.png')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
