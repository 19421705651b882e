"""Poisson blending: the post-processing step of real-image editing (paper §4).

Implements guided interpolation of Pérez, Gangnet & Blake 2003 ("Poisson image
editing") with the *source gradient* as guidance field: inside the selection
Ω the result f solves

    |N_p| f_p - sum_{q in N_p ∩ Ω} f_q = sum_{q in N_p ∩ ∂Ω} t_q + sum_{q in N_p} (s_p - s_q)

for every pixel p of Ω (4-neighbourhood N_p, target/photo t, source s), and
f = t outside Ω.  Writing f = s + u turns this into a Laplace problem for the
correction u: u is the discrete harmonic interpolation, inside Ω, of the
boundary mismatch d = t - s on the outside neighbours ∂Ω.  This is what every
solver below computes (so a source that differs from the target by a constant
blends back to exactly the target).

Boundary conditions
-------------------
* Dirichlet (the target's values) wherever a pixel of Ω has a neighbour outside
  Ω inside the photo.
* At the photo's border missing neighbours are simply ignored (N_p only counts
  neighbours inside the photo), i.e. a homogeneous Neumann condition: masks may
  touch or cover the image border.
* A selection covering the *whole* photo has no Dirichlet boundary; the problem
  then only fixes f up to a constant and the result is the source shifted, per
  channel, to the target's mean.

API
---
``poisson_blend(target, source, mask, method="auto")`` takes the full photo
``target``, the edited content ``source`` *already placed in photo coordinates*
(same shape and dtype as ``target``; :func:`place_patch` pastes a patch at an
(x, y) offset into a copy of the photo for that) and the selection ``mask``
(H x W or H x W x 1; bool, uint8 (0..255), uint16 (0..65535) or float in [0, 1];
soft/feathered masks are allowed).

Soft masks: the Poisson problem is solved on the support (mask > 0) and the
result is composited as ``mask * poisson + (1 - mask) * target`` so feathered
edges stay soft.  Pixels where mask == 0 are copied from the target
unchanged (byte-identical).

Channels: H x W (gray), H x W x 1, H x W x 3 (RGB) and H x W x 2 / H x W x 4
(gray/RGB + alpha).  Colour channels are Poisson-solved independently (one
matrix / preconditioner shared by all channels).  Alpha is *not* Poisson-solved:
it is composited linearly, ``mask * source_alpha + (1 - mask) * target_alpha``;
when the source carries the photo's own alpha (as ``Crop.paste_back`` output
does) the result's alpha is exactly the target's.

Typical use with engine/edit/crops.py::

    source = crop.paste_back(photo, edited_crop)   # edited GAN output back in the photo
    result = poisson_blend(photo, source, selection_mask)

Precision: all arithmetic at the interfaces (right-hand side, final
composite) is float64; integer results are rounded and clipped to the dtype's
range, float results are returned as float (not clipped).  ``method="ours"``
runs its iterations in float32 on the *correction* u (which is then added in
float64), stops when the CG update is below 1 level for integer images
(1e-5 for float images, plus one float64 refinement step) and falls back to the
exact solve if it ever fails to converge.

Methods
-------
``"exact"``  sparse direct solve (scipy SuperLU, minimum-degree ordering, one
             factorisation for all channels) on the support pixels.  The
             reference; slow for large masks (~30 s at 2048 px with a 40 % mask).
``"ours"``   conjugate gradients (float32) preconditioned by an aggregation
             multigrid V-cycle whose levels all live on pixel grids (OpenCV
             stencils plus a sparse correction along the selection's edge,
             direct solve at the coarsest level), started from a full-multigrid
             first guess (usually 3 CG iterations for 8-bit images).  Same
             discretisation as ``"exact"``: within ~0.2 levels of it before
             rounding in bench/poisson.py's cases, so at most one level apart
             after (1-2 % of the pixels).  Selections of up to ``multigrid.DIRECT_MAX``
             pixels are solved directly.
``"cv2"``    ``cv2.seamlessClone(..., NORMAL_CLONE)``: uint8 only (gray is
             expanded to RGB and back).  OpenCV solves its own discretisation on
             the mask's bounding box (see the tests for how far it is from the
             exact solution) and misbehaves when the mask touches the image
             border, so the images are padded by reflection before the call;
             its pixels are then composited with the mask as above.
``"auto"``   ``"ours"``: correct for every dtype and channel layout, about as
             fast as OpenCV (see ``bench/poisson.py``) and, unlike it, solving
             the actual Pérez problem.
"""

from __future__ import annotations

import numpy as np

from engine.arrays import PHOTO_DTYPES, mask_weights
from engine.compose.poisson.exact import solve_exact
from engine.compose.poisson.grid import dense, neighbour_count, rhs, work_box
from engine.compose.poisson.multigrid import OpenCVOneThread, solve_ours
from engine.compose.poisson.opencv import blend_cv2

METHODS = ("auto", "ours", "exact", "cv2")


def place_patch(target: np.ndarray, patch: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """Return a copy of ``target`` with ``patch`` pasted with its top-left corner at (x, y).

    Builds the full-size ``source`` argument of :func:`poisson_blend` from a patch
    (e.g. ``Crop.to_photo``).  The patch is clipped to the photo.
    """
    target = np.asarray(target)
    patch = np.asarray(patch)
    if patch.ndim != target.ndim or patch.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"The patch has shape {patch.shape} but the photo has shape {target.shape}: "
            "they need the same channels."
        )
    x, y = int(xy[0]), int(xy[1])
    H, W = target.shape[:2]
    ph, pw = patch.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, W), min(y + ph, H)
    out = target.copy()
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x].astype(target.dtype, copy=False)
    return out


