"""``method="cv2"``: OpenCV's ``seamlessClone`` (NORMAL_CLONE) on uint8 colour channels, for comparison; it
solves its own discretisation on the mask's bounding box and is padded by reflection (it misbehaves at the
image border).
"""
from __future__ import annotations

import numpy as np


def blend_cv2(t: np.ndarray, s: np.ndarray, om: np.ndarray) -> np.ndarray:
    """cv2.seamlessClone on uint8 colour channels (1 or 3), returns float64 result of the same shape."""
    import cv2

    C = t.shape[2]
    if C == 1:
        t3 = np.repeat(t, 3, axis=2)
        s3 = np.repeat(s, 3, axis=2)
    elif C == 3:
        t3, s3 = t, s
    else:
        raise ValueError("method='cv2' needs 1 or 3 colour channels.")
    # OpenCV's solver misbehaves when the mask reaches the image border: pad by reflection.
    pad = 2
    t3 = cv2.copyMakeBorder(np.ascontiguousarray(t3), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    s3 = cv2.copyMakeBorder(np.ascontiguousarray(s3), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    m8 = np.zeros(t3.shape[:2], np.uint8)
    m8[pad:-pad, pad:-pad][om] = 255
    ys, xs = np.nonzero(m8)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    # seamlessClone centres the mask's bounding box of the source at ``p`` (and erodes
    # the mask argument in place: m8 is our own temporary).
    center = ((x0 + x1) // 2, (y0 + y1) // 2)
    out = cv2.seamlessClone(s3, t3, m8, center, cv2.NORMAL_CLONE)
    out = out[pad:-pad, pad:-pad].astype(np.float64)
    if C == 1:
        out = out[:, :, :1]
    return out
