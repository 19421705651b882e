"""Benchmark: photo edits at the photo's own resolution (issue 17) - time to the fast and the calibrated result,
the share of each stage, time against selected pixels, and sharpness of the edit against the photo.

    python bench/photo_edit.py                  # 1280 px photos, selections 256/512/1024, 5 textured targets;
                                                # a 4096 px photo, selections 512/1024/2048 (time against pixels)
    python bench/photo_edit.py --quick          # 1280 px, selections 256/512, 2 targets
    python bench/photo_edit.py --save-png DIR   # also write photo | fast | calibrated (| Resynthesizer) side by
                                                # side, 1:1 windows on the selection's border
    python bench/photo_edit.py --json FILE      # also write the raw rows

Photos: real texture photos, never seen in training - scikit-image's grass/gravel/brick samples and two
ufoai-textures photos (rocks_w_1, bark_b_1) when those are installed, else the photos shipped in
engine/data/demo - mirrored around themselves to 1280 x 1280 (and 4096 x 4096) px, so every pixel is a real one at
its own scale.  Each case edits an elliptical selection (feathered 4 px) of one photo towards a textured class
(gravel, rock, brick, bark, grass), class of the photo given (no class search is timed), in two ways: a label
swap to that class, and a feature blend (Feature Transplant) of a reference: the photo of that class among the
same five (grass <- gravel photo, gravel <- rocks, rocks <- brick, brick <- bark, bark <- grass), mirrored to the
same size, its crop at the same place being the reference region.  Each runs through ``PhotoEditor.edit``
twice: ``mode="fast"`` (the encoder's latent only) and ``mode="calibrated"`` (the engine's default steps).
Measured per case:

* seconds to each result (wall clock, and the CPU seconds of all threads: on a shared machine the wall clock
  grows with the other processes' load, the CPU time much less), and the share of the stages (crop = cutting
  the crop out and converting it, projection, render, compose = Poisson blending back; I/O to and from GIMP is
  bench/bridge.py's);
* time against selected pixels: (seconds per selected pixel at the largest selection) / (at 512 px); goal <= 1;
* sharpness: the variance of the Laplacian of luminance inside the edit (the selection eroded by 1/16 of its
  size) over the same inside the photo's region before the edit; goal >= 0.3 per case.  Nothing sharpens,
  adds noise or copies photo pixels: the detail is the generator's, rendered at the crop's size;
* pixels outside the selection byte-identical (8-bit);
* the anchor, in the same run: every feature-blend case through Resynthesizer in real GIMP 3.2.6
  (bench/resynth.py; root from bench/make_resynth_root.sh), the reference's same crop as its corpus, the same
  soft mask as its selection, timed inside GIMP; the same sharpness and outside checks; goals: our calibrated
  edit no slower than Resynthesizer on the same case (wall clock, both measured in this run; CPU seconds
  shown too) and at least half its sharpness.  Where the root is missing (or not entered as root) one row says
  why and everything else still runs.

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
TARGETS = ("gravel", "rock", "brick", "bark", "grass")
SHARPNESS_GOAL = 0.3
FAST_GOAL_S = 2.0  # at 512 px
CALIBRATED_GOAL_S = 10.0  # at 512 px
ANCHOR_SHARPNESS_SHARE = 0.5  # our calibrated edit keeps at least half Resynthesizer's sharpness
OPS = ("swap", "blend")


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


def inner_region(mask: np.ndarray, sel: int) -> np.ndarray:
    """Where sharpness is measured: the selection eroded by 1/16 of its size (no feathered border)."""
    import cv2

    return cv2.erode((mask >= 1).astype(np.uint8), np.ones((max(3, sel // 16),) * 2, np.uint8)) > 0


def sharpness(result: np.ndarray, photo: np.ndarray, inner: np.ndarray,
              reference: np.ndarray | None = None) -> tuple[float, float | None]:
    """(Laplacian variance of ``result`` inside ``inner`` / of the photo there, / of the reference there)."""
    v = laplacian_variance(result, inner)
    ref = None if reference is None else v / max(laplacian_variance(reference, inner), 1e-12)
    return v / max(laplacian_variance(photo, inner), 1e-12), ref


def one_case(editor, photo: np.ndarray, source: int, target: int, sel: int, mode: str,
             reference: np.ndarray | None = None) -> dict:
    """A label swap to ``target`` or, with ``reference`` (a photo of the same size), a feature blend of the
    reference's same region (class ``target``) into the selection."""
    from engine.edit.pipeline import BlendSpec, SwapSpec

    size = photo.shape[0]
    mask = selection(size, sel)
    t0, c0 = time.perf_counter(), time.process_time()
    if reference is None:
        res = editor.edit(photo, mask, swap=SwapSpec(target), source_class=source, mode=mode)
    else:
        res = editor.edit(photo, mask, blend=BlendSpec(strength=1.0), reference=reference, source_class=source,
                          reference_class=target, mode=mode)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    sharp, sharp_ref = sharpness(res.image, photo, inner_region(mask, sel), reference)
    return {"seconds": seconds, "cpu_seconds": cpu, "stages": dict(res.timings), "sharpness": sharp,
            "sharpness_ref": sharp_ref, "loss": res.loss,
            "outside_identical": bool(np.array_equal(res.image[mask == 0], photo[mask == 0])),
            "crop": res.crop_size, "render": res.render_size, "resampled": res.resampled, "image": res.image,
            "mask": mask}


