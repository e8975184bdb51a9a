"""Pairs/s of EPDiff geodesic shooting (the LDDMM objective) in JAX vs numpy.

  python -m benchmarks.epdiff_throughput [--sizes=128] [--batches=1,4,16,64]
      [--integrators=euler,rk4] [--steps=10] [--modes=forward,forward_grad]
      [--shootings=full,flash] [--band_limit=7] [--repeats=3] [--no_numpy] [--json=PATH]

(argparse, no absl flags at import, so run_all.py can import `run` safely.)

The timed workload is one evaluation of the registration objective per pair,
E(v0) = ½⟨Lv0, v0⟩ + 1/(2σ²)‖S∘φ₁⁻¹ − I‖² (`lamod_jax.registration.objective`,
default config: α = 2, γ = 1, s = 2, conservative ad*, φ⁻¹ by transport), i.e.
shooting v0 over `--steps` steps, integrating φ₁⁻¹ and warping the source:
  * forward: `jit(vmap(objective))` over a batch of pairs, float32;
  * forward_grad: `jit(vmap(value_and_grad(objective)))` (jax.checkpoint per step).
Shootings (`--shootings`, rows keyed by `shooting`): "full" = EPDiff on the full grid
(form="eulerian", the default), "flash" = FLASH's band-limited shooting
(`lamod_jax.flash`, form="flash", modes |k| ≤ `--band_limit` per axis, 7 → 15²): EPDiff
and both maps in the band, then one synthesis of φ₁⁻¹ and one warp on the full grid.
Flash rows also report their accuracy against full-grid shooting (full metric) of the
same band-limited v0 = P v0 on the same pairs: relative L2 errors of φ₁⁻¹ − id
(`phi_inv_rel_err`) and of the warped source (`warped_rel_err`).
Baselines, in the same process:
  * numpy: a straightforward numpy float64 implementation of the same forward
    computation (np.fft for K, np.roll differences, the same integrators),
    one pair after another; `speedup_vs_numpy` is its time per pair over JAX's.
  * batch 1: `speedup_vs_batch1` is JAX's time per pair at batch 1 over batch B.
The JAX and numpy objectives are also compared (relative difference) as a check.
`run(...)` returns the same numbers as a dict (for benchmarks/run_all.py).
"""
from __future__ import annotations

from evaluation.devices import cpu_name

import argparse
import functools
import json
import time

import numpy as np

ALPHA, GAMMA, SIGMA = 2.0, 1.0, 0.1


