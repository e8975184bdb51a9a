"""launch.results: tables rendered from kept metrics.json files; the committed
docs/results.md and README blocks are what the script generates."""
from __future__ import annotations

import json

from launch import results


def test_committed_tables_are_up_to_date():
  stale = [str(p) for p, text in results.outputs().items() if p.read_text() != text]
  assert stale == [], "run `python -m launch.results`"


def test_table_rows_come_from_metrics(tmp_path):
  run = tmp_path / "results" / "adacon_a"
  run.mkdir(parents=True)
  (run / "metrics.json").write_text(json.dumps({"test/mae": 3.14159, "test/rmse": float("nan")}))
  (run / "run.json").write_text(json.dumps({"command": "python -m launch.train --config=X"}))
  (tmp_path / "docs").mkdir()
  (tmp_path / "README.md").write_text("a\n<!-- results:adacon -->\nold\n<!-- /results:adacon -->\nb\n")
  out = results.outputs(tmp_path)
  readme = out[tmp_path / "README.md"]
  assert readme.startswith("a\n<!-- results:adacon -->\n") and readme.endswith(
      "<!-- /results:adacon -->\nb\n")
  assert "old" not in readme
  row = next(line for line in readme.splitlines() if line.startswith("| adacon_a"))
  assert row.split(" | ")[1:3] == ["3.14", "–"]           # MAE, RMSE (NaN shown as –)
  assert "docs/results.md" in readme                     # README points to how runs were made
  doc = out[tmp_path / "docs" / "results.md"]
  assert "`python -m launch.train --config=X`" in doc
  assert "No run kept yet." in doc                       # the other methods


def test_summary_table_shows_mean_and_sd(tmp_path):
  study = tmp_path / "results" / "seg_exp1_camus"
  study.mkdir(parents=True)
  entry = {"arch": "unet", "loss": "cce", "p": None, "n": 2,
           "dice_by_domain": {"camus/dice_lv": 0.9512, "unity/dice_lv": 0.7},
           "dice_by_domain_sd": {"camus/dice_lv": 0.0041, "unity/dice_lv": 0.05}}
  (study / "summary.json").write_text(json.dumps({"rows": [], "aggregate": [entry]}))
  (study / "run.json").write_text(json.dumps({"command": "python -m launch.seg_summary X"}))
  (tmp_path / "docs").mkdir()
  (tmp_path / "README.md").write_text(
      "<!-- results:segmentation_exp1 -->\n<!-- /results:segmentation_exp1 -->\n")
  out = results.outputs(tmp_path)
  row = next(line for line in out[tmp_path / "README.md"].splitlines()
             if line.startswith("| seg_exp1_camus"))
  # study, loss, seeds, CAMUS-like, Unity-like, EchoNet-like (absent: –)
  assert row.split(" | ")[1:] == ["cce", "2", "0.951 ± 0.004", "0.700 ± 0.050", "– |"]
  assert "`python -m launch.seg_summary X`" in out[tmp_path / "docs" / "results.md"]
  assert results.summary_value(entry, "dice_by_domain:unity/dice_lv") == (0.7, 0.05)


def test_seed_table_groups_runs_by_label_with_mean_and_sd(tmp_path):
  """results/<prefix>[-label]_seed<N>: one row per label, mean ± SD (n − 1) over the
  seeds, nested 'key>group>field' columns; a run without _seed<N> is not a row; `rows`
  picks, orders and names the labels shown, and only their runs are listed."""
  values = {"mcsdr_pediatric_seed42": 4.0, "mcsdr_pediatric_seed43": 5.0,
            "mcsdr_pediatric_seed44": 6.0, "mcsdr_pediatric-ensemble_seed42": 3.0,
            "mcsdr_pediatric-mlp_seed42": 7.0, "mcsdr_pediatric_old": 9.0}
  for name, mae in values.items():
    run = tmp_path / "results" / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(
        {"test/mae": mae, "test/by_quality": {"poor": {"sigma_mean": 2 * mae}}}))
    (run / "run.json").write_text(json.dumps({"command": f"train {name}"}))
  runs = results.load_runs(tmp_path / "results")
  columns = (results.Column("MAE", "test/mae"),
             results.Column("σ poor", "test/by_quality>poor>sigma_mean", ".1f"))

  def table_rows(**kw):
    text = results.render_table(results.SeedTable("t", "T", "mcsdr_pediatric", columns, **kw),
                                runs)
    return text, [line.split(" | ") for line in text.splitlines()
                  if line.startswith("| ") and not line.startswith("| method")]

  text, rows = table_rows()
  assert [r[0][2:] for r in rows] == ["default", "ensemble", "mlp"]
  assert rows[0][1:] == ["3", "5.00 ± 1.00", "10.0 ± 2.0 |"]    # seeds, MAE, σ poor (nested)
  assert rows[1][1:3] == ["1", "3.00"]                           # one seed: no SD
  assert "train mcsdr_pediatric_old" not in text
  text, rows = table_rows(rows=(("mlp", "MLP decoder"), ("default", "MCSDR")))
  assert [r[0][2:] for r in rows] == ["MLP decoder", "MCSDR"]
  assert "train mcsdr_pediatric-mlp_seed42" in text and "ensemble" not in text
  assert results.metric_value({"a": {"b": {"c": 1.5}}}, "a>b>c") == 1.5
  assert results.metric_value({"a": {}}, "a>b>c") is None


def test_seed_table_group_rows_show_several_groups_of_each_run(tmp_path):
  """`group_rows` (label, group, name): rows taken from metric groups of the same runs
  (LaMoD's diagnosis), the column keys formatted with the group, mean ± SD over seeds."""
  for name, base in {"lamod_dense_seed42": 1.0, "lamod_dense_seed43": 3.0,
                     "lamod_dense-cine_seed42": 10.0, "lamod_dense-x_seed42": 50.0}.items():
    run = tmp_path / "results" / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(
        {"test/lamod/epe": base, "test/regression/epe": base + 0.5}))
  runs = results.load_runs(tmp_path / "results")
  table = results.SeedTable("t", "T", "lamod_dense", (results.Column("EPE", "test/{group}/epe"),),
                            group_rows=(("default", "regression", "regression"),
                                        ("default", "lamod", "LaMoD"),
                                        ("cine", "lamod", "cine LaMoD")))
  rows = [line.split(" | ") for line in results.render_table(table, runs).splitlines()
          if line.startswith("| ") and not line.startswith("| method")]
  assert rows == [["| regression", "2", "2.50 ± 1.41 |"], ["| LaMoD", "2", "2.00 ± 1.41 |"],
                  ["| cine LaMoD", "1", "10.00 |"]]


def test_blocks_in_docs_pages_are_filled(tmp_path):
  (tmp_path / "results").mkdir()
  (tmp_path / "docs").mkdir()
  (tmp_path / "README.md").write_text("no block\n")
  (tmp_path / "docs" / "other.md").write_text("plain\n")
  (tmp_path / "docs" / "method.md").write_text("<!-- results:adacon -->\nold\n"
                                               "<!-- /results:adacon -->\n")
  out = results.outputs(tmp_path)
  assert set(out) == {tmp_path / "docs" / "results.md", tmp_path / "docs" / "method.md"}
  assert "No run kept yet." in out[tmp_path / "docs" / "method.md"]
