"""The last stage of a photo edit: the edited crop back into the photo inside the selection."""
from __future__ import annotations

import numpy as np

from engine.arrays import cast, split_alpha
from engine.compose.poisson import place_patch, poisson_blend


def compose(image: np.ndarray, patch: np.ndarray, xy: tuple[int, int], mask: np.ndarray,
            poisson: bool = True) -> np.ndarray:
    """The photo with ``patch`` (its colour channels in the photo's dtype, top-left corner at ``xy``) blended in
    inside ``mask`` (H x W weights in [0, 1]): Poisson blending, or a soft paste; the photo's alpha is kept, and
    outside the mask the photo comes back byte for byte."""
    color, alpha = split_alpha(image)
    squeeze = color.ndim == 2
    col = color[:, :, None] if squeeze else color
    patch = patch.reshape(patch.shape[0], patch.shape[1], -1)
    src = place_patch(col, patch, xy)
    if poisson:
        out = poisson_blend(col, src, mask)
    else:
        mm = mask[:, :, None]
        outf = mm * src.astype(np.float64) + (1 - mm) * col.astype(np.float64)
        out = np.where(mm > 0, cast(outf, image.dtype), col)
    if squeeze:
        out = out[:, :, 0]
    if alpha is not None:
        out = np.concatenate([out.reshape(*out.shape[:2], -1), alpha.reshape(*alpha.shape[:2], 1)], axis=2)
    return out.astype(image.dtype, copy=False)
