"""Preview-size edits (issue 14, protocol param ``preview_size``): the inputs of an edit reduced so that the
image's longer side is at most N pixels, so a live preview costs one projection of the reduced crop (cached by the
engine) and then one render at that size per change, with no full-resolution render or compose.

A preview edit is *the same edit on the reduced image*: image, mask, label maps, reference and reference mask are
area-averaged by one factor, and the region and the blend's shift (image pixels) are scaled by it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np


def reduced_size(h: int, w: int, n: int) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is at most ``n`` (unchanged when it already is)."""
    if max(h, w) <= n:
        return h, w
    f = n / max(h, w)
    return max(1, min(n, int(round(h * f)))), max(1, min(n, int(round(w * f))))


def reduce_array(a: np.ndarray | None, f: float) -> np.ndarray | None:
    """``a`` (H x W or H x W x C, any photo or mask dtype) area-averaged by the factor ``f`` <= 1; dtype and number
    of dimensions are kept (None stays None)."""
    if a is None:
        return None
    import cv2

    a = np.asarray(a)
    h, w = a.shape[:2]
    nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    if (nh, nw) == (h, w):
        return a
    src = a.astype(np.float32) if a.dtype == np.bool_ else a
    out = cv2.resize(np.ascontiguousarray(src), (nw, nh), interpolation=cv2.INTER_AREA)
    if a.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out.astype(a.dtype) if out.dtype != a.dtype else out


def reduce_inputs(n: int, image, mask, swap, blend, reference, reference_mask, region, reference_region=None):
    """The edit's inputs reduced for a preview of at most ``n`` px, as a dict of the keyword arguments of
    ``PhotoEditor.edit`` it changes (empty when the image already fits)."""
    h, w = np.shape(image)[:2]
    nh, nw = reduced_size(h, w, n)
    if (nh, nw) == (h, w):
        return {}
    f = min(nh / h, nw / w)
    out = {"image": reduce_array(image, f), "mask": reduce_array(mask, f),
           "reference": reduce_array(reference, f), "reference_mask": reduce_array(reference_mask, f)}
    if swap is not None and swap.labels:
        out["swap"] = replace(swap, labels=[(c, reduce_array(m, f), s) for c, m, s in swap.labels])
    if blend is not None:
        out["blend"] = replace(blend, shift=(int(round(blend.shift[0] * f)), int(round(blend.shift[1] * f))))
    for key, box in (("region", region), ("reference_region", reference_region)):
        if box is not None:
            x, y, bw, bh = (int(v) for v in box)
            out[key] = (int(round(x * f)), int(round(y * f)), max(1, int(round(bw * f))), max(1, int(round(bh * f))))
    return out
