"""Test-time missing patient attributes (issue 18): `attributes.mark_missing` marks a
preprocessed batch as the preprocessor marks an absent value, a case without attributes
still gets a posterior, train-time dropout of every attribute is the missing embedding,
and the launchers' --missing / --missing_study on the session's smoke run
(tests/conftest.py)."""
from __future__ import annotations

import csv
import json
import shutil

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiac_data import attributes
from configs import pediatric
from diffusion import samplers
from diffusion import schedule as schedule_lib
from launch import predict
from launch import sample
from mcsdr_jax import encoders
from mcsdr_jax import missing_study
from mcsdr_jax import model as model_lib
from mcsdr_jax import posterior
from mcsdr_jax import task as task_lib
from tests.conftest import launcher_error

SPEC = attributes.PEDIATRIC_SPEC         # Age, Weight, Height (continuous); Sex (M/F)


def raw_rows(spec, n=6, seed=0):
  """Raw attribute rows (N, n_cont + n_cat) with some values already missing (NaN)."""
  rng = np.random.default_rng(seed)
  cont = rng.uniform(1.0, 150.0, (n, spec.num_continuous))
  cat = np.stack([rng.integers(0, c, n) for c in spec.num_categories], axis=1) \
      if spec.num_categorical else np.zeros((n, 0))
  raw = np.concatenate([cont, cat], axis=1).astype(np.float32)
  raw[1, 0] = np.nan
  raw[2, -1] = np.nan
  return raw


def as_batch(out, **extra):
  """AttributePreprocessor.transform's arrays under the batch keys (as
  transforms.PreprocessAttributes names them)."""
  return dict(extra, attr_cont=out["continuous"], attr_cont_missing=out["continuous_missing"],
              attr_cat=out["categorical"])


def columns(spec, names):
  return [spec.names.index(n) for n in names]


@pytest.mark.parametrize("spec,names", [
    (SPEC, ("Age",)), (SPEC, ("Sex",)), (SPEC, ("Weight", "Height")), (SPEC, ("Height", "Sex")),
    (SPEC, "all"), (attributes.CAMUS_SPEC, ("ImageQuality",)),
    (attributes.CAMUS_SPEC, ("Age", "Sex"))])
def test_mark_missing_equals_the_preprocessor_on_rows_with_nan(spec, names):
  raw = raw_rows(spec)
  pre = attributes.AttributePreprocessor.fit(raw, spec)
  video = np.ones((raw.shape[0], 2), np.float32)
  batch = as_batch(pre.transform(raw), video=video)
  before = {k: np.copy(v) for k, v in batch.items()}
  nan = raw.copy()
  nan[:, columns(spec, spec.names if names == "all" else names)] = np.nan
  expected = as_batch(pre.transform(nan))
  got = attributes.mark_missing(batch, spec, names)
  for key in attributes.BATCH_KEYS:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert got[key].dtype == expected[key].dtype, key
  assert got["video"] is video                     # Other keys as given.
  for key, value in before.items():                # The input is not modified.
    np.testing.assert_array_equal(batch[key], value)
  unchanged = attributes.mark_missing(batch, spec, ())
  assert unchanged is not batch and all(unchanged[k] is v for k, v in batch.items())


