r"""Results tables regenerated from the runs' metrics.json, never typed by hand.

  python -m launch.results            # rewrites docs/results.md and the result blocks of
                                      # README.md and docs/*.md
  python -m launch.results --check    # exit 1 if either is out of date (a test runs it)
  python -m launch.results --add=NAME --workdir=DIR --command="python -m launch.train ..."
  python -m launch.results --add_summary=NAME --workdir=DIR --command="python -m launch.seg_summary ..."

A run kept for the documentation is a folder `results/<name>/` with the run's
`metrics.json` (copied from its workdir) and `run.json` ({"command", "machine", "date",
"wall_min", "commit"}: how it was made). `--add` copies a finished workdir's
metrics.json there. A study over seeds (`launch.seg_summary`) is kept the same way with
its `summary.json` instead (`--add_summary`): its tables show mean ± SD over the seeds.
Each table below selects runs by name prefix; a block `<!-- results:KEY -->` …
`<!-- /results:KEY -->` in README.md or a docs/*.md page receives table KEY.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

from absl import app
from absl import flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


@dataclasses.dataclass(frozen=True)
class Column:
  header: str
  key: str            # a metrics.json key
  fmt: str = ".2f"


@dataclasses.dataclass(frozen=True)
class Table:
  key: str            # README marker name
  title: str
  prefix: str         # runs results/<prefix>*
  columns: tuple[Column, ...]
  note: str = ""


@dataclasses.dataclass(frozen=True)
class SummaryTable:
  """Rows: the 'aggregate' entries of results/<prefix>*/summary.json (one per arch and
  loss of each study); a column key is an entry field ('withheld_dice') or
  'group:name' ('dice_by_domain:unity/dice_la'), shown as mean ± SD (the '_sd' field)."""
  key: str
  title: str
  prefix: str
  columns: tuple[Column, ...]
  note: str = ""


@dataclasses.dataclass(frozen=True)
class SeedTable:
  """Rows: the runs results/<prefix>[-<label>]_seed<N>/metrics.json grouped by label
  ('default' without one), each
  column shown as mean ± SD over the label's seeds (the column `n`: how many). A column
  key is a metrics.json key, or 'key>group>field' inside a nested table. `rows`: the
  (label, row name) pairs shown, in that order (empty: every label, 'default' first).
  `group_rows` instead: (label, group, row name) triples, several rows per run (e.g.
  LaMoD's diagnosis groups), the column keys formatted with `{group}`."""
  key: str
  title: str
  prefix: str
  columns: tuple[Column, ...]
  note: str = ""
  rows: tuple[tuple[str, str], ...] = ()
  group_rows: tuple[tuple[str, str, str], ...] = ()

  def labels(self) -> set[str]:
    """The run labels the table shows (empty: every label)."""
    return {r[0] for r in self.rows} | {r[0] for r in self.group_rows}


_SEED_RUN = re.compile(r"^(?P<label>.*)_seed(?P<seed>\d+)$")


#: Columns of the inter-domain segmentation studies (the withheld structure first).
_SEG_COLUMNS = (Column("withheld LA (Unity-like)", "withheld_dice", ".3f"),
                Column("LV", "dice:lv", ".3f"), Column("LVM", "dice:lvm", ".3f"),
                Column("LA (all)", "dice:la", ".3f"),
                Column("EF MAE discs", "ef_mae_discs", ".1f"))

TABLES = (
    SeedTable("mcsdr", "MCSDR, default job (`configs/pediatric.py`), and the uncertainty methods "
              "a user would pick instead on the same encoder and budget (`configs/pediatric.py:"
              "<method>`): test split, K = 40, best checkpoint, mean ± SD over seeds",
              "mcsdr_pediatric", (
                  Column("MAE", "test/mae"),
                  Column("MAE / mean-predictor", "test/mae_over_mean_predictor", ".3f"),
                  Column("CRPS", "test/raw_crps"),
                  Column("raw cov. 90", "test/raw_coverage90"),
                  Column("σ-scaled cov. 90", "test/coverage90"),
                  Column("Spearman(σ, \\|err\\|)", "test/raw_sigma_error_spearman"),
                  Column("σ poor / good", "test/sigma_poor_over_good"),
                  Column("σ good", "test/by_quality>good>sigma_mean", ".1f"),
                  Column("σ medium", "test/by_quality>medium>sigma_mean", ".1f"),
                  Column("σ poor", "test/by_quality>poor>sigma_mean", ".1f")),
              "CRPS, raw coverage and Spearman: the raw posterior; σ per tier after σ-scaling "
              "fitted on val (the tiers' true label-noise SD: good 2, medium 3.5, poor 6 EF "
              "points; the ensemble's and MC dropout's fits stop at the bound 4).",
              rows=(("default", "MCSDR (default)"), ("heteroscedastic", "heteroscedastic"),
                    ("ensemble", "ensemble of 5"), ("mc_dropout", "MC dropout"))),
    SeedTable("mcsdr_ablations", "MCSDR ablations at CPU size (the paper's Tables IV and V, the "
              "AdaCon plug-in): the default job with one change each, test split, mean ± SD over "
              "seeds", "mcsdr_pediatric", (
                  Column("MAE", "test/mae"),
                  Column("MAE / mean-predictor", "test/mae_over_mean_predictor", ".3f"),
                  Column("CRPS", "test/raw_crps"),
                  Column("raw cov. 90", "test/raw_coverage90"),
                  Column("Spearman(σ, \\|err\\|)", "test/raw_sigma_error_spearman"),
                  Column("σ poor / good", "test/sigma_poor_over_good")),
              "Table IV: `--config.model.kind=deterministic` (the same encoder and conditioning, "
              "an MSE head). Table V: `--config.model.predictor=mlp` or `transformer_decoder` "
              "(default: MCSN). AdaCon: `--config.model.adacon.weight=0.005` (0.1: 20× the "
              "published γ_con for scale 150). 8 draws: "
              "`--config.diffusion.noise_draws=8`. Vision only: `configs/pediatric.py:vision`.",
              rows=(("default", "generative, MCSN decoder (default)"),
                    ("deterministic", "deterministic head (Table IV)"),
                    ("mlp", "MLP decoder (Table V)"),
                    ("transformer_decoder", "Transformer decoder (Table V)"),
                    ("adacon", "+ AdaCon plug-in, weight 0.005"),
                    ("adacon_w0.1", "+ AdaCon plug-in, weight 0.1"),
                    ("noise_draws8", "8 (t, ε) draws per clip"),
                    ("vision", "vision only"))),
    Table("adacon", "AdaCon (`configs/adacon_dynamic.py`): test split", "adacon", (
        Column("MAE", "test/mae"), Column("RMSE", "test/rmse"), Column("R²", "test/r2"),
        Column("mean-predictor MAE", "test/mean_predictor_mae"))),
    SeedTable("lamod", "LaMoD diagnosis (`configs/lamod_dense.py`, issue 17): test split, "
              "24 subjects, mean ± SD over seeds", "lamod_dense", (
                  Column("EPE (px)", "test/{group}/epe", ".3f"),
                  Column("seg. Ecc MAE", "test/{group}/segmental_ecc_mae", ".4f"),
                  Column("global peak Ecc error", "test/{group}/global_peak_ecc_error", ".4f")),
              "Default: 3,000 steps (300 registration + 2,700 joint); 8 latent channels at 8² "
              "from the 32² registration grid, standardised per frame; α = 1; LaMoD = the mean "
              "of 8 DDIM-10 samples, chains started at the midpoint z^(50) of T = 100 "
              "(`sampling.start_step=49`; Alg. 1's M = T: `-1`). 1,500-step rows: the default "
              "before (`--config.num_steps=1500 --config.sampling.start_step=-1`), α = 1e-2: "
              "also `--config.diffusion.motion_weight=0.01`; the 291k regression: also "
              "`\"--config.model.baseline_widths=(36, 72)\" --config.pretrain.baseline=True` "
              "(291k parameters against LaMoD's 282k, trained from step 1). All videos: "
              "`\"--config.pretrain.extra_folders=('val','test','test_cine')\"`. Cine: "
              "`configs/lamod_dense.py:cine` (segmental Ecc is the headline; EPE against the "
              "DENSE contour is approximate). What the rows show: docs/lamod.md, section "
              "'What the diagnosis shows'.",
              group_rows=(
                  ("default", "registration", "registration only (φ₁ − id)"),
                  ("default", "regression", "direct regression, 15k params (2,700 steps)"),
                  ("s1500", "regression", "direct regression, 15k params, 1,200 steps (1,500-step runs)"),
                  ("bw36pre", "regression", "direct regression, 291k params, 1,500 steps"),
                  ("default", "clean_latent", "D_η(z): clean latent, no diffusion"),
                  ("default", "lamod_start99", "LaMoD from M = T (Alg. 1), DDIM-10, mean of 8"),
                  ("default", "lamod_ddpm", "LaMoD, DDPM (Eq. 8) from the midpoint, mean of 8"),
                  ("default", "lamod", "LaMoD, DDIM-10 from the midpoint, mean of 8 (default)"),
                  ("default", "lamod_one", "LaMoD, DDIM-10 from the midpoint, one sample"),
                  ("all", "lamod", "E_R on all videos (§4.1): LaMoD"),
                  ("s1500", "clean_latent", "1,500 steps: D_η(z)"),
                  ("s1500", "lamod", "1,500 steps: LaMoD from M = T (the default before)"),
                  ("alpha0.01", "lamod", "1,500 steps, α = 1e-2: LaMoD from M = T"),
                  ("cine", "lamod", "cine test: LaMoD"),
                  ("cine", "regression", "cine test: direct regression (15k)"))),
    SeedTable("lamod_exploration", "LaMoD at the old budget (900 steps: 300 registration + "
              "600 joint), one change each (issue 17): test split, seed 42", "lamod_dense-v900", (
                  Column("D_η(z) EPE", "test/clean_latent/epe", ".3f"),
                  Column("D_η(z) seg. Ecc", "test/clean_latent/segmental_ecc_mae", ".4f"),
                  Column("LaMoD EPE, mean of 8", "test/lamod_mean8/epe", ".3f"),
                  Column("LaMoD seg. Ecc, mean of 8", "test/lamod_mean8/segmental_ecc_mae", ".4f"),
                  Column("LaMoD EPE, one", "test/lamod_one/epe", ".3f"),
                  Column("registration EPE", "test/registration/epe", ".3f"),
                  Column("regression EPE", "test/regression/epe", ".3f")),
              "Each run: `python -m launch.train --config=configs/lamod_dense.py "
              "--config.num_steps=900 --config.eval_every=900` plus its change (the per-position "
              "rows: `--config.model.latent_norm=position`).",
              rows=(("position", "z per position (the default before)"),
                    ("frame", "z per frame (the default's latent)"),
                    ("z16", "per position, 16 channels at 16² (`model.latent=16`, "
                            "`model.reg_widths=(16,)`)"),
                    ("dec64", "per position, D_η widths (64, 32)"),
                    ("reg48", "per frame, 48² registration grid (12² latent)"),
                    ("unfrozen", "per frame, E_R trained on (`pretrain.freeze=False`)"),
                    ("bw36pre", "per position, regression 291k params over 900 steps"))),
    SummaryTable(
        "segmentation_seeds", "Partial-label segmentation, inter-domain (`configs/seg_partial.py:"
        "inter`, U-Net): test Dice, mean ± SD over seeds", "seg_inter", _SEG_COLUMNS,
        "The Unity-like domain's LA is withheld in training and validation."),
    SummaryTable(
        "segmentation_table2", "Partial-label segmentation, inter-domain, the other architectures "
        "(Table 2's grid; `seg_summary --archs=attention_unet,swin_unet`): test Dice, mean ± SD "
        "over seeds", "seg_table2", _SEG_COLUMNS,
        "U-Net: the table above."),
    SummaryTable(
        "segmentation_exp1", "Experiment 1 (`configs/seg_partial.py:exp1_<domain>`, U-Net, CCE, "
        "LV only): test LV Dice per test domain, mean ± SD over seeds", "seg_exp1", (
            Column("CAMUS-like", "dice_by_domain:camus/dice_lv", ".3f"),
            Column("Unity-like", "dice_by_domain:unity/dice_lv", ".3f"),
            Column("EchoNet-like", "dice_by_domain:echonet/dice_lv", ".3f")),
        "Row: the domain(s) trained on; a model is tested on every domain, seen or not."),
)


def metric_value(metrics: dict, key: str):
  """metrics[key], or the nested value of a 'key>group>field' path (None if absent)."""
  value = metrics
  for part in key.split(">"):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return value


def seed_label(table: SeedTable, name: str) -> str | None:
  """The label of run `name` in a SeedTable ('default' without one), or None when the
  table does not show it (not <prefix>[-label]_seed<N>, or not among `table.rows`)."""
  m = _SEED_RUN.match(name[len(table.prefix):]) if name.startswith(table.prefix) else None
  if not m:
    return None
  label = m.group("label").lstrip("-_") or "default"
  return label if not table.labels() or label in table.labels() else None


def _seed_rows(table: SeedTable, chosen: dict) -> list[str]:
  groups: dict[str, list[dict]] = {}
  for name, r in chosen.items():
    groups.setdefault(seed_label(table, name), []).append(r["metrics"])
  lines = ["| method | seeds | " + " | ".join(c.header for c in table.columns) + " |",
           "|---|---|" + "---|" * len(table.columns)]
  if table.group_rows:
    specs = list(table.group_rows)
  elif table.rows:
    specs = [(label, None, name) for label, name in table.rows]
  else:
    specs = [(label, None, label) for label in sorted(groups, key=lambda g: (g != "default", g))]
  for label, group, name in (spec for spec in specs if spec[0] in groups):
    runs = groups[label]
    cells = []
    for c in table.columns:
      key = c.key if group is None else c.key.format(group=group)
      values = [v for v in (metric_value(m, key) for m in runs)
                if isinstance(v, (int, float)) and math.isfinite(v)]
      mean = sum(values) / len(values) if values else None
      sd = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1 else None)
      cells.append(_pm_cell(mean, sd, c.fmt))
    lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
  return lines


