"""Synthetic EchoNet cohorts: layout, determinism, ground truth against tracings
and pixels, label noise, cache."""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import re
import threading

import numpy as np
import pytest
from scipy import ndimage

from cardiac_data import video as video_io
from cardiac_data import tracings as T
from cardiac_data import volumes as V
from cardiac_data import synthetic
from cardiac_data.synthetic import anatomy
from cardiac_data.synthetic import cache
from cardiac_data.synthetic import echonet_writer
from cardiac_data.synthetic import rendering
from cardiac_data.synthetic import subjects

NUM = 8          # subjects per test cohort
SEED = 3


def _rows(path):
  with open(path, newline="") as fh:
    return list(csv.DictReader(fh))


def _header(path):
  with open(path) as fh:
    return fh.readline().rstrip("\n")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
  ped = tmp_path_factory.mktemp("ped")
  dyn = tmp_path_factory.mktemp("dyn")
  n_ped = echonet_writer.write_echonet_pediatric(ped, NUM, SEED, workers=1, second_video_prob=0.3)
  n_dyn = echonet_writer.write_echonet_dynamic(dyn, NUM, SEED, workers=1)
  return {"ped": (ped, n_ped), "dyn": (dyn, n_dyn)}


def _pediatric_traces(root):
  traces = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in _rows(root / "A4C" / "VolumeTracings.csv"):
    traces[r["FileName"]][int(r["Frame"])].append((float(r["X"]), float(r["Y"])))
  return {k: {f: np.array(p) for f, p in v.items()} for k, v in traces.items()}


def _dynamic_traces(root):
  traces = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in _rows(root / "VolumeTracings.csv"):
    traces[r["FileName"]][int(r["Frame"])].append(
        [float(r[c]) for c in ("X1", "Y1", "X2", "Y2")])
  return {k: {f: np.array(p) for f, p in v.items()} for k, v in traces.items()}


def _lv_polygons(kind, root):
  """FileName (as in FileList) -> frame -> (contour, apex, base, disc volume px³)."""
  out = {}
  if kind == "ped":
    for name, frames in _pediatric_traces(root).items():
      out[name] = {}
      for f, pts in frames.items():
        apex, base = V.long_axis_from_contour(pts)
        out[name][f] = (pts, apex, base, V.discs_volume_from_contour(pts, apex, base))
  else:
    for name, frames in _dynamic_traces(root).items():
      key = name[:-len(".avi")]
      out[key] = {}
      for f, rows in frames.items():
        axis, chords = rows[0].reshape(2, 2), rows[1:].reshape(-1, 2, 2)
        assert len(chords) == 20
        out[key][f] = (V.contour_from_chords(axis, chords), axis[0], axis[1],
                       V.discs_volume_from_chords(axis, chords))
  return out


def _video_path(kind, root, name):
  return root / "A4C" / "Videos" / name if kind == "ped" else root / "Videos" / f"{name}.avi"


# ----------------------------------------------------------------------------- layout


def test_headers_are_exactly_the_published_ones(cohorts):
  ped, _ = cohorts["ped"]
  dyn, _ = cohorts["dyn"]
  assert _header(ped / "A4C" / "FileList.csv") == "FileName,EF,Sex,Age,Weight,Height,Split"
  assert _header(ped / "A4C" / "VolumeTracings.csv") == "FileName,X,Y,Frame"
  assert _header(dyn / "FileList.csv") == (
      "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split")
  assert _header(dyn / "VolumeTracings.csv") == "FileName,X1,Y1,X2,Y2,Frame"
  for root in (ped, dyn):
    head = _header(root / "ground_truth.csv").split(",")
    assert head[:4] == ["FileName", "TrueEF", "LabelNoiseSD", "Quality"]
    assert {"TrueEDV", "TrueESV", "EDFrame", "ESFrame", "HeartRate", "Subgroup",
            "PixelSpacing"} <= set(head)


