r"""How much of the built-in DENSE cohort's motion the masks can give: oracle EPEs.

  python -m cardiac_data.synthetic.dense_oracle [--num_subjects=160] [--frames=8] [--split=test]

The heart model (`dense_writer`) moves the myocardium radially (visible in the masks) and
circumferentially (a rotation of amplitude ρ and a regional shortening of gain η, both drawn
per subject with noise and invisible on the mask boundary). Against the exact labels, on the
same frame-0 support and the LaMoD task's `data.frames` frames (`dense.frame_indices`), this module
scores:

  prior_mean       every parameter exact except ρ and η, which take their prior means (ρ =
                   0.03·a₀, η = 0.5): what a predictor that read the masks perfectly could
                   reach at best without DENSE-specific information (a floor, up to the
                   information the masks' pixel boundaries lose);
  no_circumferential  ρ = η = 0: the radial motion alone (what registration of the masks
                   can recover, at best);
  zero             a zero displacement.

EPE as `lamod_jax.strain.end_point_error`: Σ support·‖Δu‖ / Σ support over the pairs.
"""
from __future__ import annotations

import numpy as np

from cardiac_data import dense
from cardiac_data.synthetic import dense_writer

PREDICTORS = ("prior_mean", "no_circumferential", "zero")


def oracle_epe(num_subjects: int = 160, seed: int = 0, size: int = 48, frames: int = 40,
               used_frames: int = 8, split: str = "test") -> dict:
  """{predictor: EPE (px)} over `split`'s subjects of the cohort `write_dense(...,
  num_subjects, seed, size=size, frames=frames)` writes, and 'exact' (the true parameters
  again: 0 up to rounding, a check), pairs (0, τ) for the `used_frames` evenly spaced
  frames."""
  splits = dense_writer.dense_split(num_subjects, seed)
  idx = dense.frame_indices(frames, used_frames)[1:]
  num = dict.fromkeys(("exact",) + PREDICTORS, 0.0)
  den = 0.0
  for i, s_split in enumerate(splits):
    if s_split != split:
      continue
    s = dense_writer.draw_subject(np.random.default_rng([seed, 5, i]), size, frames)
    fields = dense_writer.angular_fields(s)
    support = dense_writer.masks(s, fields)[0] > 0
    truth = dense_writer.displacements(s, fields, support)[idx]
    variants = {"exact": s,
                "prior_mean": dict(s, eta=0.5, rho_amp=0.03 * s["a0"] / (size / 48.0)),
                "no_circumferential": dict(s, eta=0.0, rho_amp=0.0)}
    for name, params in variants.items():
      u = dense_writer.displacements(params, dense_writer.angular_fields(params), support)[idx]
      num[name] += float(np.sqrt(((u - truth) ** 2).sum(axis=1))[:, support].sum())
    num["zero"] += float(np.sqrt((truth ** 2).sum(axis=1))[:, support].sum())
    den += float(support.sum()) * len(idx)
  if not den:
    raise ValueError(f"no subject in split {split!r} of a {num_subjects}-subject cohort")
  return {k: v / den for k, v in num.items()}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  out = oracle_epe(f.num_subjects, f.seed, used_frames=f.frames, split=f.split)
  print(" ".join(f"{k} {v:.4f}" for k, v in out.items()), flush=True)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_integer("num_subjects", 160, "Cohort size (configs/lamod_dense.py: 160).")
  flags.DEFINE_integer("seed", 0, "Cohort seed.")
  flags.DEFINE_integer("frames", 8, "Frames used per sequence (config.data.frames).")
  flags.DEFINE_string("split", "test", "train, val or test.")
  app.run(main)