def load_runs(root: pathlib.Path = RESULTS) -> dict[str, dict]:
  """{name: {"metrics": ..., "run": ...}} of every results/<name>/ with a metrics.json, and
  {name: {"summary": ..., "run": ...}} of those with a summary.json."""
  runs = {}
  for path in sorted(root.glob("*/metrics.json")) + sorted(root.glob("*/summary.json")):
    with open(path) as f:
      data = json.load(f)
    info = path.parent / "run.json"
    run = json.loads(info.read_text()) if info.is_file() else {}
    runs[path.parent.name] = {("metrics" if path.name == "metrics.json" else "summary"): data,
                              "run": run}
  return runs


def summary_value(entry: dict, key: str) -> tuple[float | None, float | None]:
  """(mean, SD) of a SummaryTable column key in one aggregate entry."""
  group, _, name = key.rpartition(":")
  if group:
    return entry.get(group, {}).get(name), entry.get(f"{group}_sd", {}).get(name)
  return entry.get(key), entry.get(f"{key}_sd")


def _pm_cell(mean, sd, fmt: str) -> str:
  cell = _cell(mean, fmt)
  return cell if cell == "–" or not isinstance(sd, (int, float)) else f"{cell} ± {format(sd, fmt)}"


def _how_made(table, chosen: dict, compact: bool) -> list[str]:
  """Lines under a table: its note and how each run was made (compact: a pointer to
  docs/results.md instead, for README)."""
  if compact:
    return [(table.note + " " if table.note else "")
            + "Commands, machines and dates: [docs/results.md](docs/results.md)."]
  lines = [table.note] if table.note else []
  for name, r in chosen.items():
    run = r["run"]
    made = ", ".join(f"{k} {run[k]}" for k in ("machine", "date", "wall_min", "commit")
                     if k in run)
    lines.append(f"- `{name}`: `{run.get('command', '?')}`" + (f" ({made})" if made else ""))
  return lines


