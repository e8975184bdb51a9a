"""Synthetic short-axis DENSE cohort in the StrainNet layout (LaMoD's data, issue 5).

Layout written under `out` (what `cardiac_data.dense.read_split` reads):

  data/{train,val,test}/NNNN/input.mat   key 'input': uint8 (1, H, W, T) myocardium mask
  data/{train,val,test}/NNNN/label.mat   key 'label': float64 (2, H, W, T) Lagrangian
                                         displacement in pixels, channel 0 = x (columns),
                                         1 = y (rows); zero outside the frame-0 myocardium
  data/test_cine/NNNN/{input,label}.mat  the test subjects' cine-like scans (below): input
                                         (1, H, W, T_c) cine mask, label (2, H, W, T_c) the
                                         DENSE displacement at the cine frames
  ground_truth.json                      per subject: split, pattern, RV insertion angle and
                                         point, geometry, segmental/global Ecc curves (6, T);
                                         test subjects: their cine perturbations ('cine')

H = W = `size` (48, the DENSE grid), T = `frames` (40), T_c = `cine_frames` (25; 0 = no
test_cine). Splits ~70/15/15 %.

Heart model (one mid-ventricular slice per subject; frame 0 = end-diastole, the reference):
  * Annulus about c with endocardial radius R_i and wall h (R_o = R_i + h), material point
    X = c + R(cos Θ, sin Θ), angles θ = atan2(y − c_y, x − c_x) (y down).
  * RV insertion at θ_RV on the epicardium; six segments counter-clockwise on screen from it
    (`lamod_jax.strain`), centred at Θ_k = θ_RV − (k + ½)π/3.
  * Radial motion (visible in the masks): segment k moves its endocardium inward by
    c_k(t) = a_k·s_k(t) (a_k px, s_k a raised-cosine contraction with onset d_k and peak p_k);
    c(Θ, t) = Σ_k w_k(Θ) c_k(t) with von Mises weights (κ = 4). Each wedge keeps its area:
    r(R, Θ, t) = √(R² − R_i² + (R_i − c(Θ, t))²) (wall thickening).
    Healthy: p_k = t_ES + N(0, 0.7), a_k = a₀(1 + N(0, 0.1)). LBBB-like (dyssynchronous):
    septal segments 1–2 peak 5 frames early with 0.4–0.7·a₀, lateral 4–5 peak 4 frames late
    with 1.0–1.3·a₀ after an early pre-stretch of 0.25·a₀ (septal flash).
  * Circumferential motion (invisible on a circular mask boundary), θ = Θ + ρ(R, t) + τ(Θ, t):
      rotation ρ = ρ_amp·s̄(t)·(1.25 − 0.5(R − R_i)/h), s̄ = mean_k c_k/a₀,
        ρ_amp = 0.03·a₀ + N(0, 0.02) rad (tied to the visible contraction, plus noise);
      regional shortening τ = −η/R_i ∫(c(Θ', t) − c̄(t)) dΘ' with η = 0.5 + N(0, 0.25):
        segments that thicken more also shorten more, with subject-specific gain η.
  * Masks: pixel coverage ≥ ½ on 4×4 sub-samples between the deformed endo/epicardial curves.
    Labels: x(X, t) − X at frame-0 myocardium pixel centres (exact, float64).
  * Ground-truth Ecc: Green–Lagrange from the exact map (central differences, h = 10⁻³ px),
    e_c about the frame-0 mask centroid, averaged over each segment's pixels.

Cine-like test split (LaMoD §4.1 "Standard cine CMR videos": cine slices of the test
subjects, paired with their DENSE scan, whose displacement is the ground truth). Each test
subject's cine mask comes from a separate scan of the same slice and heart, differing from
the DENSE mask by (lengths × size/48):
  * frames: T_c = 25 frames evenly over the DENSE frames' span, cine frame j at DENSE frame
    j·(T − 1)/(T_c − 1) (frame 0 = end-diastole in both, the last frames coincide); the
    heart model is evaluated at these times (its contraction curves are continuous in t);
  * rigid misalignment: the whole cine sequence shifted by 0.25–1 px (uniform) in a
    uniform random direction (breath-hold / slice position difference);
  * contour: the endocardium traced d_endo ~ U(−0.5, 0.5) px further in and the
    epicardium d_epi ~ U(−0.5, 0.5) px further out (a wall-thickness bias of d_endo +
    d_epi, −1 … 1 px), and the partial-volume coverage threshold q ~ U(0.35, 0.65)
    instead of ½ (a differently thresholded boundary).
The label is the DENSE label (the exact displacement on the DENSE frame-0 support)
resampled linearly in time to the cine frames, so it lives on the DENSE contour, not the
cine one: pixel-wise errors against it are approximate (the paper scores cine by
segmental strain only). Frame-0 Dice between the cine and DENSE masks: 0.86–0.95 (the 9
test subjects of 60-subject cohorts at 48² and at 32²).

Determinism: subject i draws from `np.random.default_rng([seed, 5, i])`, its cine
perturbations from the separate stream `[seed, 5, i, 1]` (the DENSE files do not depend
on `cine_frames`); .mat headers carry no date, so the same seed writes the same bytes for
any worker count.
"""
from __future__ import annotations