def _mask_array(mask, shape: tuple[int, int]) -> np.ndarray:
    """The selection as a validated H x W array (its own dtype); the support is ``mask > 0``."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2 or mask.shape != tuple(shape):
        raise ValueError(
            f"The mask has shape {mask.shape} but the photo is {shape[0]}x{shape[1]}: "
            "the mask must be H x W (or H x W x 1) like the photo."
        )
    floating = np.issubdtype(mask.dtype, np.floating)
    if not (floating or mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"Unsupported mask dtype {mask.dtype}: use bool, uint8, uint16 or float in [0, 1].")
    if floating and np.isnan(mask).any():
        raise ValueError("The mask contains NaN values.")
    return mask


def _to_dtype(x: np.ndarray, dtype) -> np.ndarray:
    """float64 -> dtype; integers are rounded (half to even) and clipped to the dtype's range."""
    import cv2

    if dtype == np.uint8 or dtype == np.uint16:
        depth = cv2.CV_8U if dtype == np.uint8 else cv2.CV_16U
        return cv2.add(x, 0.0, dtype=depth).reshape(x.shape)  # saturating, rounding conversion
    return x.astype(dtype)


def poisson_blend(
    target: np.ndarray, source: np.ndarray, mask: np.ndarray, method: str = "auto"
) -> np.ndarray:
    """Blend ``source`` into ``target`` inside ``mask`` by Poisson image editing.

    target: the full photo, H x W or H x W x C (C in 1..4), uint8/uint16/float32/float64.
    source: the edited content in photo coordinates, same shape and dtype as target
            (see :func:`place_patch`).
    mask:   H x W (or H x W x 1) selection; bool, uint8, uint16 or float in [0, 1].
    method: "auto" (= "ours"), "ours", "exact" or "cv2" (uint8 only).

    Returns an array of the same shape and dtype as ``target``.  Pixels with
    mask == 0 equal the target exactly.  Raises ValueError for an empty mask,
    mismatched shapes/dtypes or an unsupported method.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: use one of {', '.join(METHODS)}.")
    target = np.asarray(target)
    source = np.asarray(source)
    if target.dtype.type not in PHOTO_DTYPES:
        raise ValueError(f"Unsupported image dtype {target.dtype}: use uint8, uint16, float32 or float64.")
    if target.ndim not in (2, 3) or (target.ndim == 3 and not 1 <= target.shape[2] <= 4):
        raise ValueError(f"The photo has shape {target.shape}: expected H x W or H x W x C with C in 1..4.")
    if source.shape != target.shape:
        raise ValueError(
            f"The source has shape {source.shape} but the photo has shape {target.shape}: "
            "place the edited patch in photo coordinates first (place_patch)."
        )
    if source.dtype != target.dtype:
        raise ValueError(f"The source is {source.dtype} but the photo is {target.dtype}: convert it first.")
    if min(target.shape[:2]) < 1:
        raise ValueError("The photo is empty.")
    H, W = target.shape[:2]
    mask = _mask_array(mask, (H, W))
    support = mask > 0
    if not support.any():
        raise ValueError("The mask is empty: select the region to blend.")
    if method == "cv2" and target.dtype != np.uint8:
        raise ValueError(f"method='cv2' (cv2.seamlessClone) needs a uint8 photo, not {target.dtype}.")

    t3 = target if target.ndim == 3 else target[:, :, None]
    s3 = source if source.ndim == 3 else source[:, :, None]
    C = t3.shape[2]
    ncol = C - 1 if C in (2, 4) else C

    import cv2

    r0, r1, c0, c1 = box = work_box(support)
    om = support[r0:r1, c0:c1]
    om8 = om.astype(np.uint8)
    h, w = om.shape
    deg = neighbour_count(h, w, box, (H, W))
    tb, sb = t3[r0:r1, c0:c1], s3[r0:r1, c0:c1]
    tc = np.ascontiguousarray(tb[:, :, :ncol])
    sc = np.ascontiguousarray(sb[:, :, :ncol])

    if support.all():
        # No Dirichlet boundary: f is defined up to a constant; match the target's mean.
        diff = tc.astype(np.float64) - sc
        fc = diff.mean(axis=(0, 1)) + sc
    elif method == "cv2":
        fc = blend_cv2(t3[:, :, :ncol], s3[:, :, :ncol], support)[r0:r1, c0:c1]
    else:
        cells, values = rhs(tc, sc, om8)
        if method == "exact":
            fc = solve_exact(dense(cells, values, (h, w)), om, deg)
        else:
            # Stop when the CG update falls below ``tol`` (the remaining error is then
            # about a third of it or less, 0.1-0.2 levels in bench/poisson.py): any error
            # below one level keeps ours within one level of the exact solve after
            # rounding.  Float images are solved to ~3e-6.
            tol = 1.0 if np.issubdtype(target.dtype, np.integer) else 1e-5
            with OpenCVOneThread():
                fc = solve_ours(cells, values, om, deg, box, (H, W), tol)
        fc += sc  # f = source + correction

    wb = mask_weights(mask[r0:r1, c0:c1], np.float64)
    if not np.array_equal(wb > 0, wb >= 1.0):  # soft mask: mask * poisson + (1 - mask) * target
        w3 = np.repeat(wb[:, :, None], ncol, axis=2)
        fc -= tc
        fc *= w3
        fc += tc
    res = _to_dtype(fc, target.dtype)
    if ncol < C:  # alpha: never Poisson-solved, composited linearly with the mask
        ta = tb[:, :, ncol].astype(np.float64)
        alpha = ta + wb * (sb[:, :, ncol] - ta)
        res = np.concatenate([res, _to_dtype(alpha, target.dtype)[:, :, None]], axis=2)
    out = t3.copy()
    cv2.copyTo(res, om8, out[r0:r1, c0:c1])
    return out if target.ndim == 3 else out[:, :, 0]
