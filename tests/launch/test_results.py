"""launch.results: tables rendered from kept metrics.json files; the committed
docs/results.md and README blocks are what the script generates."""
from __future__ import annotations

import json

from launch import results


def test_committed_tables_are_up_to_date():
  stale = [str(p) for p, text in results.outputs().items() if p.read_text() != text]
  assert stale == [], "run `python -m launch.results`"


def test_table_rows_come_from_metrics(tmp_path):
  run = tmp_path / "results" / "mcsdr_pediatric_a"
  run.mkdir(parents=True)
  (run / "metrics.json").write_text(json.dumps({"test/mae": 3.14159, "test/rmse": float("nan")}))
  (run / "run.json").write_text(json.dumps({"command": "python -m launch.train --config=X"}))
  (tmp_path / "docs").mkdir()
  (tmp_path / "README.md").write_text("a\n<!-- results:mcsdr -->\nold\n<!-- /results:mcsdr -->\nb\n")
  out = results.outputs(tmp_path)
  readme = out[tmp_path / "README.md"]
  assert readme.startswith("a\n<!-- results:mcsdr -->\n") and readme.endswith(
      "<!-- /results:mcsdr -->\nb\n")
  assert "old" not in readme
  row = next(line for line in readme.splitlines() if line.startswith("| mcsdr_pediatric_a"))
  assert row.split(" | ")[1:3] == ["3.14", "–"]           # MAE, RMSE (NaN shown as –)
  assert "docs/results.md" in readme                     # README points to how runs were made
  doc = out[tmp_path / "docs" / "results.md"]
  assert "`python -m launch.train --config=X`" in doc
  assert "No run kept yet." in doc                       # the other methods
