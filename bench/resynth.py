"""Resynthesizer in real GIMP 3.2: the anchor of bench/photo_edit.py (issue 17).

Resynthesizer (Debian forky's gimp-plugin-registry, PDB procedure ``plug-in-resynthesizer``) fills the
selection of a drawable with texture synthesised from a corpus drawable; it is what GIMP users reach for to fill
a region with a material sampled from another photo.  Its root is bench/make_resynth_root.sh's
``gimp32-resynth-root`` (the e2e tests' GIMP 3.2.6 root plus gimp-plugin-registry).

``run(cases)`` runs every case in one GIMP batch session: for each, a new image with the photo, the case's
mask loaded as the selection (the very same soft mask the engine gets; Resynthesizer synthesises where it is
non-zero and GIMP blends its result by the mask's value), a second image holding the corpus (no selection:
all of it is the corpus), then the PDB call with Resynthesizer's own defaults (use-context 1, neighbourhood 30,
200 tries), timed inside GIMP (perf_counter around the call, like bench/gimp_edit.py).  The CPU seconds of the
Resynthesizer process (all its threads) are read from /proc while it runs.  Pixels travel as raw 8-bit files.

The PDB arguments, listed from inside GIMP 3.2.6 (``lookup_procedure(...).get_arguments()``): run-mode, image,
drawables, vtile, htile, use-context, corpus (a drawable id), inmask, outmask (ids, -1 none), map-weight, autism,
neighbourhood, trys.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESYNTH_ROOT = os.environ.get("NC_RESYNTH_ROOT", "/var/cache/neural-collage/gimp32-resynth-root")
PROC = "plug-in-resynthesizer"
PLUGIN_GLOB = "usr/lib/*/gimp/3.0/plug-ins/resynthesizer/resynthesizer"
PREFIX = "NCRESYNTH "

# runs inside GIMP 3.2 (python-fu-eval: Gimp, Gio, GLib are there); NC_CFG names the JSON config
GIMP_SCRIPT = r'''
import json, time
import gi
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl
Gegl.init(None)
cfg = json.load(open(NC_CFG))
def emit(d):
    print("NCRESYNTH " + json.dumps(d), flush=True)
emit({"event": "start", "gimp": Gimp.version()})
proc = Gimp.get_pdb().lookup_procedure(cfg["proc"])
if proc is None:
    emit({"event": "error", "message": "no PDB procedure " + cfg["proc"]})
    raise SystemExit
emit({"event": "arguments", "names": [a.get_name() for a in proc.get_arguments()]})

def image_of(path, w, h, name):
    img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, name, w, h, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B' u8", open(path, "rb").read())
    buf.flush()
    return img, layer

for case in cfg["cases"]:
    try:
        w, h = case["size"]
        img, layer = image_of(case["photo"], w, h, "photo")
        cw, ch = case["corpus_size"]
        cimg, clayer = image_of(case["corpus"], cw, ch, "corpus")
        chan = Gimp.Channel.new(img, "mask", w, h, 100.0, Gegl.Color.new("black"))
        img.insert_channel(chan, None, 0)
        cbuf = chan.get_buffer()
        cbuf.set(Gegl.Rectangle.new(0, 0, w, h), "Y u8", open(case["mask"], "rb").read())
        cbuf.flush()
        img.select_item(Gimp.ChannelOps.REPLACE, chan)
        c = proc.create_config()
        c.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        c.set_property("image", img)
        c.set_core_object_array("drawables", [layer])
        c.set_property("corpus", clayer.get_id())
        for k, v in cfg["props"].items():
            c.set_property(k, v)
        t0 = time.perf_counter()
        res = proc.run(c)
        dt = time.perf_counter() - t0
        ok = res.index(0) == Gimp.PDBStatusType.SUCCESS
        msg = ""
        if not ok and res.length() > 1:
            msg = str(res.index(1))
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B' u8", Gegl.AbyssPolicy.CLAMP)
        open(case["out"], "wb").write(bytes(data))
        emit({"event": "case", "id": case["id"], "seconds": dt, "ok": ok, "message": msg})
        img.delete()
        cimg.delete()
    except Exception as exc:
        emit({"event": "case", "id": case["id"], "ok": False, "message": type(exc).__name__ + ": " + str(exc)})
emit({"event": "done"})
'''


def unavailable(root: str = RESYNTH_ROOT) -> str | None:
    """Why Resynthesizer in GIMP 3.2 cannot run here, or None when it can."""
    import glob

    if not os.path.isdir(root):
        return f"no GIMP 3.2 + Resynthesizer root at {root} (build it: sudo sh bench/make_resynth_root.sh)"
    if not os.path.isfile(os.path.join(root, "usr/bin/gimp-console-3.2")):
        return f"{root} has no gimp-console-3.2"
    if not glob.glob(os.path.join(root, PLUGIN_GLOB)):
        return f"{root} has no Resynthesizer (gimp-plugin-registry is not installed in it)"
    if os.geteuid() != 0:
        return f"entering the chroot {root} needs root"
    return None


def parse_events(lines) -> dict:
    """The script's report lines (``NCRESYNTH {json}``; GIMP's other output is ignored) as
    {"gimp": version, "arguments": [...], "cases": {id: event}, "done": bool, "errors": [...]}."""
    out = {"gimp": None, "arguments": None, "cases": {}, "done": False, "errors": []}
    for line in lines:
        line = line.rstrip("\n")
        if not line.startswith(PREFIX):
            continue
        try:
            ev = json.loads(line[len(PREFIX):])
        except ValueError:
            out["errors"].append(f"unreadable report line: {line[:200]}")
            continue
        kind = ev.get("event")
        if kind == "start":
            out["gimp"] = ev.get("gimp")
        elif kind == "arguments":
            out["arguments"] = ev.get("names")
        elif kind == "case":
            out["cases"][ev["id"]] = ev
        elif kind == "done":
            out["done"] = True
        elif kind == "error":
            out["errors"].append(ev.get("message", ""))
    return out


def proc_cpu_seconds(stat: str, ticks: int) -> float:
    """utime + stime (all threads) of a /proc/PID/stat line, in seconds."""
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / ticks


class CpuWatch:
    """Polls /proc for plug-in processes named ``comm`` running a call and keeps each one's last CPU seconds,
    in order of appearance (one Resynthesizer process per PDB call).  The last <= ``interval`` s of a
    process's life are missed."""

    def __init__(self, comm: str = "resynthesizer", interval: float = 0.01):
        self.comm, self.interval = comm, interval
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.seen: dict[int, float] = {}
        self.order: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _read(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                self.seen[pid] = proc_cpu_seconds(f.read(), self.ticks)
            return True
        except (OSError, ValueError, IndexError):
            return False

    @staticmethod
    def _running(pid: int) -> bool:
        """A plug-in process started for a call (``-run``), not GIMP's start-up query (``-query``/``-init``)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"-run" in f.read().split(b"\0")
        except OSError:
            return False

    def _loop(self):
        live = None
        n = 0
        while not self._stop.is_set():
            if live is not None and not self._read(live):
                live = None
            if live is None and n % 3 == 0:  # look for a new one every third tick
                for name in os.listdir("/proc"):
                    if name.isdigit() and int(name) not in self.seen:
                        try:
                            with open(f"/proc/{name}/comm") as f:
                                comm = f.read().strip()
                        except OSError:
                            continue
                        if comm != self.comm or not self._running(int(name)):
                            continue
                        if self._read(int(name)):
                            live = int(name)
                            self.order.append(live)
                            break
            n += 1
            self._stop.wait(self.interval)

    def cpu(self) -> list[float]:
        return [self.seen[p] for p in self.order]


def run(cases: list[dict], root: str = RESYNTH_ROOT, timeout: float = 1800.0, props: dict | None = None) -> dict:
    """Resynthesizer on ``cases`` ({"id", "photo": H x W x 3 uint8, "mask": H x W float in [0, 1], "corpus":
    h x w x 3 uint8}) in one GIMP 3.2 session.  Returns {"gimp", "arguments", "session_s", "cases": {id:
    {"seconds", "cpu_seconds", "image" (H x W x 3 uint8) or None, "ok", "message"}}}; raises RuntimeError when
    GIMP reports nothing usable."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    import harness  # tests/e2e/harness.py: runs GIMP in its chroot

    why = unavailable(root)
    if why:
        raise RuntimeError(why)
    gimp = harness.Gimp(root, harness.Target("3.2", False))
    work = gimp.mkwork("nc-resynth-")
    try:
        cfg_cases = []
        for c in cases:
            h, w = c["photo"].shape[:2]
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", c["id"])
            for part, arr in (("photo", c["photo"]), ("corpus", c["corpus"])):
                (work / f"{stem}.{part}.raw").write_bytes(np.ascontiguousarray(arr[:, :, :3], np.uint8).tobytes())
            mask8 = np.clip(np.round(np.asarray(c["mask"], np.float32) * 255), 0, 255).astype(np.uint8)
            (work / f"{stem}.mask.raw").write_bytes(mask8.tobytes())
            ch, cw = c["corpus"].shape[:2]
            cfg_cases.append({"id": c["id"], "size": [w, h], "corpus_size": [cw, ch],
                              "photo": gimp.inside(work / f"{stem}.photo.raw"),
                              "corpus": gimp.inside(work / f"{stem}.corpus.raw"),
                              "mask": gimp.inside(work / f"{stem}.mask.raw"),
                              "out": gimp.inside(work / f"{stem}.out.raw")})
        cfg = {"proc": PROC, "cases": cfg_cases, "props": props or {}}
        (work / "cfg.json").write_text(json.dumps(cfg))
        (work / "anchor.py").write_text(GIMP_SCRIPT)
        batch = 'NC_CFG = "{0}/cfg.json"; exec(open("{0}/anchor.py").read())'.format(gimp.inside(work))
        lines: list[str] = []
        t0 = time.perf_counter()
        with CpuWatch() as watch:
            rc, out, err = gimp.run_batch(work / "profile", batch, timeout, lines.append)
        session = time.perf_counter() - t0
        ev = parse_events(lines)
        if not ev["cases"]:
            raise RuntimeError(f"GIMP 3.2 ran no Resynthesizer case (rc {rc}; {'; '.join(ev['errors'])}): "
                               f"{err[-1500:]}")
        cpus = watch.cpu()
        result = {"gimp": ev["gimp"], "arguments": ev["arguments"], "session_s": session, "cases": {},
                  "errors": ev["errors"]}
        ok_ids = [c["id"] for c in cases if ev["cases"].get(c["id"], {}).get("ok")]
        # one Resynthesizer process per successful call, in order; if the count differs, CPU is not attributed
        cpu_of = dict(zip(ok_ids, cpus)) if len(cpus) == len(ok_ids) else {}
        for c in cases:
            e = ev["cases"].get(c["id"])
            h, w = c["photo"].shape[:2]
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", c["id"])
            outp = work / f"{stem}.out.raw"
            img = None
            if e and e.get("ok") and outp.exists() and outp.stat().st_size == h * w * 3:
                img = np.frombuffer(outp.read_bytes(), np.uint8).reshape(h, w, 3).copy()
            result["cases"][c["id"]] = {
                "ok": bool(e and e.get("ok") and img is not None), "seconds": e.get("seconds") if e else None,
                "cpu_seconds": cpu_of.get(c["id"]), "image": img,
                "message": (e or {}).get("message") or ("" if e else "GIMP did not report this case")}
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