def _cell(value, fmt: str) -> str:
  if not isinstance(value, (int, float)) or not math.isfinite(value):
    return "–"
  return format(value, fmt)


def _metric_rows(table: Table, chosen: dict) -> list[str]:
  header = ["| run | " + " | ".join(c.header for c in table.columns) + " |",
            "|---|" + "---|" * len(table.columns)]
  return header + [f"| {name} | " + " | ".join(_cell(r["metrics"].get(c.key), c.fmt)
                                              for c in table.columns) + " |"
                   for name, r in chosen.items()]


def _summary_rows(table: SummaryTable, chosen: dict) -> list[str]:
  lines = ["| study | loss | seeds | " + " | ".join(c.header for c in table.columns) + " |",
           "|---|---|---|" + "---|" * len(table.columns)]
  for name, r in chosen.items():
    for e in r["summary"].get("aggregate", []):
      label = e["loss"] + ("" if e.get("p") is None else f", p {e['p']:.1f}")
      cells = [_pm_cell(*summary_value(e, c.key), c.fmt) for c in table.columns]
      arch = "" if e.get("arch") in (None, "unet") else f" ({e['arch']})"
      lines.append(f"| {name}{arch} | {label} | {e.get('n', '?')} | " + " | ".join(cells) + " |")
  return lines


