"""Benchmark: one Label Swap in real GIMP, from the procedure call to the new layer, in GIMP 3.0 and 3.2; how
much of it is the engine and how much the plug-in (GIMP starting the plug-in process, Python and GI imports,
reading pixels, the bridge, inserting the layer).

For each GIMP (the e2e chroots of tests/e2e/harness.py; needs root) the real engine serves the default model
and one GIMP batch session calls python-fu-neural-collage-label-swap non-interactively ``--repeats`` times
on the same feathered elliptical selection of a photo: exactly what the menu entry runs after OK in its
dialog (the dialog itself is not timed). GIMP measures each call (perf_counter around the PDB call); the
engine's log gives its own time for each job ("edit ... done in X s": decoding the arrays, the edit, encoding
the reply). The first call projects the region; the later ones find the projection in the engine's cache.

    sudo .venv/bin/python bench/gimp_edit.py                       # GIMP 3.0 and 3.2, 3 calls each
    sudo .venv/bin/python bench/gimp_edit.py --versions 3.2 --zmq --repeats 5 --size 256 --steps 20

Prints one table (the ratios are measured within one run); --json FILE writes the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT), str(ROOT / "tests" / "e2e")] + [
    p for p in sys.path if os.path.abspath(p or os.curdir) not in (str(HERE), str(ROOT))]

import harness  # noqa: E402 - tests/e2e/harness.py

SWAP = "python-fu-neural-collage-label-swap"

# runs inside GIMP (python-fu-eval: Gimp, Gio, GLib are there); NC_CFG names the JSON config
GIMP_SCRIPT = r'''
import json, time
import gi
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl
Gegl.init(None)
cfg = json.load(open(NC_CFG))
print("NCBENCH " + json.dumps({"event": "start", "gimp": Gimp.version()}), flush=True)
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(cfg["photo"]))
layer = img.get_layers()[0]
x, y, w, h = cfg["sel"]
img.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, w, h)
Gimp.Selection.feather(img, cfg["feather"])
proc = Gimp.get_pdb().lookup_procedure(cfg["proc"])
for i in range(cfg["repeats"]):
    c = proc.create_config()
    c.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    c.set_property("image", img)
    c.set_core_object_array("drawables", [layer])
    for k, v in cfg["props"].items():
        c.set_property(k, v)
    n = len(img.get_layers())
    t0 = time.perf_counter()
    res = proc.run(c)
    dt = time.perf_counter() - t0
    ok = res.index(0) == Gimp.PDBStatusType.SUCCESS
    print("NCBENCH " + json.dumps({"event": "call", "i": i, "seconds": dt, "ok": ok,
                                   "layers_added": len(img.get_layers()) - n,
                                   "message": str(res.index(1)) if res.length() > 1 else ""}), flush=True)
img.delete()
print("NCBENCH " + json.dumps({"event": "done"}), flush=True)
'''

DONE = re.compile(r"INFO neural_collage\.server: edit (\w+) done in ([0-9.]+) s")


def photo(work: Path, size: int) -> Path:
    """A photo (scikit-image's astronaut when available, else a texture) scaled so the selection fits."""
    import numpy as np
    from PIL import Image

    try:
        from skimage import data

        arr = data.astronaut()
    except Exception:  # noqa: BLE001 - scikit-image missing
        yy, xx = np.mgrid[0:512, 0:512]
        arr = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0), (xx + yy) % 256], -1)
        arr = arr.astype(np.uint8)
    side = max(512, int(size * 2))
    path = work / "photo.png"
    Image.fromarray(arr).resize((side, side), Image.BICUBIC).save(path)
    return path