def test_pediatric_names_splits_and_demographics(cohorts):
  root, n_videos = cohorts["ped"]
  rows = _rows(root / "A4C" / "FileList.csv")
  assert len(rows) == n_videos >= NUM
  videos = sorted(p.name for p in (root / "A4C" / "Videos").iterdir())
  assert videos == sorted(r["FileName"] for r in rows)
  folds = {}
  for r in rows:
    m = re.fullmatch(r"(CR[0-9a-f]{7})-(CR[0-9a-f]{7})-(\d{6})\.avi", r["FileName"])
    assert m, r["FileName"]
    patient = m.group(1)
    fold = int(hashlib.sha1(patient.encode()).hexdigest(), 16) % 10
    assert int(r["Split"]) == fold
    assert folds.setdefault(patient, fold) == fold
    assert r["Sex"] in ("M", "F")
    assert 0 <= int(r["Age"]) <= 18
    for col in ("Weight", "Height"):
      assert r[col] == "" or float(r[col]) > 0
  assert len(folds) == NUM and n_videos > NUM   # some patients have two videos


def test_dynamic_names_splits_and_volumes(cohorts):
  root, n_videos = cohorts["dyn"]
  rows = _rows(root / "FileList.csv")
  truth = {r["FileName"]: r for r in _rows(root / "ground_truth.csv")}
  assert len(rows) == n_videos == NUM
  for r in rows:
    assert re.fullmatch(r"0X[0-9A-F]{16}", r["FileName"])
    assert (root / "Videos" / (r["FileName"] + ".avi")).is_file()
    assert r["Split"] in ("TRAIN", "VAL", "TEST")
    ef, esv, edv = float(r["EF"]), float(r["ESV"]), float(r["EDV"])
    assert abs(100 * (edv - esv) / edv - ef) < 1e-5      # measured volumes match the label
    assert abs(ef - float(truth[r["FileName"]]["LabelEF"])) < 1e-5
    info = video_io.probe_video(root / "Videos" / (r["FileName"] + ".avi"))
    assert (info.num_frames, info.height, info.width) == (
        int(r["NumberOfFrames"]), int(r["FrameHeight"]), int(r["FrameWidth"]))
    assert info.fps == pytest.approx(float(r["FPS"]))
  assert all(name.endswith(".avi") for name in _dynamic_traces(root))
  # Split proportions over many names: 75 / 12.5 / 12.5 %.
  counts = collections.Counter(echonet_writer.dynamic_split(echonet_writer.dynamic_file_name(0, i))
                               for i in range(8000))
  assert abs(counts["TRAIN"] / 8000 - 0.75) < 0.02
  assert abs(counts["VAL"] / 8000 - 0.125) < 0.015
  names = {echonet_writer.dynamic_file_name(0, i) for i in range(5000)}
  assert len(names) == 5000


# ------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_serial_and_parallel(cohorts, tmp_path):
  ped, _ = cohorts["ped"]
  again = tmp_path / "again"
  echonet_writer.write_echonet_pediatric(again, NUM, SEED, workers=2, second_video_prob=0.3)
  for rel in ("A4C/FileList.csv", "A4C/VolumeTracings.csv", "ground_truth.csv"):
    assert (ped / rel).read_bytes() == (again / rel).read_bytes(), rel
  for p in sorted((ped / "A4C" / "Videos").iterdir()):
    np.testing.assert_array_equal(video_io.read_video(p),
                                  video_io.read_video(again / "A4C" / "Videos" / p.name))
  other = tmp_path / "other"
  echonet_writer.write_echonet_pediatric(other, NUM, SEED + 1, workers=1, second_video_prob=0.3)
  assert (ped / "A4C/FileList.csv").read_bytes() != (other / "A4C/FileList.csv").read_bytes()


def test_dynamic_same_seed_same_bytes(cohorts, tmp_path):
  dyn, _ = cohorts["dyn"]
  echonet_writer.write_echonet_dynamic(tmp_path, 3, SEED, workers=1)
  # Subject i depends only on (seed, i): the first 3 of the 8-subject cohort match.
  first = _rows(dyn / "FileList.csv")[:3]
  assert _rows(tmp_path / "FileList.csv") == first
  name = first[0]["FileName"] + ".avi"
  np.testing.assert_array_equal(video_io.read_video(dyn / "Videos" / name),
                                video_io.read_video(tmp_path / "Videos" / name))


# ----------------------------------------------------------------- ground truth checks


