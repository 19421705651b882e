""""ours": conjugate gradients (float32) preconditioned by an aggregation multigrid V-cycle whose levels
all live on pixel grids (OpenCV stencils plus a sparse correction along the selection's edge, direct solve at the
coarsest level), started from a full-multigrid first guess; OpenCV runs single-threaded inside (OpenCVOneThread),
and the work arrays are kept from one call to the next (Scratch).  See engine/compose/poisson/__init__.py for the
problem it solves and how close it stays to the exact solve.
"""
from __future__ import annotations

import threading

import numpy as np

from engine.compose.poisson.exact import solve_exact
from engine.compose.poisson.grid import CROSS8, dense

# "ours" solves selections of up to this many pixels with the direct solver (faster there).
DIRECT_MAX = 4000

# 4-neighbour Laplacian (with centre 4).
_LAP = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)


class Scratch(threading.local):
    """float32 work arrays kept from one call to the next (per thread).

    A new large array costs a page fault for every 4 KiB page on first write
    (glibc gives big blocks back to the system when they are freed): at 512 px
    that was about a quarter of the blend's time.  ``array(key, shape)`` returns
    the previous call's array under ``key`` when it has that shape (zeroed when
    asked), else a new one, kept while all kept arrays total at most LIMIT bytes.
    A caller must not hand such an array out of the solver (results are copies).
    """

    LIMIT = 160 << 20

    def __init__(self):
        self.arrays: dict = {}

    def array(self, key, shape, zero: bool = True) -> np.ndarray:
        a = self.arrays.get(key)
        if a is not None and a.shape == shape:
            if zero:
                a.fill(0)
            return a
        self.arrays.pop(key, None)
        a = np.zeros(shape, np.float32)
        if a.nbytes + sum(v.nbytes for v in self.arrays.values()) <= self.LIMIT:
            self.arrays[key] = a
        return a


scratch = Scratch()


class OpenCVOneThread:
    """Run OpenCV single-threaded inside the block: its thread pool costs more than it gains on the solver's
    small, memory-bound passes (measured: "ours" is 3-8 % faster at 512-2048 px with one thread, while
    cv2.seamlessClone is 30 % slower).  OpenCV's thread count is process-wide, so nested and concurrent blocks
    share one saved value and the last to leave restores it."""

    _lock = threading.Lock()
    _depth = 0
    _saved = 0

    def __enter__(self):
        import cv2

        with self._lock:
            if OpenCVOneThread._depth == 0:
                OpenCVOneThread._saved = cv2.getNumThreads()
                cv2.setNumThreads(1)
            OpenCVOneThread._depth += 1

    def __exit__(self, *exc):
        import cv2

        with self._lock:
            OpenCVOneThread._depth -= 1
            if OpenCVOneThread._depth == 0:
                cv2.setNumThreads(OpenCVOneThread._saved)
        return False


def _stack_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """h x w -> h x w x channels copies (numpy broadcasting over a last axis of 3 is ~10x slower than working on
    full arrays, and cv2.merge builds them ~10x faster than np.repeat)."""
    import cv2

    return cv2.merge([a] * channels).reshape(a.shape[0], a.shape[1], channels)


