"""The command line's files: photos in their own bit depth, masks, 8-bit PNGs of generated images, a feathered
elliptical selection; and the one error type of the command line (`CLIError`: one line, exit code 2).

Used by the commands, the demo and training's evaluation (which imports nothing else from the CLI)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


#: The most pixels an image file may announce before it is decoded (a 107 KB PNG can announce 30000 x 30000 and
#: take 8 GB): refused from the file's header.  The environment variable below changes it.
MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "NEURAL_COLLAGE_MAX_IMAGE_PIXELS"
#: what each output extension can hold (the photo's own depth is kept: a 16-bit photo is never silently cut)
OUTPUT_DEPTHS = {
    ".png": ("uint8", "uint16"), ".tif": ("uint8", "uint16", "float32"), ".tiff": ("uint8", "uint16", "float32"),
    ".jpg": ("uint8",), ".jpeg": ("uint8",), ".bmp": ("uint8",), ".webp": ("uint8",),
}
DEPTH_NAMES = {"uint8": "8-bit", "uint16": "16-bit", "float32": "32-bit float"}


def _short(text, limit: int = 80) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def max_image_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return MAX_IMAGE_PIXELS
    try:
        return max(1, int(float(value)))
    except ValueError:
        raise CLIError(f"{MAX_PIXELS_ENV}={_short(value)!r} is not a number of pixels") from None


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) an image file announces in its header, read without decoding it; None when Pillow does
    not know the format."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is judged below, against our own limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return tuple(int(v) for v in im.size)
    except Exception:  # noqa: BLE001 - Pillow raises many types for files it does not know
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def check_image_size(path: str, what: str = "") -> None:
    """Refuse an image file whose header announces more than max_image_pixels(), before decoding it."""
    size = image_size(path)
    limit = max_image_pixels()
    if size is not None and size[0] * size[1] > limit:
        w, h = size
        raise CLIError(f"{what}{path} is {w}x{h} px ({w * h / 1e6:.0f} MP), more than the {limit / 1e6:g} MP this "
                       f"command reads (set {MAX_PIXELS_ENV} to raise the limit)")


def read_photo(path: str) -> np.ndarray:
    """A photo as H x W (x C) in its own dtype: 8-bit, 16-bit (PNG/TIFF) or float (TIFF/EXR); RGB(A) order.
    Its size is checked from the file's header before it is decoded (see MAX_IMAGE_PIXELS)."""
    if not os.path.isfile(path):
        raise CLIError(f"cannot read {path}: no such file")
    check_image_size(path)
    # formats Pillow cannot read are bounded by OpenCV's own check, set to the same limit before its first use
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(max_image_pixels())
    import cv2

    try:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError) as exc:
        raise CLIError(f"cannot read {path}: {_short(exc)}") from None
    if img is None:
        raise CLIError(f"cannot read {path}: not an image file this build can decode (or larger than "
                       f"{max_image_pixels() / 1e6:g} MP)")
    if img.dtype.name not in DEPTH_NAMES or img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise CLIError(f"cannot read {path}: {img.dtype} images are not supported (use 8-bit, 16-bit or 32-bit "
                       "float)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _temp_beside(path: str) -> str:
    """A temporary file name in ``path``'s folder with its extension (the writers choose the format by it)."""
    p = Path(path)
    return str(p.with_name(f".{p.stem}.{os.getpid()}.partial{p.suffix}"))


def write_atomic(path: str, write) -> None:
    """``write(temporary_path)``, then rename it over ``path``: a failed write leaves nothing behind and never a
    half-written file at ``path``."""
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except CLIError:
        _remove(tmp)
        raise
    except (OSError, ValueError) as exc:
        _remove(tmp)
        raise CLIError(f"cannot write {path}: {_short(exc, 160)}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def write_photo(path: str, img: np.ndarray) -> None:
    import cv2

    out = img
    if img.ndim == 3 and img.shape[2] == 3:
        out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        out = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        try:
            ok = cv2.imwrite(tmp, out)
        except cv2.error as exc:
            raise CLIError(f"cannot write {path}: {_short(exc)}") from None
        if not ok:
            raise CLIError(f"cannot write {path}: unsupported format for a {img.dtype} image (use .png or .tif)")

    write_atomic(path, write)


def read_mask(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG (grayscale, or the alpha channel when it has one) as float32 H x W in [0, 1], resized to
    ``size`` = (H, W) with a warning when it differs.  Its size is checked before it is decoded."""
    from PIL import Image

    if not os.path.isfile(path):
        raise CLIError(f"cannot read mask {path}: no such file")
    check_image_size(path, "mask ")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # checked above against our own limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(path)
            im.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types
        raise CLIError(f"cannot read mask {path}: {_short(exc)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        m = np.asarray(im.convert("RGBA"))[:, :, 3].astype(np.float32) / 255.0
    elif im.mode in ("I;16", "I;16B", "I"):
        m = np.asarray(im).astype(np.float32) / 65535.0
    else:
        m = np.asarray(im.convert("L")).astype(np.float32) / 255.0
    if size is not None and m.shape != tuple(size):
        warnings.warn(f"mask {path} is {m.shape[1]}x{m.shape[0]}, resized to {size[1]}x{size[0]}", stacklevel=2)
        print(f"warning: mask {path} is {m.shape[1]}x{m.shape[0]}, resized to {size[1]}x{size[0]}", file=sys.stderr)
        m = np.asarray(Image.fromarray(m, mode="F").resize((size[1], size[0]), Image.BILINEAR))
    return np.clip(m, 0.0, 1.0)


def write_png(path: str, x) -> None:
    """[1, 3, H, W] in [-1, 1] -> an 8-bit image (PNG, or what the extension says), written atomically."""
    a = ((x[0].detach().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    write_photo(path, np.ascontiguousarray(a))


def check_output(path: str, extensions=tuple(OUTPUT_DEPTHS)) -> str:
    """Refuse, before any work, an output path that cannot be written: a folder, a missing or read-only folder,
    an extension no writer knows."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"cannot write {path}: it is a folder (give a file name such as {p / 'out.png'})")
    parent = p.resolve().parent
    if not parent.exists():
        raise CLIError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise CLIError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: folder {parent} is not writable")
    ext = p.suffix.lower()
    if ext not in extensions:
        raise CLIError(f"cannot write {path}: unknown image type {_short(ext or 'without extension', 20)!s} "
                       f"(use {', '.join(extensions)})")
    return path


def check_depth(path: str, dtype) -> None:
    """Refuse to write a photo into a format that cannot hold its bit depth (a 16-bit photo to .jpg would lose
    precision silently)."""
    ext = Path(path).suffix.lower()
    name = np.dtype(dtype).name
    allowed = OUTPUT_DEPTHS.get(ext, ("uint8",))
    if name not in allowed:
        fits = [e for e, d in OUTPUT_DEPTHS.items() if name in d]
        raise CLIError(f"cannot write a {DEPTH_NAMES.get(name, name)} photo to {ext or 'that file'}: it holds "
                       f"{' or '.join(DEPTH_NAMES[d] for d in allowed)} only and would lose precision "
                       f"(use {' or '.join(fits)})")


def ellipse_mask(h: int, w: int, cx: float, cy: float, rx: float, ry: float, feather: float = 6.0) -> np.ndarray:
    """A feathered elliptical selection, as GIMP makes one: 1 inside, a soft ramp of ``feather`` px at the edge."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)  # 1 on the ellipse
    edge = (1.0 - d) * min(rx, ry) / feather + 0.5
    return np.clip(edge, 0.0, 1.0).astype(np.float32)
