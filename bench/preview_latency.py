"""Live-preview latency (issue 14 'Measured'): a change of a setting in the dialog -> the preview's pixels back,
through the real bridge client (as the plug-in's nc_preview sends it: an ``edit`` request with ``preview_size``
and the region's cache key) against a real engine (engine.serve.handler.Engine on the default model, served by
EngineServer over TCP), for elliptical selections of 256 / 512 / 1024 px on a real photo (scikit-image's
astronaut, mirrored around itself for the 1024 px selection's 1536 px crop: real pixels at their own scale).

The plug-in sends the selection's box plus a 25 % margin per side (a 1.5 x side crop) with a feathered mask; the
first preview of a region projects the reduced crop (reported separately, "first"); every later change (strength,
target class, per-layer strengths: a new render at preview size, the projection comes from the engine's cache) is
a "change". Goal: a change <= 1.5 s at 512 px on 2 CPU cores.

    python bench/preview_latency.py [--quick] [--sizes 256 512 1024] [--changes 5] [--preview-size 256]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

import numpy as np  # noqa: E402

GOAL_S = 1.5
GOAL_SIZE = 512


def photo(side: int) -> np.ndarray:
    """A real photo at least ``side`` px square (astronaut mirrored around itself; a texture if scikit-image is
    missing)."""
    try:
        from skimage import data

        p = data.astronaut()
    except Exception:  # noqa: BLE001 - no scikit-image: the engine's demo photo
        from engine.cli.demo import DEMO_DIR
        from engine.cli.files import read_photo

        p = read_photo(str(DEMO_DIR / "pebbles.jpg"))[:, :, :3]
    while min(p.shape[:2]) < side:
        p = np.concatenate([np.concatenate([p, p[:, ::-1]], axis=1)] * 2, axis=0)
        p[p.shape[0] // 2:] = p[p.shape[0] // 2:][::-1]
    return np.ascontiguousarray(p[:side, :side, :3])


def crop_and_mask(selection: int, feather: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """What the plug-in sends for an elliptical selection of ``selection`` px: the 1.5 x crop and its u8 mask."""
    from engine.cli.files import ellipse_mask

    side = int(round(selection * 1.5))
    c = side / 2.0
    mask = ellipse_mask(side, side, c, c, selection / 2.0, selection / 2.0, feather=feather)
    return photo(side), np.ascontiguousarray(np.rint(mask * 255).astype(np.uint8))


def changes(n: int, n_classes: int, target: int) -> list[dict]:
    """The settings a user changes one after the other (each needs a new render, none a new projection)."""
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append({"strength": max(0.2, round(1.0 - 0.1 * (i + 1), 3)), "target": target})
        elif kind == 1:
            out.append({"strength": 1.0, "target": (target + i) % n_classes})
        else:
            out.append({"strength": 1.0, "target": target, "layer_strengths_half": True})
    return out


def run(sizes=(256, 512, 1024), n_changes: int = 5, preview_size: int = 256, bundle=None, mode: str = "calibrated",
        transport: str = "auto") -> list[dict]:
    """One row per selection size: seconds of the first preview and of each later change (median, max)."""
    from bridge.client import EngineClient
    from bridge.requests import EditRequest, SwapParams
    from engine.collage.label import layer_count
    from engine.serve.handler import Engine
    from engine.serve.server import EngineServer

    if bundle is None:
        from engine.models.registry import load_model

        bundle = load_model("default", "cpu")
    engine = Engine.from_bundle(bundle)
    server = EngineServer(engine, bind="tcp://127.0.0.1:*")
    server.start()
    n_classes = len(engine.names)
    layers = layer_count(bundle.generator)
    rows = []
    try:
        client = EngineClient(server.address, timeout=600.0, transport=transport)
        try:
            for sel in sizes:
                img, mask = crop_and_mask(sel)

                def ask(target, strength, half=False, _img=img, _mask=mask, _sel=sel):
                    ls = [1.0] + [0.5] * (layers - 1) if half else None
                    req = EditRequest(image=_img, mask=_mask, swap=SwapParams(target, strength, "all",
                                                                              layer_strengths=ls),
                                      poisson=True, mode=mode, cache_key=f"bench-preview:{_sel}",
                                      preview_size=preview_size)
                    op, params, arrays = req.to_wire()
                    t0 = time.perf_counter()
                    reply = client.call(op, params, arrays)
                    out = reply.arrays["image"]
                    np.frombuffer(out.data, dtype=out.dtype).reshape(out.shape)  # what the plug-in then draws
                    return time.perf_counter() - t0, tuple(out.shape)

                target = 1 % n_classes
                first, shape = ask(target, 1.0)
                times = []
                for ch in changes(n_changes, n_classes, target):
                    dt, shape = ask(ch["target"], ch["strength"], ch.get("layer_strengths_half", False))
                    times.append(dt)
                rows.append({"selection": sel, "crop": img.shape[0], "preview": list(shape[:2]), "mode": mode,
                             "first_s": first, "change_median_s": statistics.median(times),
                             "change_max_s": max(times), "changes": len(times), "transport": client.transport
                             if hasattr(client, "transport") else transport})
        finally:
            client.close()
    finally:
        server.stop()
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["selection  crop   preview   mode        first (projects)  change median  change max  goal"]
    for r in rows:
        goal = f"<= {GOAL_S:g} s: {'met' if r['change_median_s'] <= GOAL_S else 'NOT met'}" \
            if r["selection"] == GOAL_SIZE else "-"
        lines.append(f"{r['selection']:>6} px  {r['crop']:>4}  {r['preview'][1]}x{r['preview'][0]:<6} {r['mode']:<10} "
                     f"{r['first_s']:>10.2f} s  {r['change_median_s']:>11.2f} s  {r['change_max_s']:>8.2f} s  {goal}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one 256 px selection, 2 changes")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--preview-size", type=int, default=256)
    ap.add_argument("--mode", choices=("fast", "calibrated"), default="calibrated")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "n/a"
    print(f"load average at start: {load}; torch threads {torch.get_num_threads()}", flush=True)
    rows = run(sizes=(256,) if args.quick else tuple(args.sizes), n_changes=2 if args.quick else args.changes,
               preview_size=args.preview_size, mode=args.mode)
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
