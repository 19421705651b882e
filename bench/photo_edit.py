"""Benchmark: photo edits at the photo's own resolution (issue 17) - time to the fast and the calibrated result,
the share of each stage, time against selected pixels, and sharpness of the edit against the photo.

    python bench/photo_edit.py                  # 1280 px photos, selections 256/512/1024, 5 textured targets;
                                                # a 4096 px photo, selections 512/1024/2048 (time against pixels)
    python bench/photo_edit.py --quick          # 1280 px, selections 256/512, 2 targets
    python bench/photo_edit.py --save-png DIR   # also write photo | fast | calibrated side by side (1:1 centre)

Photos: real texture photos, never seen in training - scikit-image's grass/gravel/brick samples and two
ufoai-textures photos (rocks_w_1, bark_b_1) when those are installed, else the photos shipped in
engine/data/demo - mirrored around themselves to 1280 x 1280 (and 4096 x 4096) px, so every pixel is a real one at
its own scale.  Each case is a label swap of an elliptical selection (feathered 4 px) to a textured class
(gravel, rock, brick, bark, grass), class of the photo given (no class search is timed), run through
``PhotoEditor.edit`` twice: ``mode="fast"`` (the encoder's latent only) and ``mode="calibrated"`` (the engine's
default steps).  Measured per case:

* seconds to each result (wall clock, and the CPU seconds of all threads: on a shared machine the wall clock
  grows with the other processes' load, the CPU time much less), and the share of the stages (crop = cutting
  the crop out and converting it, projection, render, compose = Poisson blending back; I/O to and from GIMP is
  bench/bridge.py's);
* time against selected pixels: (seconds per selected pixel at the largest selection) / (at 512 px); goal <= 1;
* sharpness: the variance of the Laplacian of luminance inside the edit (the selection eroded by 1/16 of its
  size) over the same inside the photo's region before the edit; goal >= 0.3 per case.  Nothing sharpens,
  adds noise or copies photo pixels: the detail is the generator's, rendered at the crop's size;
* pixels outside the selection byte-identical (8-bit);
* the anchor, Resynthesizer in GIMP 3.2, only where a GIMP 3.2 root with the plug-in is found (else the row
  says why it was skipped).

``run(quick=False) -> list[dict]`` returns the rows for bench/run_all.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if __package__ in (None, ""):  # run as a script: import the repository's packages, not bench/ siblings
    sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

import numpy as np

UFOAI_PK3 = "/usr/share/games/ufoai/base/0textures.pk3"
GIMP32_ROOT = "/var/cache/neural-collage/gimp32-root"
TARGETS = ("gravel", "rock", "brick", "bark", "grass")
SHARPNESS_GOAL = 0.3
FAST_GOAL_S = 2.0  # at 512 px
CALIBRATED_GOAL_S = 10.0  # at 512 px


# -- photos -------------------------------------------------------------------------------------------------------
def _pk3(name: str) -> np.ndarray | None:
    import cv2

    try:
        with zipfile.ZipFile(UFOAI_PK3) as z:
            a = cv2.imdecode(np.frombuffer(z.read(name), np.uint8), cv2.IMREAD_COLOR)
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return None if a is None else cv2.cvtColor(a, cv2.COLOR_BGR2RGB)


def photos() -> tuple[list[tuple[str, np.ndarray, str, str]], str]:
    """[(name, RGB uint8 photo, its class, the swap's target class)] - one case per target - and where they are
    from.  None of these files is in the default model's training data."""
    try:
        import skimage.data as d

        gray = {n: np.repeat(getattr(d, n)()[:, :, None], 3, 2) for n in ("grass", "gravel", "brick")}
    except Exception:  # noqa: BLE001 - scikit-image is optional
        gray = None
    rocks, bark = _pk3("textures/tex_ctp1/rocks_w_1.jpg"), _pk3("textures/tex_ctp1/bark_b_1.jpg")
    if gray is not None and rocks is not None and bark is not None:
        return [("skimage grass", gray["grass"], "grass", "gravel"),
                ("skimage gravel", gray["gravel"], "gravel", "rock"),
                ("ufoai rocks_w_1", rocks, "rock", "brick"),
                ("skimage brick", gray["brick"], "brick", "bark"),
                ("ufoai bark_b_1", bark, "bark", "grass")], "scikit-image samples + ufoai-textures"
    from engine.cli.demo import DEMO_DIR
    from engine.cli.files import read_photo

    demo = {n: read_photo(str(DEMO_DIR / f"{n}.jpg")) for n in ("meadow", "pebbles", "brickwall")}
    return [("demo meadow", demo["meadow"], "grass", "gravel"),
            ("demo pebbles", demo["pebbles"], "gravel", "rock"),
            ("demo meadow", demo["meadow"], "grass", "brick"),
            ("demo brickwall", demo["brickwall"], "brick", "bark"),
            ("demo pebbles", demo["pebbles"], "gravel", "grass")], \
        "engine/data/demo photos (install scikit-image and ufoai-textures for the unseen photos)"


def mirror_tile(img: np.ndarray, size: int) -> np.ndarray:
    """size x size of real pixels at their own scale: the photo mirrored around itself as often as needed."""
    h, w = img.shape[:2]
    row = np.concatenate([img if i % 2 == 0 else img[:, ::-1] for i in range(-(-size // w) + 1)], axis=1)
    big = np.concatenate([row if j % 2 == 0 else row[::-1] for j in range(-(-size // h) + 1)], axis=0)
    return np.ascontiguousarray(big[:size, :size])


# -- measures -----------------------------------------------------------------------------------------------------
def laplacian_variance(img: np.ndarray, where: np.ndarray) -> float:
    """Variance of the Laplacian of the luminance (Rec. 601) of an 8-bit RGB image over the pixels ``where``."""
    import cv2

    luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return float(cv2.Laplacian(luma, cv2.CV_32F, ksize=1)[where].var())


def selection(size: int, sel: int) -> np.ndarray:
    """An elliptical selection sel x 0.8 sel px in the middle of a size x size photo, feathered 4 px."""
    from engine.cli.files import ellipse_mask

    return ellipse_mask(size, size, size // 2, size // 2, sel // 2, int(sel * 0.4), feather=4)


def one_case(editor, photo: np.ndarray, source: int, target: int, sel: int, mode: str) -> dict:
    import cv2

    from engine.edit.pipeline import SwapSpec

    size = photo.shape[0]
    mask = selection(size, sel)
    t0, c0 = time.perf_counter(), time.process_time()
    res = editor.edit(photo, mask, swap=SwapSpec(target), source_class=source, mode=mode)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    inner = cv2.erode((mask >= 1).astype(np.uint8), np.ones((max(3, sel // 16),) * 2, np.uint8)) > 0
    sharp = laplacian_variance(res.image, inner) / max(laplacian_variance(photo, inner), 1e-12)
    return {"seconds": seconds, "cpu_seconds": cpu, "stages": dict(res.timings), "sharpness": sharp, "loss": res.loss,
            "outside_identical": bool(np.array_equal(res.image[mask == 0], photo[mask == 0])),
            "crop": res.crop_size, "render": res.render_size, "resampled": res.resampled, "image": res.image,
            "mask": mask}


def resynthesizer_anchor() -> str | None:
    """Why the Resynthesizer anchor is skipped, or None when it can run (not implemented here: see README)."""
    if not os.path.isdir(GIMP32_ROOT):
        return f"no GIMP 3.2 root at {GIMP32_ROOT}"
    import glob

    plug = glob.glob(os.path.join(GIMP32_ROOT, "usr/lib/*/gimp/*/plug-ins/*resynth*")) + \
        glob.glob(os.path.join(GIMP32_ROOT, "usr/lib/gimp/*/plug-ins/*resynth*"))
    if not plug:
        return f"{GIMP32_ROOT} has no Resynthesizer (gimp-plugin-registry is not installed in it)"
    return "Resynthesizer run in GIMP 3.2 not automated in this benchmark yet"


def run(quick: bool = False, threads: int | None = None, save_png: str | None = None, bundle=None,
        sizes: tuple[int, ...] | None = None, big: bool | None = None, photo_size: int = 1280,
        targets: tuple[str, ...] | None = None) -> list[dict]:
    """One row per (photo size, selection, target, mode) plus the anchor's row.  ``bundle`` replaces the default
    model (a model without the texture classes uses its classes 0 and 1: the smoke test's tiny model)."""
    import torch

    from engine.edit.pipeline import PhotoEditor

    if threads:
        torch.set_num_threads(threads)
    if bundle is None:
        from bench.collage import load_default_bundle

        bundle, _ = load_default_bundle()
    names = bundle.class_names
    editor = PhotoEditor(bundle)
    cases, source_text = photos()
    if targets:
        cases = [c for c in cases if c[3] in targets]
    elif quick:
        cases = cases[:2]
    sizes = sizes or ((256, 512) if quick else (256, 512, 1024))
    rows = []
    plan = [(photo_size, sel, case) for sel in sizes for case in cases]
    if big if big is not None else not quick:
        plan += [(4096, sel, cases[0]) for sel in (512, 1024, 2048)]
    photos_cache: dict[tuple[str, int], np.ndarray] = {}
    for size, sel, (name, img, src, tgt) in plan:
        photo = photos_cache.setdefault((name, size), mirror_tile(img, size))
        shown = {}
        for mode in ("fast", "calibrated"):
            r = one_case(editor, photo, names.index(src) if src in names else 0,
                         names.index(tgt) if tgt in names else 1, sel, mode)
            shown[mode] = r.pop("image")
            mask = r.pop("mask")
            rows.append({"bench": "photo_edit", "photo": name, "photo_size": size, "selection": sel,
                         "source": src, "target": tgt, "mode": mode, "photos": source_text, **r})
            print(f"  {size} px photo, {sel} px selection, {name} -> {tgt}, {mode}: {r['seconds']:.1f} s "
                  f"({r['cpu_seconds']:.1f} CPU s), "
                  f"sharpness {r['sharpness']:.2f}, crop {r['crop']} px rendered at {r['render']} px", flush=True)
        if save_png:
            save_side_by_side(save_png, f"{size}_{sel}_{name.replace(' ', '_')}_{tgt}", photo, shown, mask)
    rows.append({"bench": "photo_edit", "anchor": resynthesizer_anchor()})
    return rows


def save_side_by_side(folder: str, stem: str, photo: np.ndarray, shown: dict, mask: np.ndarray) -> str:
    """photo | fast | calibrated at 1:1, a 384 px window centred on the selection's left border (edit and photo
    side by side in every panel)."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    ys, xs = np.nonzero(mask >= 0.5)
    cy, cx = int(ys.mean()), int(xs.min())
    half = 192
    y0 = min(max(cy - half, 0), photo.shape[0] - 2 * half)
    x0 = min(max(cx - half, 0), photo.shape[1] - 2 * half)
    panels = [photo] + [shown[m] for m in ("fast", "calibrated")]
    strip = np.concatenate([p[y0:y0 + 2 * half, x0:x0 + 2 * half] for p in panels], axis=1)
    path = os.path.join(folder, stem + ".png")
    cv2.imwrite(path, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    return path


def summary(rows: list[dict]) -> list[dict]:
    """The derived measures: time against selected pixels (per mode, on the largest photo measured)."""
    out = []
    cases = [r for r in rows if "mode" in r]
    for mode in ("fast", "calibrated"):
        for size in sorted({r["photo_size"] for r in cases}, reverse=True):
            by_sel = {r["selection"]: r for r in cases if r["mode"] == mode and r["photo_size"] == size
                      and r["photo"] == cases[0]["photo"]}
            if 512 in by_sel and max(by_sel) > 512:
                big = max(by_sel)
                per_px = (by_sel[big]["seconds"] / big ** 2) / (by_sel[512]["seconds"] / 512 ** 2)
                out.append({"mode": mode, "photo_size": size, "from": 512, "to": big, "ratio": per_px,
                            "seconds": (by_sel[512]["seconds"], by_sel[big]["seconds"]),
                            "resampled": by_sel[big]["resampled"]})
                break
    return out


def format_rows(rows: list[dict]) -> str:
    head = (f"{'photo':>5} {'sel':>5} {'case':<28} {'mode':<10} {'s':>7} {'cpu s':>7} "
            f"{'crop/proj/render/compose %':>27} "
            f"{'sharp':>6} {'outside':>8} {'crop px':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "mode" not in r:
            if r.get("anchor"):
                lines.append(f"Resynthesizer anchor: skipped: {r['anchor']}")
            continue
        st = r["stages"]
        tot = max(sum(st.values()), 1e-9)
        share = "/".join(f"{100 * st.get(k, 0) / tot:.0f}" for k in ("crop", "projection", "render", "compose"))
        lines.append(f"{r['photo_size']:>5} {r['selection']:>5} {r['photo'] + ' -> ' + r['target']:<28} "
                     f"{r['mode']:<10} {r['seconds']:>7.2f} {r['cpu_seconds']:>7.2f} {share:>27} "
                     f"{r['sharpness']:>6.2f} "
                     f"{'same' if r['outside_identical'] else 'CHANGED':>8} "
                     f"{r['crop']}{'->' + str(r['render']) if r['resampled'] else '':>8}")
    for s in summary(rows):
        lines.append(f"time per selected pixel, {s['mode']}, {s['photo_size']} px photo: {s['to']} px / {s['from']} px "
                     f"selection = {s['ratio']:.2f} ({s['seconds'][0]:.1f} s -> {s['seconds'][1]:.1f} s"
                     f"{'; the largest crop was resampled' if s['resampled'] else ''})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1280 px, selections 256/512, 2 targets")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--sizes", default=None, help="selection sizes on the 1280 px photos, e.g. 256,512")
    ap.add_argument("--no-big", action="store_true", help="skip the 4096 px photo")
    ap.add_argument("--targets", default=None, help="only these target classes, e.g. gravel,brick")
    ap.add_argument("--save-png", default=None, metavar="DIR", help="write photo | fast | calibrated strips here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    rows = run(quick=args.quick, threads=args.threads, save_png=args.save_png, sizes=sizes,
               big=False if args.no_big else None,
               targets=tuple(args.targets.split(",")) if args.targets else None)
    print(format_rows(rows))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
