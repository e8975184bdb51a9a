"""Sampler and posterior-size study of a trained MCSDR run (MCSDR §V "Impact of key
hyperparameters", Fig. 7; `mcsdr_jax.sampling_study` holds the study).

  python -m launch.sample --config=configs/pediatric.py[:variant] [--workdir=DIR] [--split=test]
      [--samplers=ddpm,ddim5,ddim10,ddim20,ddim50,pf_ode] [--ks=1,5,10,20,40,100]
      [--missing=Age,Weight|all] [--config.a.b=value]
  python -m launch.sample --config=configs/pediatric.py --missing_study [--split=test]

--config and --workdir are launch.train's flags (the same config, the same default
workdir); the run's best checkpoint (else its last) is restored, after checking that it
was written by a config with the same model (`training.runs.load_run`). Writes
WORKDIR/sampling_study.json and WORKDIR/plots/sampling_study.png
(evaluation.plots.sampling_study_plot). --missing: the study's cases have those
attributes missing (the model's learned missing embedding stands in; recorded as the
study's `missing`). --missing_study instead runs `mcsdr_jax.missing_study` (no attribute,
each alone, all missing; the config's sampler) and writes WORKDIR/missing_study.json.
"""
from __future__ import annotations

import os

from absl import app
from absl import flags

from cardiac_data import ef_data
from evaluation import plots
from launch import logs
from launch import train as train_launch  # Defines --config and --workdir.
from mcsdr_jax import missing_study
from mcsdr_jax import sampling_study
from training import runs
from training import writers


def run_study(config, workdir: str, split: str = "test",
              samplers=sampling_study.DEFAULT_SAMPLERS, ks=sampling_study.DEFAULT_KS, *,
              run=None, missing=()) -> dict:
  """Runs both sweeps on `split` of WORKDIR's run; writes and returns the study.

  `run`: (task, params, checkpoint info) of `training.runs.load_run` if already loaded
  (its jitted samplers are reused). `missing`: the --missing value, attributes marked
  missing in every case (recorded as the study's `missing`). Arguments are checked
  before anything is loaded."""
  settings = sampling_study.plan(config, samplers, ks)
  names = missing_study.resolve_missing(config, ef_data.attribute_spec(config.data), missing)
  workdir = os.path.abspath(workdir)
  task, params, ckpt = run if run is not None else runs.load_run(config, workdir)
  previous, task.missing = task.missing, names
  try:
    study = sampling_study.run_sweeps(task, params, config, split, settings)
  finally:
    task.missing = previous
  study["missing"] = list(names)
  study["checkpoint"] = ckpt
  writers.write_json(os.path.join(workdir, "sampling_study.json"), study)
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  plots.sampling_study_plot(os.path.join(workdir, "plots", "sampling_study.png"), study)
  return study


def run_missing_study(config, workdir: str, split: str = "test", *, run=None) -> dict:
  """`mcsdr_jax.missing_study` on `split` of WORKDIR's run; writes
  WORKDIR/missing_study.json and returns the study (`run` as for run_study). The config
  is checked (a run with a posterior, task.POSTERIOR_KINDS, and attributes) before
  anything is loaded."""
  settings = missing_study.plan(config, ef_data.attribute_spec(config.data))
  workdir = os.path.abspath(workdir)
  task, params, ckpt = run if run is not None else runs.load_run(config, workdir)
  study = missing_study.run_study(task, params, config, split, settings)
  study["checkpoint"] = ckpt
  writers.write_json(os.path.join(workdir, "missing_study.json"), study)
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
  flags.DEFINE_list("missing", [], "Attributes missing at test time in the sampler study: "
                    "names (e.g. Age,Weight) or 'all'; empty: none.")
  flags.DEFINE_bool("missing_study", False, "Run the missing-attribute study instead (no "
                    "attribute, each alone, all missing; the config's sampler) and write "
                    "WORKDIR/missing_study.json.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet_libraries()
  from training import sharding  # pylint: disable=g-import-not-at-top
  sharding.maybe_initialize_distributed()   # Before any other JAX call (multi-process runs).
  f = flags.FLAGS
  workdir = f.workdir or train_launch.default_workdir(f["config"].config_filename)
  if f.missing_study:
    if f.missing:
      raise app.UsageError("--missing and --missing_study: the study sets the missing "
                           "attributes itself; pass one of them")
    study = run_missing_study(f.config, workdir, f.split)
    print(missing_study.format_table(study))
    print(f"Wrote {os.path.join(workdir, 'missing_study.json')}")
    return
  study = run_study(f.config, workdir, f.split, f.samplers, f.ks, missing=f.missing)
  if study["missing"]:
    print(f"missing attributes: {', '.join(study['missing'])}")
  print(sampling_study.format_table(study))
  print(f"Wrote {os.path.join(workdir, 'sampling_study.json')} and "
        f"{os.path.join(workdir, 'plots', 'sampling_study.png')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
