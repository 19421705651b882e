"""The Poisson problem on the selection's work box, shared by the solvers: the box (the support grown by
its Dirichlet ring), the in-photo neighbour counts, and the right-hand side built from the boundary mismatch.

Each solver (engine/compose/poisson/exact.py, multigrid.py) gets that right-hand side (dense float64 h x w x C
for the exact solver, sparse for ours), the support ``om`` (bool, h x w, the work box) and the in-photo
neighbour counts, and returns the correction u (float64, h x w x C, zero outside the selection).
"""
from __future__ import annotations

import numpy as np


def work_box(support: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the support grown by one pixel (the Dirichlet ring), clipped to the image."""
    H, W = support.shape
    rows = np.flatnonzero(support.any(axis=1))
    cols = np.flatnonzero(support.any(axis=0))
    return (max(rows[0] - 1, 0), min(rows[-1] + 2, H), max(cols[0] - 1, 0), min(cols[-1] + 2, W))


def neighbour_count(h: int, w: int, box, shape) -> np.ndarray:
    """Number of 4-neighbours inside the photo for each pixel of the box."""
    r0, r1, c0, c1 = box
    H, W = shape
    deg = np.full((h, w), 4.0)
    if r0 == 0:
        deg[0] -= 1
    if r1 == H:
        deg[r1 - r0 - 1] -= 1
    if c0 == 0:
        deg[:, 0] -= 1
    if c1 == W:
        deg[:, c1 - c0 - 1] -= 1
    return deg


CROSS8 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def rhs(tc: np.ndarray, sc: np.ndarray, om8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The right-hand side b: for p in Ω, the sum of the boundary mismatch d = target - source over p's
    4-neighbours outside Ω (in the photo).  Only the cells along Ω's edge have one, so it is returned sparse:
    (cells, values) = the flat box indices of those cells (each once, ascending) and b there (n x C float64)."""
    import cv2

    h, w = om8.shape
    ring = cv2.dilate(om8, CROSS8)
    ring -= om8  # in-photo pixels outside Ω with a 4-neighbour in Ω
    ys, xs = np.divmod(np.flatnonzero(ring > 0), w)  # (flatnonzero of a bool array: ~10x faster than nonzero)
    d = tc[ys, xs].astype(np.float64) - sc[ys, xs]
    cells, values = [], []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        ok[ok] = om8[ny[ok], nx[ok]] > 0
        cells.append(ny[ok] * w + nx[ok])
        values.append(d[ok])
    cells = np.concatenate(cells)
    values = np.concatenate(values)
    order = np.argsort(cells, kind="stable")
    cells = cells[order]
    first = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    return cells[first], np.add.reduceat(values[order], first, axis=0)


def dense(cells: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The sparse right-hand side of :func:`rhs` as an h x w x C float64 array."""
    b = np.zeros((shape[0] * shape[1], values.shape[1]), np.float64)
    b[cells] = values
    return b.reshape(shape[0], shape[1], values.shape[1])
