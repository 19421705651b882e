"""The reference's colours for a feature blend: a linear colour transfer of the edit's inside.

The generator draws a class's colours as it learnt them: a projection keeps a photo's layout and grain but not
its palette (the default model reconstructs scikit-image's grey gravel in beige and its grey brick in brown, and
the bark photo's contrast at half its spread).  A feature transplant should show the reference photo's material,
so the edited crop's colours inside the selection are mapped by one affine transform, x -> A x + t, chosen so that
their mean and covariance become those of the reference pixels the blend takes its features from (the linear
Monge-Kantorovich solution of Pitie and Kokaram, 2007: the least displacement of colours that matches both
moments).  The photo's own stream, which shows in the selection's feathered border, is moved the same way to the
photo's colours around the selection: otherwise Poisson blending, which keeps the edit's colour steps, carries
the step from the reconstruction's colours (green for grey grass) to the reference's into the result (grey grass
with grey gravel came out violet).  Only these statistics are used (C + C x C numbers a side): every pixel's
detail, and its place, stay the generator's; no photo pixel is copied.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5  # covariance regularisation in (0..1 units)^2: a grey reference has a rank-1 covariance


def _sqrtm(S: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def linear_transfer(src: np.ndarray, dst: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """(A, t) with A @ p + t over the pixels ``src`` [N, C] having the mean and covariance of ``dst`` [M, C]
    (the Monge-Kantorovich linear map; C = 1: the mean and standard deviation)."""
    src = np.asarray(src, np.float64).reshape(len(src), -1)
    dst = np.asarray(dst, np.float64).reshape(len(dst), -1)
    if src.shape[1] != dst.shape[1] or len(src) < 2 or len(dst) < 2:
        raise ValueError(f"need >= 2 pixels of the same channels on both sides, got {src.shape} and {dst.shape}")
    c = src.shape[1]
    cs = np.cov(src.T).reshape(c, c) + eps * np.eye(c)
    cd = np.cov(dst.T).reshape(c, c) + eps * np.eye(c)
    h = _sqrtm(cs)
    hi = np.linalg.inv(h)
    A = hi @ _sqrtm(h @ cd @ h) @ hi
    return A, dst.mean(0) - A @ src.mean(0)


def match_colours(edited01: np.ndarray, transfers: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``edited01`` [H, W, C] in [0, 1] with each transfer applied with its weight: ``transfers`` holds
    (source pixels [N, C], target pixels [M, C], weight [H, W] in [0, 1]); the linear transfer from the source's
    to the target's colour statistics (:func:`linear_transfer`) moves every pixel by weight x (A p + t - p), all
    fitted on the unmoved colours; the result is clipped to [0, 1].  ``box`` (y0, y1, x0, x1): only the pixels
    there are moved (the rest is returned as it was: what compositing will not read).  A transfer with fewer
    than 16 pixels on either side is skipped.  Target pixels of another channel count are converted (luma, or
    grey repeated)."""
    c = edited01.shape[2]
    y0, y1, x0, x1 = box if box is not None else (0, edited01.shape[0], 0, edited01.shape[1])
    part = edited01[y0:y1, x0:x1].astype(np.float32)
    moved = part.copy()
    for src, dst, weight in transfers:
        if len(src) < 16 or len(dst) < 16:  # e.g. a selection of the whole photo: nothing around it to fit on
            continue
        src = np.asarray(src).reshape(len(src), -1)
        dst = np.asarray(dst).reshape(len(dst), -1)
        if dst.shape[1] != c:  # grey photo and colour reference, or the reverse
            dst = (dst @ np.array([0.299, 0.587, 0.114]))[:, None] if c == 1 else np.repeat(dst[:, :1], c, 1)
        A, t = linear_transfer(src, dst)
        w = np.asarray(weight, np.float32)[y0:y1, x0:x1, None]
        moved += w * (part @ (A.T - np.eye(c)).astype(np.float32) + t.astype(np.float32))
    out = edited01.copy()
    out[y0:y1, x0:x1] = np.clip(moved, 0.0, 1.0)
    return out


def shifted_pixels(reference01: np.ndarray, mask: np.ndarray, shift: tuple[int, int],
                   threshold: float = 0.5) -> np.ndarray:
    """The reference's pixels [N, C] whose features the blend moves into ``mask`` ([H, W], the reference crop's
    size): reference content at p lands at p + shift ((dx, dy) px), so these are the pixels at p - shift for the
    mask's pixels p above ``threshold`` that stay inside the crop."""
    H, W = mask.shape
    dx, dy = int(shift[0]), int(shift[1])
    ys, xs = np.nonzero(np.asarray(mask) > threshold)
    ys, xs = ys - dy, xs - dx
    keep = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
    px = reference01[ys[keep], xs[keep]]
    return px.reshape(len(px), reference01.shape[2] if reference01.ndim == 3 else 1)
