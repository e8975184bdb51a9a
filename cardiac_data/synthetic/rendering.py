"""Ultrasound rendering of the heart model: echogenicity, speckle, beam and display.

Ultrasound look: sector mask, speckle (Rayleigh-like amplitude; tissue-locked: the
pattern moves with the LV and its walls, with a small per-frame decorrelation, see
`tissue_map`), depth attenuation, gain/contrast, blur, near-field clutter, and
three quality tiers (poor adds wall dropout and rib shadowing).

Echogenicity (`paint_frames`): the `anatomy.polygons` of every frame filled in
painter's order on a 2× supersampled canvas (fixed-point vertices pulled in by half
a fine pixel), then area-averaged down. The '4CH' view draws every chamber; the
'2CH' view (CAMUS's orthogonal plane) the LV, LA, pericardium, annulus and mitral
leaflets without the right heart.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from cardiac_data.synthetic import anatomy, subjects

_SUPERSAMPLE = 2          # anatomy is drawn at 2× and area-averaged down.
# (walls, cavities) of each view: indices into the fills of `anatomy.polygons`.
_VIEW_LAYERS = {
    "4CH": ((anatomy.PERICARDIUM, anatomy.LA_WALL, anatomy.RA_WALL, anatomy.RV_WALL,
             anatomy.MYOCARDIUM), (anatomy.LA, anatomy.RA, anatomy.RV, anatomy.LV)),
    "2CH": ((anatomy.PERICARDIUM, anatomy.LA_WALL, anatomy.MYOCARDIUM), (anatomy.LA, anatomy.LV)),
}


def _smooth_field(rng, size, cells, lo, hi):
  g = rng.uniform(lo, hi, (cells, cells)).astype(np.float32)
  return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _inset(points: np.ndarray, delta: float) -> np.ndarray:
  """Moves the vertices of closed polygons (..., n, 2) inwards by `delta`."""
  p = np.asarray(points, np.float64)
  t = np.roll(p, -1, -2) - np.roll(p, 1, -2)
  nrm = np.stack([t[..., 1], -t[..., 0]], -1)
  nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-9)
  x, y = p[..., 0], p[..., 1]
  area2 = np.sum(x * np.roll(y, -1, -1) - y * np.roll(x, -1, -1), axis=-1)
  # (t_y, −t_x) points outwards when the shoelace sum is positive.
  sign = np.where(area2 > 0, -1.0, 1.0)[..., None, None]
  return p + delta * sign * nrm


def _hi(points: np.ndarray) -> np.ndarray:
  """Output-pixel coordinates → fixed-point (4 fractional bits) supersampled ints."""
  s = _SUPERSAMPLE
  return np.round(((np.asarray(points) + 0.5) * s - 0.5) * 16).astype(np.int32)


def paint_frames(heart: anatomy.Heart, c: np.ndarray, phase: np.ndarray,
                 systolic_fraction: float, levels: dict, background: np.ndarray,
                 view: str = "4CH") -> np.ndarray:
  """Echogenicity frames (T, H, W) uint8 of a '4CH' or '2CH' view: polygons filled at
  2× (`_SUPERSAMPLE`), then area-averaged down."""
  if view not in _VIEW_LAYERS:
    raise ValueError(f"view must be one of {sorted(_VIEW_LAYERS)}, got {view!r}")
  walls, cavities = _VIEW_LAYERS[view]
  ss = _SUPERSAMPLE
  fills, discs, (valve, closed, lw) = anatomy.polygons(heart, c, phase, systolic_fraction)
  # cv2's fill covers ~half a fine pixel beyond the edge; pull edges back by that.
  fills = [(_hi(_inset(fills[j][0], 0.5 / ss)), int(levels[fills[j][1]]))
           for j in walls + cavities]
  discs = [(_hi(p), np.maximum(1, np.asarray(r) * ss * 16).astype(np.int64)
            * np.ones(len(c), np.int64), int(levels[k])) for p, r, k in discs]
  valve = _hi(valve)
  thick = np.maximum(1, np.round(lw * ss)).astype(np.int64) * np.ones(len(c), np.int64)
  v_level = int(levels["valve"])
  bg = cv2.resize(background, None, fx=ss, fy=ss, interpolation=cv2.INTER_NEAREST)
  canvas = np.empty_like(bg)
  size = background.shape[0]
  frames = np.empty((len(c),) + background.shape, np.uint8)
  for i in range(len(c)):
    np.copyto(canvas, bg)
    for k, (pts, level) in enumerate(fills):
      if k == len(walls):  # Walls done: annulus before the cavities.
        for ctr, rad, lev in discs:
          cv2.circle(canvas, (int(ctr[i, 0]), int(ctr[i, 1])), int(rad[i]), lev, -1,
                     cv2.LINE_8, 4)
      cv2.fillPoly(canvas, [pts[i]], level, cv2.LINE_8, 4)
    if closed[i]:
      cv2.polylines(canvas, [valve[i]], False, v_level, int(thick[i]), cv2.LINE_8, 4)
    else:
      cv2.polylines(canvas, [valve[i, :2], valve[i, 5:]], False, v_level, int(thick[i]),
                    cv2.LINE_8, 4)
    out = canvas
    while out.shape[0] > size:
      out = cv2.resize(out, (out.shape[1] // 2, out.shape[0] // 2), interpolation=cv2.INTER_AREA)
    frames[i] = out
  return frames


#: Weight ρ of the per-frame speckle field (the rest moves with the tissue).
SPECKLE_DECORRELATION = 0.15


def tissue_map(heart: anatomy.Heart, c: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Backward maps (T, H, W) float32 x, y: the end-diastolic position of the tissue
  at each pixel of each frame, for tissue-locked speckle.

  Stated motion model: inside the heart the tissue follows the LV contraction,
  the affine map of the LV frame (s, v) ↦ (s·(1 − f_l·c), v·(1 − f_r·c)) about
  the moving apex (the cavity's own motion, `anatomy.Heart.lv_axes`); the map blends
  to the identity (static chest wall) between one and two LV sizes from the LV
  centre, with weight w = clip(2 − ρ, 0, 1), ρ the normalised elliptic radius.
  The smooth displacement is evaluated on a 4× coarser grid and resized
  bilinearly (cost: a sixteenth).
  """
  step = 4 if size % 4 == 0 else 1
  o = heart.origin(np.asarray(c, np.float64)).astype(np.float32)[:, None, None, :]
  c = np.asarray(c, np.float32)[:, None, None]
  g = (np.arange(size // step, dtype=np.float32) + 0.5) * step - 0.5   # coarse pixel centres
  yy, xx = np.meshgrid(g, g, indexing="ij")
  dx, dy = xx - o[..., 0], yy - o[..., 1]
  e_l, e_v = heart.e_l.astype(np.float32), heart.e_v.astype(np.float32)
  s = dx * e_l[0] + dy * e_l[1]
  v = dx * e_v[0] + dy * e_v[1]
  f_l, f_r, a, b, tau, wall = (float(x) for x in (heart.f_long, heart.f_rad, heart.a,
                                                    heart.b, heart.tau, heart.wall))
  s0 = s / (1.0 - f_l * c)
  v0 = v / (1.0 - f_r * c)
  rho = np.hypot((s0 - 0.5 * a * (1.0 + tau)) / (0.5 * a * (1.0 + tau) + 2.0 * wall),
                 v0 / (b + 2.0 * wall))
  w = np.clip(2.0 - rho, 0.0, 1.0)
  ux = w * (float(heart.apex[0]) + s0 * e_l[0] + v0 * e_v[0] - xx)
  uy = w * (float(heart.apex[1]) + s0 * e_l[1] + v0 * e_v[1] - yy)
  if step > 1:
    up = lambda u: np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR)
                             for f in u])
    ux, uy = up(ux), up(uy)
  fy, fx = np.mgrid[0:size, 0:size].astype(np.float32)
  return (fx + ux).astype(np.float32, copy=False), (fy + uy).astype(np.float32, copy=False)


