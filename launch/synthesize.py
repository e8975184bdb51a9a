r"""Writes a synthetic cohort in a published layout.

  python -m launch.synthesize --dataset=echonet_pediatric --out=/tmp/peds \
      --num_subjects=2000 --seed=0

Datasets are the names in `cardiac_data.synthetic.WRITERS` (echonet_dynamic,
echonet_pediatric; CAMUS and DENSE layouts register there too). Ground truth
(`ground_truth.csv`) is written next to the published files.
"""
from __future__ import annotations

import time

from absl import app
from absl import flags

from cardiac_data import synthetic

_DATASET = flags.DEFINE_string(
    "dataset", None, f"One of: {', '.join(sorted(synthetic.WRITERS))}.")
_OUT = flags.DEFINE_string("out", None, "Output folder (the dataset root).")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 2000, "Number of subjects.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; same seed, same bytes.")
_WORKERS = flags.DEFINE_integer("workers", None, "Processes (default: os.cpu_count()).")
_SIZE = flags.DEFINE_integer("size", 112, "Frame height and width in pixels (writer default "
                             "when unset).", lower_bound=32)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing cohort in --out.")
flags.mark_flags_as_required(["dataset", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _DATASET.value not in synthetic.WRITERS:
    raise app.UsageError(f"--dataset={_DATASET.value!r} is not one of "
                         f"{', '.join(sorted(synthetic.WRITERS))}")
  writer = synthetic.get_writer(_DATASET.value)
  start = time.perf_counter()
  params = {"size": _SIZE.value} if flags.FLAGS["size"].present else {}
  count = writer(_OUT.value, _NUM_SUBJECTS.value, _SEED.value, workers=_WORKERS.value,
                 progress=True, overwrite=_OVERWRITE.value, **params)
  seconds = time.perf_counter() - start
  print(f"Wrote {count} videos for {_NUM_SUBJECTS.value} subjects ({_DATASET.value}) "
        f"to {_OUT.value} in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
  app.run(main)