@pytest.mark.parametrize("kind", ["ped", "dyn"])
def test_ef_from_tracings_equals_true_ef(cohorts, kind):
  root, _ = cohorts[kind]
  truth = {r["FileName"]: r for r in _rows(root / "ground_truth.csv")}
  polys = _lv_polygons(kind, root)
  assert set(polys) == set(truth)
  for name, frames in polys.items():
    t = truth[name]
    ed, es = int(t["EDFrame"]), int(t["ESFrame"])
    assert set(frames) == {ed, es}
    edv, esv = frames[ed][3], frames[es][3]
    # Chords are exact; contours are polygons of the same affinely scaled shape,
    # whose inscribed-polygon error cancels in the ratio. Tolerance: 0.01 EF points.
    # Tracings give the single-plane EF; adults have no out-of-plane term (ρ = 1).
    plane_ef = float(t["PlaneEF"])
    assert abs(V.ejection_fraction(edv, esv) - plane_ef) < 0.01, name
    spacing = float(t["PixelSpacing"])
    tol = 1e-5 if kind == "dyn" else 5e-3        # polygon vs exact ellipse for contours
    assert edv * spacing**3 == pytest.approx(float(t["TrueEDV"]), rel=tol)
    assert esv * spacing**3 == pytest.approx(float(t["TrueEDV"]) * (1 - plane_ef / 100), rel=tol)
    assert float(t["TrueEF"]) == pytest.approx(
        100 * (1 - float(t["TrueESV"]) / float(t["TrueEDV"])), abs=1e-4)
    if kind == "dyn":
      assert float(t["TrueEF"]) == pytest.approx(plane_ef, abs=1e-4)
    else:   # Echo-4: the A4C plane under-reads infants' function (ρ = 1 + 0.5·e^(−age/2)).
      assert float(t["TrueEF"]) >= plane_ef - 1e-4


@pytest.mark.parametrize("kind", ["ped", "dyn"])
def test_ef_from_rasterised_masks_agrees(cohorts, kind):
  root, _ = cohorts[kind]
  truth = {r["FileName"]: r for r in _rows(root / "ground_truth.csv")}
  errors = {"exact": [], "echonet": []}
  for name, frames in _lv_polygons(kind, root).items():
    t = truth[name]
    for rule, rasterise in (("exact", V.polygon_mask), ("echonet", T.rasterize_polygon)):
      vols = {f: V.discs_volume_from_mask(rasterise(poly, (112, 112)), apex, base)
              for f, (poly, apex, base, _) in frames.items()}
      errors[rule].append(V.ejection_fraction(vols[int(t["EDFrame"])], vols[int(t["ESFrame"])])
                          - float(t["PlaneEF"]))
  exact, rounded = np.abs(errors["exact"]), np.abs(errors["echonet"])
  # Pixel masks at 112 x 112 (LV ≈ 20-35 px wide): < 2.5 points each, < 1 on average.
  assert exact.max() < 2.5 and exact.mean() < 1.0, exact
  # The readers' rule rounds vertices to whole pixels (echonet): biased by ~1.3 points.
  assert rounded.max() < 5.0 and rounded.mean() < 2.5, rounded


@pytest.mark.parametrize("kind", ["ped", "dyn"])
def test_traced_lv_is_the_dark_pool(cohorts, kind):
  root, _ = cohorts[kind]
  truth = {r["FileName"]: r for r in _rows(root / "ground_truth.csv")}
  for name, frames in _lv_polygons(kind, root).items():
    video = video_io.read_video(_video_path(kind, root, name))
    for f, (poly, apex, base, _) in frames.items():
      mask = V.polygon_mask(poly, video.shape[1:])
      inside = ndimage.binary_erosion(mask, iterations=1)
      ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask)
      # Myocardial band: the ring except beyond 85 % of the long axis (mitral opening).
      e = (base - apex) / np.linalg.norm(base - apex)
      yy, xx = np.nonzero(ring)
      s = (np.stack([xx, yy], 1) - apex) @ e
      band = video[f][yy[s < 0.85 * np.linalg.norm(base - apex)],
                      xx[s < 0.85 * np.linalg.norm(base - apex)]]
      ratio = video[f][inside].mean() / band.mean()
      limit = {"good": 0.35, "medium": 0.5, "poor": 0.75}[truth[name]["Quality"]]
      assert ratio < limit, (name, f, ratio)