def render_clip(heart: anatomy.Heart, acq: anatomy.Acquisition, rng: np.random.Generator,
                view: str = "4CH") -> np.ndarray:
  """All frames of one clip as uint8 (T, H, W); `view` as in `paint_frames`."""
  size, t_n = acq.size, acq.num_frames
  q = acq.quality
  c, phase = anatomy.clip_contraction(acq)

  myo = rng.uniform(115, 160)
  levels = dict(myocardium=myo, rv_wall=0.85 * myo, atrial_wall=0.7 * myo,
                pericardium=min(255.0, myo * rng.uniform(1.45, 1.7)),
                annulus=min(255.0, myo * 1.25), valve=0.9 * myo,
                blood=rng.uniform(4, 10))
  background = _smooth_field(rng, size, 7, 45, 95).clip(0, 255).astype(np.uint8)
  frames = paint_frames(heart, c, phase, acq.systolic_fraction, levels, background, view)

  # Beam geometry.
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  r = np.hypot(xx - acq.sector_apex[0], yy - acq.sector_apex[1]) / acq.sector_radius
  th = np.arctan2(xx - acq.sector_apex[0], yy - acq.sector_apex[1])
  edge = 1.5 / acq.sector_radius
  sector = (np.clip((1.0 - r) / edge, 0, 1) *
            np.clip((acq.half_angle - np.abs(th)) * acq.sector_radius * 0.5, 0, 1))

  tier = subjects.QUALITIES.index(q)
  texture = _smooth_field(rng, size, 12, 0.8, 1.2)
  haze_near = (0.05, 0.15, 0.45)[tier] * rng.uniform(0.6, 1.4)
  haze_floor = (0.015, 0.04, 0.1)[tier] * rng.uniform(0.6, 1.4)
  static = texture / 255.0
  additive = haze_floor + haze_near * np.exp(-r / rng.uniform(0.12, 0.25 + 0.1 * tier))
  if acq.dropout:
    # Beam-parallel wall drops out: lateral wall (or septum), over its depth range.
    a_, b_, big_l = heart.lv_axes(0.0)
    side = 1.0 if rng.random() < 0.7 else -1.0
    target = heart.to_image(0.0, rng.uniform(0.4, 0.8) * big_l, side * (b_ + 0.5 * heart.wall))
    rt, tht = anatomy.sector_polar(target, acq)
    depth_drop = rng.uniform(0.5, 0.7) if q == "medium" else rng.uniform(0.85, 0.97)
    width = math.radians(rng.uniform(5, 8) if q == "medium" else rng.uniform(7, 12))
    radial = np.exp(-((r * acq.sector_radius - rt) / (0.45 * big_l))**4)
    static = static * (1.0 - depth_drop * np.exp(-((th - tht) / width)**4) * radial)
  if acq.shadow:
    th_s = rng.uniform(-acq.half_angle * 0.8, acq.half_angle * 0.8)
    width = math.radians(rng.uniform(3, 7))
    onset = rng.uniform(0.2, 0.5)
    band = np.exp(-((th - th_s) / width)**4) * np.clip((r - onset) / 0.05, 0, 1)
    static = static * (1.0 - rng.uniform(0.7, 0.9) * band)

  # Speckle: Rayleigh-like amplitude sqrt(E), E ~ Exp(1) mixed as
  # (1 − ρ)·E_tissue + ρ·E_frame: E_tissue is one random bank seen through the
  # tissue motion (`tissue_map`), E_frame a per-frame field (windows of the same
  # bank at random offsets: cheap). Electronic noise: Rayleigh.
  pad = 26
  bank = rng.standard_exponential((size + pad, size + pad), dtype=np.float32)
  amp_bank = np.sqrt(bank)[::-1, ::-1]
  offs = rng.integers(0, pad, (t_n, 4))
  map_x, map_y = tissue_map(heart, c, size)
  map_x += pad // 3
  map_y += pad // 2
  sigma = (0.55, 0.8, 1.2)[tier]
  attenuation = np.exp(-rng.uniform(0.3, 0.7) * (1.0 + 0.5 * tier) * r)
  noise_sd = (0.015, 0.035, 0.08)[tier]
  gamma = rng.uniform(0.65, 0.85)
  gain = rng.uniform(0.95, 1.25) * (1.0, 0.9, 0.75)[tier]
  black = 0.08
  # Log-compression-like display map as a lookup table over e ∈ [0, 4.095].
  lut_x = np.arange(4096, dtype=np.float64) / 1000.0
  lut = np.clip(255.0 * (gain * lut_x**gamma - black) / (1.0 - black) + 0.5, 0, 255)
  lut = lut.astype(np.uint8)
  static = static.astype(np.float32)
  additive = (additive * texture).astype(np.float32)
  gain_map = (attenuation * sector * 1000.0).astype(np.float32)
  noise_map = (noise_sd * sector * 1000.0).astype(np.float32)
  out = np.empty_like(frames)
  frame_bank = SPECKLE_DECORRELATION * bank
  tissue_bank = (1.0 - SPECKLE_DECORRELATION) * bank
  chunk = 8  # frames per vector op: amortises call overhead, stays in cache.
  for start in range(0, t_n, chunk):
    idx = range(start, min(start + chunk, t_n))
    f = frames[idx.start:idx.stop] * static
    f += additive
    sp = np.stack([frame_bank[offs[i, 0]:offs[i, 0] + size, offs[i, 1]:offs[i, 1] + size]
                   for i in idx])
    sp += np.stack([cv2.remap(tissue_bank, map_x[i], map_y[i], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT) for i in idx])
    np.sqrt(sp, out=sp)
    f *= sp
    for j in range(len(idx)):
      cv2.GaussianBlur(f[j], (0, 0), sigmaX=sigma * 1.3, dst=f[j], sigmaY=sigma)
    f *= gain_map
    noise = np.stack([amp_bank[offs[i, 2]:offs[i, 2] + size, offs[i, 3]:offs[i, 3] + size]
                      for i in idx])
    noise *= noise_map
    f += noise
    np.clip(f, 0, 4095, out=f)
    out[idx.start:idx.stop] = lut[f.astype(np.uint16)]
  return out
