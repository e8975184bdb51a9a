"""Heart model of the synthetic echo cohorts: geometry, contraction, volumes, masks.

Anatomy (one heart per subject, in pixels of the output frame):
  * LV cavity: a truncated ellipse (apex towards the sector apex, cut at the
    mitral plane), semi-axes a (along the long axis) and b, truncation τ: the
    cavity is {((s−a)/a)² + (v/b)² ≤ 1, s ≤ L} with s the distance from the apex
    along the long axis, v the perpendicular offset and L = a·(1+τ).
  * Myocardial band around it, RV with septum and free wall, LA and RA with thin
    walls, bright pericardium, mitral leaflets (closed from ED through systole)
    and annulus; sizes scale with body size (EDV ∝ BSA^1.25, wall ∝ √BSA).
  * Contraction over the heart cycle: c(t) ∈ [0, 1] (0 at end-diastole, 1 at
    end-systole); the apex stays fixed and the LV scales affinely,
    L(c) = L_ed·(1 − f_l·c), b(c) = b_ed·(1 − f_r·c).

Volume (stated formula, `cardiac_data.volumes`): method of discs, 20 discs with
diameters at the disc middles. The discs are circles at ED; during contraction the
septal–lateral diameter (the one in the A4C plane) shortens by f_r and the
anterior–inferior one (out of the plane) by ρ·f_r (ρ: `subjects.out_of_plane`), so
V = π/4·Σ d_i²·L/20 · (1 − ρ·f_r·c)/(1 − f_r·c) and V_es = V_ed·(1 − f_l)(1 − f_r)(1 −
ρ·f_r): f_r is solved from the target EF and TrueEF = 100·(EDV − ESV)/EDV holds
exactly. The traced shape is the truncated ellipse of the plane (`lv_contour`,
`lv_chords`); its single-plane disc EF (V ∝ Σ d_i², `lv_volume_px`) equals TrueEF
when ρ = 1.

Layers (`polygons`): the filled polygons of every frame in painter's order, walls
first (pericardium, LA wall, RA wall, RV wall, myocardium), then the cavities (LA,
RA, RV, LV); the indices below name them. Label masks (`label_maps`) are rasterised
(pixel centres inside, `polygon_centres`) from the same polygons that are painted,
in painter's order: myocardium = epicardial polygon (the band around the cavity),
then LA, then (4CH) RA and RV cavities as background, then the LV cavity.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from cardiac_data import volumes
from cardiac_data.synthetic import subjects

NUM_DISCS = volumes.NUM_DISCS
#: Indices into the fills of `polygons` (painter's order: walls, then cavities).
PERICARDIUM, LA_WALL, RA_WALL, RV_WALL, MYOCARDIUM, LA, RA, RV, LV = range(9)


@dataclasses.dataclass(frozen=True)
class Heart:
  """Chamber geometry in output-frame pixels at end-diastole, and contraction.

  The LV frame: origin at the LV apex, e_l along the long axis towards the base,
  e_v perpendicular towards the lateral wall (image right). Other chambers are
  placed in this frame.
  """
  apex: np.ndarray          # (2,) LV apex (x, y)
  angle: float              # long-axis direction, radians from +y towards +x
  a: float                  # LV long semi-axis at ED
  b: float                  # LV short semi-axis at ED
  tau: float                # truncation: mitral plane at s = a·(1+τ)
  f_long: float             # longitudinal fractional shortening at ES
  f_rad: float              # radial (short-axis) fractional shortening at ES
  wall: float               # LV wall thickness at ED
  rv_width: float           # RV cavity half-width at ED
  rv_apex_frac: float       # RV apex at s = frac·L
  la_len: float             # LA length along the axis
  la_width: float           # LA half-width
  swing: np.ndarray         # (2,) translation of the whole heart at ES
  rho: float = 1.0          # out-of-plane radial shortening = rho·f_rad (not drawn)

  @property
  def e_l(self) -> np.ndarray:
    """Unit vector (x, y) along the long axis, apex towards base."""
    return np.array([math.sin(self.angle), math.cos(self.angle)])

  @property
  def e_v(self) -> np.ndarray:
    """Unit vector (x, y) across the long axis, towards the lateral wall."""
    return np.array([math.cos(self.angle), -math.sin(self.angle)])

  def lv_axes(self, c):
    """(a, b, L) of the LV cavity at contraction c (0 = ED, 1 = ES)."""
    a = self.a * (1.0 - self.f_long * c)
    b = self.b * (1.0 - self.f_rad * c)
    return a, b, a * (1.0 + self.tau)

  def origin(self, c) -> np.ndarray:
    """LV apex at contraction c (scalar or (T,)) → (2,) or (T, 2)."""
    c = np.asarray(c, np.float64)
    return self.apex + self.swing * c[..., None]

  def to_image(self, c, s, v) -> np.ndarray:
    """LV-frame (s, v) → image points (..., 2).

    c is a scalar or (T,); s, v have c's shape (one point per frame) or
    c.shape + (n,) (n points per frame).
    """
    c = np.asarray(c, np.float64)
    s = np.asarray(s, np.float64)
    v = np.asarray(v, np.float64)
    o = self.origin(c)
    if max(s.ndim, v.ndim) > c.ndim:
      o = o[..., None, :]
    return o + s[..., None] * self.e_l + v[..., None] * self.e_v


def _cap_sv(centre_s, centre_v, a, b, s_cut, n, direction=1.0):
  """(s, v) of an ellipse cut by the plane s = s_cut, from hinge to hinge.

  Parameters are scalars or (T,) arrays; returns (..., n) arrays. direction=+1
  keeps s ≤ s_cut (apex at smaller s), −1 keeps s ≥ s_cut. With odd n the
  middle point is the apex exactly.
  """
  centre_s, centre_v, a, b, s_cut = (np.asarray(x, np.float64)[..., None]
                                     for x in (centre_s, centre_v, a, b, s_cut))
  th_h = np.arccos(np.clip(direction * (s_cut - centre_s) / a, -1.0, 1.0))
  th = th_h + np.linspace(0.0, 1.0, n) * (2 * math.pi - 2 * th_h)
  return centre_s + direction * a * np.cos(th), centre_v + direction * b * np.sin(th)


def lv_contour(heart: Heart, c: float, n: int = 41) -> np.ndarray:
  """LV endocardial contour (n, 2): lateral hinge → apex → septal hinge."""
  a, b, big_l = heart.lv_axes(c)
  s, v = _cap_sv(a, 0.0, a, b, big_l, n)
  return heart.to_image(c, s, v)


def lv_half_widths(heart: Heart, c: float, num_discs: int = NUM_DISCS):
  """Disc middle positions s_i and exact half-widths of the truncated ellipse."""
  a, b, big_l = heart.lv_axes(c)
  s = (np.arange(num_discs) + 0.5) * big_l / num_discs
  w = b * np.sqrt(np.clip(1.0 - ((s - a) / a)**2, 0.0, None))
  return s, w, big_l


def lv_chords(heart: Heart, c: float, num_discs: int = NUM_DISCS):
  """EchoNet-Dynamic tracing: long axis (2, 2) apex→base, chords (n, 2, 2).

  Each chord [p1, p2] runs from the lateral (+v) to the septal (−v) border.
  """
  s, w, big_l = lv_half_widths(heart, c, num_discs)
  axis = heart.to_image(c, np.array([0.0, big_l]), np.zeros(2))
  p1 = heart.to_image(c, s, w)
  p2 = heart.to_image(c, s, -w)
  return axis, np.stack([p1, p2], axis=1)


def lv_volume_px(heart: Heart, c: float) -> float:
  """Single-plane disc volume (pixel³) of the exact A4C shape: what tracings give."""
  _, w, big_l = lv_half_widths(heart, c)
  return float(volumes.discs_volume(2.0 * w, big_l))


def lv_true_volume_px(heart: Heart, c: float) -> float:
  """True LV volume (pixel³): discs with the out-of-plane diameter shortening by
  ρ·f_r·c instead of f_r·c (module docstring); equals `lv_volume_px` when ρ = 1."""
  return lv_volume_px(heart, c) * (1.0 - heart.rho * heart.f_rad * c) / (1.0 - heart.f_rad * c)


def _unit_disc_volume(sphericity: float, tau: float) -> float:
  """Disc-formula volume of the truncated ellipse with a = 1, b = sphericity."""
  big_l = 1.0 + tau
  s = (np.arange(NUM_DISCS) + 0.5) * big_l / NUM_DISCS
  w = sphericity * np.sqrt(np.clip(1.0 - (s - 1.0)**2, 0.0, None))
  return float(volumes.discs_volume(2.0 * w, big_l))



@dataclasses.dataclass(frozen=True)
class Acquisition:
  """Per-video timing, sector and image-quality settings."""
  size: int
  fps: int
  num_frames: int
  heart_rate: float
  es_frame: int
  ed_frame: int
  systolic_fraction: float
  frames_per_cycle: float
  sector_apex: np.ndarray   # (2,)
  sector_radius: float      # px
  half_angle: float         # rad
  spacing: float            # cm / px
  quality: str
  dropout: bool
  shadow: bool


def contraction(phase: np.ndarray, systolic_fraction: float) -> np.ndarray:
  """c(φ) for φ ∈ [0, 1): cosine ejection, then rapid filling, diastasis, atrial kick.

  c = 0 only at φ = 0 (ED), c = 1 only at φ = s (ES).
  """
  phase = np.asarray(phase, np.float64) % 1.0
  s = systolic_fraction

  def smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)

  sys = 0.5 * (1.0 - np.cos(np.pi * np.clip(phase / s, 0.0, 1.0)))
  psi = (phase - s) / (1.0 - s)
  filled = 0.75 * smooth(psi / 0.4) + 0.25 * smooth((psi - 0.75) / 0.25)
  return np.where(phase <= s, sys, 1.0 - filled)


def clip_contraction(acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
  """Contraction c and cycle phase φ of every frame (T,); c is exactly 1 at ES, 0 at ED."""
  k = np.arange(acq.num_frames)
  phase = (acq.systolic_fraction + (k - acq.es_frame) / acq.frames_per_cycle) % 1.0
  c = contraction(phase, acq.systolic_fraction)
  c[acq.es_frame], c[acq.ed_frame] = 1.0, 0.0
  phase[acq.ed_frame] = 0.0
  return c, phase


def sector_polar(points, acq: Acquisition):
  """(radius px, angle from the beam axis rad) of image points about the sector apex."""
  d = np.asarray(points, np.float64) - acq.sector_apex
  return np.hypot(d[..., 0], d[..., 1]), np.arctan2(d[..., 0], d[..., 1])


def lv_fits_sector(heart: Heart, acq: Acquisition) -> bool:
  """Whether the ED LV with half its wall sits inside the fan (the sonographer's depth rule)."""
  a, b, big_l = heart.lv_axes(0.0)
  s, v = _cap_sv(a, 0.0, a + 0.35 * heart.wall, b + 0.5 * heart.wall, big_l, 33)
  r, th = sector_polar(heart.to_image(0.0, s, v), acq)
  return bool(r.max() < 0.9 * acq.sector_radius
              and np.abs(th).max() < acq.half_angle - math.radians(2))


def make_heart_and_acquisition(subject: subjects.Subject, rng: np.random.Generator, *,
                               size: int, fps_choices: Sequence[int],
                               fps_probs: Sequence[float],
                               quality_shift: float = 0.0) -> tuple[Heart, Acquisition]:
  """Physical sizes (cm) from the subject, imaging depth, then pixel geometry."""
  ef = subject.true_ef
  sph = {"dcm": 0.66, "hfref": 0.62, "hcm": 0.46}.get(subject.subgroup, 0.5)
  sph = float(np.clip(sph + 0.04 * rng.standard_normal(), 0.38, 0.8))
  tau = rng.uniform(0.6, 0.75)
  a_cm = (subject.edv_ml / _unit_disc_volume(sph, tau))**(1.0 / 3.0)
  wall_cm = 0.65 * math.sqrt(subject.bsa) * rng.uniform(0.9, 1.1)
  wall_cm *= {"dcm": 0.75, "hfref": 0.8, "hcm": 1.8}.get(subject.subgroup, 1.0)
  # Contraction: longitudinal shortening from EF, radial solved for exact EF:
  # (1 − f_l)(1 − f_r)(1 − ρ·f_r) = 1 − EF, the smaller root.
  f_long = min(0.17 * ef / 62.0 * rng.uniform(0.8, 1.2), 0.6 * ef / 100.0)
  ratio = (1.0 - ef / 100.0) / (1.0 - f_long)
  rho = subject.out_of_plane
  if rho == 1.0:   # The closed form: adult cohorts stay bit-identical to echo-3.
    f_rad = 1.0 - math.sqrt(ratio)
  else:
    f_rad = ((1.0 + rho) - math.sqrt((1.0 + rho)**2 - 4.0 * rho * (1.0 - ratio))) / (2.0 * rho)

  quality = subjects.quality_tier(subject.quality_score + quality_shift)
  scale = size / 112.0
  sector_apex = np.array([size / 2.0 + rng.normal(0, 1.0) * scale, rng.uniform(-1, 3) * scale])
  radius = size - 4.0 * scale - sector_apex[1]
  half_angle = math.radians(rng.uniform(36, 44))
  # Sonographer's depth: the LV fills ~45–58 % of the depth, in 0.5 cm steps.
  big_l_cm = a_cm * (1 + tau)
  depth = math.ceil(big_l_cm / rng.uniform(0.45, 0.58) / 0.5) * 0.5
  apex_r = rng.uniform(0.12, 0.2)
  apex_ang = math.radians(rng.uniform(0.0, 9.0))
  angle = apex_ang + math.radians(rng.normal(7.0, 4.0))
  rv_frac = rng.uniform(0.2, 0.3)
  rv_w = rng.uniform(0.55, 0.75)
  la_len = rng.uniform(0.6, 0.75)
  la_w = rng.uniform(0.75, 0.95)
  swing_dir = rng.uniform(0, 2 * math.pi)
  swing = rng.uniform(0.0, 1.2) * scale * np.array([math.cos(swing_dir), math.sin(swing_dir)])

  def build(depth_cm):
    spacing = depth_cm / radius
    a = a_cm / spacing
    apex = sector_apex + apex_r * radius * np.array([math.sin(apex_ang), math.cos(apex_ang)])
    b = sph * a
    return spacing, Heart(apex=apex, angle=angle, a=a, b=b, tau=tau, f_long=f_long,
                          f_rad=f_rad, wall=wall_cm / spacing, rv_width=rv_w * b,
                          rv_apex_frac=rv_frac, la_len=la_len * a, la_width=la_w * b,
                          swing=swing, rho=rho)

  acq_probe = Acquisition(size, 0, 0, 0.0, 0, 0, 0.0, 0.0, sector_apex, radius, half_angle,
                          0.0, quality, False, False)
  for _ in range(40):  # Deepen until the LV (and half its wall) sits inside the fan.
    spacing, heart = build(depth)
    if lv_fits_sector(heart, acq_probe):
      break
    depth += 0.5

  # Timing: ES at frame k_es, the next ED exactly n_dia frames later.
  fps = int(rng.choice(np.asarray(fps_choices), p=np.asarray(fps_probs)))
  fpc = 60.0 * fps / subject.heart_rate
  s_target = float(np.clip(0.33 + 0.0013 * (subject.heart_rate - 60.0), 0.3, 0.48))
  n_dia = max(2, int(round((1.0 - s_target) * fpc)))
  sys_frac = 1.0 - n_dia / fpc
  cycles = rng.uniform(1.5, 3.0)
  num_frames = int(np.clip(round(cycles * fpc), 32, 100))
  num_frames = max(num_frames, n_dia + 2)
  k_es = int(rng.integers(0, max(1, min(int(fpc), num_frames - n_dia - 1)) + 1))
  k_es = min(k_es, num_frames - n_dia - 1)
  dropout = quality == "poor" or (quality == "medium" and rng.random() < 0.4)
  shadow = quality == "poor" and rng.random() < 0.5
  acq = Acquisition(size, fps, num_frames, subject.heart_rate, k_es, k_es + n_dia, sys_frac,
                    fpc, sector_apex, radius, half_angle, spacing, quality, dropout, shadow)
  return heart, acq


def polygons(heart: Heart, c: np.ndarray, phase: np.ndarray, systolic_fraction: float,
             n: int = 48):
  """Polygons of every frame, in painter's order (fills indexed by `PERICARDIUM` … `LV`).

  Returns (fills, discs, valves): fills = [(points (T, m, 2), level key)],
  discs = [(centres (T, 2), radii (T,), level key)], valves = (points (T, 7, 2),
  closed (T,), thickness (T,)) for the mitral leaflets, closed or open per frame.
  """
  a, b, big_l = heart.lv_axes(c)
  w = heart.wall * (1.0 + 0.8 * (heart.b / b - 1.0))   # walls thicken in systole
  wa = 0.7 * w
  img = lambda sv: heart.to_image(c, *sv)
  # RV (septal side, −v); tricuspid plane slightly apical to the mitral plane.
  rv_b = heart.rv_width * (1.0 - 0.12 * c)
  rv_v = -(b + w + rv_b)
  rv_apex = heart.rv_apex_frac * big_l
  tv_s = big_l - 0.06 * heart.a * (1 + heart.tau)
  rv_a = (tv_s - rv_apex) / 1.55
  # Atria grow while the ventricles empty.
  la_a = 0.5 * heart.la_len * (1.0 + 0.12 * c)
  la_b = heart.la_width * (1.0 + 0.08 * c)
  ra_a = 0.85 * la_a
  ra_b = 0.9 * heart.rv_width * (1.0 + 0.08 * c)
  la_v = 0.15 * heart.b
  aw = 0.4 * w
  la_c = big_l + 0.92 * la_a
  ra_c = tv_s + 0.92 * ra_a
  fills = [
      (img(_cap_sv(a, 0.0, a + wa + 0.35 * w + 1.0, b + 1.35 * w + 1.0, big_l, n)), "pericardium"),
      (img(_cap_sv(la_c, la_v, la_a + aw, la_b + aw, big_l, n, -1.0)), "atrial_wall"),
      (img(_cap_sv(ra_c, rv_v, ra_a + aw, ra_b + aw, tv_s, n, -1.0)), "atrial_wall"),
      (img(_cap_sv(rv_apex + rv_a, rv_v, rv_a + 0.6 * aw, rv_b + aw, tv_s + 0.3 * w, n)),
       "rv_wall"),
      (img(_cap_sv(a, 0.0, a + wa, b + w, big_l + 0.3 * w, n)), "myocardium"),
  ]
  half_mv = b * math.sqrt(1 - heart.tau**2)
  discs = [(img((big_l, half_mv)), 0.45 * w, "annulus"),
           (img((big_l, -half_mv)), 0.55 * w, "annulus")]
  cavities = [
      (img(_cap_sv(la_c, la_v, la_a, la_b, big_l, n, -1.0)), "blood"),
      (img(_cap_sv(ra_c, rv_v, ra_a, ra_b, tv_s, n, -1.0)), "blood"),
      (img(_cap_sv(rv_apex + rv_a, rv_v, rv_a, rv_b, tv_s, n)), "blood"),
      (img(_cap_sv(a, 0.0, a, b, big_l, 2 * n + 1)), "blood"),
  ]
  # Mitral leaflets: closed (bowed into the LA) from ED through systole, open
  # towards the apex in diastole. Layout: 7 points (closed: one polyline; open:
  # lateral leaflet = points 0–1, septal leaflet = points 5–6).
  u = np.linspace(-1.0, 1.0, 7)
  closed_s = big_l[..., None] + 0.25 * half_mv[..., None] * (1 - u**2) + 0.5
  closed_v = half_mv[..., None] * u
  open_s = big_l[..., None] - 0.8 * half_mv[..., None] * (np.abs(u) < 1)
  open_v = half_mv[..., None] * np.sign(u) * np.where(np.abs(u) < 1, 0.7, 1.0)
  is_closed = (phase <= systolic_fraction + 0.05)[..., None]
  valve = img((np.where(is_closed, closed_s, open_s), np.where(is_closed, closed_v, open_v)))
  return fills + cavities, discs, (valve, is_closed[..., 0], np.maximum(0.6, 0.25 * w))


def polygon_centres(points, size: int) -> np.ndarray:
  """Boolean (size, size) mask of the pixels whose centres (integer x, y) lie in
  the closed polygon `points` (n, 2) = (x, y), by the even-odd rule along rows:
  a centre counts a crossing at x_c when x_c <= x."""
  p = np.asarray(points, np.float64)
  x0, y0 = p[:, 0], p[:, 1]
  x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
  rows = np.arange(max(0, math.ceil(y0.min())), min(size - 1, math.floor(y0.max())) + 1)
  mask = np.zeros((size, size), bool)
  if rows.size == 0:
    return mask
  yr = rows[:, None].astype(np.float64)
  crosses = (y0 <= yr) != (y1 <= yr)                      # (rows, edges), half-open in y
  with np.errstate(divide="ignore", invalid="ignore"):
    xc = x0 + (yr - y0) / (y1 - y0) * (x1 - x0)
  r, e = np.nonzero(crosses)
  first = np.clip(np.ceil(xc[r, e]), 0, size).astype(np.int64)   # first centre at x >= x_c
  toggles = np.zeros((rows.size, size + 1), np.int32)
  np.add.at(toggles, (r, first), 1)
  mask[rows] = (np.cumsum(toggles, axis=1)[:, :size] % 2).astype(bool)
  return mask


def label_maps(heart: Heart, c, phase, systolic_fraction: float, view: str,
               size: int) -> np.ndarray:
  """uint8 (T, size, size) labels (0 background, 1 LV cavity, 2 myocardium, 3 LA)
  from the painted polygons (pixel centres inside) of a '2CH' or '4CH' view.

  Painter's order: myocardium (epicardial polygon) 2, LA 3, then in the 4CH the
  RA and RV cavities 0, then the LV cavity 1.
  """
  c = np.atleast_1d(np.asarray(c, np.float64))
  phase = np.atleast_1d(np.asarray(phase, np.float64))
  fills, _, _ = polygons(heart, c, phase, systolic_fraction)
  order = [(MYOCARDIUM, 2), (LA, 3)] + ([(RA, 0), (RV, 0)] if view == "4CH" else []) + [(LV, 1)]
  out = np.zeros((len(c), size, size), np.uint8)
  for t in range(len(c)):
    for j, label in order:
      out[t][polygon_centres(fills[j][0][t], size)] = label
  return out
