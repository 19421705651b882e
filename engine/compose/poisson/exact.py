"""The reference solver: a sparse direct solve of the masked 4-neighbour Laplacian (scipy SuperLU,
minimum-degree ordering, one factorisation for all channels) on the support pixels.
"""
from __future__ import annotations

import numpy as np


def laplacian_csr(om: np.ndarray, deg: np.ndarray):
    """Sparse matrix of the masked problem on the pixels of ``om`` (row-major order)."""
    import scipy.sparse as sp

    h, w = om.shape
    idx = np.full((h, w), -1, np.int64)
    n = int(om.sum())
    idx[om] = np.arange(n)
    rows = [np.arange(n)]
    cols = [np.arange(n)]
    vals = [deg[om]]
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        both = (a >= 0) & (b >= 0)
        i, j = a[both], b[both]
        rows += [i, j]
        cols += [j, i]
        vals += [-np.ones(len(i)), -np.ones(len(i))]
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return A


def solve_exact(b64: np.ndarray, om: np.ndarray, deg: np.ndarray) -> np.ndarray:
    import scipy.sparse.linalg as spla

    A = laplacian_csr(om, deg)
    b = b64[om]
    lu = spla.splu(
        A.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
    )
    u = np.zeros_like(b64)
    u[om] = lu.solve(b)
    return u
