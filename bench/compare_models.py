"""Side by side: the same label swaps on real photos through two (or more) default-model weight folders.

    python bench/compare_models.py engine/weights/default runs/v2s/export --names v1 v2s --out docs/x.png

Each photo of bench/photo_edit.py (never in the training data) is mirrored to 1280 px and gets a 512 px
elliptical selection swapped to its target class at the photo's own resolution (calibrated mode, the class of
the photo given); the picture shows, per case, the photo's 640 px around the selection and each model's edit
there, at 1:1 (``--shrink 2``: half size).  Also prints each edit's sharpness (bench/photo_edit.py's measure) and
the peakiness of the edit's inside (engine/train/evaluate.peakiness: a regular pattern scores hundreds; real
photos 10-40).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: import the repository's packages, not bench/ siblings
    sys.path[:] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] + [
        p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

import numpy as np


def edits(folder: str, cases, size: int, sel: int, mode: str):
    """[(edited photo, sharpness, peakiness of the inside)] for each case, through the weights in ``folder``."""
    from pathlib import Path

    from bench import photo_edit as pe
    from engine.edit.pipeline import PhotoEditor, SwapSpec
    from engine.models.default import load_default
    from engine.train.evaluate import peakiness

    bundle = load_default(path=Path(folder))
    ed = PhotoEditor(bundle)
    names = bundle.class_names
    out = []
    for _name, img, src, tgt in cases:
        photo = pe.mirror_tile(img, size)
        mask = pe.selection(size, sel)
        res = ed.edit(photo, mask, swap=SwapSpec(names.index(tgt)), source_class=names.index(src), mode=mode)
        sharp, _ = pe.sharpness(res.image, photo, pe.inner_region(mask, sel))
        out.append((res.image, sharp, peakiness(centre_luma(res.image, sel))))
    return out


def centre_luma(img: np.ndarray, sel: int) -> np.ndarray:
    """Luminance in [0, 1] of the sel/2 px square in the middle of ``img`` (inside the selection)."""
    c, h = img.shape[0] // 2, sel // 4
    return img[c - h:c + h, c - h:c + h].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="default-model weight folders (config.json + safetensors)")
    ap.add_argument("--names", nargs="+", help="one label per folder")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--mode", default="calibrated", choices=("fast", "calibrated"))
    ap.add_argument("--shrink", type=int, default=2, help="shown at 1/N size (default 2)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    import torch
    from PIL import Image, ImageDraw

    from bench import photo_edit as pe

    if a.threads:
        torch.set_num_threads(a.threads)
    names = a.names or [os.path.basename(os.path.normpath(f)) for f in a.folders]
    cases, source = pe.photos()
    size, sel, view = 1280, 512, 640
    from engine.train.evaluate import peakiness

    tiles = [pe.mirror_tile(img, size) for _n, img, _s, _t in cases]
    rows = [("photo", [(t, None, peakiness(centre_luma(t, sel))) for t in tiles])]
    for folder, name in zip(a.folders, names):
        rows.append((name, edits(folder, cases, size, sel, a.mode)))
    c0 = size // 2 - view // 2
    tile = view // a.shrink
    label_h = 18
    sheet = Image.new("RGB", (tile * len(cases), (tile + label_h) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    print(f"photos: {source}; {a.mode} label swaps of a {sel} px selection on {size} px photos")
    for r, (name, items) in enumerate(rows):
        for c, (img, sharp, peak) in enumerate(items):
            crop = Image.fromarray(img[c0:c0 + view, c0:c0 + view]).resize((tile, tile), Image.LANCZOS)
            y = r * (tile + label_h)
            sheet.paste(crop, (c * tile, y + label_h))
            _n, _img, src, tgt = cases[c]
            text = (f"{src} photo, peak {peak:.0f}" if sharp is None
                    else f"{name}: -> {tgt}, sharp {sharp:.2f}, peak {peak:.0f}")
            draw.text((c * tile + 4, y + 3), text, fill="black")
            print(f"{name:>10} {cases[c][0]:>16} -> {tgt:<6} " + ("" if sharp is None else f"sharpness {sharp:.2f} ")
                  + f"peakiness {peak:.0f}")
    sheet.save(a.out, optimize=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