import io
import json
import math
import os
import pathlib

import numpy as np
import scipy.io

from cardiac_data.synthetic import jobs

# dense-2: adds data/test_cine/ (the DENSE files are those of dense-1).
GENERATOR_VERSION = "dense-2"
SPLITS = ("train", "val", "test")
CINE_SPLIT = "test_cine"
CINE_FRAMES = 25   # StrainNet's test_cine: 25 frames
PATTERNS = ("healthy", "lbbb")
_THETA = np.linspace(0.0, 2 * math.pi, 720, endpoint=False)
_SUB = 4   # sub-samples per pixel side for mask coverage


def subject_id(index: int) -> str:
  return f"{index + 1:04d}"


def dense_split(num_subjects: int, seed: int) -> list[str]:
  """Split per subject index (~70/15/15 %, at least one val/test case when n ≥ 3)."""
  n = int(num_subjects)
  order = np.random.default_rng([seed, 5, 999999]).permutation(n)
  n_val = max(1, round(0.15 * n)) if n >= 3 else 0
  n_test = max(1, round(0.15 * n)) if n >= 3 else 0
  splits = [""] * n
  for rank, i in enumerate(order):
    splits[i] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
  return splits


def _raised(t, start, peak, end):
  """0 before start, sin² rise to 1 at peak, cos² fall to 0 at end."""
  rise = np.sin(0.5 * math.pi * np.clip((t - start) / max(peak - start, 1e-6), 0, 1)) ** 2
  fall = np.cos(0.5 * math.pi * np.clip((t - peak) / max(end - peak, 1e-6), 0, 1)) ** 2
  return np.where(t <= peak, rise, fall)


