"""Benchmark: moving a 2048x2048 RGBA image between GIMP and the engine.

Compares, for uint8 and float32 pixels, one round trip (image to the engine
and the same-sized image back) through

* the bridge protocol with pyzmq (``EngineClient(transport="pyzmq")``),
* the bridge protocol with the pure-Python ZMTP client (``transport="zmtp"``),
* a raw pyzmq DEALER/ROUTER echo of the same bytes (the floor),
* files on disk, as file-based GIMP ML plug-ins do: the client writes a PNG,
  the engine reads it, writes its result as PNG, the client reads it back
  (float32: four 16-bit PNG planes, and four float32 TIFF planes).

The engine side (an EngineServer with an echo handler, and the raw echo)
runs in a separate process, as in real use.

    python bench/bridge.py            # prints the table
    from bench.bridge import run      # -> list of dicts (bench/run_all.py); import it as bench.bridge
                                      #    (or by path under another name), never as top-level "bridge"
"""

# ruff: noqa: UP031
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# This file is named like the `bridge` package: when run as a script, bench/ is on sys.path and would
# shadow the package.  Keep the repository root first and drop bench/ itself.
sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

import numpy as np

SIZE = 2048
CHANNELS = 4


# ---------------------------------------------------------------------------
# engine side (child process)
# ---------------------------------------------------------------------------
class EchoHandler:
    def hello(self) -> dict:
        return {"engine_version": "echo", "device": "cpu", "models": [], "default_model": None}

    def classes(self, params: dict) -> dict:
        return {"classes": []}

    def run(self, op: str, params: dict, arrays: dict, job: Any) -> tuple:
        job.progress("echo", 1, 1, None)
        return {}, {"recon": arrays["image"]}