def render_table(table: Table | SummaryTable, runs: dict[str, dict], compact: bool = False
                 ) -> str:
  """Markdown: one row per run of the table's prefix (a SummaryTable: per aggregate entry of
  each study, mean ± SD), then how each was made (compact: a pointer to docs/results.md
  instead, for README)."""
  kind = "summary" if isinstance(table, SummaryTable) else "metrics"
  chosen = {n: r for n, r in runs.items() if n.startswith(table.prefix) and kind in r and
            (not isinstance(table, SeedTable) or seed_label(table, n) is not None)}
  lines = [f"**{table.title}** (generated by `python -m launch.results` from "
           f"`results/{table.prefix}*/{kind}.json`)", ""]
  if not chosen:
    return "\n".join(lines + ["No run kept yet."])
  if isinstance(table, SeedTable):
    rows = _seed_rows(table, chosen)
  else:
    rows = _summary_rows(table, chosen) if kind == "summary" else _metric_rows(table, chosen)
  return "\n".join(lines + rows + [""] + _how_made(table, chosen, compact))


DOC_INTRO = """# Results: where the numbers come from

Back to the [README](../README.md).

Results tables are not typed by hand. Each reported run keeps its `metrics.json` (the
file `launch.train` writes into its workdir) under `results/<run>/`, beside a `run.json`
saying how it was made (command, machine, date, wall time, commit), and
`python -m launch.results` regenerates this page and README's result blocks (between
`<!-- results:KEY -->` and `<!-- /results:KEY -->`; nothing else should edit them) from
those files. `python -m launch.results --add=NAME --workdir=DIR --command="..."` keeps a
finished run. A test fails when this page or a README block is out of date. Figures
move between machines (XLA's CPU kernels and thread counts differ), so each run names
its machine. The host settings changed on 2026-12-07 (commit df80cba: one CPU device per
core, XLA:CPU's YNNPACK fusions off for the EF configs; [training.md](training.md)); runs
made before that used one device with YNNPACK on, and rerunning one moves its figures by
float32 summation order only (the default job, seed 42: test MAE 3.376 against the kept
3.370, CRPS 2.379 against 2.370).

The sections headed "History (typed by hand, runs not kept)" in [mcsdr.md](mcsdr.md),
[adacon.md](adacon.md), [lamod.md](lamod.md) and [segmentation.md](segmentation.md),
and the speed figures in [benchmarks.md](benchmarks.md) except the raw outputs kept in
`benchmarks/results/`, were typed by earlier sessions from runs whose `metrics.json`
files were not kept. They describe the code and the synthetic cohorts as they were
then, cannot be regenerated, and will be replaced as the runs are re-made and kept.
"""


