"""Crops: a region of interest of a full-resolution photo to and from the GAN (paper §4).

The generator works at a fixed square resolution R (e.g. 64 or 256).  Real-image
editing takes "a clip from a larger image": the user's region of interest is
enclosed in a square box with some context around it (``Crop.around``), the box is
cut out and resampled to R x R (``Crop.extract``), edited, and resampled back
into the photo (``Crop.paste_back`` / ``Crop.to_photo``), where Poisson blending
(engine/compose/poisson) hides the seam.

Conventions
-----------
* Regions are ``(x, y, w, h)`` in photo pixels (x = column, y = row); images are
  numpy arrays H x W, H x W x 1, H x W x 3 or H x W x 4 (alpha last; H x W x 2 is
  gray + alpha).  Alpha never goes through the GAN: ``engine.arrays.split_alpha`` separates it,
  ``extract`` returns the colour (or gray) channels only and ``paste_back`` keeps
  the photo's alpha.
* Crop values are float32 in [0, 1] for integer photos (uint8 / 255, uint16 /
  65535); float photos are passed as they are.  Converting back rounds and clips
  integer dtypes; float dtypes are not clipped.
* The square box may stick out of the photo when the photo is smaller than the
  square; that part is filled by edge replication (``Crop.pad``) on the way in
  and dropped on the way back.
* Resampling: area averaging (cv2.INTER_AREA) when shrinking, bicubic when
  enlarging (clipped to [0, 1] for integer photos), nothing when the box side
  equals the GAN resolution (then extract -> paste_back is lossless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.arrays import cast, plane, split_alpha

__all__ = [
    "Crop",
    "CropError",
    "from_unit_float",
    "region_from_mask",
    "to_unit_float",
]


class CropError(ValueError):
    """A region/crop the GAN cannot work with; the message is one line, meant for the user."""


# --------------------------------------------------------------------------- value helpers


def _int_max(dtype) -> int | None:
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255
    if dtype == np.uint16:
        return 65535
    if dtype == np.bool_ or np.issubdtype(dtype, np.floating):
        return None
    raise CropError(f"Unsupported image type {dtype}: use 8-bit, 16-bit or floating-point images.")


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """float32 copy of ``image`` in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1, float as is."""
    image = np.asarray(image)
    top = _int_max(image.dtype)
    if top is None:
        return image.astype(np.float32)
    return image.astype(np.float32) * np.float32(1.0 / top)


def from_unit_float(x: np.ndarray, dtype) -> np.ndarray:
    """Inverse of :func:`to_unit_float`: rounds and clips for uint8/uint16, plain cast for floats."""
    dtype = np.dtype(dtype)
    top = _int_max(dtype)
    x = np.asarray(x)
    if dtype == np.bool_:
        return x >= 0.5
    if top is None:
        return x.astype(dtype)
    return cast(x.astype(np.float64) * top, dtype)


def _split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """engine.arrays.split_alpha after checking the channels: H x W or H x W x C with C in 1..4."""
    image = np.asarray(image)
    if image.ndim != 2 and (image.ndim != 3 or not 1 <= image.shape[2] <= 4):
        raise CropError(f"Unsupported image shape {image.shape}: expected H x W or H x W x C with C in 1..4.")
    return split_alpha(image)


def region_from_mask(mask: np.ndarray, threshold: float = 0) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of ``mask > threshold`` (mask H x W or H x W x 1)."""
    mask = plane(mask)
    if mask.ndim != 2:
        raise CropError(f"The mask has shape {mask.shape}: expected H x W.")
    sel = mask > threshold
    rows = np.flatnonzero(sel.any(axis=1))
    if rows.size == 0:
        raise CropError("The selection/mask is empty: select the region to edit.")
    cols = np.flatnonzero(sel.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return x0, y0, x1 - x0, y1 - y0


def _resize(img: np.ndarray, size: int, clip: bool) -> np.ndarray:
    """Square float32 image (s x s x C) -> size x size x C."""
    import cv2

    s = img.shape[0]
    C = img.shape[2]
    if s == size:
        return np.ascontiguousarray(img, dtype=np.float32)
    interp = cv2.INTER_AREA if size < s else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    out = out.reshape(size, size, C)
    if clip and interp == cv2.INTER_CUBIC:
        np.clip(out, 0.0, 1.0, out=out)
    return out


# --------------------------------------------------------------------------- the crop


@dataclass
class Crop:
    """A square box (x0, y0, side) in photo coordinates and how it meets the photo.

    ``inside`` is the part of the box within the photo as (x, y, w, h); ``pad`` is
    the padding (top, bottom, left, right) in photo pixels that fills the rest.
    ``dtype`` is the photo's dtype when known (``to_photo`` converts to it).
    """

    x0: int
    y0: int
    side: int
    image_shape: tuple[int, int]
    dtype: np.dtype | None = None
    inside: tuple[int, int, int, int] = field(init=False)
    pad: tuple[int, int, int, int] = field(init=False)

    def __post_init__(self):
        H, W = (int(v) for v in self.image_shape[:2])
        self.image_shape = (H, W)
        if self.side < 1:
            raise CropError("The crop is empty.")
        ix0, iy0 = max(self.x0, 0), max(self.y0, 0)
        ix1, iy1 = min(self.x0 + self.side, W), min(self.y0 + self.side, H)
        if ix1 <= ix0 or iy1 <= iy0:
            raise CropError(f"The crop ({self.x0}, {self.y0}, {self.side}) lies outside the {W}x{H} image.")
        self.inside = (ix0, iy0, ix1 - ix0, iy1 - iy0)
        self.pad = (iy0 - self.y0, self.y0 + self.side - iy1, ix0 - self.x0, self.x0 + self.side - ix1)
        if self.dtype is not None:
            self.dtype = np.dtype(self.dtype)

    # ---- construction
    @classmethod
    def around(
        cls,
        region: tuple[int, int, int, int],
        image_shape: tuple[int, ...],
        margin: float = 0.25,
        min_size: int = 16,
        dtype=None,
        multiple: int = 1,
        max_context: int | None = None,
    ) -> Crop:
        """Square box centred on ``region`` with ``margin`` of context on each side.

        side = max(w, h) * (1 + 2 * margin), at least the region itself; with ``max_context`` (px) the context
        on each side is at most that many pixels (``max(w, h) + 2 * min(margin * max(w, h), max_context)``).  The box is
        shifted to stay inside the photo when it fits, otherwise it covers the whole
        photo in that direction and the rest is padding.  ``multiple``: the side is rounded up to a multiple of
        it (a fully convolutional generator's latent grid, so the crop renders at its own size).  Raises
        CropError for regions outside the image or smaller than ``min_size`` px on their longest side.
        """
        H, W = (int(v) for v in image_shape[:2])
        x, y, w, h = (int(v) for v in region)
        if w <= 0 or h <= 0:
            raise CropError("The selection/mask is empty: select the region to edit.")
        # the part of the region inside the photo
        cx0, cy0, cx1, cy1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if cx1 <= cx0 or cy1 <= cy0:
            raise CropError(f"The region ({x}, {y}, {w}, {h}) lies outside the {W}x{H} image.")
        x, y, w, h = cx0, cy0, cx1 - cx0, cy1 - cy0
        if max(w, h) < min_size:
            raise CropError(
                f"The region is {w}x{h} px; Neural Collage needs at least {min_size} px: select a larger region."
            )
        if margin < 0:
            raise CropError("The margin around the region cannot be negative.")
        longest = max(w, h)
        context = longest * margin if max_context is None else min(longest * margin, max(0, int(max_context)))
        side = max(math.floor(longest + 2 * context + 0.5), longest)
        side = -(-side // max(1, int(multiple))) * max(1, int(multiple))  # a whole number of latent cells
        x0 = cls._place(x, w, side, W)
        y0 = cls._place(y, h, side, H)
        return cls(x0, y0, side, (H, W), dtype)

    @staticmethod
    def _place(start: int, length: int, side: int, limit: int) -> int:
        """Top/left coordinate of a box of ``side`` centred on [start, start+length) within [0, limit)."""
        pos = math.floor(start + length / 2 - side / 2 + 0.5)
        if side <= limit:
            return min(max(pos, 0), limit - side)
        # bigger than the photo: cover it completely, keep the region as centred as possible
        return min(max(pos, limit - side), 0)

    @classmethod
    def for_mask(
        cls, mask: np.ndarray, margin: float = 0.25, min_size: int = 16, threshold: float = 0, dtype=None
    ) -> Crop:
        """``Crop.around(region_from_mask(mask), mask.shape, ...)``."""
        return cls.around(region_from_mask(mask, threshold), np.asarray(mask).shape, margin, min_size, dtype)

    # ---- geometry helpers
    @property
    def box(self) -> tuple[int, int, int]:
        return self.x0, self.y0, self.side

    @property
    def padded(self) -> bool:
        return any(self.pad)

    def _check_photo(self, image: np.ndarray) -> None:
        if tuple(image.shape[:2]) != self.image_shape:
            raise CropError(
                f"The image is {image.shape[1]}x{image.shape[0]} but the crop was made for a "
                f"{self.image_shape[1]}x{self.image_shape[0]} image."
            )

    # ---- photo -> crop
    def extract(self, image: np.ndarray, size: int) -> np.ndarray:
        """The box of ``image`` resampled to float32 [size, size, C] in [0, 1] (C = colour channels).

        Alpha is dropped (see :func:`engine.arrays.split_alpha`); H x W photos give C = 1.
        """
        image = np.asarray(image)
        self._check_photo(image)
        if size < 1:
            raise CropError("The GAN resolution must be positive.")
        color, _alpha = _split_alpha(image)
        if self.dtype is None:
            self.dtype = image.dtype
        is_int = _int_max(image.dtype) is not None
        if color.ndim == 2:
            color = color[:, :, None]
        x, y, w, h = self.inside
        part = to_unit_float(color[y : y + h, x : x + w])
        patch = self._cut_part(part)
        return _resize(patch, int(size), clip=is_int)

    def _cut_part(self, part: np.ndarray) -> np.ndarray:
        """The part of the box inside the photo (h x w x C float32), padded by edge replication."""
        import cv2

        if not self.padded:
            return np.ascontiguousarray(part)
        top, bottom, left, right = self.pad
        C = part.shape[2]
        out = cv2.copyMakeBorder(np.ascontiguousarray(part), top, bottom, left, right, cv2.BORDER_REPLICATE)
        return out.reshape(self.side, self.side, C)

    def mask_to_crop(self, mask: np.ndarray, size: int) -> np.ndarray:
        """A photo-space mask (H x W; bool, uint8, uint16 or float in [0, 1]) as float32 [size, size] in [0, 1].

        Same box, edge-replication padding and resampling as :meth:`extract`.
        """
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise CropError(f"The mask has shape {mask.shape}: expected H x W.")
        self._check_photo(mask)
        x, y, w, h = self.inside
        part = to_unit_float(mask[y : y + h, x : x + w])
        if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
            part = np.clip(part, 0.0, 1.0)
        out = _resize(self._cut_part(part[:, :, None]), int(size), clip=True)
        return out[:, :, 0]

    # ---- crop -> photo
    def to_photo(self, edited: np.ndarray, dtype=None) -> tuple[np.ndarray, tuple[int, int]]:
        """(patch, (x, y)): ``edited`` resampled to the box, padding dropped, in the photo's dtype.

        ``edited`` is float [size, size, C] (or [size, size]) in [0, 1].  The patch
        covers ``inside`` (its top-left corner is (x, y) in the photo) and has the
        colour channels only.  ``dtype`` defaults to the photo dtype seen by
        :meth:`extract` (or given to ``Crop.around``).
        """
        dtype = np.dtype(dtype) if dtype is not None else self.dtype
        if dtype is None:
            raise CropError("Unknown photo type: pass dtype= or call extract() first.")
        edited = np.asarray(edited, dtype=np.float32)
        squeeze = edited.ndim == 2
        if squeeze:
            edited = edited[:, :, None]
        if edited.ndim != 3 or edited.shape[0] != edited.shape[1]:
            raise CropError(f"The edited crop has shape {edited.shape}: expected a square [size, size, C].")
        is_int = _int_max(dtype) is not None
        big = _resize(edited, self.side, clip=is_int)
        top, _bottom, left, _right = self.pad
        x, y, w, h = self.inside
        patch = big[top : top + h, left : left + w]
        out = from_unit_float(patch, dtype)
        return (out[:, :, 0] if squeeze else out), (x, y)

    def paste_back(self, photo: np.ndarray, edited: np.ndarray) -> np.ndarray:
        """A copy of ``photo`` with the edited crop resampled into the box (alpha kept from the photo)."""
        photo = np.asarray(photo)
        self._check_photo(photo)
        color, _alpha = _split_alpha(photo)
        ncol = 1 if color.ndim == 2 else color.shape[2]
        edited = np.asarray(edited)
        ech = 1 if edited.ndim == 2 else edited.shape[2]
        if ech != ncol:
            raise CropError(f"The edited crop has {ech} channels but the photo has {ncol} colour channels.")
        patch, (x, y) = self.to_photo(edited, photo.dtype)
        out = photo.copy()
        h, w = patch.shape[:2]
        if photo.ndim == 2:
            out[y : y + h, x : x + w] = patch if patch.ndim == 2 else patch[:, :, 0]
        else:
            out[y : y + h, x : x + w, :ncol] = patch.reshape(h, w, ncol)
        return out
