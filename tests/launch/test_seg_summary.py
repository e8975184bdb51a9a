"""launch.seg_summary without training: stale-run refusal, aggregation over seeds, the
tables and the mean ± SD plots."""
from __future__ import annotations

import json
import os

from absl import app
import ml_collections
import numpy as np
import pytest

from launch import seg_summary
from training import writers


def _config(variant: str = "inter,smoke"):
  """A config of configs/seg_partial.py (a hand-made one if that file cannot build it)."""
  try:
    return seg_summary.load_config_module("configs/seg_partial.py").get_config(variant)
  except Exception:  # pylint: disable=broad-except
    return ml_collections.ConfigDict(dict(
        task="segmentation", seed=42, num_steps=4, log_every=2,
        data=dict(dataset="seg_domains", root="", cache_dir="", image_size=32,
                  domains=("camus", "unity"), withheld={"unity": ("la",)},
                  synthetic=dict(num_subjects=10, seed=0)),
        model=dict(arch="unet", depths=(2, 2, 2, 2)), loss=dict(name="marginal")))


def _row(arch, loss, p, seed, lv, la, withheld, unity_lv, echonet_lv=None):
  by_domain = {"camus/dice_lv": lv, "unity/dice_lv": unity_lv, "unity/dice_la": withheld}
  if echonet_lv is not None:
    by_domain["echonet/dice_lv"] = echonet_lv
  return {"arch": arch, "loss": loss, "p": p, "seed": seed,
          "dice": {"lv": lv, "lvm": 0.8, "la": la}, "dice_by_domain": by_domain,
          "fg_dice": (lv + 0.8 + la) / 3, "withheld": "unity/dice_la",
          "withheld_dice": withheld, "ef_mae_discs": 2.0 + seed}


ROWS = ([_row("unet", "marginal", None, s, lv, la, w, u, e) for s, (lv, la, w, u, e) in
         enumerate([(0.90, 0.70, 0.60, 0.88, 0.50), (0.92, 0.74, 0.64, 0.86, 0.56),
                     (0.85, 0.69, 0.50, 0.83, 0.47)])]
        + [_row("unet", "cce", None, 0, 0.91, 0.2, 0.05, 0.9)])


def test_config_differences():
  c = _config()
  stored = json.loads(json.dumps(c.to_dict()))        # tuples → lists, as config.json
  assert seg_summary.config_differences(stored, c.to_dict()) == []
  assert seg_summary.config_differences(c.to_dict(), c.to_dict()) == []
  changed = _config()
  changed.data.synthetic.num_subjects = 120
  changed.data.cache_dir = "/elsewhere"                # does not change results: ignored
  diff = seg_summary.config_differences(stored, changed.to_dict())
  assert diff == ["data.synthetic.num_subjects: 10 in the stored config.json, 120 now"]
  changed.seed = 3
  changed.data.domains = ("camus",)
  diff = seg_summary.config_differences(stored, changed.to_dict())
  assert [d.split(":")[0] for d in diff] == ["data.domains", "data.synthetic.num_subjects",
                                             "seed"]
  # A field only one side has.
  assert seg_summary.config_differences({"a": {"b": 1}}, {"a": {}}) == [
      "a.b: 1 in the stored config.json, <absent> now"]
  assert seg_summary.config_differences({"x": float("nan"), "t": (1, 2)},
                                        {"x": float("nan"), "t": [1, 2]}) == []
  assert seg_summary.config_differences({"x": True}, {"x": 1}) != []


def test_aggregate_mean_and_sd():
  agg = seg_summary.aggregate(ROWS)
  assert [(a["arch"], a["loss"], a["p"], a["n"]) for a in agg] == [
      ("unet", "marginal", None, 3), ("unet", "cce", None, 1)]
  m, c = agg
  assert m["seeds"] == [0, 1, 2] and m["withheld"] == "unity/dice_la"
  sub = ROWS[:3]
  for key in ("withheld_dice", "fg_dice", "ef_mae_discs"):
    v = np.array([r[key] for r in sub])
    assert m[key] == pytest.approx(v.mean()) and m[f"{key}_sd"] == pytest.approx(v.std(ddof=1))
  for s in ("lv", "lvm", "la"):
    v = np.array([r["dice"][s] for r in sub])
    assert m["dice"][s] == pytest.approx(v.mean())
    assert m["dice_sd"][s] == pytest.approx(v.std(ddof=1))
  assert set(m["dice_by_domain"]) == {"camus/dice_lv", "unity/dice_lv", "unity/dice_la",
                                      "echonet/dice_lv"}
  for k in m["dice_by_domain"]:
    v = np.array([r["dice_by_domain"][k] for r in sub])
    assert m["dice_by_domain"][k] == pytest.approx(v.mean())
    assert m["dice_by_domain_sd"][k] == pytest.approx(v.std(ddof=1))
  # One seed: SD 0; a domain only some rows have is averaged over those.
  assert c["withheld_dice"] == 0.05 and c["withheld_dice_sd"] == 0.0
  assert "echonet/dice_lv" not in c["dice_by_domain"]
  mixed = seg_summary.aggregate([ROWS[3], dict(ROWS[0], loss="cce", seed=1)])[0]
  assert mixed["n"] == 2 and mixed["dice_by_domain"]["echonet/dice_lv"] == 0.5
  assert mixed["dice_by_domain_sd"]["echonet/dice_lv"] == 0.0
  # metrics.json stores non-finite values as strings.
  nan = seg_summary.aggregate([dict(ROWS[0], withheld_dice="nan")])[0]
  assert np.isnan(nan["withheld_dice"])


