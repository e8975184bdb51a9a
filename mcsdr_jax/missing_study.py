"""Test-time missing patient attributes (issue 18): how a trained run's posterior (MCSDR,
or a competitor of mcsdr_jax/competitors.py) changes when attributes are absent at test time; `launch.sample --missing_study`
restores the run and writes what `run_study` returns.

Settings: 'none' (every attribute as recorded), each attribute of the run missing alone,
and 'all'. A missing attribute is marked as the preprocessor marks an absent value
(`cardiac_data.attributes.mark_missing` through `EFData.missing`: a continuous one 0 with
its missing flag, a categorical one the missing code), so the model's learned missing
embedding stands in (`mcsdr_jax.encoders.AttributeEncoder`, trained with attribute
dropout `model.attr_dropout`).

Every setting is sampled as the run's final evaluation is: `task.predict` with the
config's sampler (config.sampling, K = config.sampling.num_samples) and the same key
(config.seed + 1, `training.loop`), so 'none' on the test split reproduces the run's
metrics.json. Scores (`evaluation.probabilistic.probabilistic_metrics` on the labelled
cases): the σ-scaled posterior's, and the raw posterior's as raw_*; the σ-scale is one
factor fitted once on the validation split with no attribute missing
(`evaluation.probabilistic.fit_spread_scale`, as the final evaluation fits it), so a
setting's coverage shows whether the validation calibration still holds without the
attributes.
"""
from __future__ import annotations

import math

from absl import logging
import jax
import numpy as np

from cardiac_data import attributes as attributes_lib
from cardiac_data import ef_data
from evaluation import devices
from evaluation import probabilistic
from mcsdr_jax import sampling_study
from mcsdr_jax import task as task_lib

NONE = "none"
ALL = attributes_lib.ALL
#: Scores per setting (σ-scaled; raw_<key> before scaling).
METRIC_KEYS = ("mae", "crps", "coverage50", "coverage90", "sigma_mean",
               "sigma_error_spearman")
FLAG = "--missing_study"


def check_attributes(config, spec: attributes_lib.AttributeSpec, flag: str) -> None:
  """ValueError naming `flag` and the config field if the model takes no attribute: the
  data has none (config.data.attributes and config.data.categorical empty) or the model
  ignores them (config.model.use_attributes=False, the ':vision' variants)."""
  if not spec.names:
    raise ValueError(f"{flag}: config.data.attributes and config.data.categorical are "
                     "empty (a vision-only config): there is no patient attribute to mark "
                     "missing")
  if not config.model.get("use_attributes", True):
    raise ValueError(f"{flag}: config.model.use_attributes=False (a vision-only config, e.g. "
                     "the ':vision' variant): the model ignores its attributes, so none can "
                     "be missing")


def resolve_missing(config, spec: attributes_lib.AttributeSpec, value, *,
                    flag: str = "--missing") -> tuple[str, ...]:
  """The attribute names of a --missing value (`attributes.parse_missing`: 'Age,Weight',
  a list of names, 'all', or '' / None / [] for none); a non-empty value on a model
  without attributes is a ValueError (`check_attributes`)."""
  if _requested(value):
    check_attributes(config, spec, flag)
  return attributes_lib.parse_missing(value, spec, flag=flag)


def _requested(value) -> bool:
  """Whether a --missing value names anything (before it is checked against a spec)."""
  if value is None:
    return False
  items = value.split(",") if isinstance(value, str) else list(value)
  return any(str(v).strip() for v in items)


def plan(config, spec: attributes_lib.AttributeSpec) -> list[tuple[str, tuple[str, ...]]]:
  """The settings (name, attributes marked missing): 'none', each attribute alone, 'all';
  raises ValueError naming the config field before anything is loaded."""
  if config.model.kind not in task_lib.POSTERIOR_KINDS:
    raise ValueError(f"{FLAG}: config.model.kind={config.model.kind!r} has no posterior; "
                     f"the missing-attribute study needs a run of {task_lib.POSTERIOR_KINDS}")
  check_attributes(config, spec, FLAG)
  return [(NONE, ())] + [(name, (name,)) for name in spec.names] + [(ALL, spec.names)]


def _clean(value):
  return None if value is None or not math.isfinite(value) else float(value)


