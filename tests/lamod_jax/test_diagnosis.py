"""LaMoD's final-evaluation diagnosis (issue 17): the groups clean_latent, lamod_<sampler>,
lamod_mean<N>, lamod_one and the parameter counts, each against an independent
computation, on configs/lamod_dense.py:smoke with random parameters (the zero-initialised
output convolutions made nonzero, so the sampling noise matters); also the grid check,
the latent/grid switches of the separate-run rows and pretrain.baseline."""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lamod_dense
from lamod_jax import networks
from lamod_jax import task as task_lib
from tests.lamod_jax.sharded_eval_worker import nonzero_params
from training import loop
from training import optim

GROUPS = ("clean_latent", "lamod_ddpm", "lamod_ddim", "lamod_start19", "lamod_start9",
          "lamod_start6", "lamod_mean3", "lamod_one")


def smoke_config(sampler: str = "ddim"):
  """The smoke config with one `sampler` sample for `lamod` and N = 3 in the diagnosis."""
  config = lamod_dense.get_config("smoke")
  config.sampling.update(sampler=sampler, num_samples=1)
  config.diagnosis.update(enabled=True, num_samples=3, samplers=("ddpm", "ddim"),
                          start_steps=(19, 9, 6))
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """The task, its parameters, the evaluation key, a final evaluation of the test split
  (diagnosis on), the diagnosis predictions and a periodic (non-final) evaluation."""
  workdir = str(tmp_path_factory.mktemp("lamod_diagnosis"))
  task = task_lib.LaMoDTask(smoke_config(), workdir)
  params = nonzero_params(task.init(jax.random.key(0), task.example_batch()))
  key = jax.random.key(5)
  final = task.evaluate(params, key, "test", final=True, workdir=workdir)
  periodic = task.evaluate(params, key, "test", final=False, workdir=workdir)
  preds = task.predict(params, "test", key, diagnosis=True)
  return dict(task=task, params=params, key=key, final=final, periodic=periodic,
              preds=preds, workdir=workdir)


def decode(task, params, z):
  return np.moveaxis(np.asarray(task.model.apply(params, z, method=networks.LaMoD.motion)),
                     -1, 2)


