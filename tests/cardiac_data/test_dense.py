"""StrainNet-layout DENSE reader (cardiac_data/dense.py) and the synthetic writer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io

from cardiac_data import dense
from cardiac_data import synthetic
from cardiac_data.errors import DataFormatError
from cardiac_data.synthetic import dense_writer
from lamod_jax import strain


def _fixture(folder, h=48, w=48, t=35, mask=None, label=None):
  """A sample folder as StrainNet ships it: uint8 (1, H, W, T) and float64 (2, H, W, T)."""
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  mask = (rng.random((1, h, w, t)) < 0.3).astype(np.uint8) if mask is None else mask
  label = rng.standard_normal((2, h, w, t)) * mask if label is None else label
  scipy.io.savemat(folder / "input.mat", {"input": mask}, do_compression=True)
  scipy.io.savemat(folder / "label.mat", {"label": label})
  return mask, label


def test_reader_layout(tmp_path):
  mask, label = _fixture(tmp_path / "data" / "train" / "0001")
  _fixture(tmp_path / "data" / "train" / "0002", t=25)
  samples = dense.read_split(tmp_path, "train")
  assert [s.id for s in samples] == ["0001", "0002"]
  s = samples[0]
  assert s.mask.shape == (35, 48, 48) and s.mask.dtype == np.uint8
  assert s.displacement.shape == (35, 2, 48, 48) and s.displacement.dtype == np.float32
  t, y, x = 7, 11, 30
  assert s.mask[t, y, x] == mask[0, y, x, t]
  np.testing.assert_allclose(s.displacement[t, :, y, x], label[:, y, x, t], rtol=1e-6)
  assert samples[1].mask.shape == (25, 48, 48)


@pytest.mark.parametrize("kind, message", [
    ("shape", r"'label' must be \(2, H, W, T\)"),
    ("grid", "differs from input grid"),
    ("values", "mask values must be 0 or 1"),
    ("missing", "missing file"),
    ("key", "no variable 'input'"),
])
def test_reader_errors_name_the_file(tmp_path, kind, message):
  folder = tmp_path / "s"
  if kind == "shape":
    _fixture(folder, label=np.zeros((3, 48, 48, 35)))
  elif kind == "grid":
    _fixture(folder, label=np.zeros((2, 48, 48, 30)))
  elif kind == "values":
    _fixture(folder, mask=np.full((1, 48, 48, 35), 2, np.uint8))
  elif kind == "missing":
    _fixture(folder)
    (folder / "label.mat").unlink()
  else:
    _fixture(folder)
    scipy.io.savemat(folder / "input.mat", {"mask": np.zeros((1, 4, 4, 2), np.uint8)})
  with pytest.raises(DataFormatError, match=message) as info:
    dense.read_sample(folder)
  assert str(folder) in str(info.value)


def test_missing_split_and_ground_truth(tmp_path):
  with pytest.raises(DataFormatError, match="no such split folder"):
    dense.split_folders(tmp_path, "test")
  with pytest.raises(DataFormatError, match="ground_truth.json"):
    dense.read_ground_truth(tmp_path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
  root = tmp_path_factory.mktemp("dense")
  n = synthetic.get_writer("dense")(root, 4, seed=3, workers=1, size=40, frames=10)
  return root, n


def test_writer_layout_and_truth(cohort):
  root, n = cohort
  assert n == 4
  gt = dense.read_ground_truth(root)
  assert sorted(gt) == ["0001", "0002", "0003", "0004"]
  splits = {s: [f.name for f in (root / "data" / s).iterdir()] for s in dense_writer.SPLITS
            if (root / "data" / s).is_dir()}
  assert sorted(sum(splits.values(), [])) == sorted(gt)
  raw = scipy.io.loadmat(next((root / "data").glob("*/0001")) / "input.mat")["input"]
  assert raw.shape == (1, 40, 40, 10) and raw.dtype == np.uint8
  for split, ids in splits.items():
    for sample in dense.read_split(root, split):
      g = gt[sample.id]
      assert g["split"] == split and g["pattern"] in dense_writer.PATTERNS
      support = sample.mask[0] > 0
      assert sample.displacement.shape == (10, 2, 40, 40)
      # Lagrangian: zero outside the frame-0 myocardium, zero at frame 0, a few px at ES.
      assert np.all(sample.displacement[:, :, ~support] == 0)
      np.testing.assert_allclose(sample.displacement[0], 0.0, atol=1e-6)
      assert 1.0 < np.abs(sample.displacement).max() < 6.0
      # The mask at each frame is the frame-0 myocardium carried by the displacement.
      ys, xs = np.nonzero(support)
      for t in (3, 5):
        px = np.rint(xs + sample.displacement[t, 0, ys, xs]).astype(int)
        py = np.rint(ys + sample.displacement[t, 1, ys, xs]).astype(int)
        assert sample.mask[t, py, px].mean() > 0.9
      # Pixel strain of the labels reproduces the analytic segmental Ecc curves.
      seg = np.asarray(strain.segmental_ecc(sample.displacement, sample.mask[0],
                                            math.radians(g["rv_insertion_deg"])))
      true = np.asarray(g["ecc_segments"]).T
      assert true.shape == (10, 6) and true.min() < -0.05
      assert np.nanmax(np.abs(seg - true)) < 0.01


def test_writer_is_deterministic(cohort, tmp_path):
  root, _ = cohort
  dense_writer.write_dense(tmp_path, 4, seed=3, workers=2, size=40, frames=10)
  for f in sorted((root / "data").glob("*/*/*.mat")):
    assert (tmp_path / f.relative_to(root)).read_bytes() == f.read_bytes()
  assert (tmp_path / "ground_truth.json").read_text() == (root / "ground_truth.json").read_text()
  with pytest.raises(FileExistsError):
    dense_writer.write_dense(tmp_path, 4, seed=3, workers=1, size=40, frames=10)


def test_lbbb_is_dyssynchronous():
  """Septal segments peak earlier than lateral ones in the LBBB pattern only."""
  lags = {"healthy": [], "lbbb": []}
  for i in range(30):
    s = dense_writer.draw_subject(np.random.default_rng([0, 5, i]), 48, 40)
    peaks = np.argmax(s["curves"], axis=1)
    lags[s["pattern"]].append(peaks[[4, 5]].mean() - peaks[[1, 2]].mean())
  assert lags["healthy"] and lags["lbbb"]
  assert np.mean(lags["lbbb"]) > 6 and abs(np.mean(lags["healthy"])) < 2


def test_role_folders_carve_validation_from_training(tmp_path):
  for name in ("train", "test_cine"):
    for i in range(10 if name == "train" else 3):
      (tmp_path / "data" / name / f"{i + 1:04d}").mkdir(parents=True)
  roles = dense.role_folders(tmp_path, {"train": "train", "val": "", "test": "test_cine"},
                             val_fraction=0.2, seed=5)
  names = {r: [f.name for f in fs] for r, fs in roles.items()}
  assert len(names["val"]) == 2 and len(names["train"]) == 8 and len(names["test"]) == 3
  assert sorted(names["val"] + names["train"]) == [f"{i:04d}" for i in range(1, 11)]
  again = dense.role_folders(tmp_path, {"train": "train", "val": "", "test": "test_cine"},
                             val_fraction=0.2, seed=5)
  assert again == roles                                   # seeded
  other = dense.role_folders(tmp_path, {"train": "train", "val": "", "test": "test_cine"},
                             val_fraction=0.2, seed=6)
  assert other["val"] != roles["val"]
  with pytest.raises(DataFormatError, match="no such split folder"):
    dense.role_folders(tmp_path, {"train": "train", "val": "val", "test": "test_cine"},
                       val_fraction=0.2, seed=5)
  with pytest.raises(ValueError, match="unknown role"):
    dense.role_folders(tmp_path, {"train": "train", "validation": "", "test": "test_cine"},
                       val_fraction=0.2, seed=5)
  assert dense.read_ground_truth(tmp_path, required=False) == {}
