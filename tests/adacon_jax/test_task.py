"""AdaCon task on the smoke cohort: train-only ECDF, a short run through the shared loop
(metrics.json, Figs. 3/4 plots), the two-stage switch, and the MCSDR plug-in."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adacon_jax import ecdf as ecdf_lib
from adacon_jax import losses
from adacon_jax import plugin
from adacon_jax import task as adacon_task
from configs import adacon_dynamic
from configs import dynamic
from mcsdr_jax import task as mcsdr_task
from training import loop
from training import tasks


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("adacon_cache"))


def _config(cache, variant="smoke", **adacon):
  c = adacon_dynamic.get_config(variant)
  c.data.cache_dir = cache
  c.num_steps = 4
  c.eval_every = 4
  c.checkpoint.save_every = 4
  c.adacon.update(adacon)
  return c


def test_ecdf_is_fitted_on_the_training_split_only(cache, tmp_path):
  task = adacon_task.AdaConTask(_config(cache), str(tmp_path))
  train = task.labels("train")
  ref = ecdf_lib.ECDF.fit(train, bucket_width=task.config.adacon.bucket_width)
  np.testing.assert_array_equal(task.ecdf.sorted_values, ref.sorted_values)
  assert task.ecdf.n == len(train)
  test = task.labels("test")
  expected = np.array([np.mean(np.floor(train / 0.05) <= np.floor(v / 0.05)) for v in test])
  np.testing.assert_allclose(task.ecdf(test), expected)
  both = ecdf_lib.ECDF.fit(np.concatenate([train, test]), bucket_width=0.05)
  assert not np.allclose(both(test), task.ecdf(test))
  meta = ecdf_lib.ECDF.from_json(json.loads(json.dumps(task.meta()))["ecdf"])
  np.testing.assert_array_equal(meta.sorted_values, ref.sorted_values)


@pytest.mark.slow
def test_short_run_writes_metrics_and_figures(cache, tmp_path):
  metrics = loop.train_and_evaluate(_config(cache), str(tmp_path))
  saved = json.loads((tmp_path / "metrics.json").read_text())
  for split in ("val", "test"):
    for name in ("mae", "rmse", "r2", "similarity_vs_ecdf_spearman"):
      assert np.isfinite(saved[f"{split}/{name}"]) and saved[f"{split}/{name}"] == metrics[f"{split}/{name}"]
    for fig in ("scatter", "similarity", "angular"):
      assert (tmp_path / "plots" / f"{split}_{fig}.png").stat().st_size > 1000
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["split"] == "train"]
  assert all(np.isfinite(r["con_loss"]) and np.isfinite(r["reg_loss"]) for r in train)


@pytest.mark.slow
def test_two_stage_switch_and_regression_only_arm(cache, tmp_path):
  task = adacon_task.AdaConTask(_config(cache, pretrain_steps=2), str(tmp_path))
  batches = task.train_batches(1)
  b1, b2 = next(batches), next(batches)
  assert (int(b1["step"]), int(b2["step"])) == (1, 2)
  params = task.init(jax.random.key(0), b1)
  rng = jax.random.key(1)
  loss1, m1 = task.loss(params, b1, rng)      # step 1 < 2: contrastive only.
  loss2, m2 = task.loss(params, b2, rng)      # step 2: regression only.
  np.testing.assert_allclose(float(loss1), float(m1["con_loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(loss2), float(m2["reg_loss"]), rtol=1e-6)
  mse = adacon_task.AdaConTask(_config(cache, contrastive="none", con_weight=0.0),
                               str(tmp_path))
  loss, m = mse.loss(params, {k: v for k, v in b2.items() if k != "step"}, rng)
  assert "con_loss" not in m and float(loss) == float(m["reg_loss"])
  with pytest.raises(ValueError, match="config.adacon.contrastive"):
    adacon_task.AdaConTask(_config(cache, contrastive="ranknce"), str(tmp_path))


def test_contrastive_dispatch_matches_the_losses():
  rng = np.random.default_rng(0)
  z = rng.standard_normal((8, 6)).astype(np.float32)
  z = jnp.asarray(z / np.linalg.norm(z, axis=1, keepdims=True))
  ef = jnp.asarray([40.0, 55.0, 55.0, 70.0])
  phi = jnp.asarray([0.1, 0.5, 0.5, 0.9])
  kw = dict(scale=5.0, bucket_width=0.0, triplet_margin=0.5, ef_std=10.0)
  y2 = jnp.concatenate([ef, ef])
  pos = losses.positive_mask(y2)
  expected = {
      "adacon": losses.adacon_loss(z, jnp.concatenate([phi, phi]), pos, scale=5.0),
      "supcon": losses.supcon_loss(z, pos, scale=5.0),
      "npair": losses.npair_loss(z[:4], z[4:], losses.positive_mask(ef), scale=5.0),
      "triplet": losses.adaptive_triplet_loss(z, pos, 0.05 * jnp.abs(y2[:, None] - y2[None])),
  }
  for kind, ref in expected.items():
    got = adacon_task.contrastive_loss(kind, z, ef, phi, **kw)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-6, err_msg=kind)


@pytest.mark.slow
def test_mcsdr_plugin_one_step(cache, tmp_path):
  def make(weight):
    c = dynamic.get_config("smoke")
    c.data.cache_dir = cache
    c.data.image_size = 32          # The adacon smoke build: one TFDS build for the module.
    c.model.adacon.weight = weight
    return tasks.make_task(c, str(tmp_path)), c

  off, _ = make(0.0)
  on, _ = make(0.5)
  assert off.plugin is None and isinstance(on.plugin, plugin.AdaConPlugin)
  batch = next(off.train_batches(0))
  rng = jax.random.key(3)
  p_off = off.init(jax.random.key(0), batch)
  assert "proj_head" not in p_off["params"]                 # Off: the model is unchanged.
  l_off, m_off = off.loss(p_off, batch, rng)
  assert np.isfinite(float(l_off)) and "adacon_loss" not in m_off

  p_on = on.init(jax.random.key(0), batch)
  assert "proj_head" in p_on["params"]
  tx = optax.adam(1e-3)
  step = jax.jit(jax.value_and_grad(on.loss, has_aux=True))
  (loss, metrics), grads = step(p_on, batch, rng)
  assert np.isfinite(float(metrics["adacon_loss"])) and float(metrics["adacon_loss"]) > 0
  # The plug-in adds exactly weight · L_con to the MCSDR loss of the same batch and key.
  np.testing.assert_allclose(float(loss) - 0.5 * float(metrics["adacon_loss"]),
                             float(off.loss(p_on, batch, rng)[0]), rtol=1e-5)
  updates, _ = tx.update(grads, tx.init(p_on), p_on)
  new = optax.apply_updates(p_on, updates)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       new["params"]["proj_head"], p_on["params"]["proj_head"])
  assert max(jax.tree.leaves(moved)) > 0
  assert float(jnp.abs(grads["params"]["conditioner"]["encoder"]["pool"]["kernel"]).max()) > 0
  c = dynamic.get_config("smoke")
  c.data.cache_dir = cache
  c.data.image_size = 32
  c.model.adacon.weight = 0.1
  with pytest.raises(ValueError, match="make_plugin"):    # The plug-in comes from training.tasks.
    mcsdr_task.EFRegressionTask(c, str(tmp_path))
  c.model.kind = "deterministic"
  with pytest.raises(ValueError, match="config.model.kind"):
    tasks.make_task(c, str(tmp_path))
