"""config.model.pretrained (training.pretrained) and BatchNorm statistics in the loop:
the initial encoder equals the source (converted weights or a workdir), mismatches are
named, frozen statistics never move, trained ones follow PyTorch's running average."""
from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from backbones import torch_import
from backbones import video as video_backbones
from configs import common
from training import checkpoint as checkpoint_lib
from training import loop
from training import optim
from training import pretrained

CLIP = (4, 4, 16, 16, 1)


class Encoder(nn.Module):
  """R(2+1)D's stem in miniature: conv "stem_spatial" and BatchNorm "stem_norm1"
  (r2plus1d's norm, PyTorch momentum), ReLU, mean pool; compiles in a second."""
  norm_stats: str = "frozen"

  @nn.compact
  def __call__(self, video, *, train=False):
    x = nn.Conv(6, (1, 7, 7), strides=(1, 2, 2), padding=((0, 0), (3, 3), (3, 3)),
                use_bias=False, name="stem_spatial")(video)
    x = nn.BatchNorm(
        use_running_average=not (train and self.norm_stats == "train"), momentum=0.9,
        epsilon=1e-5, name="stem_norm1")(x)
    return jnp.mean(nn.relu(x), axis=(1, 2, 3))


class Net(nn.Module):
  """An encoder (named 'encoder', BatchNorm) and a linear head."""
  norm_stats: str = "frozen"

  @nn.compact
  def __call__(self, video, *, train=False):
    h = Encoder(self.norm_stats, name="encoder")(video, train=train)
    return nn.Dense(1, name="head")(h)[:, 0]


class VideoTask:
  """Regression of a clip's mean brightness; batches depend on the step only."""

  def __init__(self, norm_stats="frozen"):
    self.model = Net(norm_stats)

  def example_batch(self):
    return self.batch(0)

  @staticmethod
  def batch(step):
    x = np.random.default_rng(step).uniform(0, 1, CLIP).astype(np.float32)
    return {"video": x, "y": x.mean(axis=(1, 2, 3, 4))}

  def init(self, rng, batch):
    return self.model.init(rng, batch["video"])

  def loss(self, params, batch, rng):
    del rng
    pred, stats = video_backbones.apply_train(self.model, params, batch["video"], train=True)
    metrics = {} if stats is None else {"batch_stats": stats}
    return jnp.mean((pred - batch["y"]) ** 2), metrics

  def train_batches(self, start_step):
    step = start_step
    while True:
      step += 1
      yield self.batch(step)


def config(pretrained_dir=""):
  c = common.base_config()
  c.optim.lr = 1e-2
  c.optim.weight_decay = 0.1           # Would pull batch_stats to 0 if they were trained.
  c.data = ml_collections.ConfigDict(dict(batch_size=CLIP[0]))
  c.model = ml_collections.ConfigDict(dict(
      encoder="r2plus1d", features=8, pretrained=pretrained_dir,
      encoder_kwargs=ml_collections.ConfigDict(dict(norm="batch"))))
  return c


def shifted(tree, delta):
  return jax.tree.map(lambda a: np.asarray(a) + delta, tree)


def write_converted(folder, encoder_variables, info=None):
  os.makedirs(folder, exist_ok=True)
  np.savez(os.path.join(folder, pretrained.CONVERTED), **torch_import.flatten(encoder_variables))
  if info is not None:
    with open(os.path.join(folder, pretrained.IMPORT_INFO), "w") as f:
      json.dump(info, f)


def encoder_of(variables):
  return {c: variables[c]["encoder"] for c in ("params", "batch_stats")}


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def baseline():
  task = VideoTask()
  state, _, _ = loop.init_state(task, config(), jax.random.key(0))
  return task, jax.device_get(state)


def test_converted_weights_initialise_the_encoder(tmp_path, baseline):
  task, base = baseline
  source = shifted(encoder_of(base["params"]), 0.5)          # different from the init
  write_converted(tmp_path / "w", source, {"format": "test", "encoder": "r2plus1d",
                                           "features": 8, "encoder_kwargs": {"norm": "batch"}})
  state, _, _ = loop.init_state(task, config(str(tmp_path / "w")), jax.random.key(0))
  state = jax.device_get(state)
  assert_trees_equal(encoder_of(state["params"]), source)
  assert_trees_equal(state["params"]["params"]["head"], base["params"]["params"]["head"])