def draw_subject(rng: np.random.Generator, size: int, frames: int) -> dict:
  """Random parameters of one subject (see the module docstring)."""
  scale = size / 48.0
  pattern = "lbbb" if rng.random() < 0.4 else "healthy"
  c = np.array([size / 2 - 0.5, size / 2 - 0.5]) + rng.uniform(-2, 2, 2) * scale
  r_i = rng.uniform(8.0, 10.5) * scale
  h = rng.uniform(4.0, 5.5) * scale
  a0 = rng.uniform(1.8, 3.0) * scale
  rv = math.radians(rng.uniform(-150.0, -100.0))
  t_es = rng.uniform(13.0, 17.0)
  amp = a0 * (1 + 0.1 * rng.standard_normal(6))
  peaks = t_es + 0.7 * rng.standard_normal(6)
  onsets = rng.uniform(0.0, 1.0, 6)
  # Per segment (amplitude, start, peak, end, pre-stretch): see `contraction_curves`.
  timing = np.stack([amp, onsets, peaks, peaks + 16.0, np.zeros(6)], axis=1)
  if pattern == "lbbb":
    for k in (1, 2):
      timing[k, :4] = (a0 * rng.uniform(0.4, 0.7), onsets[k], t_es - 5.0, t_es + 9.0)
    for k in (4, 5):
      timing[k] = (a0 * rng.uniform(1.0, 1.3), onsets[k] + 3.0, t_es + 4.0, t_es + 18.0,
                   0.25 * a0)
  rho_amp = 0.03 * a0 / scale + 0.02 * rng.standard_normal()
  eta = 0.5 + 0.25 * rng.standard_normal()
  s = dict(pattern=pattern, center=c, r_i=r_i, h=h, a0=a0, rv=rv, t_es=t_es, timing=timing,
           rho_amp=rho_amp, eta=eta, frames=frames, size=size)
  s["curves"] = contraction_curves(s, np.arange(frames, dtype=np.float64))
  return s


def contraction_curves(s: dict, frame_times) -> np.ndarray:
  """c_k(t) (6, len(frame_times)) at fractional DENSE frame indices (0 = end-diastole;
  time in 40-frame units is frame · 40 / frames): amplitude · raised-cosine(start, peak,
  end), minus the LBBB pre-stretch 0.25·a₀ · raised(0, t_ES − 6, t_ES − 1) where set."""
  t = np.asarray(frame_times, np.float64) * (40.0 / s["frames"])
  rows = []
  for amp, start, peak, end, pre in s["timing"]:
    c = amp * _raised(t, start, peak, end)
    if pre:
      c = c - pre * _raised(t, 0.0, s["t_es"] - 6.0, s["t_es"] - 1.0)
    rows.append(c)
  return np.stack(rows)


def angular_fields(s: dict):
  """c(Θ, t) and τ(Θ, t) on the Θ grid (frames, 720), and s̄(t)."""
  centres = s["rv"] - (np.arange(6) + 0.5) * math.pi / 3
  w = np.exp(4.0 * np.cos(_THETA[:, None] - centres[None, :]))
  w /= w.sum(axis=1, keepdims=True)
  cth = s["curves"].T @ w.T                                    # (T, 720)
  excess = cth - cth.mean(axis=1, keepdims=True)
  dtheta = 2 * math.pi / _THETA.size
  tau = -s["eta"] / s["r_i"] * np.cumsum(excess, axis=1) * dtheta
  tau -= tau.mean(axis=1, keepdims=True)
  sbar = s["curves"].mean(axis=0) / s["a0"]
  return cth, tau, sbar


def deform(s: dict, fields, t: int, x, y):
  """Positions at frame t of material points with reference coordinates (x, y)."""
  cth, tau, sbar = fields
  dx, dy = x - s["center"][0], y - s["center"][1]
  rr = np.hypot(dx, dy)
  th = np.mod(np.arctan2(dy, dx), 2 * math.pi)
  c_t = np.interp(th, _THETA, cth[t], period=2 * math.pi)
  tau_t = np.interp(th, _THETA, tau[t], period=2 * math.pi)
  r_endo = s["r_i"] - c_t
  r = np.sqrt(np.maximum(rr ** 2 - s["r_i"] ** 2 + r_endo ** 2, 1e-6))
  rho = s["rho_amp"] * sbar[t] * (1.25 - 0.5 * (rr - s["r_i"]) / s["h"])
  new = th + rho + tau_t
  return s["center"][0] + r * np.cos(new), s["center"][1] + r * np.sin(new)


def _boundary(s, fields, t, radius):
  """Deformed curve of the reference circle R = radius: (θ grid, r) sorted by angle."""
  x = s["center"][0] + radius * np.cos(_THETA)
  y = s["center"][1] + radius * np.sin(_THETA)
  px, py = deform(s, fields, t, x, y)
  ang = np.mod(np.arctan2(py - s["center"][1], px - s["center"][0]), 2 * math.pi)
  order = np.argsort(ang)
  return ang[order], np.hypot(px - s["center"][0], py - s["center"][1])[order]


