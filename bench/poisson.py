"""Benchmark: Poisson blending, the project's solver ("ours") vs cv2.seamlessClone.

    python bench/poisson.py            # 512, 1024, 2048 px (about 1-2 minutes on 2 cores; best of 25, 9, 5 runs)
    python bench/poisson.py 512 1024   # chosen sizes

For square RGB uint8 photo-like images with an elliptical selection covering 40 %
of the image it reports the wall time of ``poisson_blend(method="ours")`` (the
whole call: conversions, right-hand side, multigrid-preconditioned CG,
compositing) and of a bare ``cv2.seamlessClone`` call (best of a few runs each,
measured in this run), their ratio (goal: <= 1.0) and the largest error of each
against the exact sparse direct solve of the same Poisson problem, in 8-bit
levels (goal: <= 1).  The exact solve is a separate SuperLU factorisation (not
"ours"), also at 2048 px, where it dominates the run time.

OpenCV solves a different discretisation (on the selection's bounding box, with
the target's gradients in a 3-pixel band inside the selection edge and
truncation instead of rounding), so its error against the exact Pérez solution
is tens of levels by construction; see tests/test_poisson.py.

``run(sizes)`` returns the rows as a list of dicts for bench/run_all.py.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = (512, 1024, 2048)
MASK_FRACTION = 0.40


def photo(n: int, seed: int) -> np.ndarray:
    """Photo-like uint8 RGB test image: smooth waves, a gradient and sensor-like noise."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    r = np.random.default_rng(seed)
    out = np.zeros((n, n, 3), np.float32)
    for c in range(3):
        for _ in range(6):
            fx, fy, ph = r.random(3) * [10, 10, 6]
            out[..., c] += np.sin(2 * np.pi * (fx * xx + fy * yy) + ph) * r.random()
        out[..., c] += xx * r.normal()
    out = (out - out.min()) / (out.max() - out.min()) * 200 + 25
    out += r.normal(0, 6, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def ellipse_mask(n: int, fraction: float = MASK_FRACTION) -> np.ndarray:
    import cv2

    # axes a, b with pi a b = fraction n^2 and a/b = 1.2
    b = np.sqrt(fraction * n * n / (np.pi * 1.2))
    a = 1.2 * b
    m = np.zeros((n, n), np.uint8)
    cv2.ellipse(m, (n // 2, n // 2), (round(a), round(b)), 20, 0, 360, 255, -1)
    return m


def run(sizes=SIZES, repeats: int | None = None, with_exact: bool = True) -> list[dict]:
    """Measure every size; one dict per size (times in seconds, errors in 8-bit levels)."""
    import cv2

    from engine.compose.poisson import poisson_blend

    # warm up imports and OpenCV's thread pool
    w = photo(64, 0)
    wm = ellipse_mask(64)
    poisson_blend(w, w[::-1].copy(), wm, method="ours")
    cv2.seamlessClone(w, w, wm.copy(), (32, 32), cv2.NORMAL_CLONE)

    rows = []
    for n in sizes:
        reps = repeats or {512: 25, 1024: 9}.get(n, 5)  # best of: more runs where one is short
        target, source = photo(n, 1), photo(n, 2)
        mask = ellipse_mask(n)
        inside = mask > 0
        ys, xs = np.nonzero(inside)
        center = ((int(xs.min()) + int(xs.max()) + 1) // 2, (int(ys.min()) + int(ys.max()) + 1) // 2)
        # interleave the two so that load from other processes hits both alike
        t_ours, t_cv2 = float("inf"), float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            ours = poisson_blend(target, source, mask, method="ours")
            t_ours = min(t_ours, time.perf_counter() - t0)
            m8 = mask.copy()  # seamlessClone erodes its mask argument in place
            t0 = time.perf_counter()
            viacv = cv2.seamlessClone(source, target, m8, center, cv2.NORMAL_CLONE)
            t_cv2 = min(t_cv2, time.perf_counter() - t0)
        row = {
            "size": n,
            "mask_fraction": round(float(inside.mean()), 3),
            "unknowns": int(inside.sum()),
            "ours_s": t_ours,
            "cv2_s": t_cv2,
            "ratio": t_ours / t_cv2,
        }
        if with_exact:
            t0 = time.perf_counter()
            exact = poisson_blend(target, source, mask, method="exact")
            t_exact = time.perf_counter() - t0
            d_ours = np.abs(ours.astype(np.int16) - exact.astype(np.int16))[inside]
            d_cv2 = np.abs(viacv.astype(np.int16) - exact.astype(np.int16))[inside]
            row.update(
                exact_s=t_exact,
                ours_max_err=int(d_ours.max()),
                ours_differing=float((d_ours > 0).mean()),
                cv2_max_err=int(d_cv2.max()),
                cv2_mean_err=float(d_cv2.mean()),
            )
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (
        f"{'size':>6} {'mask':>5} {'ours s':>8} {'cv2 s':>8} {'ours/cv2':>9} "
        f"{'ours max err':>12} {'ours px !=':>10} {'cv2 max err':>11} {'cv2 mean':>9} {'exact s':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['size']:>6} {r['mask_fraction']:>5.2f} {r['ours_s']:>8.3f} {r['cv2_s']:>8.3f} "
            f"{r['ratio']:>8.2f}x"
        )
        if "exact_s" in r:
            line += (
                f" {r['ours_max_err']:>12d} {100 * r['ours_differing']:>9.2f}% {r['cv2_max_err']:>11d}"
                f" {r['cv2_mean_err']:>9.2f} {r['exact_s']:>8.1f}"
            )
        lines.append(line)
    lines.append(
        "errors in 8-bit levels against the exact sparse LU solve, inside the selection; "
        "'ours px !=' = share of selected pixels not identical to it"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sizes = tuple(int(a) for a in argv) or SIZES
    print(f"Poisson blending, RGB uint8, elliptical selection of {MASK_FRACTION:.0%}, best of 5-25 runs")
    print(format_rows(run(sizes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
