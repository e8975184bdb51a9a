"""Smoke training of the segmentation task through the shared loop; config variants; summary rows."""
from __future__ import annotations

import json
import math
import os

import numpy as np

import pytest

from configs import seg_partial
from launch import seg_summary
from segmentation import task as seg_task
from training import loop
from training import optim


def test_config_variants():
  for v in seg_partial.SCENARIOS:
    for size in ("", "smoke", "full"):
      c = seg_partial.get_config(",".join(x for x in (v, size) if x))
      assert c.task == "segmentation" and c.optim.name == "sgd" and c.optim.nesterov
      assert c.checkpoint.best_metric == "fg_dice" and c.checkpoint.best_mode == "max"
  assert seg_partial.get_config("intra").data.withheld_fraction["camus"] == 0.5
  assert seg_partial.get_config("all3").data.domains == ("camus", "unity", "echonet")
  assert seg_partial.get_config("dropout").loss.label_dropout == 0.4
  with pytest.raises(ValueError, match="one scenario"):
    seg_partial.get_config("inter,intra")
  with pytest.raises(ValueError, match="one architecture"):
    seg_partial.get_config("swin_unet,attention_unet")
  # Swin-UNet's own optimiser defaults (AdamW, clipping); the U-Net's stay.
  swin = seg_partial.get_config("inter,swin_unet")
  assert swin.model.arch == "swin_unet" and swin.optim.name == "adamw"
  assert swin.optim.lr == 1e-3 and swin.optim.grad_clip == 1.0
  unet = seg_partial.get_config("inter")
  assert unet.model.arch == "unet" and unet.optim.lr == 0.05 and unet.optim.grad_clip == 0.0
  assert seg_partial.get_config("attention_unet").optim.lr == unet.optim.lr
  with pytest.raises(ValueError, match="unknown variant"):
    seg_partial.get_config("big")


