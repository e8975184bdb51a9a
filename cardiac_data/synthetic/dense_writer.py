"""Synthetic short-axis DENSE cohort in the StrainNet layout (LaMoD's data, issue 5).

Layout written under `out` (what `cardiac_data.dense.read_split` reads):

  data/{train,val,test}/NNNN/input.mat   key 'input': uint8 (1, H, W, T) myocardium mask
  data/{train,val,test}/NNNN/label.mat   key 'label': float64 (2, H, W, T) Lagrangian
                                         displacement in pixels, channel 0 = x (columns),
                                         1 = y (rows); zero outside the frame-0 myocardium
  ground_truth.json                      per subject: split, pattern, RV insertion angle and
                                         point, geometry, segmental/global Ecc curves (6, T)

H = W = `size` (48, the DENSE grid), T = `frames` (40). Splits ~70/15/15 %.

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

Determinism: subject i draws from `np.random.default_rng([seed, 5, i])`; .mat headers carry
no date, so the same seed writes the same bytes for any worker count.
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

GENERATOR_VERSION = "dense-1"
SPLITS = ("train", "val", "test")
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
  t = np.arange(frames, dtype=np.float64) * (40.0 / frames)   # time in 40-frame units
  t_es = rng.uniform(13.0, 17.0)
  amp = a0 * (1 + 0.1 * rng.standard_normal(6))
  peaks = t_es + 0.7 * rng.standard_normal(6)
  onsets = rng.uniform(0.0, 1.0, 6)
  curves = np.stack([amp[k] * _raised(t, onsets[k], peaks[k], peaks[k] + 16.0)
                     for k in range(6)])
  if pattern == "lbbb":
    for k in (1, 2):
      amp[k] = a0 * rng.uniform(0.4, 0.7)
      curves[k] = amp[k] * _raised(t, onsets[k], t_es - 5.0, t_es + 9.0)
    for k in (4, 5):
      amp[k] = a0 * rng.uniform(1.0, 1.3)
      curves[k] = (amp[k] * _raised(t, onsets[k] + 3.0, t_es + 4.0, t_es + 18.0)
                   - 0.25 * a0 * _raised(t, 0.0, t_es - 6.0, t_es - 1.0))
  rho_amp = 0.03 * a0 / scale + 0.02 * rng.standard_normal()
  eta = 0.5 + 0.25 * rng.standard_normal()
  return dict(pattern=pattern, center=c, r_i=r_i, h=h, a0=a0, rv=rv, t_es=t_es,
              curves=curves, rho_amp=rho_amp, eta=eta, frames=frames, size=size)


def _angular_fields(s: dict):
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


def masks(s: dict, fields) -> np.ndarray:
  """Myocardium masks (T, H, W) uint8: sub-pixel coverage ≥ ½ of the deformed annulus."""
  xs, ys = _subpixels(s["size"])
  dx, dy = xs - s["center"][0], ys - s["center"][1]
  rr, th = np.hypot(dx, dy), np.mod(np.arctan2(dy, dx), 2 * math.pi)
  out = np.zeros((s["frames"], s["size"], s["size"]), np.uint8)
  for t in range(s["frames"]):
    a_in, r_in = _boundary(s, fields, t, s["r_i"])
    a_out, r_out = _boundary(s, fields, t, s["r_i"] + s["h"])
    lo = np.interp(th, a_in, r_in, period=2 * math.pi)
    hi = np.interp(th, a_out, r_out, period=2 * math.pi)
    cover = ((rr >= lo) & (rr <= hi)).mean(axis=(2, 3))
    out[t] = cover >= 0.5
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


def _subject_task(args) -> dict:
  out, seed, index, size, frames, split = args
  rng = np.random.default_rng([seed, 5, index])
  s = draw_subject(rng, size, frames)
  fields = _angular_fields(s)
  m = masks(s, fields)
  support = m[0] > 0
  u = displacements(s, fields, support)
  ecc = true_ecc(s, fields, support)
  seg = segment_curves(ecc, support, s["rv"])
  folder = pathlib.Path(out) / "data" / split / subject_id(index)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "input.mat").write_bytes(mat_bytes("input", np.transpose(m, (1, 2, 0))[None]))
  (folder / "label.mat").write_bytes(mat_bytes("label", np.transpose(u, (1, 2, 3, 0))))
  r_o = s["r_i"] + s["h"]
  rv_point = s["center"] + r_o * np.array([math.cos(s["rv"]), math.sin(s["rv"])])
  r6 = lambda a: [round(float(v), 6) for v in np.ravel(a)]  # noqa: E731
  return dict(subject=subject_id(index), split=split, pattern=s["pattern"],
              rv_insertion_deg=round(math.degrees(s["rv"]), 6), rv_insertion_xy=r6(rv_point),
              center_xy=r6(s["center"]), endo_radius=round(s["r_i"], 6),
              wall_thickness=round(s["h"], 6), contraction_px=round(s["a0"], 6),
              es_frame=round(s["t_es"] * frames / 40.0, 3),
              rotation_rad=round(s["rho_amp"], 6), shortening_gain=round(s["eta"], 6),
              ecc_segments=[r6(seg[:, k]) for k in range(6)],
              ecc_global=r6(np.nanmean(seg, axis=1)))


def write_dense(out: str | os.PathLike, num_subjects: int, seed: int = 0, *,
                workers: int | None = None, progress: bool = False, overwrite: bool = False,
                size: int = 48, frames: int = 40) -> int:
  """Writes a StrainNet-layout DENSE cohort (data/{train,val,test}/, ground_truth.json).

  Args:
    out: the dataset root (what `cardiac_data.dense` reads).
    num_subjects: subjects (one slice each), ids 0001 ….
    seed: same seed, same bytes (whatever `workers`).
    size: DENSE grid H = W in pixels (48 as StrainNet); geometry scales with it.
    frames: frames per cycle (40 as LaMoD's DENSE data).
  Returns the number of samples written.
  """
  if int(num_subjects) < 1:
    raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
  if int(size) < 32:
    raise ValueError(f"size must be >= 32 pixels, got {size}")
  if int(frames) < 4:
    raise ValueError(f"frames must be >= 4, got {frames}")
  out = pathlib.Path(out)
  jobs.prepare_output(out, overwrite, ("data", "ground_truth.json"))
  splits = dense_split(num_subjects, seed)
  tasks = [(str(out), int(seed), i, int(size), int(frames), splits[i])
           for i in range(int(num_subjects))]
  rows = jobs.run_tasks(_subject_task, tasks, workers, progress, "dense")
  (out / "ground_truth.json").write_text(json.dumps(
      dict(generator=GENERATOR_VERSION, size=int(size), frames=int(frames),
           segments="counter-clockwise on screen from the RV insertion; Ecc about the "
                    "frame-0 mask centroid", subjects=rows), indent=1))
  return len(rows)


write_dense.generator_version = GENERATOR_VERSION