def make_pairs(n: int, batch: int, seed: int = 0):
  """Smooth v0 (≈3 px peak, channel 0 = x) and ring-mask source/target images."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:n, :n].astype(np.float64)
  v0s, srcs, tgts = [], [], []
  for _ in range(batch):
    cx, cy = n / 2 + rng.uniform(-2, 2, size=2)
    g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (n / 10) ** 2))
    v0s.append(3.0 * np.stack([g, rng.uniform(-0.7, 0.7) * g]))
    r = np.hypot(x - cx, y - cy)
    srcs.append(((r > n / 10) & (r < n / 6)).astype(np.float64))
    tgts.append(((r > n / 10 - 1) & (r < n / 6 - 1)).astype(np.float64))
  return np.stack(v0s), np.stack(srcs), np.stack(tgts)


# ---------------------------------------------------------------- numpy baseline


def _np_symbols(n: int):
  k = np.fft.fftfreq(n) * n
  kr = np.fft.rfftfreq(n) * n
  lam = GAMMA + ALPHA * (2 * (1 - np.cos(2 * np.pi * k / n))[:, None]
                         + 2 * (1 - np.cos(2 * np.pi * kr / n))[None, :])
  return lam ** 2, 1.0 / lam ** 2


def _np_apply(f, symbol):
  return np.fft.irfft2(np.fft.rfft2(f) * symbol, s=f.shape[-2:])


def _np_d(f, c):  # periodic central difference along x (c = 0, columns) or y (rows)
  axis = -1 if c == 0 else -2
  return 0.5 * (np.roll(f, -1, axis) - np.roll(f, 1, axis))


def _np_rhs(v, w, l_hat, k_hat):
  m = _np_apply(v, l_hat)
  dv = [_np_d(v, j) for j in range(2)]                # dv[j][i] = ∂_j v_i
  flux = sum(_np_d(v[j] * m, j) for j in range(2))    # Σ_j ∂_j(v_j m)
  ad = np.stack([dv[i][0] * m[0] + dv[i][1] * m[1] for i in range(2)]) + flux
  dw = -v - sum(_np_d(w, j) * v[j] for j in range(2))  # inverse-map transport
  return -_np_apply(ad, k_hat), dw


def _np_warp(img, phi):  # bilinear, clamped borders; phi[0] = x (columns)
  n_y, n_x = img.shape
  px, py = np.clip(phi[0], 0, n_x - 1), np.clip(phi[1], 0, n_y - 1)
  x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
  tx, ty = px - x0, py - y0
  x1, y1 = np.minimum(x0 + 1, n_x - 1), np.minimum(y0 + 1, n_y - 1)
  return ((1 - ty) * ((1 - tx) * img[y0, x0] + tx * img[y0, x1])
          + ty * ((1 - tx) * img[y1, x0] + tx * img[y1, x1]))


def numpy_objective(v0, src, tgt, n_steps: int, integrator: str) -> float:
  """E(v0) for one pair, float64 numpy (same scheme as lamod_jax's defaults)."""
  n = src.shape[-1]
  l_hat, k_hat = _np_symbols(n)
  dt = 1.0 / n_steps
  v, w = np.array(v0, dtype=np.float64), np.zeros_like(v0, dtype=np.float64)
  for _ in range(n_steps):
    if integrator == "euler":
      kv, kw = _np_rhs(v, w, l_hat, k_hat)
      v, w = v + dt * kv, w + dt * kw
    else:
      k1 = _np_rhs(v, w, l_hat, k_hat)
      k2 = _np_rhs(v + 0.5 * dt * k1[0], w + 0.5 * dt * k1[1], l_hat, k_hat)
      k3 = _np_rhs(v + 0.5 * dt * k2[0], w + 0.5 * dt * k2[1], l_hat, k_hat)
      k4 = _np_rhs(v + dt * k3[0], w + dt * k3[1], l_hat, k_hat)
      v = v + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
      w = w + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
  yy, xx = np.mgrid[:n, :n].astype(np.float64)
  warped = _np_warp(src, np.stack([xx, yy]) + w)
  reg = 0.5 * np.sum(_np_apply(v0, l_hat) * v0)
  return reg + np.sum((warped - tgt) ** 2) / (2 * SIGMA ** 2)


# ------------------------------------------------------------------- timing


def _best_time(fn, args, repeats: int) -> tuple[float, float]:
  import jax  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return first - best, best   # (first-call overhead ≈ compile time, best time)


SHOOTINGS = ("full", "flash")


def _config(shooting: str, integrator: str, n_steps: int, band_limit: int):
  from lamod_jax import registration  # pylint: disable=g-import-not-at-top
  from lamod_jax.metric import Metric  # pylint: disable=g-import-not-at-top
  if shooting == "full":
    return registration.RegistrationConfig(integrator=integrator, n_steps=n_steps,
                                           sigma=SIGMA)
  return registration.RegistrationConfig(
      form="flash", metric=Metric(alpha=ALPHA, gamma=GAMMA, s=2.0, band_limit=band_limit),
      integrator=integrator, n_steps=n_steps, sigma=SIGMA)


def flash_accuracy(v0s, srcs, integrator: str, n_steps: int, band_limit: int) -> dict:
  """Relative L2 errors of the flash form against full-grid shooting of P v0 (the same
  band-limited v0, full metric): φ₁⁻¹ − id and S∘φ₁⁻¹, over a batch of pairs."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lamod_jax import epdiff  # pylint: disable=g-import-not-at-top
  from lamod_jax import flash  # pylint: disable=g-import-not-at-top
  from lamod_jax import registration  # pylint: disable=g-import-not-at-top
  full_cfg = _config("full", integrator, n_steps, band_limit)
  flash_cfg = _config("flash", integrator, n_steps, band_limit)
  band = flash.band_of(flash_cfg.metric, v0s.shape[2:])

  def maps(v0, src):
    pv0 = band.from_band(band.to_band(v0))
    out = []
    for cfg, v in ((full_cfg, pv0), (flash_cfg, v0)):
      phi_inv = registration.end_maps(v, cfg)[0]
      out += [epdiff.displacement(phi_inv), epdiff.warp(src, phi_inv, cfg.boundary)]
    return out

  u_full, w_full, u_flash, w_flash = jax.jit(jax.vmap(maps))(v0s, srcs)
  rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))  # noqa: E731
  return {"phi_inv_rel_err": rel(u_flash, u_full), "warped_rel_err": rel(w_flash, w_full)}


def run(sizes=(128,), batches=(1, 4, 16, 64), integrators=("euler", "rk4"),
        n_steps: int = 10, modes=("forward", "forward_grad"), repeats: int = 3,
        numpy_baseline: bool = True, shootings=("full",), band_limit: int = 7) -> dict:
  """Times every configuration; returns {'device', ..., 'rows': [...]}.

  `shootings` ("full", "flash") are timed side by side in this process; flash rows
  use the modes |k| ≤ band_limit and carry their accuracy against the full grid.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lamod_jax import registration  # pylint: disable=g-import-not-at-top
  for shooting in shootings:
    if shooting not in SHOOTINGS:
      raise ValueError(f"shootings: {shooting!r} is not one of {SHOOTINGS}")

  out = {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
         "cpu": cpu_name(), "jax": jax.__version__, "n_steps": n_steps,
         "workload": "registration.objective per pair (shoot v0, phi_inv, warp), float32",
         "shootings": tuple(shootings), "band_limit": band_limit, "rows": []}
  for n in sizes:
    for integrator in integrators:
      np_ms, ref, np_pairs = None, None, None
      if numpy_baseline:
        np_pairs = make_pairs(n, 2)
        v0s, srcs, tgts = np_pairs
        ref, times = [], []
        for i in range(max(2, repeats)):   # best of several single-pair calls
          t0 = time.perf_counter()
          e = numpy_objective(v0s[i % 2], srcs[i % 2], tgts[i % 2], n_steps, integrator)
          times.append(time.perf_counter() - t0)
          ref = ref + [e] if i < 2 else ref
        np_ms = min(times) * 1e3
      for shooting in shootings:
        cfg = _config(shooting, integrator, n_steps, band_limit)
        obj = functools.partial(registration.objective, config=cfg)
        fns = {"forward": jax.jit(jax.vmap(obj)),
               "forward_grad": jax.jit(jax.vmap(jax.value_and_grad(obj)))}
        check = None   # the numpy reference is the full-grid scheme
        if numpy_baseline and shooting == "full":
          got = fns["forward"](*(jnp.asarray(a, jnp.float32) for a in np_pairs))
          check = float(np.max(np.abs(np.asarray(got) - ref) / np.abs(ref)))
        accuracy = {}
        for mode in modes:
          batch1_ms = None
          for batch in batches:
            args = tuple(jnp.asarray(a, jnp.float32) for a in make_pairs(n, batch))
            compile_s, best = _best_time(fns[mode], args, repeats)
            ms = best / batch * 1e3
            batch1_ms = ms if batch == batches[0] else batch1_ms
            if shooting == "flash" and batch not in accuracy:
              accuracy[batch] = flash_accuracy(args[0], args[1], integrator, n_steps,
                                               band_limit)
            acc = accuracy.get(batch, {})
            row = {"size": n, "integrator": integrator, "mode": mode, "batch": batch,
                   "ms_per_pair": ms, "pairs_per_s": 1e3 / ms, "compile_s": compile_s,
                   "speedup_vs_batch1": batch1_ms / ms if batches[0] == 1 else None,
                   "numpy_ms_per_pair": np_ms,
                   "speedup_vs_numpy": (np_ms / ms) if (np_ms and mode == "forward") else None,
                   "numpy_rel_diff": check, "shooting": shooting,
                   "band_limit": band_limit if shooting == "flash" else None,
                   "phi_inv_rel_err": acc.get("phi_inv_rel_err"),
                   "warped_rel_err": acc.get("warped_rel_err")}
            out["rows"].append(row)
            print(_format_row(row), flush=True)
  return out


def _format_row(row: dict) -> str:
  shooting = row.get("shooting", "full")
  if shooting == "flash":
    shooting = f"flash c={row['band_limit']}"
  s = (f"{row['size']:4d}² {shooting:11s} {row['integrator']:5s} {row['mode']:12s} "
       f"batch {row['batch']:3d}: "
       f"{row['ms_per_pair']:8.2f} ms/pair {row['pairs_per_s']:8.1f} pairs/s "
       f"(compile {row['compile_s']:.1f} s")
  if row["speedup_vs_batch1"] is not None:
    s += f", ×{row['speedup_vs_batch1']:.2f} vs batch 1"
  if row["speedup_vs_numpy"] is not None:
    s += f", ×{row['speedup_vs_numpy']:.1f} vs numpy f64 {row['numpy_ms_per_pair']:.0f} ms"
    if row["numpy_rel_diff"] is not None:
      s += f", rel diff {row['numpy_rel_diff']:.1e}"
  if row.get("phi_inv_rel_err") is not None:
    s += (f"; vs full grid: φ⁻¹−id rel err {row['phi_inv_rel_err']:.1e}, "
          f"warped rel err {row['warped_rel_err']:.1e}")
  return s + ")"


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ints = lambda text: tuple(int(x) for x in text.split(","))
  names = lambda text: tuple(x for x in text.split(",") if x)
  parser.add_argument("--sizes", type=ints, default=(128,), help="square grid sizes")
  parser.add_argument("--batches", type=ints, default=(1, 4, 16, 64), help="pairs per call")
  parser.add_argument("--integrators", type=names, default=("euler", "rk4"))
  parser.add_argument("--steps", type=int, default=10, help="shooting steps")
  parser.add_argument("--modes", type=names, default=("forward", "forward_grad"))
  parser.add_argument("--shootings", type=names, default=("full",),
                      help="full (EPDiff on the full grid) and/or flash (band-limited)")
  parser.add_argument("--band_limit", type=int, default=7,
                      help="flash: highest |k| kept per axis (7 → 15² modes)")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls (best kept)")
  parser.add_argument("--no_numpy", action="store_true", help="skip the numpy baseline")
  parser.add_argument("--json", default=None, help="write the numbers to this file")
  args = parser.parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  print(f"device: {jax.devices()[0].device_kind} ({cpu_name()}), jax {jax.__version__}",
        flush=True)
  result = run(sizes=args.sizes, batches=args.batches, integrators=args.integrators,
               n_steps=args.steps, modes=args.modes, repeats=args.repeats,
               numpy_baseline=not args.no_numpy, shootings=args.shootings,
               band_limit=args.band_limit)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