def serve_echo() -> None:
    """Child process: protocol echo server + raw ROUTER echo; prints their addresses."""
    import zmq

    from engine.serve.server import EngineServer

    server = EngineServer(EchoHandler(), bind="tcp://127.0.0.1:*")
    server.start()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def echo() -> None:
        while True:
            try:
                msg = router.recv_multipart(copy=False)
            except zmq.ZMQError:
                return
            router.send_multipart(msg, copy=False)

    threading.Thread(target=echo, daemon=True).start()
    print(json.dumps({"protocol": server.address, "raw": "tcp://127.0.0.1:%d" % port}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


# ---------------------------------------------------------------------------
# client side
# ---------------------------------------------------------------------------
def synthetic_image(dtype: str) -> np.ndarray:
    """A smooth, photo-like test image (PNG compresses it like a real picture)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    rng = np.random.default_rng(0)
    planes = [0.5 + 0.5 * np.sin(6.0 * x + 3.0 * y), x * y, 0.5 + 0.5 * np.cos(9.0 * x * y),
              np.ones_like(x)]
    img = np.stack(planes, axis=-1)
    img[..., :3] += rng.normal(0.0, 0.02, (SIZE, SIZE, 3)).astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    if dtype == "uint8":
        return (img * 255.0 + 0.5).astype(np.uint8)
    return img.astype(np.float32)


def timed(fn: Any, repeat: int, warmup: bool = True) -> tuple[float, float]:
    """(best, median) wall time of ``fn`` over ``repeat`` runs."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def raw_roundtrip(address: str, img: np.ndarray, repeat: int) -> tuple[float, float]:
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)

    def once() -> None:
        sock.send(img, copy=False)
        reply = sock.recv(copy=False)
        assert len(reply) == img.nbytes

    try:
        return timed(once, repeat)
    finally:
        sock.close(0)
        ctx.term()


def protocol_roundtrip(address: str, img: np.ndarray, transport: str, repeat: int) -> tuple[float, float]:
    from bridge.client import EngineClient
    client = EngineClient(address, transport=transport, timeout=60)
    reply = client.call("project", {}, {"image": img})
    assert reply.arrays["recon"].data == memoryview(img).cast("B"), "echo mismatch"

    def once() -> None:
        out = client.call("project", {}, {"image": img}).arrays["recon"]
        np.frombuffer(out.data, dtype=out.dtype).reshape(out.shape)  # what the caller does next

    try:
        return timed(once, repeat)
    finally:
        client.close()


def png_roundtrip(img: np.ndarray, repeat: int, kind: str) -> tuple[float, float]:
    from PIL import Image
    tmp = tempfile.mkdtemp(prefix="nc-bench-")

    def write(path: str, arr: np.ndarray) -> None:
        if arr.dtype == np.uint8:
            Image.fromarray(arr, "RGBA").save(path + ".png")
        elif kind == "png16":  # Pillow has no 16-bit RGBA: one 16-bit plane per channel
            for c in range(arr.shape[2]):
                plane = (np.clip(arr[..., c], 0, 1) * 65535.0 + 0.5).astype(np.uint16)
                Image.fromarray(plane).save("%s.%d.png" % (path, c))
        else:  # float32 TIFF, one plane per channel
            for c in range(arr.shape[2]):
                Image.fromarray(np.ascontiguousarray(arr[..., c]), "F").save("%s.%d.tif" % (path, c))

    def read(path: str, like: np.ndarray) -> np.ndarray:
        if like.dtype == np.uint8:
            with Image.open(path + ".png") as im:
                return np.asarray(im)
        planes = []
        for c in range(like.shape[2]):
            if kind == "png16":
                with Image.open("%s.%d.png" % (path, c)) as im:
                    planes.append(np.asarray(im).astype(np.float32) / 65535.0)
            else:
                with Image.open("%s.%d.tif" % (path, c)) as im:
                    planes.append(np.asarray(im, dtype=np.float32))
        return np.stack(planes, axis=-1)

    def once() -> None:
        write(os.path.join(tmp, "request"), img)               # plug-in
        got = read(os.path.join(tmp, "request"), img)          # engine
        write(os.path.join(tmp, "result"), got)                # engine
        back = read(os.path.join(tmp, "result"), img)          # plug-in
        assert back.shape == img.shape

    try:
        return timed(once, repeat, warmup=False)
    finally:
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
        os.rmdir(tmp)


def run(repeat: int = 7, file_repeat: int = 2) -> list[dict]:
    """Measure everything in one run; returns one dict per (dtype, method).

    Ratios use the best time of each method (the least disturbed by other load).
    """
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-echo"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        addresses = json.loads(child.stdout.readline())
        results = []
        for dtype in ("uint8", "float32"):
            img = synthetic_image(dtype)
            mb = img.nbytes / 2 ** 20
            rows = [
                ("raw pyzmq DEALER/ROUTER", raw_roundtrip(addresses["raw"], img, repeat)),
                ("protocol, pyzmq client", protocol_roundtrip(addresses["protocol"], img, "pyzmq", repeat)),
                ("protocol, pure-Python ZMTP", protocol_roundtrip(addresses["protocol"], img, "zmtp", repeat)),
            ]
            if dtype == "uint8":
                rows.append(("PNG files (Pillow)", png_roundtrip(img, file_repeat, "png8")))
            else:
                rows.append(("16-bit PNG files (Pillow, 4 planes)", png_roundtrip(img, file_repeat, "png16")))
                rows.append(("float32 TIFF files (Pillow, 4 planes)", png_roundtrip(img, file_repeat, "tiff")))
            raw = rows[0][1][0]
            png = rows[3][1][0]
            for method, (best, median) in rows:
                results.append({
                    "name": "bridge round trip %dx%dx%d %s: %s" % (SIZE, SIZE, CHANNELS, dtype, method),
                    "bench": "bridge", "dtype": dtype, "method": method, "megabytes": round(mb, 1),
                    "seconds": best, "ms": round(best * 1000.0, 2), "ms_median": round(median * 1000.0, 2),
                    "ratio_vs_raw_pyzmq": round(best / raw, 2),
                    "png_vs_this": round(png / best, 1),
                })
        return results
    finally:
        child.stdin.close()
        child.wait(10)


def print_table(results: list[dict]) -> None:
    print("Round trip of a %dx%d RGBA image (engine in a separate process, loopback TCP)" % (SIZE, SIZE))
    print("%-8s %-38s %6s %9s %9s %8s %10s" % ("dtype", "method", "MiB", "best ms", "median", "vs raw",
                                                "PNG/this"))
    for r in results:
        print("%-8s %-38s %6.1f %9.1f %9.1f %7.2fx %9.1fx" % (
            r["dtype"], r["method"], r["megabytes"], r["ms"], r["ms_median"], r["ratio_vs_raw_pyzmq"],
            r["png_vs_this"]))
    print("goal: protocol <= 2x raw pyzmq, >= 40x faster than PNG files")


def main() -> int:
    if "--serve-echo" in sys.argv:
        serve_echo()
        return 0
    print_table(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