def _subpixels(size: int):
  off = (np.arange(_SUB) + 0.5) / _SUB - 0.5
  g = np.arange(size)
  ys = (g[:, None, None, None] + off[None, None, :, None]) * np.ones((1, size, 1, _SUB))
  xs = (g[None, :, None, None] + off[None, None, None, :]) * np.ones((size, 1, _SUB, 1))
  return xs, ys


def masks(s: dict, fields, *, shift=(0.0, 0.0), endo_offset: float = 0.0,
          epi_offset: float = 0.0, threshold: float = 0.5) -> np.ndarray:
  """Myocardium masks (T, H, W) uint8: sub-pixel coverage ≥ `threshold` of the deformed
  annulus. The cine scan's contour (`cine_scan`): the image moved by `shift` (x, y) px,
  the endocardium traced `endo_offset` px further in and the epicardium `epi_offset` px
  further out (the defaults give the DENSE masks)."""
  xs, ys = _subpixels(s["size"])
  dx, dy = xs - (s["center"][0] + shift[0]), ys - (s["center"][1] + shift[1])
  rr, th = np.hypot(dx, dy), np.mod(np.arctan2(dy, dx), 2 * math.pi)
  out = np.zeros((s["frames"], s["size"], s["size"]), np.uint8)
  for t in range(s["frames"]):
    a_in, r_in = _boundary(s, fields, t, s["r_i"])
    a_out, r_out = _boundary(s, fields, t, s["r_i"] + s["h"])
    lo = np.interp(th, a_in, r_in, period=2 * math.pi) - endo_offset
    hi = np.interp(th, a_out, r_out, period=2 * math.pi) + epi_offset
    cover = ((rr >= lo) & (rr <= hi)).mean(axis=(2, 3))
    out[t] = cover >= threshold
  return out


def displacements(s: dict, fields, support: np.ndarray) -> np.ndarray:
  """Lagrangian displacement (T, 2, H, W) float64 at the support pixels, 0 elsewhere."""
  ys, xs = np.nonzero(support)
  out = np.zeros((s["frames"], 2, s["size"], s["size"]))
  for t in range(s["frames"]):
    px, py = deform(s, fields, t, xs.astype(float), ys.astype(float))
    out[t, 0, ys, xs] = px - xs
    out[t, 1, ys, xs] = py - ys
  return out


def true_ecc(s: dict, fields, support: np.ndarray, h: float = 1e-3) -> np.ndarray:
  """Ecc (T, H, W) of the exact map (Green–Lagrange, central differences), NaN off support."""
  ys, xs = np.nonzero(support)
  xs, ys = xs.astype(float), ys.astype(float)
  ox, oy = xs.mean(), ys.mean()
  th = np.arctan2(ys - oy, xs - ox)
  ec = np.stack([-np.sin(th), np.cos(th)])
  out = np.full((s["frames"], s["size"], s["size"]), np.nan)
  for t in range(s["frames"]):
    cols = []
    for ddx, ddy in ((h, 0.0), (0.0, h)):
      px1, py1 = deform(s, fields, t, xs + ddx, ys + ddy)
      px0, py0 = deform(s, fields, t, xs - ddx, ys - ddy)
      cols.append(np.stack([(px1 - px0) / (2 * h), (py1 - py0) / (2 * h)]))
    f = np.stack(cols, axis=1)                                  # (2 [i], 2 [j], n)
    fe = np.einsum("ijn,jn->in", f, ec)
    out[t, ys.astype(int), xs.astype(int)] = 0.5 * (np.sum(fe * fe, axis=0) - 1.0)
  return out


