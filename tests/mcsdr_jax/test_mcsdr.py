"""MCSDR networks, posterior sampling and optimiser pieces (small shapes, fast)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cardiac_data import ef_data
from configs import common
from configs import pediatric
from diffusion import samplers
from diffusion import schedule as schedule_lib
from mcsdr_jax import model as model_lib
from mcsdr_jax import posterior
from mcsdr_jax import score_net
from mcsdr_jax import task as task_lib
from training import checkpoint
from training import optim


def _batch(b=3, t=4, hw=16, n_cont=2, seed=0):
  rng = np.random.default_rng(seed)
  return {"video": rng.random((b, t, hw, hw, 1)).astype(np.float32),
          "attr_cont": rng.standard_normal((b, n_cont)).astype(np.float32),
          "attr_cont_missing": np.zeros((b, n_cont), bool),
          "attr_cat": rng.integers(0, 2, (b, 1)).astype(np.int32),
          "index": np.arange(b)}


def _tiny_model(predictor="mcsn", conditioning="tokens", use_attributes=True,
                attr_in_summary=True):
  cond = dict(encoder="small", encoder_kwargs=dict(widths=(4, 8), patch=(2, 4, 4)), features=8,
              hidden=16, attr_features=8, use_attributes=use_attributes,
              conditioning=conditioning, video_grid=(2, 2, 2), attr_in_summary=attr_in_summary)
  kw = dict(hidden=16, time_dim=8)
  if predictor != "mlp":
    kw["heads"] = 2
  return model_lib.MCSDR((2,), predictor=predictor, predictor_kwargs=kw, conditioner_kwargs=cond)


def _init(model, batch):
  b = batch["video"].shape[0]
  inputs = {k: batch[k] for k in task_lib.MODEL_KEYS}
  return model.init(jax.random.key(0), inputs, jnp.zeros((b,)), jnp.zeros((b,), jnp.int32))


def test_timestep_embedding_matches_numpy():
  t = np.array([0.0, 3.0, 999.0, 412.5])
  emb = np.asarray(score_net.timestep_embedding(jnp.asarray(t), 6))
  freqs = np.exp(-np.log(10000.0) * np.arange(3) / 3)
  ref = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
  np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-4)


def test_adaptive_pool_matches_bruteforce():
  x = np.random.default_rng(1).standard_normal((2, 5, 7, 3, 4)).astype(np.float32)
  out = np.asarray(model_lib.adaptive_pool(jnp.asarray(x), (2, 3, 4)))
  assert out.shape == (2, 2, 3, 3, 4)   # An axis shorter than its grid size is kept.
  ref = np.zeros_like(out)
  for i in range(2):
    t0, t1 = (i * 5) // 2, -((-(i + 1) * 5) // 2)
    for j in range(3):
      h0, h1 = (j * 7) // 3, -((-(j + 1) * 7) // 3)
      ref[:, i, j] = x[:, t0:t1, h0:h1].mean(axis=(1, 2))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def _attention_leaves_changed(model, params, memory, y, t):
  """ε̂ after replacing the cross-attention query/key weights by random ones."""
  def perturb(path, leaf):
    names = "/".join(str(getattr(k, "key", k)) for k in path)
    hit = ("attn" in names and "query" in names) or "key" in names.split("/")[-2:-1]
    return leaf + 1.0 if hit else leaf
  changed = jax.tree_util.tree_map_with_path(perturb, params)
  memory2 = model.apply(changed, _batch(), method=model.condition)
  return (np.asarray(model.apply(params, memory, y, t, method=model.eps)),
          np.asarray(model.apply(changed, memory2, y, t, method=model.eps)))


@pytest.mark.parametrize("conditioning,inert", [("paper_code", True), ("tokens", False)])
def test_single_token_attention_is_inert(conditioning, inert):
  # With one context token the softmax is 1: queries and keys cannot matter (the
  # published code's MCSN); with several tokens they do.
  model = _tiny_model(conditioning=conditioning)
  batch = _batch()
  params = _init(model, batch)
  memory = model.apply(params, batch, method=model.condition)
  y, t = jnp.array([0.3, -1.0, 2.0]), jnp.array([10, 500, 999])
  a, b = _attention_leaves_changed(model, params, memory, y, t)
  if inert:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  else:
    assert np.max(np.abs(a - b)) > 1e-3


@pytest.mark.parametrize("predictor", sorted(score_net.PREDICTORS))
def test_predictors_shapes_and_attribute_ablation(predictor):
  batch = _batch()
  model = _tiny_model(predictor)
  params = _init(model, batch)
  eps = model.apply(params, {k: batch[k] for k in task_lib.MODEL_KEYS}, jnp.zeros(3),
                    jnp.array([1, 2, 3]))
  assert eps.shape == (3,) and np.all(np.isfinite(eps))
  # Vision only: the attribute inputs have no effect on ε̂.
  vision = _tiny_model(predictor, use_attributes=False)
  vp = _init(vision, batch)
  other = dict(batch, attr_cont=batch["attr_cont"] + 5.0, attr_cat=1 - batch["attr_cat"])
  e1 = vision.apply(vp, batch, jnp.zeros(3), jnp.ones(3, jnp.int32))
  e2 = vision.apply(vp, other, jnp.zeros(3), jnp.ones(3, jnp.int32))
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
  assert "attributes" not in vp["params"]["conditioner"]


@pytest.mark.parametrize("attr_in_summary", [True, False])
def test_auxiliary_head_sees_attributes_only_through_the_summary(attr_in_summary):
  """The auxiliary EF head reads the summary token: attributes move it iff they are
  fused into that token (model.attr_in_summary)."""
  batch = _batch()
  model = _tiny_model(attr_in_summary=attr_in_summary)
  params = _init(model, batch)
  other = dict(batch, attr_cont=batch["attr_cont"] + 5.0, attr_cat=1 - batch["attr_cat"])
  aux = [np.asarray(model.apply(params, {k: b[k] for k in task_lib.MODEL_KEYS},
                                method=model.condition_and_aux)[1]) for b in (batch, other)]
  assert np.all(np.isfinite(aux[0]))
  changed = np.abs(aux[0] - aux[1]).max() > 1e-4
  assert changed == attr_in_summary
  width = params["params"]["conditioner"]["summary_token"]["kernel"].shape[0]
  assert width == 8 + (2 + 1) * 8 * attr_in_summary   # pooled video + 3 attribute tokens


def test_vmapped_posterior_equals_loop_and_ignores_batch_composition():
  batch = _batch(b=4)
  model = _tiny_model()
  params = _init(model, batch)
  schedule = schedule_lib.VPSchedule()
  cfg = samplers.SamplerConfig("ddim", steps=5)
  key = jax.random.key(3)
  fn = posterior.make_sampler(model, schedule, num_samples=6, sampler=cfg, return_trajectory=True)
  samples, traj = fn(params, batch, key)
  assert samples.shape == (4, 6) and traj.shape == (4, 6, 6)
  np.testing.assert_allclose(np.asarray(traj[:, :, -1]), np.asarray(samples), rtol=1e-6)
  # A Python loop over the K chain keys gives the same samples (one chain compiled once).
  memory = model.apply(params, batch, method=model.condition)
  noise = posterior.per_case_noise(jnp.asarray(batch["index"]))
  eps_fn = lambda y, t: model.apply(params, memory, y, t, method=model.eps)  # noqa: E731
  chain = jax.jit(lambda ck: samplers.get_sampler(cfg)(eps_fn, schedule, ck, (4,),
                                                       noise_fn=noise)[0])
  for k, ck in enumerate(jax.random.split(key, 6)):
    np.testing.assert_allclose(np.asarray(chain(ck)), np.asarray(samples[:, k]), rtol=2e-5,
                               atol=2e-5)
  # Case 2 alone, with its id, gets the same samples as inside the batch.
  one = {k: v[2:3] for k, v in batch.items()}
  alone, _ = fn(params, one, key)
  np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(samples[2]), rtol=2e-5, atol=2e-5)
  # The PF-ODE keeps no trajectory: None even when one is asked for.
  ode = posterior.make_sampler(model, schedule, num_samples=2, return_trajectory=True,
                               sampler=samplers.SamplerConfig("pf_ode", 2, solver="euler"))
  ode_samples, ode_traj = ode(params, batch, key)
  assert ode_samples.shape == (4, 2) and ode_traj is None


def test_sampler_times_label_trajectory_states():
  schedule = schedule_lib.VPSchedule()
  ts = samplers.sampler_times(samplers.SamplerConfig("ddim", steps=10), schedule)
  assert list(ts) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1]
  ts = samplers.sampler_times(samplers.SamplerConfig("ddpm", steps=None), schedule)
  assert ts[0] == 999 and ts[-1] == -1 and len(ts) == 1001
  with pytest.raises(ValueError, match="sampler name"):
    samplers.SamplerConfig("euler")


def test_encoder_learning_rate_multiplier_is_exact_for_sgd():
  cfg = common.base_config().optim
  cfg.update(name="sgd", lr=0.5, momentum=0.0, nesterov=False, weight_decay=0.0,
             schedule="constant", warmup_steps=0, encoder_lr_mult=0.1)
  params = {"conditioner": {"encoder": {"w": jnp.ones(3)}, "attributes": {"w": jnp.ones(2)}},
            "head": {"w": jnp.ones(1)}}
  grads = jax.tree.map(jnp.ones_like, params)
  for pretrained, mult in ((True, 0.1), (False, 1.0)):
    tx = optim.make_optimizer(cfg, 10, pretrained_encoder=pretrained)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["conditioner"]["encoder"]["w"], -0.5 * mult)
    np.testing.assert_allclose(updates["conditioner"]["attributes"]["w"], -0.5)
    np.testing.assert_allclose(updates["head"]["w"], -0.5)


def test_config_differences_name_fields():
  a, b = pediatric.get_config("smoke").to_dict(), pediatric.get_config("smoke").to_dict()
  assert checkpoint.config_differences(a, b) == []
  b["model"]["hidden"] = 64
  b["data"]["attributes"] = ["Age"]
  diff = checkpoint.config_differences(a, b)
  assert any(d.startswith("model.hidden: 32 → 64") for d in diff)
  assert any(d.startswith("data.attributes") for d in diff)
  with pytest.raises(ValueError, match="model.hidden"):
    checkpoint.check_same_config(a, b, "/tmp/x")


def test_a_field_added_since_the_checkpoint_is_logged_not_refused(tmp_path, caplog):
  """A config that gained fields (here model.adacon.scale and diffusion.aux_loss) still
  restores an older run's checkpoint when its arrays fit; when they do not, restore names
  the checkpoint and the array."""
  saved, current = pediatric.get_config("smoke").to_dict(), pediatric.get_config("smoke").to_dict()
  del saved["model"]["adacon"]["scale"], saved["diffusion"]["aux_loss"]
  assert checkpoint.config_differences(saved, current) == []
  assert checkpoint.config_additions(saved, current) == [
      "diffusion.aux_loss = 'beta_nll' (not in the saved config)",
      "model.adacon.scale = 150.0 (not in the saved config)"]
  with caplog.at_level("WARNING"):
    checkpoint.check_same_config(saved, current, "/tmp/x")
  assert "diffusion.aux_loss" in caplog.text
  current["model"]["adacon"]["scale"] = 1.0            # Fields both have still compare.
  with pytest.raises(ValueError, match="model.adacon.scale: 150.0 → 1.0"):
    checkpoint.check_same_config(pediatric.get_config("smoke").to_dict(), current, "/tmp/x")

  ckpts = checkpoint.Checkpoints(str(tmp_path))
  ckpts.save(1, {"params": {"head": jnp.zeros((3, 1))}}, {"config": saved})
  ckpts.close()
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  state, _ = ckpts.restore({"params": {"head": jnp.ones((3, 1))}})
  np.testing.assert_array_equal(state["params"]["head"], 0.0)
  with pytest.raises(ValueError, match=r"checkpoints/last/1: the checkpoint's arrays do not "
                                       r"fit[\s\S]*\(3, 1\)"):
    ckpts.restore({"params": {"head": jnp.ones((3, 2))}})
  ckpts.close()


def test_config_variants_and_errors():
  assert not pediatric.get_config("smoke,vision").model.use_attributes
  assert pediatric.get_config("").model.use_attributes
  full = pediatric.get_config("full")
  assert full.model.encoder == "uniformer" and full.model.dtype == "bfloat16"
  assert full.model.pretrained and full.diffusion.aux_weight == 0.0   # the paper's setting
  with pytest.raises(ValueError, match="unknown variant"):
    pediatric.get_config("smoke,full")
  with pytest.raises(ValueError, match="config.model.kind"):
    task_lib.build_model(ml_collections.ConfigDict(dict(common.mcsdr_model(), kind="gan")), (2,))
  bad = ml_collections.ConfigDict(dict(dataset="echonet_pediatric", view="A4C",
                                       attributes=("Age", "Shoe"), categorical=("Sex",)))
  with pytest.raises(ValueError, match="unknown attribute.*Shoe"):
    ef_data.attribute_spec(bad)


def test_ema_tracks_parameters():
  from training import loop
  params = {"w": jnp.ones(2)}
  tx = optax.sgd(1.0)
  state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               rng=jax.random.key(0), ema=params)
  loss = lambda p, b, r: (jnp.sum(p["w"]), {})  # noqa: E731  (gradient 1 everywhere)
  new, _ = loop.train_step_fn(loss, tx, 0.9, state, None)
  np.testing.assert_allclose(new["params"]["w"], 0.0)
  np.testing.assert_allclose(new["ema"]["w"], 0.9 * 1.0 + 0.1 * 0.0)
  assert loop.eval_params(new) is new["ema"]


def test_eps_skip_preconditioning():
  # ε̂ = √(1−ᾱ)·y + √ᾱ·F: at t = 999 an untrained network already gives ε̂ ≈ y, the
  # optimal predictor for unit-variance targets, so DDIM's x̂0 = (y − √(1−ᾱ)ε̂)/√ᾱ stays O(1).
  batch = _batch()
  raw = _tiny_model()
  params = _init(raw, batch)
  skip = model_lib.MCSDR((2,), predictor=raw.predictor, predictor_kwargs=raw.predictor_kwargs,
                         conditioner_kwargs=raw.conditioner_kwargs, eps_skip=True)
  raw = model_lib.MCSDR((2,), predictor=raw.predictor, predictor_kwargs=raw.predictor_kwargs,
                        conditioner_kwargs=raw.conditioner_kwargs, eps_skip=False)
  memory = raw.apply(params, batch, method=raw.condition)
  sched = schedule_lib.VPSchedule()
  y = jnp.array([0.5, -1.2, 2.0])
  for t in (0, 99, 500, 999):
    tt = jnp.full((3,), t)
    f = np.asarray(raw.apply(params, memory, y, tt, method=raw.eps))
    e = np.asarray(skip.apply(params, memory, y, tt, method=skip.eps))
    ab = float(sched.alphas_cumprod[t])
    np.testing.assert_allclose(e, np.sqrt(1 - ab) * np.asarray(y) + np.sqrt(ab) * f,
                               rtol=0.05, atol=0.05 * np.sqrt(ab) * np.abs(f).max() + 1e-6)
  x0 = (np.asarray(y) - np.sqrt(1 - ab) * e) / np.sqrt(ab)
  assert np.all(np.abs(x0) < 10 * (np.abs(f).max() + 1))