class Multigrid:
    """Geometric aggregation multigrid for the masked 4-neighbour Laplacian.

    Every level lives on a pixel grid (float32, C channels, zero outside the
    active cells).  Level l+1 aggregates 2x2 blocks of level l; its operator is the
    Galerkin product P^T A P with piecewise-constant P, which is again a weighted
    graph Laplacian (edge weight = number of fine edges between two blocks,
    Dirichlet edges kept on the diagonal).  Away from the selection's edge that is
    exactly 2^l times the plain 5-point Laplacian, so each level applies
    ``cv2.filter2D`` with that stencil plus a small sparse correction on the cells
    near the boundary (and the photo border) where the weights differ.  Smoothing
    is degree-2 Chebyshev on D^-1 A; the coarse correction is over-weighted (the
    classic fix for the too-stiff piecewise-constant coarse spaces); the coarsest
    level (<= COARSEST cells) is solved directly.  The V-cycle is symmetric, so it
    preconditions CG.
    """

    SCALE = 1.8
    LMAX = 2.0
    LMIN_RATIO = 1.0 / 6.0
    COARSEST = 1500

    def __init__(self, om: np.ndarray, deg: np.ndarray, channels: int):
        import cv2
        import scipy.sparse.linalg as spla

        h, w = om.shape
        self.h, self.w, self.C = h, w, channels
        # Number of grid levels: coarsen the mask until it has few cells.
        L, m = 0, om
        while int(np.count_nonzero(m)) > self.COARSEST and min(m.shape) > 2:
            if m.shape[0] & 1 or m.shape[1] & 1:
                m = np.pad(m, ((0, m.shape[0] & 1), (0, m.shape[1] & 1)))
            m = (m[0::2, 0::2] | m[0::2, 1::2]) | (m[1::2, 0::2] | m[1::2, 1::2])
            L += 1
        k = 1 << L
        hh, ww = -(-h // k) * k, -(-w // k) * k
        self.hh, self.ww = hh, ww
        m = np.zeros((hh, ww), np.float32)
        m[:h, :w] = om
        diag = np.zeros((hh, ww), np.float32)
        diag[:h, :w] = deg * om
        ex = m[:, :-1] * m[:, 1:]
        ey = m[:-1, :] * m[1:, :]
        self.levels = []
        for lvl in range(L + 1):
            if lvl:
                m, ex, ey, diag = self._coarsen(m, ex, ey, diag)
            act = m > 0
            if lvl == L:
                idx = np.full(m.shape, -1, np.int64)
                idx[act] = np.arange(int(act.sum()))
                A = self._grid_csr(idx, ex, ey, diag).astype(np.float64).tocsc()
                self.coarsest = {
                    "shape": m.shape,
                    "mask": act,
                    "act": np.flatnonzero(act),
                    "lu": spla.splu(
                        A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
                    ),
                }
                break
            s = float(1 << lvl)
            lev = {
                "shape": m.shape,
                "kernel": _LAP * np.float32(s),
                "mask": act,
                # A x, a Chebyshev step, residual, coarse correction, x
                "buf": [scratch.array(("buf", lvl, i), m.shape + (channels,), zero=False) for i in range(5)],
            }
            lev["rows"], lev["band"] = self._band(act, ex, ey, diag, s)
            if lvl:  # D^-1 (the Chebyshev factors are cv2.multiply scales); the finest level uses D = 4 I
                winv = np.where(act, 1.0 / np.where(act, diag, 1.0), 0.0).astype(np.float32)
                lev["winv"] = _stack_channels(winv, channels)
            self.levels.append(lev)
        (_, self.c20), (self.c1, self.c21) = self._chebyshev(2)
        # Finest level: D = 4 I (the diagonal is 4 except on the photo's border, where a smaller one is still a
        # valid smoother), so each Chebyshev step  x + c (b - A x) / 4  is one filter2D with the kernel
        # delta - c/4 L, one pass adding c/4 b, and the band correction.
        delta = np.zeros((3, 3), np.float32)
        delta[1, 1] = 1.0
        self.fused = (delta - np.float32(self.c20 / 4) * _LAP, np.float32(1.0 + self.c1) * delta
                      - np.float32(self.c21 / 4) * _LAP)
        # Masked OpenCV arithmetic is ~7x slower than plain; instead, results are computed on the whole grid and
        # the few cells just outside the active ones that can have become non-zero are zeroed by index:
        # "outer" (A u spills onto the 4-neighbours), "spill" (the nearest-neighbour enlargement of the coarser
        # level covers whole 2x2 blocks) and "spill_lin" (the bilinear one reaches one cell further).
        for lvl, lev in enumerate(self.levels):
            act8 = lev["mask"].astype(np.uint8)
            coarse = self.levels[lvl + 1]["mask"] if lvl + 1 < len(self.levels) else self.coarsest["mask"]
            up8 = np.repeat(np.repeat(coarse.astype(np.uint8), 2, axis=0), 2, axis=1)
            lev["outer"] = np.flatnonzero(cv2.dilate(act8, CROSS8) > act8)
            lev["spill"] = np.flatnonzero(up8 > act8)
            lev["spill_lin"] = np.flatnonzero(cv2.dilate(up8, np.ones((3, 3), np.uint8)) > act8)

    @classmethod
    def _chebyshev(cls, degree: int) -> list[tuple[float, float]]:
        """Coefficients (c1, c2) of the Chebyshev recurrence d_k = c1 d_{k-1} + c2 D^-1 r_k."""
        lmax = cls.LMAX
        lmin = lmax * cls.LMIN_RATIO
        theta, delta = (lmax + lmin) / 2, (lmax - lmin) / 2
        sigma = theta / delta
        coeffs = [(0.0, 1.0 / theta)]
        rho = 1.0 / sigma
        for _ in range(1, degree):
            rho_new = 1.0 / (2 * sigma - rho)
            coeffs.append((rho_new * rho, 2 * rho_new / delta))
            rho = rho_new
        return coeffs

    @staticmethod
    def _coarsen(m, ex, ey, diag):
        """Galerkin coarsening by 2x2 aggregation (even-sized grids): mask, edge weights, diagonal."""
        mc = np.maximum(np.maximum(m[0::2, 0::2], m[0::2, 1::2]), np.maximum(m[1::2, 0::2], m[1::2, 1::2]))
        inner = ex[0::2, 0::2] + ex[1::2, 0::2] + ey[0::2, 0::2] + ey[0::2, 1::2]
        diagc = diag[0::2, 0::2] + diag[0::2, 1::2] + diag[1::2, 0::2] + diag[1::2, 1::2] - 2 * inner
        exc = ex[0::2, 1::2] + ex[1::2, 1::2]
        eyc = ey[1::2, 0::2] + ey[1::2, 1::2]
        return mc, exc, eyc, diagc

    @staticmethod
    def _grid_csr(idx, ex, ey, diag):
        import scipy.sparse as sp

        act = idx >= 0
        n = int(act.sum())
        rows, cols, vals = [idx[act]], [idx[act]], [diag[act]]
        for a, b, wgt in ((idx[:, :-1], idx[:, 1:], ex), (idx[:-1, :], idx[1:, :], ey)):
            sel = wgt > 0
            i, j, v = a[sel], b[sel], -wgt[sel]
            rows += [i, j]
            cols += [j, i]
            vals += [v, v]
        return sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
        )

    @staticmethod
    def _band(act, ex, ey, diag, s):
        """Sparse correction (A - s * 5-point Laplacian) on the rows where it is not zero."""
        import scipy.sparse as sp

        h, w = act.shape
        i = np.flatnonzero(act & (diag != 4 * s))  # (flatnonzero of a bool array: ~10x faster than nonzero)
        rows, cols, vals = [i], [i], [diag.ravel()[i] - 4 * s]
        if s != 1:  # on the finest grid every edge between two active cells has weight 1: nothing to correct
            for wgt, both, step in ((ex, act[:, :-1] & act[:, 1:], 1), (ey, act[:-1, :] & act[1:, :], w)):
                ys, xs = np.divmod(np.flatnonzero(both & (wgt != s)), wgt.shape[1])
                i = ys * w + xs
                v = s - wgt[ys, xs]
                rows += [i, i + step]
                cols += [i + step, i]
                vals += [v, v]
        r = np.concatenate(rows)
        if len(r) == 0:
            return None, None
        # CSR built directly (each (row, column) pair occurs once): a third of the time of COO -> CSR
        order = np.argsort(r, kind="stable")
        r = r[order]
        first = np.r_[True, r[1:] != r[:-1]]
        uniq = r[first]
        indptr = np.r_[np.flatnonzero(first), len(r)]
        band = sp.csr_matrix(
            (np.concatenate(vals)[order].astype(np.float32), np.concatenate(cols)[order], indptr),
            shape=(len(uniq), h * w),
        )
        return uniq, band

    # ---- grid operations
    def apply(self, u: np.ndarray, out: np.ndarray, lvl: int = 0) -> np.ndarray:
        """out = A u on the active cells (garbage elsewhere; u must be zero outside them)."""
        import cv2

        lev = self.levels[lvl]
        cv2.filter2D(u, -1, lev["kernel"], dst=out, borderType=cv2.BORDER_CONSTANT)
        if lev["rows"] is not None:
            C = self.C
            o2 = out.reshape(-1, C)
            o2[lev["rows"]] += lev["band"] @ u.reshape(-1, C)
        return out

    def _smooth(self, lvl: int, x: np.ndarray | None, b: np.ndarray) -> np.ndarray:
        """Degree-2 Chebyshev smoothing (in place on x); x=None means a zero initial guess."""
        import cv2

        lev = self.levels[lvl]
        A, B = lev["buf"][0], lev["buf"][1]
        if lvl == 0:
            return self._smooth_finest(lev, x, b)
        winv, c20, c21 = lev["winv"], self.c20, self.c21
        if x is None:
            x = cv2.multiply(b, winv, dst=lev["buf"][4], scale=c20)  # first step from zero: x = d0 = c20 D^-1 b
            self.apply(x, A, lvl)
            cv2.subtract(b, A, dst=A)
            cv2.multiply(A, winv, dst=A, scale=c21)
            cv2.addWeighted(x, 1.0 + self.c1, A, 1.0, 0.0, dst=x)  # x + (c1 d0 + z)
            return x
        self.apply(x, A, lvl)
        cv2.subtract(b, A, dst=A)
        cv2.multiply(A, winv, dst=A, scale=c20)
        cv2.add(x, A, dst=x)
        self.apply(x, B, lvl)
        cv2.subtract(b, B, dst=B)
        cv2.multiply(B, winv, dst=B, scale=c21)
        cv2.scaleAdd(A, self.c1, B, dst=B)
        cv2.add(x, B, dst=x)
        return x

    def _smooth_finest(self, lev: dict, x: np.ndarray | None, b: np.ndarray) -> np.ndarray:
        """The same Chebyshev steps with D = 4 I, fused (see __init__):
        x1 = x0 + c20/4 (b - A x0);  x2 = x1 + c1 (x1 - x0) + c21/4 (b - A x1)."""
        import cv2

        x1, x2 = lev["buf"][0], lev["buf"][1]
        a0, a1 = self.c20 / 4, self.c21 / 4
        if x is None:
            np.multiply(b, np.float32(a0), out=x1)
        else:
            cv2.filter2D(x, -1, self.fused[0], dst=x1, borderType=cv2.BORDER_CONSTANT)
            cv2.scaleAdd(b, a0, x1, dst=x1)
            self._band_step(lev, x, x1, a0)
        self._zero(x1, lev["outer"])  # b (a CG residual) and the stencil may leave values just outside
        cv2.filter2D(x1, -1, self.fused[1], dst=x2, borderType=cv2.BORDER_CONSTANT)
        if x is not None:
            cv2.scaleAdd(x, -self.c1, x2, dst=x2)
        out = lev["buf"][4] if x is None else x
        cv2.scaleAdd(b, a1, x2, dst=out)
        self._band_step(lev, x1, out, a1)
        self._zero(out, lev["outer"])
        return out

    def _band_step(self, lev: dict, u: np.ndarray, out: np.ndarray, c: float) -> None:
        """out -= c (A - L) u on the rows where A differs from the plain stencil L."""
        if lev["rows"] is not None:
            C = self.C
            o2 = out.reshape(-1, C)
            o2[lev["rows"]] -= np.float32(c) * (lev["band"] @ u.reshape(-1, C))

    def _resize(self, a: np.ndarray, shape, interpolation, dst=None) -> np.ndarray:
        import cv2

        out = cv2.resize(a, (shape[1], shape[0]), dst=dst, interpolation=interpolation)
        return out.reshape(shape[0], shape[1], self.C)

    def _coarse_solve(self, b: np.ndarray) -> np.ndarray:
        c = self.coarsest
        C = self.C
        x = np.zeros(c["shape"] + (C,), np.float32)
        x.reshape(-1, C)[c["act"]] = c["lu"].solve(b.reshape(-1, C)[c["act"]].astype(np.float64))
        return x

    def vcycle(self, b: np.ndarray, lvl: int = 0) -> np.ndarray:
        """One symmetric V-cycle from zero: an approximation of A^-1 b (zero outside the active cells)."""
        import cv2

        lev = self.levels[lvl]
        x = self._smooth(lvl, None, b)
        r, tmp = lev["buf"][2], lev["buf"][3]
        cv2.subtract(b, self.apply(x, tmp, lvl), dst=r)
        self._zero(r, lev["outer"])
        nxt = self.levels[lvl + 1]["shape"] if lvl + 1 < len(self.levels) else self.coarsest["shape"]
        rc = self._resize(r, nxt, cv2.INTER_LINEAR)  # halving with INTER_LINEAR = 2x2 means (INTER_AREA: 6x slower)
        rc *= 4.0 * self.SCALE  # restriction (2x2 sums) and over-correction in one go
        e = self.vcycle(rc, lvl + 1) if lvl + 1 < len(self.levels) else self._coarse_solve(rc)
        up = self._resize(e, lev["shape"], cv2.INTER_NEAREST, dst=tmp)
        self._zero(up, lev["spill"])
        cv2.add(x, up, dst=x)
        return self._smooth(lvl, x, b)

    def _zero(self, a: np.ndarray, cells: np.ndarray) -> None:
        a.reshape(-1, self.C)[cells] = 0.0

    def full_multigrid(self, b: np.ndarray) -> np.ndarray:
        """First guess for CG by full multigrid: b restricted to every level, the coarsest level solved directly,
        then on the way up each level starts from the bilinearly enlarged solution of the one below and takes one
        V-cycle.  Costs about 1.3 V-cycles and leaves an error of ~5 % of the boundary mismatch, which saves CG
        two or three iterations over starting from a smooth interpolation of that mismatch (~90 %)."""
        import cv2

        C = self.C
        shapes = [lev["shape"] for lev in self.levels] + [self.coarsest["shape"]]
        bs = [b]
        for lvl in range(1, len(shapes)):
            bc = self._resize(bs[-1], shapes[lvl], cv2.INTER_LINEAR,
                              dst=scratch.array(("fmg_b", lvl), shapes[lvl] + (C,), zero=False))
            bc *= 4.0  # restriction: 2x2 sums
            bs.append(bc)
        x = self._coarse_solve(bs[-1])
        for lvl in range(len(self.levels) - 1, -1, -1):
            lev = self.levels[lvl]
            shape = lev["shape"] + (C,)
            x = self._resize(x, lev["shape"], cv2.INTER_LINEAR, dst=scratch.array(("fmg_x", lvl), shape, zero=False))
            self._zero(x, lev["spill_lin"])
            r = cv2.subtract(bs[lvl], self.apply(x, lev["buf"][0], lvl), dst=scratch.array(("fmg_r", lvl), shape,
                                                                                            zero=False))
            self._zero(r, lev["outer"])
            cv2.add(x, self.vcycle(r, lvl), dst=x)
        return x

    def solve(self, b: np.ndarray, tol: float, x0: np.ndarray | None = None, maxit: int = 60):
        """PCG on level-0 arrays (float32, all channels as one block-diagonal system).

        Stops when the last update is below ``tol`` in max norm (with this
        preconditioner the remaining error is then about a third of ``tol``).
        """
        import cv2

        if x0 is None:
            x = np.zeros_like(b)
            r = b.copy()
        else:  # x0 must be zero outside the active cells
            x = x0
            r = self.apply(x, scratch.array("r", b.shape, zero=False))
            np.subtract(b, r, out=r)
        z = self.vcycle(r)
        p = scratch.array("p", b.shape, zero=False)
        np.copyto(p, z)
        rz = float(np.vdot(r, z))
        q = scratch.array("q", b.shape, zero=False)
        for it in range(1, maxit + 1):
            self.apply(p, q)
            pq = float(np.vdot(p, q))
            if pq <= 0 or rz <= 0:
                return x, rz == 0, it
            alpha = rz / pq
            cv2.scaleAdd(p, alpha, x, dst=x)
            cv2.scaleAdd(q, -alpha, r, dst=r)
            if abs(alpha) * cv2.norm(p, cv2.NORM_INF) <= tol:
                return x, True, it
            z = self.vcycle(r)
            rz_new = float(np.vdot(r, z))
            cv2.scaleAdd(p, rz_new / rz, z, dst=p)
            rz = rz_new
        return x, False, maxit