def score(labels, samples, scale: float) -> dict:
  """METRIC_KEYS of the σ-scaled posterior (`scale` about each case's mean) and, as
  raw_<key>, of the raw one; NaN (e.g. a constant σ's rank correlation) as None."""
  raw = probabilistic.probabilistic_metrics(labels, samples)
  scaled = probabilistic.probabilistic_metrics(labels,
                                               probabilistic.scale_spread(samples, scale))
  out = {key: _clean(scaled[key]) for key in METRIC_KEYS}
  out.update({f"raw_{key}": _clean(raw[key]) for key in METRIC_KEYS})
  return out


def run_study(task, params, config, split: str, settings) -> dict:
  """Runs the `plan` settings on `split` of a restored run (`task`: an
  mcsdr_jax.task.EFRegressionTask); returns the study (without the checkpoint
  information, which the caller adds). `task.missing` is restored afterwards."""
  if split not in task.sources:
    raise ValueError(f"--split: unknown split {split!r}; known: {sorted(task.sources)}")
  keep = ef_data.labelled_cases(task.labels(split), split)
  if not keep.any():
    raise ValueError(f"--split={split}: no case has an EF label; the study has nothing to "
                     "score")
  seed = config.seed + 1          # The final evaluation's key (training.loop).
  key = jax.random.key(seed)
  k = config.sampling.num_samples
  previous = task.missing
  try:
    task.missing = ()
    val_samples, val_labels, _ = task.predict(params, "val", key, num_samples=k)
    scale = probabilistic.fit_spread_scale(val_labels, val_samples)
    logging.info("posterior spread scale fitted on val, no attribute missing (CRPS): %.3f",
                 scale)
    study = {"split": split, "num_cases": len(task.sources[split]),
             "num_labelled": int(keep.sum()), "attributes": list(task.spec.names),
             "sampler": task_lib.sampler_config(config.sampling).label, "k": k, "seed": seed,
             "spread_scale": scale, "device": devices.device_name(), "settings": []}
    for i, (name, names) in enumerate(settings):
      task.missing = tuple(names)
      samples, labels, _ = task.predict(params, split, key, num_samples=k)
      samples, labels = ef_data.select_cases(keep, samples), ef_data.select_cases(keep, labels)
      entry = dict(name=name, missing=list(names), **score(labels, samples, scale))
      study["settings"].append(entry)
      logging.info("[%d/%d] missing %s: MAE %.3f, CRPS %.3f, coverage90 %.2f (raw %.2f)",
                   i + 1, len(settings), name, entry["mae"], entry["crps"],
                   entry["coverage90"], entry["raw_coverage90"])
  finally:
    task.missing = previous
  return study


def format_table(study: dict) -> str:
  """The study as a text table: σ-scaled scores, the raw ones in brackets."""
  fmt = sampling_study.fmt_value
  ck = study["checkpoint"]
  lines = [f"{study['split']}: {study['num_labelled']} labelled cases on {study['device']}, "
           f"{ck['which']} checkpoint (step {ck['step']}), {study['sampler']} K={study['k']}; "
           f"σ-scale {study['spread_scale']:.3f} fitted on val with every attribute "
           "(raw posterior in brackets)",
           f"{'missing':10s} {'MAE':>7s} {'ΔMAE':>7s} {'CRPS (raw)':>15s} {'cov50 (raw)':>12s} "
           f"{'cov90 (raw)':>12s} {'σ mean (raw)':>15s} {'ρ(σ,|err|)':>10s}"]
  base = next((e["mae"] for e in study["settings"] if e["name"] == NONE), None)
  for e in study["settings"]:
    delta = None if base is None else e["mae"] - base
    lines.append(
        f"{e['name']:10s} {e['mae']:7.3f} {fmt(delta, '+.3f'):>7s} "
        f"{fmt(e['crps']) + ' (' + fmt(e['raw_crps']) + ')':>15s} "
        f"{fmt(e['coverage50'], '.2f') + ' (' + fmt(e['raw_coverage50'], '.2f') + ')':>12s} "
        f"{fmt(e['coverage90'], '.2f') + ' (' + fmt(e['raw_coverage90'], '.2f') + ')':>12s} "
        f"{fmt(e['sigma_mean'], '.2f') + ' (' + fmt(e['raw_sigma_mean'], '.2f') + ')':>15s} "
        f"{fmt(e['sigma_error_spearman'], '.2f'):>10s}")
  return "\n".join(lines)