def test_parse_missing_flag_values_and_errors():
  assert attributes.parse_missing("Age,Weight", SPEC) == ("Age", "Weight")
  assert attributes.parse_missing(" all ", SPEC) == SPEC.names == ("Age", "Weight", "Height",
                                                                     "Sex")
  assert attributes.parse_missing(["all"], SPEC) == SPEC.names        # absl DEFINE_list
  assert attributes.parse_missing(["Sex", "Age", "Sex"], SPEC) == ("Sex", "Age")
  for empty in ("", None, [], [""]):
    assert attributes.parse_missing(empty, SPEC) == ()
    assert attributes.parse_missing(empty, attributes.DYNAMIC_SPEC) == ()
  with pytest.raises(ValueError, match=r"--missing=Age,Shoe: unknown attribute\(s\) \['Shoe'\]; "
                     r"the model's attributes are \['Age', 'Weight', 'Height', 'Sex'\]"):
    attributes.parse_missing("Age,Shoe", SPEC)
  with pytest.raises(ValueError, match="--missing=all,Age: 'all' names every attribute"):
    attributes.parse_missing("all,Age", SPEC)
  with pytest.raises(ValueError, match="--missing=Age: the model takes no patient attribute"):
    attributes.parse_missing("Age", attributes.DYNAMIC_SPEC)
  batch = as_batch(attributes.AttributePreprocessor.fit(raw_rows(SPEC), SPEC).transform(
      raw_rows(SPEC)))
  with pytest.raises(ValueError, match="mark_missing: the batch has 3 continuous"):
    attributes.mark_missing(batch, attributes.CAMUS_SPEC, "all")


# ------------------------------------------------------------------- tiny networks, random params


def tiny_batch(spec=SPEC, b=4, seed=0):
  rng = np.random.default_rng(seed)
  raw = raw_rows(spec, n=b, seed=seed)
  pre = attributes.AttributePreprocessor.fit(raw, spec)
  return as_batch(pre.transform(raw), video=rng.random((b, 4, 16, 16, 1)).astype(np.float32),
                  index=np.arange(b))


def tiny_mcsdr(spec=SPEC):
  cond = dict(encoder="small", encoder_kwargs=dict(widths=(4, 8), patch=(2, 4, 4)), features=8,
              hidden=16, attr_features=8, video_grid=(2, 2, 2))
  return model_lib.MCSDR(spec.num_categories, predictor_kwargs=dict(hidden=16, time_dim=8,
                                                                    heads=2),
                         conditioner_kwargs=cond)


def test_a_case_with_no_attributes_gets_a_posterior():
  batch = tiny_batch()
  model = tiny_mcsdr()
  inputs = {k: batch[k] for k in task_lib.MODEL_KEYS}
  b = batch["video"].shape[0]
  params = model.init(jax.random.key(0), inputs, jnp.zeros((b,)), jnp.zeros((b,), jnp.int32))
  none = attributes.mark_missing(batch, SPEC, "all")
  assert none["attr_cont_missing"].all() and (none["attr_cat"] == 2).all()

  def draw(batch):
    samples, _ = posterior.sample_posterior(model, params, batch, jax.random.key(1),
                                            schedule_lib.VPSchedule(), num_samples=8,
                                            sampler=samplers.SamplerConfig("ddim", 5))
    return np.asarray(samples)

  samples = draw(none)
  assert samples.shape == (b, 8) and np.all(np.isfinite(samples))
  assert np.all(samples.std(axis=1) > 0)
  # With every attribute missing, the recorded values cannot leak in: other observed
  # attributes give the same posterior once marked missing; observed ones move it.
  other = tiny_batch(seed=1)
  other["video"], other["index"] = batch["video"], batch["index"]
  np.testing.assert_array_equal(draw(attributes.mark_missing(other, SPEC, "all")), samples)
  assert np.abs(draw(batch) - samples).max() > 1e-6


def test_dropping_every_attribute_equals_the_missing_embedding():
  """AttributeEncoder with train=True and dropout=1 gives the tokens of train=False on the
  batch with every attribute marked missing; dropout=0 in training changes nothing."""
  batch = tiny_batch()
  args = lambda b: (b["attr_cont"], b["attr_cont_missing"], b["attr_cat"])  # noqa: E731
  enc = encoders.AttributeEncoder(SPEC.num_categories, features=8, dropout=1.0)
  params = enc.init(jax.random.key(0), *args(batch))
  dropped = enc.apply(params, *args(batch), train=True,
                      rngs={"attr_dropout": jax.random.key(3)})
  marked = enc.apply(params, *args(attributes.mark_missing(batch, SPEC, "all")), train=False)
  assert dropped.shape == (4, 4, 8)
  np.testing.assert_array_equal(np.asarray(dropped), np.asarray(marked))
  observed = enc.apply(params, *args(batch), train=False)
  assert np.abs(np.asarray(observed) - np.asarray(marked)).max() > 1e-6
  keep = encoders.AttributeEncoder(SPEC.num_categories, features=8, dropout=0.0)
  np.testing.assert_array_equal(np.asarray(keep.apply(params, *args(batch), train=True)),
                                np.asarray(observed))