def segment_curves(values: np.ndarray, support: np.ndarray, rv: float) -> np.ndarray:
  """Per-segment means (T, 6) of maps (T, H, W) (same rule as `lamod_jax.strain`)."""
  ys, xs = np.nonzero(support)
  th = np.arctan2(ys - ys.mean(), xs - xs.mean())
  seg = np.clip(np.floor(np.mod(rv - th, 2 * math.pi) / (math.pi / 3)), 0, 5).astype(int)
  v = values[:, ys, xs]
  return np.stack([np.nanmean(v[:, seg == k], axis=1) if np.any(seg == k)
                   else np.full(v.shape[0], np.nan) for k in range(6)], axis=1)


def mat_bytes(key: str, array: np.ndarray) -> bytes:
  """A compressed MATLAB 5 file holding one variable, with a date-free header."""
  buf = io.BytesIO()
  scipy.io.savemat(buf, {key: array}, do_compression=True, format="5")
  data = bytearray(buf.getvalue())
  text = b"MATLAB 5.0 MAT-file, written by cardiac_data.synthetic.dense_writer"
  data[:116] = text.ljust(116, b" ")
  return bytes(data)


def cine_frame_times(frames: int, cine_frames: int) -> np.ndarray:
  """DENSE frame index (fractional) of each cine frame: `cine_frames` evenly over the
  DENSE frames' span 0 … frames − 1 (cine frame 0 = DENSE frame 0 = end-diastole)."""
  return np.linspace(0.0, frames - 1.0, int(cine_frames))


def resample_frames(u: np.ndarray, frame_times) -> np.ndarray:
  """Linear interpolation in time of a (T, ...) sequence at fractional frame indices."""
  f = np.asarray(frame_times, np.float64)
  lo = np.clip(np.floor(f).astype(int), 0, u.shape[0] - 1)
  hi = np.minimum(lo + 1, u.shape[0] - 1)
  w = (f - lo).reshape((-1,) + (1,) * (u.ndim - 1))
  return (1.0 - w) * u[lo] + w * u[hi]


def draw_cine(rng: np.random.Generator, size: int) -> dict:
  """The cine scan's perturbations (module docstring: "Cine-like test split")."""
  scale = size / 48.0
  angle = rng.uniform(0.0, 2 * math.pi)
  shift = rng.uniform(0.25, 1.0) * scale
  return dict(shift=(shift * math.cos(angle), shift * math.sin(angle)),
              endo_offset=rng.uniform(-0.5, 0.5) * scale,
              epi_offset=rng.uniform(-0.5, 0.5) * scale,
              threshold=rng.uniform(0.35, 0.65))


def cine_scan(s: dict, u: np.ndarray, cine_frames: int, pert: dict):
  """(masks (T_c, H, W) uint8, label (T_c, 2, H, W)) of the cine scan of subject `s`: the
  masks of the same heart at the cine frame times drawn with the perturbations `pert`
  (`draw_cine`), the label the DENSE displacement `u` (T, 2, H, W) resampled linearly in
  time to those frames (on the DENSE frame-0 support)."""
  times = cine_frame_times(s["frames"], cine_frames)
  sc = dict(s, curves=contraction_curves(s, times), frames=int(cine_frames))
  m = masks(sc, angular_fields(sc), shift=pert["shift"], endo_offset=pert["endo_offset"],
            epi_offset=pert["epi_offset"], threshold=pert["threshold"])
  return m, resample_frames(u, times)


def _write_sample(folder: pathlib.Path, m: np.ndarray, u: np.ndarray) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "input.mat").write_bytes(mat_bytes("input", np.transpose(m, (1, 2, 0))[None]))
  (folder / "label.mat").write_bytes(mat_bytes("label", np.transpose(u, (1, 2, 3, 0))))


