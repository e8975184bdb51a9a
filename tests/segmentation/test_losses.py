"""Partial-label losses against brute-force float64 numpy loops; label sets; label dropout."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segmentation import labels as labels_lib
from segmentation import losses

B, H, W, C = 3, 4, 5, 4


def _case(seed, sets=None):
  """Random logits, label sets (bg always in) and labels drawn inside each set."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2.0, (B, H, W, C))
  if sets is None:
    sets = rng.random((B, C)) < 0.5
    sets[:, 0] = True
  sets = np.asarray(sets, bool)
  y = np.zeros((B, H, W), np.int64)
  for b in range(B):
    allowed = np.nonzero(sets[b])[0]
    y[b] = rng.choice(allowed, (H, W))
  return logits, y, sets


def _np_softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


def _loop(fn, logits, y, sets):
  """Mean over pixels of fn(z, y, S) per pixel."""
  vals = [fn(logits[b, i, j], y[b, i, j], sets[b])
          for b, i, j in itertools.product(range(B), range(H), range(W))]
  return float(np.mean(vals))


def ref_cce(z, y, s):
  return -np.log(_np_softmax(z)[y])


def ref_acce_normaliser(z, y, s):
  idx = np.nonzero(s)[0]
  return -np.log(np.exp(z[y]) / np.sum(np.exp(z[idx])))


def ref_marginal_paper(z, y, s):
  p = _np_softmax(z)
  if y == 0:
    return -np.log(p[0] + sum(p[c] for c in range(C) if not s[c]))
  return -np.log(p[y])


def ref_marginal_logit(z, y, s):
  zm = np.array([z[0] + sum(z[c] for c in range(C) if not s[c])]
                + [z[c] for c in range(1, C) if s[c]])
  local = [0] + [c for c in range(1, C) if s[c]]
  return -np.log(_np_softmax(zm)[local.index(y)])


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def ref_abce(logits, y, sets, reading):
  total, count = 0.0, 0
  for b, i, j in itertools.product(range(B), range(H), range(W)):
    for c in range(C):
      if reading == "present":
        use = sets[b, c] and c > 0
      elif reading == "present_bg":
        use = sets[b, c]
      else:  # ambiguity
        use = c > 0 and (sets[b, c] or y[b, i, j] > 0)
      if use:
        t = float(y[b, i, j] == c)
        q = _sig(logits[b, i, j, c])
        total += -(t * np.log(q) + (1 - t) * np.log(1 - q))
        count += 1
  return total / max(count, 1)


def ref_dice(logits, y, sets):
  vals = []
  for b in range(B):
    p = np.stack([[_np_softmax(logits[b, i, j]) for j in range(W)] for i in range(H)])
    for c in range(1, C):
      if sets[b, c]:
        g = (y[b] == c).astype(float)
        vals.append((2 * np.sum(p[..., c] * g) + 1e-5) / (p[..., c].sum() + g.sum() + 1e-5))
  return 1.0 - float(np.mean(vals)) if vals else 1.0


SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_losses_match_brute_force(seed, x64):
  logits, y, sets = _case(seed)
  z, yj, sj = jnp.asarray(logits), jnp.asarray(y), jnp.asarray(sets)
  np.testing.assert_allclose(losses.cce(z, yj), _loop(ref_cce, logits, y, sets), rtol=1e-10)
  np.testing.assert_allclose(losses.acce(z, yj, sj, "normaliser"),
                             _loop(ref_acce_normaliser, logits, y, sets), rtol=1e-10)
  np.testing.assert_allclose(losses.acce(z, yj, sj, "literal"),
                             _loop(ref_cce, logits, y, sets), rtol=1e-10)
  fg = y > 0
  want = np.mean(np.vectorize(lambda b, i, j: ref_cce(logits[b, i, j], y[b, i, j], None))(
      *np.nonzero(fg))) if fg.any() else 0.0
  np.testing.assert_allclose(losses.acce(z, yj, sj, "structures"), want, rtol=1e-10)
  np.testing.assert_allclose(losses.marginal(z, yj, sj, "paper"),
                             _loop(ref_marginal_paper, logits, y, sets), rtol=1e-10)
  np.testing.assert_allclose(losses.marginal(z, yj, sj, "logit"),
                             _loop(ref_marginal_logit, logits, y, sets), rtol=1e-10)
  for reading in losses.ABCE_READINGS:
    np.testing.assert_allclose(losses.abce(z, yj, sj, reading),
                               ref_abce(logits, y, sets, reading), rtol=1e-10)
  np.testing.assert_allclose(losses.dice_loss(z, yj, sj), ref_dice(logits, y, sets), rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_all_labels_present_gives_full_label_forms(seed, x64):
  logits, y, sets = _case(seed, sets=np.ones((B, C), bool))
  z, yj, sj = jnp.asarray(logits), jnp.asarray(y), jnp.asarray(sets)
  full = float(losses.cce(z, yj))
  for reading in losses.ACCE_READINGS[:2]:
    np.testing.assert_allclose(losses.acce(z, yj, sj, reading), full, rtol=1e-12)
  for form in losses.MARGINAL_FORMS:
    np.testing.assert_allclose(losses.marginal(z, yj, sj, form), full, rtol=1e-12)
  # aBCE with every class present = the plain per-class BCE over the foreground channels.
  onehot = np.eye(C)[y]
  q = _sig(logits)
  bce = -(onehot * np.log(q) + (1 - onehot) * np.log(1 - q))
  np.testing.assert_allclose(losses.abce(z, yj, sj, "present"), bce[..., 1:].mean(), rtol=1e-10)
  np.testing.assert_allclose(losses.abce(z, yj, sj, "ambiguity"), bce[..., 1:].mean(),
                             rtol=1e-10)
  np.testing.assert_allclose(losses.abce(z, yj, sj, "present_bg"), bce.mean(), rtol=1e-10)


def test_background_only_sample(x64):
  logits, _, _ = _case(7)
  sets = np.zeros((B, C), bool)
  sets[:, 0] = True
  y = np.zeros((B, H, W), np.int64)
  z, yj, sj = jnp.asarray(logits), jnp.asarray(y), jnp.asarray(sets)
  # Every class is merged with background: q = 1, no loss, no gradient.
  assert abs(float(losses.marginal(z, yj, sj, "paper"))) < 1e-12
  assert abs(float(losses.acce(z, yj, sj, "normaliser"))) < 1e-12
  assert float(losses.abce(z, yj, sj, "present")) == 0.0
  assert float(losses.abce(z, yj, sj, "ambiguity")) == 0.0
  assert float(losses.acce(z, yj, sj, "structures")) == 0.0
  g = jax.grad(lambda x: losses.marginal(x, yj, sj, "paper"))(z)
  assert float(jnp.max(jnp.abs(g))) < 1e-12
  # CCE still pushes towards background; the logit form merges logits, so it has a loss.
  np.testing.assert_allclose(losses.cce(z, yj), _loop(ref_cce, logits, y, sets), rtol=1e-10)
  assert abs(float(losses.marginal(z, yj, sj, "logit"))) < 1e-12   # one local class: −log 1


def test_absent_classes_get_no_gradient_under_partial_losses():
  logits, y, sets = _case(11, sets=np.array([[1, 1, 1, 0]] * B, bool))
  z, yj, sj = jnp.asarray(logits, jnp.float32), jnp.asarray(y), jnp.asarray(sets)
  for fn in (lambda x: losses.acce(x, yj, sj), lambda x: losses.abce(x, yj, sj)):
    g = jax.grad(fn)(z)
    assert float(jnp.max(jnp.abs(g[..., 3]))) == 0.0
    assert float(jnp.max(jnp.abs(g[..., :3]))) > 0.0
  # CCE treats the absent LA as background and so pushes its logit down everywhere.
  g = jax.grad(lambda x: losses.cce(x, yj))(z)
  assert bool(jnp.all(g[..., 3] > 0))


def test_segmentation_loss_dispatch_and_errors():
  logits, y, sets = _case(5)
  z, yj, sj = jnp.asarray(logits, jnp.float32), jnp.asarray(y), jnp.asarray(sets)
  cfg = ml_collections.ConfigDict(dict(name="marginal", marginal_form="paper", dice_weight=0.5))
  want = losses.marginal(z, yj, sj) + 0.5 * losses.dice_loss(z, yj, sj)
  np.testing.assert_allclose(losses.segmentation_loss(cfg, z, yj, sj), want, rtol=1e-6)
  with pytest.raises(ValueError, match="config.loss.name"):
    losses.segmentation_loss(ml_collections.ConfigDict(dict(name="focal")), z, yj, sj)
  with pytest.raises(ValueError, match="config.loss.acce_reading"):
    losses.acce(z, yj, sj, "other")


def test_label_sets_and_withhold():
  np.testing.assert_array_equal(labels_lib.label_set(("lv", "la")), [1, 1, 0, 1])
  with pytest.raises(ValueError, match="unknown structure"):
    labels_lib.label_set(("rv",))
  y = np.array([[[0, 1], [2, 3]]])
  out = labels_lib.withhold(y, np.array([[1, 1, 0, 1]], bool))
  np.testing.assert_array_equal(out, [[[0, 1], [0, 3]]])
  np.testing.assert_array_equal(
      labels_lib.partially_labelled([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]), [0, 0, 1, 1])


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_label_dropout_statistics(p):
  n = 4000
  rng = np.random.default_rng(0)
  sets = np.ones((n, C), bool)
  sets[n // 2:, 3] = False                           # second half: LA unlabelled already
  y = rng.integers(0, C, (n, 2, 2))
  y[n // 2:] = np.where(y[n // 2:] == 3, 0, y[n // 2:])
  droppable = np.array([0, 0, 0, 1], bool)           # LA is the partially labelled class
  y2, s2 = labels_lib.label_dropout(jax.random.key(1), jnp.asarray(y), jnp.asarray(sets), p,
                                    droppable)
  y2, s2 = np.asarray(y2), np.asarray(s2)
  dropped = ~s2[: n // 2, 3]
  m = n // 2
  # Binomial(m, p): within 5 standard deviations.
  assert abs(dropped.sum() - p * m) <= 5 * np.sqrt(m * p * (1 - p)) + 1e-9
  np.testing.assert_array_equal(s2[:, :3], sets[:, :3])          # other classes untouched
  np.testing.assert_array_equal(s2[m:], sets[m:])                # partial images untouched
  np.testing.assert_array_equal(y2[m:], y[m:])
  # Dropped images have LA → bg, everything else unchanged; kept images are unchanged.
  first = y[:m]
  want = np.where(dropped[:, None, None] & (first == 3), 0, first)
  np.testing.assert_array_equal(y2[:m], want)