# ---------------------------------------------------------------------------- the launchers


def test_sample_missing_flag_errors_before_loading(tmp_path, monkeypatch):
  """`launch.sample --missing=Age,Shoe` (the list absl gives run_study): the unknown name
  and the model's attributes, before any checkpoint is read; a vision-only config names
  the field, for --missing and --missing_study."""
  f = flags.FLAGS
  err = launcher_error(monkeypatch, "launch.sample", "--config=configs/pediatric.py:smoke",
                       f"--workdir={tmp_path}", cache=tmp_path,
                       main=lambda argv: sample.run_study(f.config, f.workdir, "test",
                                                          ["ddim5"], ["1"],
                                                          missing=["Age", "Shoe"]))
  assert ("ValueError: --missing=Age,Shoe: unknown attribute(s) ['Shoe']; the model's "
          "attributes are ['Age', 'Weight', 'Height', 'Sex'] (or 'all')") in err
  err = launcher_error(monkeypatch, "launch.sample", "--config=configs/pediatric.py:smoke,vision",
                       f"--workdir={tmp_path}", cache=tmp_path,
                       main=lambda argv: sample.run_study(f.config, f.workdir, "test",
                                                          ["ddim5"], ["1"], missing=["all"]))
  assert "--missing: config.model.use_attributes=False" in err
  with pytest.raises(ValueError, match="--missing_study: config.model.use_attributes=False"):
    sample.run_missing_study(pediatric.get_config("smoke,vision"), str(tmp_path))
  dynamic = pediatric.get_config("smoke")
  dynamic.data.attributes, dynamic.data.categorical = (), ()
  with pytest.raises(ValueError, match="--missing_study: config.data.attributes and "
                     "config.data.categorical are empty"):
    sample.run_missing_study(dynamic, str(tmp_path))
  deterministic = pediatric.get_config("smoke")
  deterministic.model.kind = "deterministic"
  with pytest.raises(ValueError, match="--missing_study: config.model.kind='deterministic'"):
    sample.run_missing_study(deterministic, str(tmp_path))
  assert not list(tmp_path.iterdir())          # Nothing read or created there.
  # An empty --missing on a vision-only config is no request: the usual error follows.
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    sample.run_study(pediatric.get_config("smoke,vision"), str(tmp_path), "test", ["ddim5"],
                     ["1"], missing=[])