def render_doc(runs) -> str:
  parts = [DOC_INTRO]
  for t in TABLES:
    parts += [f"## {t.key}", "", render_table(t, runs), ""]
  return "\n".join(parts)


def fill_blocks(text: str, runs) -> str:
  """A page's text with each `<!-- results:KEY -->` block replaced by table KEY."""
  for t in TABLES:
    pattern = re.compile(rf"(<!-- results:{t.key} -->\n).*?(<!-- /results:{t.key} -->)",
                         re.DOTALL)
    text = pattern.sub(
        lambda m, t=t: m.group(1) + render_table(t, runs, compact=True) + "\n" + m.group(2),
        text)
  return text


def outputs(root: pathlib.Path = ROOT) -> dict[pathlib.Path, str]:
  """{path: the text it should hold} for docs/results.md, README.md and every other
  docs/*.md page that holds a result block."""
  runs = load_runs(root / "results")
  doc = root / "docs" / "results.md"
  pages = [root / "README.md"] + [p for p in sorted((root / "docs").glob("*.md")) if p != doc]
  out = {doc: render_doc(runs)}
  for page in pages:
    text = page.read_text()
    if "<!-- results:" in text:
      out[page] = fill_blocks(text, runs)
  return out


def add_run(name: str, workdir: str, command: str, wall_min: float | None = None,
            file: str = "metrics.json") -> pathlib.Path:
  """Copies WORKDIR/<file> (a run's metrics.json, or a `launch.seg_summary` study's
  summary.json) to results/<name>/ with a run.json of how it was made."""
  src = pathlib.Path(workdir) / file
  if not src.is_file():
    raise FileNotFoundError(f"{src}: no {file} (has the run finished?)")
  dst = RESULTS / name
  dst.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(src, dst / file)
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True, check=False).stdout.strip()
  run = {"command": command, "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
         "date": datetime.date.today().isoformat(), "commit": commit}
  if wall_min is not None:
    run["wall_min"] = round(float(wall_min), 1)
  (dst / "run.json").write_text(json.dumps(run, indent=1) + "\n")
  return dst


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.add and f.add_summary:
    raise app.UsageError("give --add or --add_summary, not both")
  if f.add or f.add_summary:
    if not f.workdir or not f.command:
      raise app.UsageError("--add and --add_summary need --workdir and --command")
    kept = add_run(f.add or f.add_summary, f.workdir, f.command, f.wall_min,
                   "metrics.json" if f.add else "summary.json")
    print(f"kept {kept}")
  stale = []
  for path, text in outputs().items():
    if path.is_file() and path.read_text() == text:
      continue
    if f.check:
      stale.append(str(path.relative_to(ROOT)))
    else:
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(text)
      print(f"wrote {path.relative_to(ROOT)}")
  if stale:
    print(f"out of date (run `python -m launch.results`): {', '.join(stale)}")
    sys.exit(1)


if __name__ == "__main__":
  flags.DEFINE_bool("check", False, "Only check that the generated files are up to date.")
  flags.DEFINE_string("add", None, "Keep a finished run as results/<add>/.")
  flags.DEFINE_string("add_summary", None, "Keep a finished launch.seg_summary study "
                      "(its summary.json) as results/<add_summary>/.")
  flags.DEFINE_string("workdir", None, "With --add: the run's workdir.")
  flags.DEFINE_string("command", None, "With --add: the command that made it.")
  flags.DEFINE_float("wall_min", None, "With --add: its wall time in minutes.")
  app.run(main)