@pytest.mark.slow
def test_smoke_pseudo_labels_with_dropout(tmp_path):
  """One training through the loop: pseudo-label teacher, student with label dropout."""
  c = seg_partial.get_config("inter,smoke")
  c.data.cache_dir = str(tmp_path / "cache")
  c.loss.name = "pseudo"
  c.loss.teacher_steps = 1
  c.loss.label_dropout = 0.5
  c.num_steps = 1
  c.eval_every = 1
  c.checkpoint.save_every = 1
  c.model.width = 0.0625
  c.final_eval_splits = ("test",)
  work = tmp_path / "run"
  final = loop.train_and_evaluate(c, str(work))
  with open(work / "metrics.json") as f:
    saved = json.load(f)
  assert saved["checkpoint"] == "best"
  for s in ("lv", "lvm", "la"):
    assert 0.0 <= saved[f"test/dice_{s}"] <= 1.0
    assert 0.0 <= saved[f"test/unity/dice_{s}"] <= 1.0     # LA evaluated in the test split
  assert saved["test/pseudo_labelled_images"] > 0 and saved["test/teacher_steps"] == 1
  assert "test/ef_mae_discs" in saved and "test/ef_mae_biplane" in saved
  assert final["test/fg_dice"] == pytest.approx(saved["test/fg_dice"])
  assert os.path.isfile(work / "plots" / "test_examples.png")
  assert os.path.isfile(work / "plots" / "test_dice.png")
  with open(work / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  val = [r for r in rows if r["split"] == "val"]
  # Validation keeps LA withheld in the Unity-like domain: no unity/dice_la there.
  assert val and "unity/dice_la" not in val[0] and "camus/dice_la" in val[0]
  assert all(math.isfinite(r["loss"]) for r in rows if r["split"] == "train")
  # teacher_steps 0 (the config's default) = the student's num_steps.
  c.loss.teacher_steps = 0
  c.num_steps = 2
  task = seg_task.SegmentationTask(c, str(tmp_path), make_optimizer=optim.make_optimizer)
  assert task.pseudo_info["teacher_steps"] == 2
  assert seg_partial.get_config("inter").loss.teacher_steps == 0


def test_summary_rows_and_table():
  c = seg_partial.get_config("inter")
  key = seg_summary.withheld_key(c)
  assert key == "unity/dice_la"
  metrics = {"test/dice_lv": 0.9, "test/dice_lvm": 0.8, "test/dice_la": 0.7,
             "test/unity/dice_la": 0.6, "test/ef_mae_discs": 3.0, "checkpoint": "best"}
  row = seg_summary.summary_row("unet", "marginal", None, metrics, key)
  assert row["withheld_dice"] == 0.6 and row["dice"] == {"lv": 0.9, "lvm": 0.8, "la": 0.7}
  table = seg_summary.format_table([row])
  assert "| unet | marginal |  | 0.600 | 0.900 | 0.800 | 0.700 | 3.00 |" in table
  arg = "configs/seg_partial.py:inter"
  bench = seg_summary.run_config(arg, {"num_steps": 7}, "swin_unet", "full_labels", 0.3)
  assert bench.loss.name == "cce" and dict(bench.data.withheld) == {}
  assert bench.loss.label_dropout == 0.0 and bench.num_steps == 7     # override after variants
  assert bench.model.arch == "swin_unet" and bench.optim.lr == 1e-3 and bench.optim.grad_clip == 1.0
  # The runs are the configs launch.train builds from the same variants.
  assert (seg_summary.run_config(arg, {}, "swin_unet", "abce", None).to_dict()
          == seg_partial.get_config("inter,swin_unet,abce").to_dict())
  # aBCE runs get LOSS_DEFAULTS['abce'] (the Dice term); other losses keep theirs.
  assert seg_partial.get_config("inter,abce").loss.dice_weight == 1.0
  assert seg_summary.run_config(arg, {}, "unet", "abce", None).loss.dice_weight == 1.0
  marginal = seg_summary.run_config(arg, {}, "unet", "marginal", 0.2)
  assert marginal.loss.dice_weight == 0.0 and marginal.loss.label_dropout == 0.2
  assert marginal.optim.lr == 0.05 and marginal.optim.name == "sgd"


@pytest.mark.slow
def test_pseudo_label_teacher_learns_and_keeps_annotations(tmp_path):
  """The teacher trains on the fully labelled images: its Dice on held-out validation images
  is well above an untrained teacher's; its labels fill only the withheld class (intra:
  LVM withheld from half of the CAMUS-like patients) and never change an annotated pixel."""
  c = seg_partial.get_config("intra,smoke,pseudo")
  c.data.cache_dir = str(tmp_path / "cache")
  c.data.synthetic.num_subjects = 20
  c.optim.warmup_steps = 0
  c.model.width = 0.0625
  dice = {}
  for steps in (1, 200):
    c.loss.teacher_steps = steps
    task = seg_task.SegmentationTask(c, str(tmp_path), make_optimizer=optim.make_optimizer)
    dice[steps] = task.pseudo_info["teacher_val_fg_dice"]
  assert task.pseudo_info["teacher_steps"] == 200
  # Chance: the untrained teacher (about the structures' pixel fractions, 0.04).
  assert dice[200] > 0.3 and dice[200] > 5 * dice[1], dice
  tr = task.index["train"]
  partial = tr[~task.sets["train"][tr, 2]]            # LVM withheld
  assert 0 < len(partial) < len(tr)
  before = np.where(task.data["label"][partial] == 2, 0, task.data["label"][partial])
  after = task.train_labels[partial]
  changed = after != before
  # Only LVM was added, only on background; every annotated LV/LA pixel is unchanged.
  assert changed.any() and np.all(after[changed] == 2) and np.all(before[changed] == 0)
  assert task.train_sets[partial].all()
  full = np.setdiff1d(tr, partial)
  np.testing.assert_array_equal(task.train_labels[full], task.data["label"][full])
