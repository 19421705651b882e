"""Pixel arrays on the engine side, defined once: the photo dtypes the engine edits, the bridge's dtype names as
numpy dtypes, mask values as blend weights, float -> photo dtype casts, and the alpha channel split off.
numpy only; used by the photo pipeline (engine/edit), the compose stage (engine/compose) and the server."""
from __future__ import annotations

import numpy as np

PHOTO_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)  # what a photo, crop or blend may be
WIRE_DTYPES = {"uint8": "|u1", "uint16": "<u2", "float32": "<f4", "int64": "<i8", "float64": "<f8"}  # bridge names


def mask_weights(mask: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A mask's values as blend weights in [0, 1] of ``dtype``: bool as 0/1, uint8 / 255, uint16 / 65535, any
    other type clipped to [0, 1] (soft, feathered selections keep their ramps)."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return mask.astype(dtype)
    if mask.dtype == np.uint8:
        return mask.astype(dtype) / 255.0
    if mask.dtype == np.uint16:
        return mask.astype(dtype) / 65535.0
    return np.clip(mask.astype(dtype), 0.0, 1.0)


def cast(x: np.ndarray, dtype) -> np.ndarray:
    """Float values in the range of ``dtype`` -> ``dtype``: integers rounded (half to even) and clipped to the
    type's range, floats cast as they are."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha or None): H x W x 4 -> (H x W x 3, H x W); H x W x 2 -> (H x W x 1, H x W).

    H x W, H x W x 1 and H x W x 3 have no alpha and are returned as they are (callers check the shape first).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        return image[:, :, :-1], image[:, :, -1]
    return image, None