def test_a_workdir_initialises_the_encoder(tmp_path, baseline):
  task, base = baseline
  run = dict(base, params=shifted(base["params"], -0.25))
  workdir = tmp_path / "run"
  os.makedirs(workdir)
  with open(workdir / "config.json", "w") as f:
    json.dump(config().to_dict(), f)
  ckpts = checkpoint_lib.Checkpoints(str(workdir), keep=1, best_metric="mae")
  ckpts.save_best(3, run, {"config": config().to_dict()}, {"mae": 1.0})
  ckpts.close()
  state, _, _ = loop.init_state(task, config(str(workdir)), jax.random.key(0))
  assert_trees_equal(encoder_of(jax.device_get(state)["params"]), encoder_of(run["params"]))


def test_mismatches_are_named(tmp_path, baseline):
  task, base = baseline
  source = encoder_of(base["params"])
  bad = jax.tree.map(np.asarray, source)
  bad["params"]["stem_spatial"]["kernel"] = np.zeros((1, 7, 7, 3, 6), np.float32)
  write_converted(tmp_path / "shape", bad)
  with pytest.raises(ValueError, match=r"params/stem_spatial/kernel: source \(1, 7, 7, 3, 6\)"):
    loop.init_state(task, config(str(tmp_path / "shape")), jax.random.key(0))
  write_converted(tmp_path / "opts", source, {"format": "echonet_r2plus1d", "encoder": "r2plus1d",
                                              "features": 8,
                                              "encoder_kwargs": {"norm": "group"}})
  with pytest.raises(ValueError, match=r"config.model.encoder_kwargs.norm: 'batch', the "
                     r"weights need 'group'"):
    loop.init_state(task, config(str(tmp_path / "opts")), jax.random.key(0))
  with pytest.raises(FileNotFoundError, match="launch.import_weights"):
    loop.init_state(task, config(str(tmp_path / "nowhere")), jax.random.key(0))


def run_steps(task, n):
  cfg = config()
  state, tx, _ = loop.init_state(task, cfg, jax.random.key(0))
  state = jax.device_get(state)
  start = state
  step = jax.jit(lambda s, b: loop.train_step_fn(task.loss, tx, 0.0, s, b))
  metrics = None
  for i in range(n):
    state, metrics = step(state, task.batch(i + 1))
  return jax.device_get(start), jax.device_get(state), metrics


def test_frozen_statistics_never_move_but_the_weights_do():
  start, end, metrics = run_steps(VideoTask("frozen"), 3)
  assert "batch_stats" not in metrics
  assert_trees_equal(end["params"]["batch_stats"], start["params"]["batch_stats"])
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                       end["params"]["params"], start["params"]["params"])
  assert min(jax.tree.leaves(moved)) > 0


def test_trained_statistics_follow_pytorch_running_average():
  """norm_stats='train': after one step the stem's first BatchNorm holds
  0.9·old + 0.1·(batch mean) of its input, the stem conv computed here with lax."""
  task = VideoTask("train")
  start, end, _ = run_steps(task, 1)
  p = start["params"]["params"]["encoder"]
  x = task.batch(1)["video"]
  conv = jax.lax.conv_general_dilated(
      jnp.asarray(x), jnp.asarray(p["stem_spatial"]["kernel"]), window_strides=(1, 2, 2),
      padding=((0, 0), (3, 3), (3, 3)), dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  conv = np.asarray(conv, np.float64)
  old = start["params"]["batch_stats"]["encoder"]["stem_norm1"]
  new = end["params"]["batch_stats"]["encoder"]["stem_norm1"]
  np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * conv.mean(axis=(0, 1, 2, 3)),
                             rtol=1e-4, atol=1e-6)
  # Flax keeps the biased batch variance (PyTorch the unbiased one; a factor n/(n-1)).
  np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * conv.var(axis=(0, 1, 2, 3)),
                             rtol=1e-4, atol=1e-6)


def test_frozen_labels_cover_everything_but_params():
  tree = {"params": {"a": 1.0}, "batch_stats": {"b": 2.0}}
  assert optim.frozen_labels(tree) == {"params": {"a": "train"}, "batch_stats": {"b": "frozen"}}
  assert optim.frozen_labels({"w": 1.0}) == {"w": "train"}