def latent(task, params, split="test"):
  return task.model.apply(params, task_lib.pairs(jnp.asarray(task.data[split]["reg"])),
                          method=networks.LaMoD.encode)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_groups_exist_and_are_finite(run):
  task, out = run["task"], run["final"]
  assert task.diagnosis.groups() == GROUPS
  for group in (*task_lib.METHODS, *GROUPS):
    for name in task_lib.SCORES:
      assert np.isfinite(out[f"{group}/{name}"]), (group, name)
  assert set(run["preds"]) == {*task_lib.METHODS, *GROUPS}
  n = len(task.data["test"]["ids"])
  for group in GROUPS:
    assert run["preds"][group].shape == run["preds"]["lamod"].shape
    assert run["preds"][group].shape[0] == n
  assert os.path.getsize(os.path.join(run["workdir"], "plots", "test_diagnosis.png")) > 1000


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_clean_latent_is_the_decoded_registration_latent(run):
  """clean_latent = D_η(E_R(pairs)), no diffusion; its EPE is Σ mask‖Δu‖ / Σ mask."""
  task, params = run["task"], run["params"]
  arr = task.data["test"]
  ref = decode(task, params, latent(task, params))
  np.testing.assert_allclose(run["preds"]["clean_latent"], ref, rtol=1e-5, atol=1e-6)
  assert not np.allclose(ref, run["preds"]["lamod"], atol=1e-3)   # diffusion changes it
  err = np.sqrt(np.sum((ref - arr["disp"]) ** 2, axis=2))           # (N, T, H, W)
  mask = np.broadcast_to(arr["support"][:, None], err.shape)
  assert run["final"]["clean_latent/epe"] == pytest.approx(
      np.sum(mask * err) / np.sum(mask), rel=1e-5)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_lamod_one_is_the_lamod_group_with_one_ddim_sample(run):
  """sampling.num_samples = 1, sampler = ddim: lamod_one and lamod_ddim score as `lamod`,
  and as the `lamod` of a periodic evaluation (no diagnosis in its program)."""
  out, periodic = run["final"], run["periodic"]
  assert not any(k.startswith(GROUPS) or k.startswith("params/") for k in periodic)
  for name in task_lib.SCORES:
    assert out[f"lamod_one/{name}"] == out[f"lamod/{name}"] == out[f"lamod_ddim/{name}"]
    assert out[f"lamod/{name}"] == pytest.approx(periodic[f"lamod/{name}"], rel=1e-5)
  for m in task_lib.METHODS:
    np.testing.assert_allclose(run["preds"][m], run["task"].predict(
        run["params"], "test", run["key"])[m], rtol=1e-5, atol=1e-6)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_mean_of_n_is_the_mean_of_n_single_samples(run):
  """lamod_mean3 = mean over k < 3 of D_η(ẑ0) with ẑ0 = sample_latent(fold_in(key, k)) on
  all test cases at once (case ids 0..N−1); lamod_one is the k = 0 sample."""
  task, params, key = run["task"], run["params"], run["key"]
  z = latent(task, params)
  ids = jnp.arange(z.shape[0])
  samples = [decode(task, params, task.sample_latent(params, z, jax.random.fold_in(key, k),
                                                     ids)) for k in range(3)]
  assert not np.allclose(samples[0], samples[1], atol=1e-3)        # samples differ
  np.testing.assert_allclose(run["preds"]["lamod_mean3"], np.mean(samples, axis=0),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(run["preds"]["lamod_one"], samples[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_sampler_group_is_a_run_with_that_sampler(run, tmp_path):
  """lamod_ddpm of a DDIM-configured task = `lamod` of the task configured with the
  ancestral DDPM chain (Eq. 8), same key; and it differs from DDIM."""
  task = task_lib.LaMoDTask(smoke_config(sampler="ddpm"), str(tmp_path))
  ref = task.predict(run["params"], "test", run["key"])["lamod"]
  np.testing.assert_allclose(run["preds"]["lamod_ddpm"], ref, rtol=1e-4, atol=1e-5)
  assert not np.allclose(ref, run["preds"]["lamod_ddim"], atol=1e-3)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_start_step_group_is_a_run_started_there(run, tmp_path):
  """lamod_start<m> = `lamod` of the task configured with sampling.start_step = m, same
  key (19 = −1: T − 1, Alg. 1's M = T); the smoke config's own start (9) is `lamod`
  itself, and the three starts differ."""
  np.testing.assert_array_equal(run["preds"]["lamod_start9"], run["preds"]["lamod"])
  for m, start_step in ((6, 6), (19, -1)):
    config = smoke_config()
    config.sampling.start_step = start_step
    ref = task_lib.LaMoDTask(config, str(tmp_path)).predict(run["params"], "test",
                                                            run["key"])["lamod"]
    np.testing.assert_allclose(run["preds"][f"lamod_start{m}"], ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ref, run["preds"]["lamod"], atol=1e-3)


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_parameter_counts(run):
  p = run["params"]["params"]
  size = lambda m: sum(int(np.size(x)) for x in jax.tree.leaves(p[m]))  # noqa: E731
  expected = {"lamod": size("reg_encoder") + size("eps_net") + size("motion_decoder"),
              "registration": size("reg_encoder") + size("reg_decoder"),
              "regression": size("baseline")}
  for name, n in expected.items():
    value = run["final"][f"params/{name}"]
    assert isinstance(value, int) and value == n > 0
  # The whole model is the four networks of the groups (D_R only in registration).
  assert sum(size(m) for m in p) == expected["lamod"] + expected["registration"] \
      + expected["regression"] - size("reg_encoder")


@pytest.mark.slow   # uses the module fixture `run`: a LaMoD smoke training
def test_disabled_diagnosis_adds_nothing(run, tmp_path):
  config = smoke_config()
  config.diagnosis.enabled = False
  task = task_lib.LaMoDTask(config, str(tmp_path))
  assert task.diagnosis.groups() == ()
  out = task.evaluate(run["params"], run["key"], "test", final=True, workdir=str(tmp_path))
  assert set(out) == {f"{m}/{s}" for m in task_lib.METHODS for s in task_lib.SCORES} | {
      "segmental_skipped_no_rv"}
  for name in task_lib.SCORES:
    assert out[f"lamod/{name}"] == pytest.approx(run["final"][f"lamod/{name}"], rel=1e-5)
  assert not (tmp_path / "plots" / "test_diagnosis.png").exists()
  assert (tmp_path / "plots" / "test_errors.png").exists()


def test_diagnosis_config():
  """Fields: samplers name the groups (distinct registered names), num_samples N ≥ 2
  names lamod_mean<N>; a config without the block has no diagnosis."""
  config = smoke_config()
  config.diagnosis.update(samplers=("paper_code",), num_samples=5, start_steps=())
  assert task_lib.Diagnosis.from_config(config).groups() == (
      "clean_latent", "lamod_paper_code", "lamod_mean5", "lamod_one")
  config.diagnosis.samplers = ()
  assert task_lib.Diagnosis.from_config(config).groups() == (
      "clean_latent", "lamod_mean5", "lamod_one")
  config.diagnosis.start_steps = (3, 0)
  assert task_lib.Diagnosis.from_config(config).groups() == (
      "clean_latent", "lamod_start3", "lamod_start0", "lamod_mean5", "lamod_one")
  for field, value in (("samplers", ("ddim", "ddim")), ("samplers", ("pf_ode",)),
                       ("num_samples", 1), ("start_steps", (3, 3)),
                       ("start_steps", (-1,))):
    bad = smoke_config()
    bad.diagnosis[field] = value
    with pytest.raises(ValueError, match=f"config.diagnosis.{field}"):
      task_lib.Diagnosis.from_config(bad)
  del config["diagnosis"]
  assert task_lib.Diagnosis.from_config(config) == task_lib.Diagnosis()


def test_start_steps_outside_the_schedule(tmp_path):
  """diagnosis.start_steps and sampling.start_step must lie in 0..T − 1 (smoke: T = 20)."""
  for field, value in (("diagnosis.start_steps", (20,)), ("sampling.start_step", 20)):
    bad = smoke_config()
    bad.diagnosis.start_steps = ()
    section, name = field.split(".")
    bad[section][name] = value
    with pytest.raises(ValueError, match=f"config.{field}"):
      task_lib.LaMoDTask(bad, str(tmp_path))


def test_registration_grid_check():
  task_lib.check_grid(32, (8, 16), (32, 64))          # the default: latent 8²
  task_lib.check_grid(48, (8,), (8,))                 # smoke at reg_size 48: 24²
  with pytest.raises(ValueError, match="multiple of 2"):
    task_lib.check_grid(30, (8, 16), (32, 64))
  with pytest.raises(ValueError, match="at least"):
    task_lib.check_grid(8, (8, 16), (8, 16, 32, 64))


@pytest.mark.slow
def test_latent_16_on_a_48_grid(tmp_path):
  """The separate-run row --config.model.latent=16 --config.data.reg_size=48 (smoke): z is
  16 channels at 24², both phases' losses and an evaluation are finite."""
  config = smoke_config()
  config.model.latent = 16
  config.data.reg_size = 48
  config.diagnosis.enabled = False
  task = task_lib.LaMoDTask(config, str(tmp_path))
  params = task.init(jax.random.key(0), task.example_batch())
  z = latent(task, params, "train")
  assert z.shape[-3:] == (24, 24, 16)
  loss_fn = jax.jit(task.loss)
  for start in (0, config.pretrain.steps):      # a registration and a joint batch
    loss, _ = loss_fn(params, next(task.train_batches(start)), jax.random.key(1))
    assert np.isfinite(float(loss))
  out = task.evaluate(params, jax.random.key(2), "test", final=False, workdir=str(tmp_path))
  assert all(np.isfinite(out[f"{m}/epe"]) for m in task_lib.METHODS)


@pytest.mark.slow   # trains through the loop
def test_pretrain_baseline_trains_the_baseline_from_step_one(tmp_path):
  """pretrain.baseline: the registration phase's batch carries the baseline's labels and a
  step moves the registration net and the baseline (config.optim over all num_steps),
  not ε_θ/D_η; without it the same step leaves the baseline as it was."""
  moved = {}
  for flag in (True, False):
    config = smoke_config()
    config.pretrain.baseline = flag
    calls = []
    task = task_lib.LaMoDTask(config, str(tmp_path), make_optimizer=lambda cfg, n: calls.append(
        (cfg, n)) or optim.make_optimizer(cfg, n))
    tx = task.optimizer(config.num_steps)
    p, n = config.pretrain.steps, config.num_steps
    assert calls == [(config.pretrain.optim, p), (config.optim, n - p)] + (
        [(config.optim, n)] if flag else [])
    batch = next(task.train_batches(0))
    assert ("baseline_disp" in batch) == flag and "disp" not in batch
    params = task.init(jax.random.key(0), task.example_batch())
    state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                 rng=jax.random.key(1))
    step = jax.jit(functools.partial(loop.train_step_fn, task.loss, tx, 0.0))
    new, metrics = step(state, batch)
    assert (float(metrics["regression_loss"]) > 0) == flag
    assert float(metrics["motion_loss"]) == 0.0
    moved[flag] = {m: any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(params["params"][m]), jax.tree.leaves(new["params"]["params"][m])))
                   for m in params["params"]}
  # (E_R's first gradient is zero: D_R's output convolution starts at zero.)
  assert moved[True] == dict(reg_encoder=False, reg_decoder=True, baseline=True,
                             eps_net=False, motion_decoder=False)
  assert moved[False] == dict(moved[True], baseline=False)