def solve_ours(cells, values, om, deg, box, shape, tol: float) -> np.ndarray:
    """Multigrid-preconditioned CG (see :class:`Multigrid`) for the right-hand side (cells, values) of
    :func:`rhs`; returns u like :func:`solve_exact`."""
    import cv2

    h, w = om.shape
    if int(np.count_nonzero(om)) <= DIRECT_MAX:
        return solve_exact(dense(cells, values, (h, w)), om, deg)
    r0, r1, c0, c1 = box
    H, W = shape
    C = values.shape[1]
    scale = float(np.abs(values).max()) if len(values) else 0.0
    if scale == 0.0:
        return np.zeros((h, w, C))
    mg = Multigrid(om, deg, C)
    if not mg.levels:  # so small or thin that the coarsest level is the whole problem
        return solve_exact(dense(cells, values, (h, w)), om, deg)
    b = scratch.array("b", (mg.hh, mg.ww, C))
    ys, xs = np.divmod(cells, w)
    b.reshape(-1, C)[ys * mg.ww + xs] = values * (1.0 / scale)
    x0 = mg.full_multigrid(b)
    x, ok, _ = mg.solve(b, tol / scale, x0)
    u = x[:h, :w].astype(np.float64)
    u *= scale
    if ok and tol / scale < 2e-5:
        # float32 iterations alone may stall near the requested accuracy: one step of
        # iterative refinement with a float64 residual.
        brows = ([0] if r0 == 0 else []) + ([h - 1] if r1 == H else [])
        bcols = ([0] if c0 == 0 else []) + ([w - 1] if c1 == W else [])
        res = dense(cells, values, (h, w)) - _apply64(u, om, brows, bcols)
        rs = float(cv2.norm(res, cv2.NORM_INF))
        if rs > 0:
            b[:] = 0
            np.multiply(res, 1.0 / rs, out=b[:h, :w], casting="same_kind")
            x2, ok, _ = mg.solve(b, tol / rs)
            u += x2[:h, :w].astype(np.float64) * rs
    if not ok:  # pragma: no cover - safety net, not expected to trigger
        return solve_exact(dense(cells, values, (h, w)), om, deg)
    return u


def _apply64(u: np.ndarray, om: np.ndarray, brows, bcols) -> np.ndarray:
    import cv2

    out = np.empty_like(u)
    cv2.filter2D(u, -1, _LAP.astype(np.float64), dst=out, borderType=cv2.BORDER_CONSTANT)
    for r in brows:
        out[r] -= u[r]
    for c in bcols:
        out[:, c] -= u[:, c]
    out *= om[:, :, None]
    return out
