"""Pixel bookkeeping for the plug-in in plain Python (no GIMP, no numpy): babl formats, boxes, masks.

Coordinates: boxes are (x, y, w, h) in *image* coordinates unless a name says otherwise. Layer buffers are in
layer coordinates (image coordinates minus the layer's offsets); the selection and channels are in image
coordinates.
"""
from __future__ import annotations

import re

# The plug-in's one sample-type table: precision key -> (babl type suffix, bridge dtype, bytes per sample)
_TYPES = {
    "u8": ("u8", "uint8", 1),
    "u16": ("u16", "uint16", 2),
    "float": ("float", "float32", 4),
}
_BY_DTYPE = {dtype: (suffix, size) for suffix, dtype, size in _TYPES.values()}
# channel count -> perceptual babl colour model
_MODELS = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}


def precision_key(precision_name: str) -> str:
    """'u8', 'u16' or 'float' for a Gimp.Precision value name or nick (e.g. 'GIMP_PRECISION_U16_NON_LINEAR',
    'u16-perceptual'). 32-bit integer, half and double images travel as float32."""
    name = precision_name.lower().replace("gimp_precision_", "")
    if name.startswith("u8"):
        return "u8"
    if name.startswith("u16"):
        return "u16"
    return "float"


class PixelFormat:
    """How one drawable's pixels are read, sent and written back."""

    def __init__(self, gray: bool, alpha: bool, key: str):
        if key not in _TYPES:
            raise ValueError(f"unknown precision {key!r}")
        suffix, dtype, itemsize = _TYPES[key]
        self.gray = gray
        self.alpha = alpha
        self.key = key
        self.channels = (1 if gray else 3) + (1 if alpha else 0)
        self.babl = f"{_MODELS[self.channels]} {suffix}"
        self.dtype = dtype
        self.itemsize = itemsize

    @property
    def bpp(self) -> int:
        return self.channels * self.itemsize

    def __repr__(self) -> str:
        return f"PixelFormat({self.babl!r})"


def itemsize(dtype: str) -> int:
    """Bytes per sample of an array dtype the plug-in reads or writes."""
    if dtype not in _BY_DTYPE:
        raise ValueError(f"unsupported array dtype {dtype!r}")
    return _BY_DTYPE[dtype][1]


def babl_for_array(dtype: str, channels: int) -> str:
    """The perceptual babl format of an array the engine sent back (1-4 channels)."""
    if dtype not in _BY_DTYPE:
        raise ValueError(f"unsupported array dtype {dtype!r}")
    if channels not in _MODELS:
        raise ValueError(f"unsupported channel count {channels!r}")
    return f"{_MODELS[channels]} {_BY_DTYPE[dtype][0]}"


# ---- boxes -------------------------------------------------------------------------------------------------

def box_from_bounds(x1: int, y1: int, x2: int, y2: int) -> tuple:
    return (x1, y1, x2 - x1, y2 - y1)


def intersect(a: tuple, b: tuple):
    """Intersection of two (x, y, w, h) boxes, or None when they do not overlap."""
    x1 = max(a[0], b[0])
    y1 = max(a[1], b[1])
    x2 = min(a[0] + a[2], b[0] + b[2])
    y2 = min(a[1] + a[3], b[1] + b[3])
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2 - x1, y2 - y1)


def union(a: tuple, b: tuple) -> tuple:
    x1 = min(a[0], b[0])
    y1 = min(a[1], b[1])
    x2 = max(a[0] + a[2], b[0] + b[2])
    y2 = max(a[1] + a[3], b[1] + b[3])
    return (x1, y1, x2 - x1, y2 - y1)