def test_ed_es_frames_and_timing(cohorts):
  for kind in ("ped", "dyn"):
    root, _ = cohorts[kind]
    for t in _rows(root / "ground_truth.csv"):
      n, ed, es = int(t["NumberOfFrames"]), int(t["EDFrame"]), int(t["ESFrame"])
      assert 32 <= n <= 100 and 0 <= es < ed < n
      # ES → next ED takes the diastolic part of one cycle at the stated heart rate.
      cycle = 60.0 * float(t["FPS"]) / float(t["HeartRate"])
      assert (ed - es) == pytest.approx((1 - float(t["SystolicFraction"])) * cycle, abs=0.01)
      assert t["Quality"] in subjects.QUALITIES
      assert float(t["LabelNoiseSD"]) == subjects.LABEL_NOISE_SD[t["Quality"]]


def test_label_noise_statistics():
  rng = np.random.default_rng(0)
  n = 400
  for quality, sd in subjects.LABEL_NOISE_SD.items():
    labels, got_sd = subjects.label_noise(np.full(n, 55.0), quality, rng)
    assert got_sd == sd
    resid = labels - 55.0
    assert abs(resid.mean()) < 4 * sd / np.sqrt(n)
    assert 0.85 * sd < resid.std(ddof=1) < 1.15 * sd
  assert subjects.LABEL_NOISE_SD["good"] < subjects.LABEL_NOISE_SD["medium"] < subjects.LABEL_NOISE_SD["poor"]


def test_demographics_carry_information_about_ef():
  ped = [subjects.pediatric_subject(np.random.default_rng([0, 2, i])) for i in range(3000)]
  infants = [s for s in ped if s.age < 1]
  older = [s for s in ped if s.age >= 1]
  dcm = lambda group: np.mean([s.subgroup == "dcm" for s in group])
  assert dcm(infants) > 2 * dcm(older)
  assert np.mean([s.true_ef for s in ped if s.subgroup == "dcm"]) < 45
  # EF spread implied by the MCSDR paper's pediatric RMSE/√(1 − R²) ≈ 11.6.
  ped_ef = np.array([s.true_ef for s in ped])
  assert 10.5 < ped_ef.std() < 12.7 and 55 < ped_ef.mean() < 61
  # Body size grows with age and drives heart size and rate.
  ages = np.array([s.age for s in ped])
  assert np.corrcoef(ages, [s.bsa for s in ped])[0, 1] > 0.8
  assert np.corrcoef(ages, [s.heart_rate for s in ped])[0, 1] < -0.5
  # Echo-4: age tells how far the A4C plane under-reads EF (information the clip lacks).
  gap = np.array([_plane_ef_gap(s) for s in ped])
  assert 4.5 < gap[ages < 1].mean() < 7.0 and gap[ages > 5].max() < 1.0 and gap.min() >= -1e-9
  adults = [subjects.adult_subject(np.random.default_rng([0, 1, i])) for i in range(3000)]
  ef = np.array([s.true_ef for s in adults])
  assert 53 < ef.mean() < 59 and 10 < ef.std() < 15 and ef.min() < 15 and ef.max() > 80


def test_contraction_curve_hits_ed_and_es_exactly():
  s = 0.38
  phase = np.linspace(0, 1, 2001)[:-1]
  c = anatomy.contraction(phase, s)
  assert c[0] == 0.0 and anatomy.contraction(np.array([s]), s)[0] == 1.0
  assert c.min() >= 0.0 and c.max() <= 1.0
  assert np.all(np.diff(c[phase <= s]) >= 0)      # ejection is monotone


# ------------------------------------------------------------------------------ readers