def bench_one(target: harness.Target, args) -> dict:
    gimp = harness.find_gimp(target, build=True)
    work = gimp.mkwork("nc-bench-")
    try:
        profile = work / "profile"
        address = f"tcp://127.0.0.1:{harness.free_port()}"
        harness.install_plugin(profile, address, args.steps)
        pic = photo(work, args.size)
        engine = harness.Engine(args.engine, address, work)
        engine.start()
        try:
            target_class = engine.classes()[1]["name"]
            side = max(512, int(args.size * 2))
            sel = [(side - args.size) // 2, (side - args.size) // 2, args.size, args.size]
            cfg = {"photo": gimp.inside(pic), "sel": sel, "feather": 8, "proc": SWAP, "repeats": args.repeats,
                   "props": {"target-class": target_class, "strength": 1.0, "scope": "all"}}
            (work / "cfg.json").write_text(json.dumps(cfg))
            (work / "bench.py").write_text(GIMP_SCRIPT)
            batch = 'NC_CFG = "{0}/cfg.json"; exec(open("{0}/bench.py").read())'.format(gimp.inside(work))
            events = []
            t_start = time.perf_counter()

            def on_line(line):
                if line.startswith("NCBENCH "):
                    events.append((time.perf_counter() - t_start, json.loads(line[len("NCBENCH "):])))

            rc, out, err = gimp.run_batch(profile, batch, args.timeout, on_line)
            wall = time.perf_counter() - t_start
        finally:
            engine.stop()
        calls = [e for _t, e in events if e["event"] == "call"]
        if len(calls) != args.repeats or not all(c["ok"] and c["layers_added"] == 1 for c in calls):
            raise RuntimeError(f"GIMP {target.id}: the calls did not all add a layer (rc {rc}): {calls}\n"
                               f"{err[-3000:]}")
        engine_s = [float(m.group(2)) for m in DONE.finditer(engine.output.read_text())]
        if args.engine == "fake" and not engine_s:  # the stand-in logs no job times (a smoke test of this script)
            engine_s = [0.0] * args.repeats
        if len(engine_s) != args.repeats:
            raise RuntimeError(f"engine log has {len(engine_s)} finished edits for {args.repeats} calls")
        started = next(t for t, e in events if e["event"] == "start")
        rows = [{"call": c["i"], "total_s": c["seconds"], "engine_s": e, "plugin_s": c["seconds"] - e}
                for c, e in zip(calls, engine_s)]
        return {"target": target.id, "gimp": next(e for _t, e in events if e["event"] == "start")["gimp"],
                "gimp_start_s": started, "session_s": wall, "rows": rows}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="3.0,3.2")
    ap.add_argument("--zmq", action="store_true", help="the chroots with python3-zmq (default: without)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=128, help="selection size in px (default 128)")
    ap.add_argument("--steps", type=int, default=10, help="projection steps (plug-in setting; default 10)")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    ap.add_argument("--engine", choices=("real", "fake"), default="real",
                    help="fake: the e2e tests' stand-in (checks this script, measures no engine)")
    args = ap.parse_args(argv)
    ok, why = harness.real_engine_available()
    if args.engine == "real" and not ok:
        print(f"the real engine is not available: {why}", file=sys.stderr)
        return 2
    results = []
    for version in [v.strip() for v in args.versions.split(",") if v.strip()]:
        results.append(bench_one(harness.Target(version, bool(args.zmq)), args))
    print(f"\nLabel Swap on a {args.size} px feathered ellipse, {args.steps} projection steps, "
          f"{os.cpu_count()} CPUs (load {' '.join('%.1f' % x for x in os.getloadavg())})")
    print("| GIMP | call | total (s) | engine (s) | plug-in + GIMP (s) | plug-in share |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for row in r["rows"]:
            kind = "first (projects)" if row["call"] == 0 else "cached projection"
            print(f"| {r['gimp']} ({r['target']}) | {row['call'] + 1}: {kind} | {row['total_s']:.2f} | "
                  f"{row['engine_s']:.2f} | {row['plugin_s']:.2f} | {row['plugin_s'] / row['total_s']:.0%} |")
        later = r["rows"][1:]
        if later:
            print(f"| {r['gimp']} ({r['target']}) | median of calls 2-{len(r['rows'])} | "
                  f"{statistics.median(x['total_s'] for x in later):.2f} | "
                  f"{statistics.median(x['engine_s'] for x in later):.2f} | "
                  f"{statistics.median(x['plugin_s'] for x in later):.2f} | |")
    for r in results:
        print(f"GIMP {r['gimp']}: batch session {r['session_s']:.1f} s, GIMP start to the script "
              f"{r['gimp_start_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
