"""AdaCon losses, margin, ECDF, heads and views against numpy float64 references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adacon_jax import ecdf as ecdf_lib
from adacon_jax import heads
from adacon_jax import losses
from adacon_jax import views


def _unit(rng, m, d):
  z = rng.standard_normal((m, d))
  return z / np.linalg.norm(z, axis=1, keepdims=True)


def _ref_margin_contrastive(z, pos, margins, s):
  """Eq. 6 / Eq. 14 as a double loop; mean over anchors with a positive."""
  m = len(z)
  per_anchor = []
  for i in range(m):
    positives = [p for p in range(m) if p != i and pos[i, p]]
    if not positives:
      continue
    den = sum(np.exp(s * (z[i] @ z[a] + (0.0 if pos[i, a] else margins[i, a])))
              for a in range(m) if a != i)
    per_anchor.append(-np.mean([np.log(np.exp(s * (z[i] @ z[p])) / den) for p in positives]))
  return np.mean(per_anchor)


def _ecdf_ref(train, y):
  return np.array([np.mean(np.asarray(train) <= v) for v in np.atleast_1d(y)])


LABEL_CASES = {
    "ties": np.array([50.0, 50.0, 62.5, 30.0, 62.5, 71.0]),
    "single_positive": np.array([35.0, 48.0, 55.0, 61.0, 70.0, 80.0]),
    "all_equal": np.full(6, 55.0),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
@pytest.mark.parametrize("scale", [1.0, 10.0, 150.0])
def test_adacon_matches_double_loop(x64, case, scale):
  rng = np.random.default_rng(0)
  y = LABEL_CASES[case]
  y2 = np.concatenate([y, y])                        # Two views: view pairs are positives.
  z = _unit(rng, len(y2), 8)
  train = rng.uniform(20, 80, 40)
  phi = _ecdf_ref(train, y2)
  pos = y2[:, None] == y2[None, :]
  ref = _ref_margin_contrastive(z, pos, 2 * np.abs(phi[:, None] - phi[None, :]), scale)
  ecdf = ecdf_lib.ECDF.fit(train)
  got = losses.adacon_loss(jnp.asarray(z), ecdf(jnp.asarray(y2)),
                           losses.positive_mask(jnp.asarray(y2)), scale=scale)
  np.testing.assert_allclose(float(got), ref, rtol=1e-9)
  if case == "all_equal":                            # No negatives: margins play no part.
    np.testing.assert_allclose(float(losses.supcon_loss(jnp.asarray(z), jnp.asarray(pos),
                                                        scale=scale)), ref, rtol=1e-9)


def test_anchors_without_positive_are_skipped(x64):
  rng = np.random.default_rng(1)
  y = np.array([40.0, 40.0, 55.0, 70.0, 52.0])      # One view: only anchors 0, 1 have one.
  z = _unit(rng, 5, 4)
  phi = np.linspace(0.1, 0.9, 5)
  pos = y[:, None] == y[None, :]
  margins = 2 * np.abs(phi[:, None] - phi[None, :])
  ref = _ref_margin_contrastive(z, pos, margins, 5.0)
  loss, count = losses.margin_contrastive_loss(jnp.asarray(z), jnp.asarray(pos),
                                               jnp.asarray(margins), 5.0)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-9)
  assert int(count) == 2


def test_one_positive_one_negative_is_softplus_of_margin_gap(x64):
  # Appendix B: with anchor i, positive p, negative n the loss of anchor i is
  # log(1 + exp(s·(z_i·z_n − z_i·z_p + d_in))).
  rng = np.random.default_rng(2)
  z = _unit(rng, 3, 5)
  pos = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
  phi = np.array([0.2, 0.2, 0.7])
  s = 3.0
  d = 2 * 0.5
  per_i = [np.log1p(np.exp(s * (z[0] @ z[2] - z[0] @ z[1] + d))),
           np.log1p(np.exp(s * (z[1] @ z[2] - z[1] @ z[0] + d)))]
  got = losses.adacon_loss(jnp.asarray(z), jnp.asarray(phi), jnp.asarray(pos), scale=s)
  np.testing.assert_allclose(float(got), np.mean(per_i), rtol=1e-9)


def test_margin_monotone_and_inside_open_interval():
  rng = np.random.default_rng(3)
  train = rng.normal(55, 12, 300)
  ecdf = ecdf_lib.ECDF.fit(train)
  np.testing.assert_allclose(ecdf(train), _ecdf_ref(train, train))     # Eq. 5.
  y = np.sort(rng.choice(train, 25, replace=False))
  d = ecdf_lib.adaptive_margin(ecdf(y))
  off = ~np.eye(len(y), dtype=bool)
  assert np.all(d[off] > 0) and np.all(d < 2) and np.all(np.diag(d) == 0)
  for i in range(len(y)):
    for j in range(len(y)):
      for k in range(len(y)):
        if y[i] < y[j] < y[k] or y[i] > y[j] > y[k]:
          assert d[i, k] > d[i, j]
  # Same bucket → same φ and zero margin; jax and numpy agree.
  b = ecdf_lib.ECDF.fit(train, bucket_width=5.0)
  assert b(np.array([50.1]))[0] == b(np.array([54.9]))[0]
  np.testing.assert_allclose(np.asarray(b(jnp.asarray(y, jnp.float32))), b(y), atol=1e-6)


def test_ecdf_midrank_and_errors():
  train = np.array([1.0, 2.0, 2.0, 3.0])
  mid = ecdf_lib.ECDF.fit(train, mode="midrank")
  np.testing.assert_allclose(mid(np.array([2.0, 0.0, 3.0])), [0.5, 0.0, 0.875])
  again = ecdf_lib.ECDF.from_json(mid.to_json())
  np.testing.assert_array_equal(again(train), mid(train))
  with pytest.raises(ValueError, match="train.csv EF"):
    ecdf_lib.ECDF.fit(np.array([1.0, np.nan]), name="train.csv EF")
  with pytest.raises(ValueError, match="mode"):
    ecdf_lib.ECDF.fit(train, mode="median")


def test_supcon_matches_double_loop(x64):
  rng = np.random.default_rng(4)
  y = np.array([1, 1, 2, 3, 3, 3, 4, 5], float)
  z = _unit(rng, 8, 6)
  pos = y[:, None] == y[None, :]
  ref = _ref_margin_contrastive(z, pos, np.zeros((8, 8)), 7.0)
  got = losses.supcon_loss(jnp.asarray(z), losses.positive_mask(jnp.asarray(y)), scale=7.0)
  np.testing.assert_allclose(float(got), ref, rtol=1e-9)


def test_npair_matches_loop(x64):
  rng = np.random.default_rng(5)
  y = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
  a, p = _unit(rng, 5, 4), _unit(rng, 5, 4)
  s = 2.0
  ref = np.mean([np.log(1 + sum(np.exp(s * (a[i] @ p[j] - a[i] @ p[i]))
                                for j in range(5) if y[j] != y[i])) for i in range(5)])
  got = losses.npair_loss(jnp.asarray(a), jnp.asarray(p), losses.positive_mask(jnp.asarray(y)),
                          scale=s)
  np.testing.assert_allclose(float(got), ref, rtol=1e-9)


def test_adaptive_triplet_matches_triple_loop(x64):
  rng = np.random.default_rng(6)
  y = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 5.0])
  z = _unit(rng, 6, 3)
  margins = 0.7 * np.abs(y[:, None] - y[None, :])
  terms = []
  for a in range(6):
    for p in range(6):
      for n in range(6):
        if p != a and n != a and y[p] == y[a] and y[n] != y[a]:
          terms.append(max(0.0, np.sum((z[a] - z[p]) ** 2) - np.sum((z[a] - z[n]) ** 2)
                           + margins[a, n]))
  got = losses.adaptive_triplet_loss(jnp.asarray(z), losses.positive_mask(jnp.asarray(y)),
                                     jnp.asarray(margins))
  np.testing.assert_allclose(float(got), np.mean(terms), rtol=1e-9)
  # No positive pair in the batch: no triplet, loss 0.
  none = losses.adaptive_triplet_loss(jnp.asarray(z), jnp.eye(6, dtype=bool), jnp.asarray(margins))
  assert float(none) == 0.0


def test_regression_losses(x64):
  rng = np.random.default_rng(7)
  p, t = rng.normal(0, 3, 50), rng.normal(0, 3, 50)
  e = p - t
  delta = 1.5
  huber = np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta))
  for kind, ref in (("mse", np.mean(e ** 2)), ("l1", np.mean(np.abs(e))),
                    ("huber", np.mean(huber))):
    got = losses.regression_loss(jnp.asarray(p), jnp.asarray(t), kind, delta)
    np.testing.assert_allclose(float(got), ref, rtol=1e-12)
  with pytest.raises(ValueError, match="config.adacon.regression"):
    losses.regression_loss(jnp.asarray(p), jnp.asarray(t), "tukey")


def test_projection_head_is_unit_norm_128():
  head = heads.ProjectionHead(hidden=32, features=128)
  h = jnp.asarray(np.random.default_rng(8).standard_normal((5, 16)), jnp.float32)
  params = head.init(jax.random.key(0), h)
  z = np.asarray(head.apply(params, h))
  assert z.shape == (5, 128)
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
  assert params["params"]["dense0"]["kernel"].shape == (16, 32)


def test_views_are_crops_of_the_padded_clip():
  rng = np.random.default_rng(9)
  video = rng.random((3, 2, 10, 10, 1)).astype(np.float32)
  same = views.random_views(jax.random.key(0), jnp.asarray(video), pad=0)
  np.testing.assert_array_equal(np.asarray(same), video)
  pad = 2
  out = np.asarray(views.random_views(jax.random.key(1), jnp.asarray(video), pad=pad))
  padded = np.pad(video, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = []
  for b in range(3):
    hits = [(t, l) for t in range(2 * pad + 1) for l in range(2 * pad + 1)
            if np.array_equal(padded[b, :, t:t + 10, l:l + 10], out[b])]
    assert hits, f"view {b} is not a crop of the padded clip"
    offsets.append(hits[0])
  other = np.asarray(views.random_views(jax.random.key(2), jnp.asarray(video), pad=pad))
  assert not np.array_equal(out, other)                # Two keys, two views.