def test_trees_load_through_the_readers(cohorts):
  echonet = pytest.importorskip("cardiac_data.echonet")
  ped, n_ped = cohorts["ped"]
  dyn, n_dyn = cohorts["dyn"]
  res = echonet.read_echonet_pediatric(ped, view="A4C", test_fold=0)
  assert len(res.records) == n_ped and res.skips.total == 0
  truth = {r["FileName"]: r for r in _rows(ped / "ground_truth.csv")}
  for rec in res.records:
    t = truth[rec.key + ".avi"]
    assert (rec.ed_frame, rec.es_frame) == (int(t["EDFrame"]), int(t["ESFrame"]))
    assert rec.num_frames == int(t["NumberOfFrames"]) and rec.height == rec.width == 112
  res = echonet.read_echonet_dynamic(dyn)
  assert len(res.records) == n_dyn and res.skips.total == 0
  truth = {r["FileName"]: r for r in _rows(dyn / "ground_truth.csv")}
  for rec in res.records:
    assert (rec.ed_frame, rec.es_frame) == (int(truth[rec.key]["EDFrame"]),
                                            int(truth[rec.key]["ESFrame"]))


# -------------------------------------------------------------------------------- cache


def test_cache_reuses_and_keys_on_parameters(tmp_path, monkeypatch):
  root = cache.ensure_cohort("echonet_dynamic", 2, 0, cache_dir=str(tmp_path), workers=1)
  assert (root / "FileList.csv").is_file() and (root / cache.MARKER).is_file()
  sentinel = root / "sentinel"
  sentinel.write_text("kept")
  mtime = (root / "FileList.csv").stat().st_mtime_ns
  assert cache.ensure_cohort("echonet_dynamic", 2, 0, cache_dir=str(tmp_path)) == root
  assert sentinel.exists() and (root / "FileList.csv").stat().st_mtime_ns == mtime
  other = cache.ensure_cohort("echonet_dynamic", 2, 1, cache_dir=str(tmp_path), workers=1)
  assert other != root and other.name.startswith("echonet_dynamic-")
  ped = cache.ensure_cohort("echonet_pediatric", 2, 0, cache_dir=str(tmp_path), workers=1,
                            tracing_points=31)
  ped2 = cache.ensure_cohort("echonet_pediatric", 2, 0, cache_dir=str(tmp_path), workers=1,
                             tracing_points=23)
  assert ped != ped2 and (ped / "A4C" / "FileList.csv").is_file()
  monkeypatch.setenv("CARDIAC_DATA_CACHE", str(tmp_path / "env"))
  assert cache.default_cache_dir() == tmp_path / "env"


