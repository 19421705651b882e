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


def read_photo(path: str) -> np.ndarray:
    """A photo as H x W (x C) in its own dtype: 8-bit, 16-bit (PNG/TIFF) or float (TIFF/EXR); RGB(A) order."""
    import cv2

    if not os.path.isfile(path):
        raise CLIError(f"cannot read {path}: no such file")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CLIError(f"cannot read {path}: not an image file this build can decode")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def write_photo(path: str, img: np.ndarray) -> None:
    import cv2

    out = img
    if img.ndim == 3 and img.shape[2] == 3:
        out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        out = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, out):
        raise CLIError(f"cannot write {path}: unsupported format for a {img.dtype} image (use .png or .tif)")


def read_mask(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG (grayscale, or the alpha channel when it has one) as float32 H x W in [0, 1], resized to
    ``size`` = (H, W) with a warning when it differs."""
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise CLIError(f"cannot read mask {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types
        raise CLIError(f"cannot read mask {path}: {exc}") from None
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
    """[1, 3, H, W] in [-1, 1] -> 8-bit PNG."""
    from PIL import Image

    a = ((x[0].detach().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def check_output(path: str) -> str:
    parent = Path(path).resolve().parent
    if not parent.exists():
        raise CLIError(f"cannot write {path}: folder {parent} does not exist")
    return path


def ellipse_mask(h: int, w: int, cx: float, cy: float, rx: float, ry: float, feather: float = 6.0) -> np.ndarray:
    """A feathered elliptical selection, as GIMP makes one: 1 inside, a soft ramp of ``feather`` px at the edge."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)  # 1 on the ellipse
    edge = (1.0 - d) * min(rx, ry) / feather + 0.5
    return np.clip(edge, 0.0, 1.0).astype(np.float32)