def _subject_task(args) -> dict:
  out, seed, index, size, frames, split, cine_frames = args
  rng = np.random.default_rng([seed, 5, index])
  s = draw_subject(rng, size, frames)
  fields = angular_fields(s)
  m = masks(s, fields)
  support = m[0] > 0
  u = displacements(s, fields, support)
  ecc = true_ecc(s, fields, support)
  seg = segment_curves(ecc, support, s["rv"])
  _write_sample(pathlib.Path(out) / "data" / split / subject_id(index), m, u)
  r_o = s["r_i"] + s["h"]
  rv_point = s["center"] + r_o * np.array([math.cos(s["rv"]), math.sin(s["rv"])])
  r6 = lambda a: [round(float(v), 6) for v in np.ravel(a)]  # noqa: E731
  row = dict(subject=subject_id(index), split=split, pattern=s["pattern"],
             rv_insertion_deg=round(math.degrees(s["rv"]), 6), rv_insertion_xy=r6(rv_point),
             center_xy=r6(s["center"]), endo_radius=round(s["r_i"], 6),
             wall_thickness=round(s["h"], 6), contraction_px=round(s["a0"], 6),
             es_frame=round(s["t_es"] * frames / 40.0, 3),
             rotation_rad=round(s["rho_amp"], 6), shortening_gain=round(s["eta"], 6),
             ecc_segments=[r6(seg[:, k]) for k in range(6)],
             ecc_global=r6(np.nanmean(seg, axis=1)))
  if split == "test" and cine_frames:
    # Its own stream: the DENSE files above do not depend on whether a cine scan is drawn.
    pert = draw_cine(np.random.default_rng([seed, 5, index, 1]), size)
    m_c, u_c = cine_scan(s, u, cine_frames, pert)
    _write_sample(pathlib.Path(out) / "data" / CINE_SPLIT / subject_id(index), m_c, u_c)
    row["cine"] = dict(frames=int(cine_frames), shift_xy=r6(pert["shift"]),
                       endo_offset_px=round(pert["endo_offset"], 6),
                       epi_offset_px=round(pert["epi_offset"], 6),
                       threshold=round(pert["threshold"], 6))
  return row


def write_dense(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                workers: int | None = None, progress: bool = False, overwrite: bool = False,
                size: int = 48, frames: int = 40, cine_frames: int = CINE_FRAMES) -> int:
  """Writes a StrainNet-layout DENSE cohort (data/{train,val,test}/, data/test_cine/,
  ground_truth.json).

  Args:
    out: the dataset root (what `cardiac_data.dense` reads).
    num_subjects: subjects (one slice each), ids 0001 ….
    seed: same seed, same bytes (whatever `workers`).
    size: DENSE grid H = W in pixels (48 as StrainNet); geometry scales with it.
    frames: frames per cycle (40 as LaMoD's DENSE data).
    cine_frames: frames of the cine-like scan of each test subject in data/test_cine/
      (25 as StrainNet's test_cine); 0 = no cine split (the other files are the same).
  Returns the number of subjects written (one DENSE sample each; test_cine repeats the
  test subjects).
  """
  if int(num_subjects) < 1:
    raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
  if int(size) < 32:
    raise ValueError(f"size must be >= 32 pixels, got {size}")
  if int(frames) < 4:
    raise ValueError(f"frames must be >= 4, got {frames}")
  if int(cine_frames) != 0 and int(cine_frames) < 4:
    raise ValueError(f"cine_frames must be 0 (no cine split) or >= 4, got {cine_frames}")
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite, ("data", "ground_truth.json"))
  splits = dense_split(num_subjects, seed)
  tasks = [(str(out), int(seed), i, int(size), int(frames), splits[i], int(cine_frames))
           for i in range(int(num_subjects))]
  rows = jobs.run_tasks(_subject_task, tasks, workers, progress, "dense")
  head = dict(generator=GENERATOR_VERSION, size=int(size), frames=int(frames))
  if int(cine_frames):
    head["cine_frames"] = int(cine_frames)
  (out / "ground_truth.json").write_text(json.dumps(
      dict(head, segments="counter-clockwise on screen from the RV insertion; Ecc about the "
                          "frame-0 mask centroid", subjects=rows), indent=1))
  return len(rows)


write_dense.generator_version = GENERATOR_VERSION