def test_cache_recovers_from_killed_run_and_serialises(tmp_path, monkeypatch):
  calls = []

  def counting_writer(out, num_subjects, seed=0, **kwargs):
    calls.append(seed)
    return echonet_writer.write_echonet_dynamic(out, num_subjects, seed, **{**kwargs, "workers": 1})

  monkeypatch.setitem(synthetic.WRITERS, "counting", counting_writer)
  key = cache.cohort_key("counting", 1, 0)
  name = cache.cohort_dir_name(key)
  # Leftovers of a killed run: a temporary folder and a final folder without marker.
  (tmp_path / f".tmp-{name}-dead").mkdir()
  (tmp_path / name).mkdir()
  (tmp_path / name / "FileList.csv").write_text("half")
  results = []
  threads = [threading.Thread(
      target=lambda: results.append(cache.ensure_cohort("counting", 1, 0, cache_dir=str(tmp_path))))
             for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert calls == [0]                       # generated once, reused by the other caller
  assert results[0] == results[1] == tmp_path / name
  assert not list(tmp_path.glob(".tmp-*"))
  assert _header(tmp_path / name / "FileList.csv").startswith("FileName,EF,ESV")


def test_registry_and_bad_names(tmp_path):
  assert {"echonet_dynamic", "echonet_pediatric"} <= set(synthetic.WRITERS)
  with pytest.raises(KeyError, match="unknown synthetic dataset"):
    synthetic.get_writer("nope")
  echonet_writer.write_echonet_dynamic(tmp_path, 1, 0, workers=1)
  with pytest.raises(FileExistsError, match="already holds"):
    echonet_writer.write_echonet_dynamic(tmp_path, 1, 0, workers=1)
  assert echonet_writer.write_echonet_dynamic(tmp_path, 1, 0, workers=1, overwrite=True) == 1


def _plane_ef_gap(subject, seed=0):
  heart, _ = anatomy.make_heart_and_acquisition(subject, np.random.default_rng(seed), size=112,
                                             fps_choices=(50,), fps_probs=(1.0,))
  plane = V.ejection_fraction(anatomy.lv_volume_px(heart, 0.0), anatomy.lv_volume_px(heart, 1.0))
  return subject.true_ef - plane


def test_out_of_plane_volume_matches_elliptic_discs():
  """True volume = Σ π/4·d_sl·d_ai·h with d_ai shortening ρ times faster (brute force)."""
  subject = dataclasses.replace(subjects.pediatric_subject(np.random.default_rng([3, 2, 1])),
                                age=0.3, out_of_plane=subjects.out_of_plane(0.3))
  heart, _ = anatomy.make_heart_and_acquisition(subject, np.random.default_rng(5), size=112,
                                             fps_choices=(50,), fps_probs=(1.0,))
  assert heart.rho == pytest.approx(1 + 0.5 * np.exp(-0.15))
  for c in (0.0, 0.4, 1.0):
    _, w, big_l = anatomy.lv_half_widths(heart, c)
    d_sl = 2 * w
    d_ai = d_sl / (1 - heart.f_rad * c) * (1 - heart.rho * heart.f_rad * c)
    brute = float(np.sum(np.pi / 4 * d_sl * d_ai) * big_l / len(w))
    assert anatomy.lv_true_volume_px(heart, c) == pytest.approx(brute, rel=1e-10)
  ef = V.ejection_fraction(anatomy.lv_true_volume_px(heart, 0.0), anatomy.lv_true_volume_px(heart, 1.0))
  assert ef == pytest.approx(subject.true_ef, abs=1e-9)
  assert 0 < heart.rho * heart.f_rad < 1


def test_affine_contraction_gives_the_target_ef():
  # V_es / V_ed = (1 − f_l)(1 − f_r)² for the disc formula, so the drawn EF is exact.
  for i in range(20):
    rng = np.random.default_rng([9, i])
    subject = subjects.adult_subject(rng)
    heart, _ = anatomy.make_heart_and_acquisition(subject, rng, size=112, fps_choices=(50,),
                                               fps_probs=(1.0,))
    ef = V.ejection_fraction(anatomy.lv_volume_px(heart, 0.0), anatomy.lv_volume_px(heart, 1.0))
    assert ef == pytest.approx(subject.true_ef, abs=1e-9)
    assert 0 < heart.f_long < heart.f_rad < 1 or subject.true_ef < 20


def test_speckle_map_follows_the_lv_and_leaves_the_chest_wall():
  """Tissue-locked speckle: at ED the map is the identity; at ES a point of the LV
  contour maps back to the same contour point at ED; far from the heart, identity."""
  rng = np.random.default_rng(3)
  heart, _ = anatomy.make_heart_and_acquisition(subjects.pediatric_subject(rng), rng, size=112,
                                             fps_choices=(50,), fps_probs=(1.0,))
  map_x, map_y = rendering.tissue_map(heart, np.array([0.0, 1.0]), 112)
  yy, xx = np.mgrid[0:112, 0:112]
  np.testing.assert_allclose(map_x[0], xx, atol=1e-4)
  np.testing.assert_allclose(map_y[0], yy, atol=1e-4)
  ed, es = anatomy.lv_contour(heart, 0.0, n=9), anatomy.lv_contour(heart, 1.0, n=9)
  for p_ed, p_es in zip(ed[1:-1], es[1:-1]):   # interior points (hinges are at the edge)
    i, j = np.round(p_es[::-1]).astype(int)
    # At the pixel nearest the ES point (≤ 0.71 px away, Jacobian ≤ 1.5), the map
    # lands within 1 px of the ED point; the identity would miss by f_r·b ≈ 4 px.
    assert np.hypot(map_x[1, i, j] - p_ed[0], map_y[1, i, j] - p_ed[1]) < 1.0
  far = np.hypot(xx - heart.apex[0], yy - heart.apex[1]) > 4 * heart.a * (1 + heart.tau)
  if far.any():
    np.testing.assert_allclose(map_x[1][far], xx[far], atol=1e-4)