def corpus_of(editor, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The reference's region the engine's feature blend reads (the edit's crop box: the selection's box plus
    25 %, within the photo): Resynthesizer's corpus, so both tools sample the same pixels."""
    from engine.edit.render import grid_of

    multiple = grid_of(editor.G) if editor.full_resolution else 1
    x, y, w, h = editor.crop_for(reference, mask, None, multiple=multiple).inside
    return np.ascontiguousarray(reference[y:y + h, x:x + w, :3])


def resynthesizer_anchor() -> str | None:
    """Why the Resynthesizer anchor cannot run here, or None when it can."""
    from bench import resynth

    return resynth.unavailable()


def anchor_rows(jobs: list[dict], save_png: str | None = None) -> list[dict]:
    """Resynthesizer (GIMP 3.2) on the feature-blend cases ``jobs`` (from ``run``): one row per case, or one
    row saying why it was skipped."""
    from bench import resynth

    why = resynthesizer_anchor()
    if why is None and not jobs:
        why = "no feature-blend case in this run"
    if why is None:
        for j in jobs:
            j["mask"] = selection(j["photo_size"], j["selection"])
        try:
            out = resynth.run([{"id": j["id"], "photo": j["image"], "mask": j["mask"], "corpus": j["corpus"]}
                               for j in jobs])
        except Exception as exc:  # noqa: BLE001 - the anchor must not sink the benchmark
            why = f"Resynthesizer run failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if why is not None:
        if save_png:
            for j in jobs:
                save_side_by_side(save_png, j["stem"], j["image"], j["shown"], selection(j["photo_size"],
                                                                                     j["selection"]))
        return [{"bench": "photo_edit", "anchor": why}]
    rows = []
    for j in jobs:
        got = out["cases"][j["id"]]
        row = {"bench": "photo_edit", "anchor": None, "tool": "resynthesizer", "gimp": out["gimp"],
               "op": "blend", **{k: j[k] for k in ("photo", "photo_size", "selection", "source", "target",
                                                   "reference")},
               "ok": got["ok"], "message": got["message"], "seconds": got["seconds"],
               "cpu_seconds": got["cpu_seconds"], "corpus": list(j["corpus"].shape[:2])}
        if got["ok"]:
            img = got["image"]
            row["sharpness"], row["sharpness_ref"] = sharpness(
                img, j["image"], inner_region(j["mask"], j["selection"]), j["reference_img"])
            row["outside_identical"] = bool(np.array_equal(img[j["mask"] == 0], j["image"][j["mask"] == 0]))
            if save_png:
                save_side_by_side(save_png, j["stem"], j["image"], {**j["shown"], "Resynthesizer": img}, j["mask"])
        elif save_png:
            save_side_by_side(save_png, j["stem"], j["image"], j["shown"], j["mask"])
        rows.append(row)
        j.pop("mask", None)
    return rows


def run(quick: bool = False, threads: int | None = None, save_png: str | None = None, bundle=None,
        sizes: tuple[int, ...] | None = None, big: bool | None = None, photo_size: int = 1280,
        targets: tuple[str, ...] | None = None, ops: tuple[str, ...] = OPS, anchor: bool = True,
        big_sizes: tuple[int, ...] = (512, 1024, 2048), big_photo: int = 4096, device: str = "cpu") -> list[dict]:
    """One row per (photo size, selection, target, swap|blend, mode), then the anchor's rows (Resynthesizer on
    the blend cases; ``anchor=False``: one row saying it was not run).  The 4096 px photo (``big``; default: not
    in quick mode; ``big_photo`` px) has label swaps of the first photo at ``big_sizes``.  ``bundle`` replaces
    the default model (a model without the texture classes uses its classes 0 and 1: the smoke test's tiny
    model).  ``device``: "cpu" (the table for 2 cores), "cuda" or "auto" (the same table with absolute times on a
    GPU); every row says which."""
    import torch

    from engine.device import select_device

    from engine.edit.pipeline import PhotoEditor

    if threads:
        torch.set_num_threads(threads)
    if bundle is None:
        from bench.collage import load_default_bundle

        bundle, _ = load_default_bundle(select_device(device))
    names = bundle.class_names
    editor = PhotoEditor(bundle)
    precision = str(editor.work_dtype or torch.float32).replace("torch.", "")
    cases, source_text = photos()
    refs: dict[str, tuple[str, np.ndarray]] = {}
    for name, img, src, _tgt in cases:
        refs.setdefault(src, (name, img))  # the reference of a blend to class c: the first photo of class c
    if targets:
        cases = [c for c in cases if c[3] in targets]
    elif quick:
        cases = cases[:2]
    sizes = sizes or ((256, 512) if quick else (256, 512, 1024))
    rows = []
    plan = [(photo_size, sel, case, op) for sel in sizes for case in cases for op in ops
            if op == "swap" or case[3] in refs]
    if big if big is not None else not quick:
        plan += [(big_photo, sel, cases[0], "swap") for sel in big_sizes]
    photos_cache: dict[tuple[str, int], np.ndarray] = {}
    jobs = []
    for size, sel, (name, img, src, tgt), op in plan:
        photo = photos_cache.setdefault((name, size), mirror_tile(img, size))
        reference = rname = None
        if op == "blend":
            rname, rimg = refs[tgt]
            reference = photos_cache.setdefault((rname, size), mirror_tile(rimg, size))
        shown = {}
        for mode in ("fast", "calibrated"):
            r = one_case(editor, photo, names.index(src) if src in names else 0,
                         names.index(tgt) if tgt in names else 1, sel, mode, reference)
            shown[mode] = r.pop("image")
            mask = r.pop("mask")
            rows.append({"bench": "photo_edit", "op": op, "photo": name, "photo_size": size, "selection": sel,
                         "source": src, "target": tgt, "reference": rname, "mode": mode, "photos": source_text,
                         "device": str(bundle.generator.device), "precision": precision,
                         **r})
            what = f"{name} -> {tgt}" if op == "swap" else f"{name} <- {rname} ({tgt}) blend"
            print(f"  {size} px photo, {sel} px selection, {what}, {mode}: {r['seconds']:.1f} s "
                  f"({r['cpu_seconds']:.1f} CPU s), "
                  f"sharpness {r['sharpness']:.2f}, crop {r['crop']} px rendered at {r['render']} px", flush=True)
        stem = f"{size}_{sel}_{name.replace(' ', '_')}_{op}_{tgt}"
        if op == "blend":
            jobs.append({"id": stem, "stem": stem, "image": photo, "photo": name, "photo_size": size,
                         "selection": sel, "source": src, "target": tgt, "reference": rname,
                         "reference_img": reference, "corpus": corpus_of(editor, reference, mask),
                         "shown": shown if save_png else {}})
        if save_png and (op == "swap" or not anchor):
            save_side_by_side(save_png, stem, photo, shown, mask)
    if anchor:
        rows += anchor_rows(jobs, save_png)
    else:
        rows.append({"bench": "photo_edit", "anchor": "not run (anchor=False)"})
    return rows


def save_side_by_side(folder: str, stem: str, photo: np.ndarray, shown: dict, mask: np.ndarray) -> str:
    """photo | fast | calibrated (| Resynthesizer: the panels of ``shown`` in order) at 1:1, a 384 px window
    centred on the selection's left border (edit and photo side by side in every panel)."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    ys, xs = np.nonzero(mask >= 0.5)
    cy, cx = int(ys.mean()), int(xs.min())
    half = 192
    y0 = min(max(cy - half, 0), photo.shape[0] - 2 * half)
    x0 = min(max(cx - half, 0), photo.shape[1] - 2 * half)
    panels = [photo] + list(shown.values())
    strip = np.concatenate([p[y0:y0 + 2 * half, x0:x0 + 2 * half] for p in panels], axis=1)
    path = os.path.join(folder, stem + ".png")
    cv2.imwrite(path, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def summary(rows: list[dict]) -> list[dict]:
    """The derived measures: time against selected pixels (per mode, on the largest photo measured, label swaps
    of its first photo): (seconds per selected pixel at the largest selection) / (at 512 px, else the
    smallest), by the wall clock and by CPU seconds."""
    out = []
    cases = [r for r in rows if "mode" in r and r.get("op", "swap") == "swap"]
    for mode in ("fast", "calibrated"):
        for size in sorted({r["photo_size"] for r in cases}, reverse=True):
            by_sel = {r["selection"]: r for r in cases if r["mode"] == mode and r["photo_size"] == size
                      and r["photo"] == cases[0]["photo"]}
            base = 512 if 512 in by_sel else min(by_sel, default=0)
            if by_sel and max(by_sel) > base:
                big = max(by_sel)
                per_px = (by_sel[big]["seconds"] / big ** 2) / (by_sel[base]["seconds"] / base ** 2)
                out.append({"mode": mode, "photo_size": size, "from": base, "to": big, "ratio": per_px,
                            "seconds": (by_sel[base]["seconds"], by_sel[big]["seconds"]),
                            "cpu_ratio": (by_sel[big]["cpu_seconds"] / big ** 2)
                            / max(by_sel[base]["cpu_seconds"] / base ** 2, 1e-12),
                            "cpu_seconds": (by_sel[base]["cpu_seconds"], by_sel[big]["cpu_seconds"]),
                            "resampled": by_sel[big]["resampled"]})
                break
    return out


def anchor_checks(rows: list[dict]) -> list[dict]:
    """Per anchor case: our fast and calibrated feature blend of the same case against Resynthesizer's, and the
    goals: calibrated no slower (wall clock, this run) and at least ANCHOR_SHARPNESS_SHARE of its sharpness.
    A goal is None where a side has no number (failed run)."""
    out = []
    key = ("photo", "photo_size", "selection", "target")
    ours = {(tuple(r[k] for k in key), r["mode"]): r for r in rows if r.get("op") == "blend" and "mode" in r}
    for a in rows:
        if a.get("tool") != "resynthesizer":
            continue
        k = tuple(a[x] for x in key)
        fast, cal = ours.get((k, "fast")), ours.get((k, "calibrated"))
        c = {"case": dict(zip(key, k)), "reference": a["reference"], "fast": fast, "calibrated": cal, "anchor": a,
             "time_ratio": None, "cpu_ratio": None, "sharpness_share": None, "faster": None, "sharp_enough": None}
        if cal is not None and a.get("ok"):
            c["time_ratio"] = cal["seconds"] / max(a["seconds"], 1e-9)
            if a.get("cpu_seconds"):
                c["cpu_ratio"] = cal["cpu_seconds"] / max(a["cpu_seconds"], 1e-9)
            c["sharpness_share"] = cal["sharpness"] / max(a["sharpness"], 1e-12)
            c["faster"] = cal["seconds"] <= a["seconds"]
            c["sharp_enough"] = c["sharpness_share"] >= ANCHOR_SHARPNESS_SHARE
        out.append(c)
    return out


def format_anchor(rows: list[dict]) -> str:
    """The anchor table: per feature-blend case, ours (fast, calibrated) and Resynthesizer's seconds (wall, and
    CPU seconds of all threads) and sharpness, and the goal checks."""
    checks = anchor_checks(rows)
    if not checks:
        return ""
    head = (f"{'photo':>5} {'sel':>5} {'case':<36} {'fast s/cpu/sharp':>18} {'calibrated s/cpu/sharp':>22} "
            f"{'Resynth s/cpu/sharp':>20} {'cal/resynth s':>13} {'cpu':>5} {'sharp share':>11} {'outside':>8}")
    lines = ["Resynthesizer anchor (feature blend of the reference vs Resynthesizer with the same crop as corpus; "
             "sharpness = edit / photo region):", head, "-" * len(head)]

    def trio(r):
        if r is None or r.get("seconds") is None:
            return "-"
        cpu = "-" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.1f}"
        sh = "-" if r.get("sharpness") is None else f"{r['sharpness']:.2f}"
        return f"{r['seconds']:.1f}/{cpu}/{sh}"

    for c in checks:
        k, a = c["case"], c["anchor"]
        name = f"{k['photo']} <- {c['reference']} ({k['target']})"
        ratio = "-" if c["time_ratio"] is None else f"{c['time_ratio']:.2f} {'ok' if c['faster'] else 'NO'}"
        cpu = "-" if c["cpu_ratio"] is None else f"{c['cpu_ratio']:.2f}"
        share = "-" if c["sharpness_share"] is None else \
            f"{c['sharpness_share']:.2f} {'ok' if c['sharp_enough'] else 'NO'}"
        same = [r.get("outside_identical") for r in (c["fast"], c["calibrated"], a) if r is not None]
        outside = "same" if same and all(same) else "CHANGED"
        lines.append(f"{k['photo_size']:>5} {k['selection']:>5} {name:<36} {trio(c['fast']):>18} "
                     f"{trio(c['calibrated']):>22} {trio(a) if a.get('ok') else 'failed':>20} {ratio:>13} "
                     f"{cpu:>5} {share:>11} {outside:>8}")
        if not a.get("ok"):
            lines.append(f"      Resynthesizer failed: {a.get('message')}")
    done = [c for c in checks if c["faster"] is not None]
    if done:
        lines.append(f"goal 'calibrated no slower than Resynthesizer': {sum(c['faster'] for c in done)}/{len(done)} "
                     f"cases; 'at least {ANCHOR_SHARPNESS_SHARE:g} of its sharpness': "
                     f"{sum(c['sharp_enough'] for c in done)}/{len(done)} cases")
    return "\n".join(lines)


def format_rows(rows: list[dict]) -> str:
    head = (f"{'photo':>5} {'sel':>5} {'case':<40} {'mode':<10} {'s':>7} {'cpu s':>7} "
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
        what = (f"{r['photo']} -> {r['target']}" if r.get("op", "swap") == "swap"
                else f"{r['photo']} <- {r['reference']} blend")
        lines.append(f"{r['photo_size']:>5} {r['selection']:>5} {what:<40} "
                     f"{r['mode']:<10} {r['seconds']:>7.2f} {r['cpu_seconds']:>7.2f} {share:>27} "
                     f"{r['sharpness']:>6.2f} "
                     f"{'same' if r['outside_identical'] else 'CHANGED':>8} "
                     f"{r['crop']}{'->' + str(r['render']) if r['resampled'] else '':>8}")
    for s in summary(rows):
        lines.append(f"time per selected pixel, {s['mode']}, {s['photo_size']} px photo: {s['to']} px / {s['from']} px "
                     f"selection = {s['ratio']:.2f} ({s['seconds'][0]:.1f} s -> {s['seconds'][1]:.1f} s; by CPU "
                     f"seconds {s['cpu_ratio']:.2f}: {s['cpu_seconds'][0]:.1f} -> {s['cpu_seconds'][1]:.1f}"
                     f"{'; the largest crop was resampled' if s['resampled'] else ''})")
    anchor = format_anchor(rows)
    if anchor:
        lines += ["", anchor]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1280 px, selections 256/512, 2 targets")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--sizes", default=None, help="selection sizes on the 1280 px photos, e.g. 256,512")
    ap.add_argument("--no-big", action="store_true", help="skip the 4096 px photo")
    ap.add_argument("--targets", default=None, help="only these target classes, e.g. gravel,brick")
    ap.add_argument("--save-png", default=None, metavar="DIR",
                    help="write photo | fast | calibrated (| Resynthesizer) strips here")
    ap.add_argument("--ops", default=",".join(OPS), help="swap, blend or both (default swap,blend)")
    ap.add_argument("--no-anchor", action="store_true", help="skip Resynthesizer in GIMP 3.2")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the raw rows here")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto: on a GPU the same table with "
                                                     "absolute times")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    rows = run(quick=args.quick, threads=args.threads, save_png=args.save_png, sizes=sizes,
               big=False if args.no_big else None,
               targets=tuple(args.targets.split(",")) if args.targets else None,
               ops=tuple(o for o in args.ops.split(",") if o), anchor=not args.no_anchor, device=args.device)
    print(format_rows(rows))
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}, f, indent=1)
    print(f"({time.perf_counter() - t0:.0f} s; load average at the end %.2f %.2f %.2f)" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