@pytest.fixture(scope="module")
def study(smoke_run):
  """(workdir, cache, the missing study on the smoke run's test split)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("CARDIAC_DATA_CACHE", str(smoke_run.cache))
    result = sample.run_missing_study(pediatric.get_config("smoke"), str(smoke_run.workdir))
  return smoke_run.workdir, smoke_run.cache, result


@pytest.mark.slow
def test_missing_study_writes_every_setting(study):
  workdir, _, result = study
  saved = json.loads((workdir / "missing_study.json").read_text())
  assert saved == json.loads(json.dumps(result))
  assert [e["name"] for e in saved["settings"]] == ["none", "Age", "Weight", "Height", "Sex",
                                                    "all"]
  assert [e["missing"] for e in saved["settings"]] == [
      [], ["Age"], ["Weight"], ["Height"], ["Sex"], ["Age", "Weight", "Height", "Sex"]]
  assert saved["sampler"] == "ddim10" and saved["k"] == 8 and saved["split"] == "test"
  assert saved["checkpoint"]["which"] == "best"
  for e in saved["settings"]:
    for key in ("mae", "coverage90", "raw_coverage90", "crps", "raw_crps", "sigma_mean"):
      assert np.isfinite(e[key]), (e["name"], key)
    assert e["raw_mae"] == pytest.approx(e["mae"])     # σ-scaling keeps the mean.
    assert e["sigma_mean"] == pytest.approx(saved["spread_scale"] * e["raw_sigma_mean"])
  by_name = {e["name"]: e for e in saved["settings"]}
  assert by_name["all"]["raw_crps"] != by_name["none"]["raw_crps"]   # Masking reached the model.
  # 'none' is the run's own final evaluation: same key, sampler, K and σ-scale.
  final = json.loads((workdir / "metrics.json").read_text())
  assert saved["spread_scale"] == pytest.approx(final["val/spread_scale"], rel=1e-6)
  for key in ("mae", "crps", "coverage90", "raw_crps", "raw_coverage90"):
    assert by_name["none"][key] == pytest.approx(final[f"test/{key}"], rel=1e-5), key
  table = missing_study.format_table(result)
  assert table.count("\n") == 1 + len(saved["settings"]) and "Weight" in table


def test_missing_study_settings():
  config = pediatric.get_config("smoke")
  assert missing_study.plan(config, attributes.CAMUS_SPEC) == [
      ("none", ()), ("Age", ("Age",)), ("Sex", ("Sex",)), ("ImageQuality", ("ImageQuality",)),
      ("all", ("Age", "Sex", "ImageQuality"))]


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_predict_missing_all_scores_as_videos_without_attributes(study, tmp_path):
  """`predict --data_root --splits=test --missing=all` gives the missing study's 'all'
  scores, and each video's posterior equals the one of its AVI in a bare folder with no
  attributes CSV (missing as the preprocessor marks it); an unknown name is an error
  naming the run's attributes."""
  workdir, cache, result = study
  (root,) = [p for p in cache.iterdir()
             if p.is_dir() and p.name.startswith("echonet_pediatric")]
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("CARDIAC_DATA_CACHE", str(cache))
    summary = predict.predict(str(workdir), str(tmp_path / "all.csv"), data_root=str(root),
                              splits=["test"], missing=["all"])
    rows = read_csv(tmp_path / "all.csv")
    folder = tmp_path / "videos"
    folder.mkdir()
    for i, r in enumerate(rows):     # Names in split order: each case keeps its index and noise.
      shutil.copy(root / "A4C" / "Videos" / f"{r['FileName']}.avi", folder / f"{i:03d}.avi")
    predict.predict(str(workdir), str(tmp_path / "bare.csv"), videos=str(folder))
    with pytest.raises(ValueError, match=r"--missing=Shoe: unknown attribute\(s\) \['Shoe'\]; "
                       r"the model's attributes are \['Age', 'Weight', 'Height', 'Sex'\]"):
      predict.predict(str(workdir), str(tmp_path / "x.csv"), data_root=str(root),
                      splits=["test"], missing="Shoe")
  assert summary["missing"] == ["Age", "Weight", "Height", "Sex"]
  saved = json.loads((tmp_path / "all_metrics.json").read_text())
  assert saved["missing"] == summary["missing"]
  entry = next(e for e in result["settings"] if e["name"] == "all")
  assert summary["spread_scale"] == pytest.approx(result["spread_scale"], rel=1e-6)
  for key in ("mae", "crps", "coverage90"):
    assert summary["metrics"][f"test/{key}"] == pytest.approx(entry[key], rel=1e-6), key
  bare = read_csv(tmp_path / "bare.csv")
  assert len(bare) == len(rows) > 0
  for column in ("ef_pred", "sigma", "q05", "q95"):
    np.testing.assert_allclose([float(r[column]) for r in bare],
                               [float(r[column]) for r in rows], atol=1e-3, err_msg=column)