def test_reusable_metrics_refuses_stale_runs(tmp_path):
  c = _config()
  c.seed = 1
  run = tmp_path / "unet-marginal" / "seed1"
  assert seg_summary.reusable_metrics(str(run), c) is None          # nothing there
  os.makedirs(run)
  metrics = {"test/dice_lv": 0.9, "checkpoint": "best"}
  writers.write_json(str(run / "metrics.json"), metrics)
  with pytest.raises(app.UsageError, match="no config.json"):
    seg_summary.reusable_metrics(str(run), c)
  other = _config()
  other.seed = 1
  other.data.synthetic.num_subjects = 300
  writers.write_json(str(run / "config.json"), other.to_dict())      # as training.loop
  with pytest.raises(app.UsageError) as e:
    seg_summary.reusable_metrics(str(run), c)
  msg = str(e.value)
  assert str(run) in msg and "data.synthetic.num_subjects: 300" in msg and "--workdir" in msg
  writers.write_json(str(run / "config.json"), c.to_dict())
  assert seg_summary.reusable_metrics(str(run), c) == metrics
  # Another seed is another config.
  c.seed = 2
  with pytest.raises(app.UsageError, match="seed: 1 in the stored config.json, 2 now"):
    seg_summary.reusable_metrics(str(run), c)
  # A partial run (config.json, no metrics.json) of the same config: train (resume) it.
  os.remove(run / "metrics.json")
  c.seed = 1
  assert seg_summary.reusable_metrics(str(run), c) is None
  c.seed = 2
  with pytest.raises(app.UsageError, match="partial run"):
    seg_summary.reusable_metrics(str(run), c)


def test_run_config_seed():
  arg = "configs/seg_partial.py:inter,smoke"
  try:
    c = seg_summary.run_config(arg, {"num_steps": 7}, "unet", "marginal", 0.2, seed=3)
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f"configs/seg_partial.py does not build: {e}")
  assert c.seed == 3 and c.num_steps == 7 and c.loss.label_dropout == 0.2
  assert seg_summary.run_name("unet", "marginal", 0.2) == "unet-marginal-p0.2"
  assert seg_summary.run_name("unet", "full_labels", None) == "unet-full_labels"


def test_tables():
  agg = seg_summary.aggregate(ROWS)
  table = seg_summary.format_table(agg)
  lines = table.splitlines()
  assert lines[0].startswith("| arch | loss | p | n | withheld Dice |")
  w = np.array([0.60, 0.64, 0.50])
  lv = np.array([0.90, 0.92, 0.85])
  assert (f"| unet | marginal |  | 3 | {w.mean():.3f} ± {w.std(ddof=1):.3f} | "
          f"{lv.mean():.3f} ± {lv.std(ddof=1):.3f} |") in table
  assert "| unet | cce |  | 1 | 0.050 ± 0.000 |" in table
  domains = seg_summary.format_domain_table(agg, "lv", trained_domains=("unity", "camus"))
  head = domains.splitlines()[0]
  assert head == "| arch | loss | p | n | unity | camus | echonet (unseen) |"
  e = np.array([0.50, 0.56, 0.47])
  assert f"| {e.mean():.3f} ± {e.std(ddof=1):.3f} |" in domains
  assert domains.splitlines()[-1].endswith("|  |")                 # cce: no echonet
  md = seg_summary.summary_markdown(agg, ("unity", "camus"))
  assert table in md and domains in md
  # Single-run rows keep the plain table.
  assert "±" not in seg_summary.format_table(ROWS[:1])


def test_plots_with_error_bars(tmp_path):
  from segmentation import plots
  agg = seg_summary.aggregate(ROWS + [dict(r, arch="swin_unet") for r in ROWS])
  plots.summary_plot(str(tmp_path / "summary.png"), agg, title="inter")
  sweep = seg_summary.aggregate([dict(r, p=p, loss=loss, seed=s)
                                 for loss in ("acce", "abce") for p in (0.0, 0.5, 1.0)
                                 for s, r in enumerate(ROWS[:3])])
  plots.sweep_plot(str(tmp_path / "sweep.png"), sweep, title="dropout")
  plots.summary_plot(str(tmp_path / "single.png"), ROWS)               # single runs
  for name in ("summary.png", "sweep.png", "single.png"):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