def grow(box: tuple, margin: float) -> tuple:
    """Grow a box by ``margin`` times its width (height) on the left and right (top and bottom),
    rounding outwards."""
    x, y, w, h = box
    mx = int(-(-w * margin // 1))  # ceil for non-negative values
    my = int(-(-h * margin // 1))
    return (x - mx, y - my, w + 2 * mx, h + 2 * my)


def centre(box: tuple) -> tuple:
    """Centre of a box, in (possibly half-) pixels."""
    return (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)


def crop_box(region: tuple, layer_box: tuple, margin: float):
    """The crop that travels to the engine: ``region`` grown by ``margin`` per side, clipped to the layer's
    extent (``layer_box`` = (offset_x, offset_y, width, height)). None when the region misses the layer."""
    if intersect(region, layer_box) is None:
        return None
    return intersect(grow(region, margin), layer_box)


def to_layer(box: tuple, offsets: tuple) -> tuple:
    """An image-space box in the coordinates of a drawable with these offsets."""
    return (box[0] - offsets[0], box[1] - offsets[1], box[2], box[3])


# ---- masks (u8 bytes, one byte per pixel, row-major) ------------------------------------------------------

def mask_bbox(data: bytes, width: int, height: int):
    """(x, y, w, h) of the non-zero pixels of a u8 mask, or None when it is all zero."""
    if len(data) != width * height:
        raise ValueError(f"mask has {len(data)} bytes, expected {width * height}")
    if not data.strip(b"\x00"):
        return None
    y1 = None
    y2 = 0
    x1 = width
    x2 = 0
    for y in range(height):
        row = data[y * width:(y + 1) * width]
        stripped = row.lstrip(b"\x00")
        if not stripped:
            continue
        if y1 is None:
            y1 = y
        y2 = y + 1
        left = width - len(stripped)
        right = len(row.rstrip(b"\x00"))
        x1 = min(x1, left)
        x2 = max(x2, right)
    return (x1, y1, x2 - x1, y2 - y1)


def full_mask(width: int, height: int) -> bytes:
    return b"\xff" * (width * height)


def paste_mask(width: int, height: int, inner: tuple, value: int = 255) -> bytes:
    """A width x height u8 mask: ``value`` inside the box ``inner`` (mask coordinates), 0 elsewhere."""
    out = bytearray(width * height)
    box = intersect((0, 0, width, height), inner)
    if box is None:
        return bytes(out)
    x, y, w, h = box
    run = bytes([value]) * w
    for row in range(y, y + h):
        out[row * width + x:row * width + x + w] = run
    return bytes(out)


def max_masks(a: bytes, b: bytes) -> bytes:
    """Pixel-wise maximum (union) of two u8 masks."""
    if len(a) != len(b):
        raise ValueError("masks differ in size")
    return bytes(map(max, a, b))


_RUN = re.compile(rb"[^\x00]+")


def mask_rects(mask: bytes, width: int, height: int) -> list:
    """Rectangles (x, y, w, h) covering exactly the non-zero pixels of a u8 mask: runs of each row, with
    consecutive rows of identical runs merged (a full mask gives one rectangle)."""
    if len(mask) != width * height:
        raise ValueError(f"mask has {len(mask)} bytes, expected {width * height}")
    rects = []
    open_rects = {}  # (x0, x1) -> index in rects, for runs continuing from the previous row
    for y in range(height):
        row = mask[y * width:(y + 1) * width]
        spans = [(m.start(), m.end()) for m in _RUN.finditer(row)]
        still_open = {}
        for span in spans:
            i = open_rects.get(span)
            if i is not None:
                x, y0, w, h = rects[i]
                rects[i] = (x, y0, w, h + 1)
            else:
                i = len(rects)
                rects.append((span[0], y, span[1] - span[0], 1))
            still_open[span] = i
        open_rects = still_open
    return rects


def masked_chunks(data: bytes, mask: bytes, width: int, height: int, bpp: int) -> list:
    """[((x, y, w, h), bytes)]: the pixels of ``data`` (row-major, ``bpp`` bytes each, ``width`` x ``height``)
    under the non-zero pixels of the u8 ``mask``, one chunk per rectangle of :func:`mask_rects`."""
    if len(data) != width * height * bpp:
        raise ValueError(f"pixel data has {len(data)} bytes, expected {width * height * bpp}")
    stride = width * bpp
    out = []
    for x, y, w, h in mask_rects(mask, width, height):
        rows = [data[(y + r) * stride + x * bpp:(y + r) * stride + (x + w) * bpp] for r in range(h)]
        out.append(((x, y, w, h), rows[0] if h == 1 else b"".join(rows)))
    return out


def alpha_of(gray_alpha: bytes) -> bytes:
    """The alpha bytes of 'Y'A u8' pixels."""
    return gray_alpha[1::2]


def multiply_masks(a: bytes, b: bytes) -> bytes:
    """Pixel-wise product of two u8 masks (255 * 255 -> 255)."""
    if len(a) != len(b):
        raise ValueError("masks differ in size")
    return bytes((x * y + 127) // 255 for x, y in zip(a, b))


_LABEL_RE = re.compile(r"^\s*label\s*:\s*(.+?)\s*$", re.IGNORECASE)


def label_class(channel_name: str):
    """The class named by a channel called 'label: <class>' (any case, spaces optional), else None."""
    m = _LABEL_RE.match(channel_name or "")
    return m.group(1) if m else None


def crop_digest(*parts) -> str:
    """A short content digest for cache keys (bytes and str parts)."""
    import hashlib

    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, (bytes, bytearray)) else str(p).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
