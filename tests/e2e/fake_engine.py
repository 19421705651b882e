#!/usr/bin/env python3
"""A stand-in Neural Collage engine for the GIMP end-to-end tests (host Python: pyzmq + numpy).

It is served by the project's own ``engine.serve.server.EngineServer`` when that imports (so the plug-in meets the
real server: request validation, heartbeats, progress throttling, error replies), else by a minimal ROUTER
loop using bridge.protocol; either way only the pixel work is fake, chosen so a test can predict it:

  edit with swap   -> inside the mask the colour channels are inverted (out = img + m * (inverted - img)),
                      alpha kept; outside the mask the bytes are returned unchanged
  edit with blend  -> inside the mask the reference, moved by ``shift`` (content at p lands at p + shift),
                      replaces the image (out = img + m * (shifted reference - img))
  return_recon     -> ``recon``: the crop quantised to 8 levels per channel
  steps            -> that many progress steps (3 when not given), 10 ms each when more than 3
  errors           -> unknown class: bad_input "unknown class 'x'..."; mask with fewer than 16 selected
                      pixels: bad_input "region too small..."; empty mask: bad_input "empty mask"

Every request is appended to ``--log`` as one JSON line (op, params, array descriptors, per-array sums) so a
test can check what the plug-in sent. ``python3 fake_engine.py --bind tcp://127.0.0.1:PORT --log FILE``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import numpy as np
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from bridge import protocol as P

CLASSES = [{"id": 0, "name": "tabby"}, {"id": 1, "name": "tiger"}, {"id": 2, "name": "lion"},
           {"id": 3, "name": "brick wall"}, {"id": 4, "name": "grass"}]
NP_DTYPES = {"uint8": "<u1", "uint16": "<u2", "float32": "<f4", "int64": "<i8", "float64": "<f8"}
MAX_VALUE = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


class BadInput(Exception):
    pass


DTYPE_NAMES = {np.dtype("uint8"): "uint8", np.dtype("<u2"): "uint16", np.dtype("<f4"): "float32"}


def to_np(arr: P.Array) -> np.ndarray:
    return np.frombuffer(arr.data, dtype=NP_DTYPES[arr.dtype]).reshape(arr.shape)


def from_np(a: np.ndarray) -> P.Array:
    a = np.ascontiguousarray(a)
    return P.Array(DTYPE_NAMES[a.dtype], a.shape, a.tobytes())


def resolve_class(value):
    if value is None:
        return None
    for c in CLASSES:
        if value == c["id"] or (isinstance(value, str) and value.strip().lower() == c["name"]):
            return c
    names = ", ".join(c["name"] for c in CLASSES)
    raise BadInput(f"unknown class {value!r}: try one of {names}")


def mask_weights(a: np.ndarray) -> np.ndarray:
    m = a.astype(np.float64)
    return m / 255.0 if a.dtype == np.uint8 else np.clip(m, 0.0, 1.0)


def finish(image: np.ndarray, target: np.ndarray, m: np.ndarray) -> np.ndarray:
    img = image.astype(np.float64)
    out = img + m[:, :, None] * (target - img)
    if image.dtype != np.float32:
        out = np.rint(out)
    out = np.where(m[:, :, None] > 0, out, img)  # bytes outside the mask: exactly the input
    return out.astype(image.dtype)


def edit(params, arrays, progress):
    """The stand-in edit on numpy arrays; returns (params, {name: numpy array})."""
    image = arrays["image"]
    img = image.astype(np.float64)
    h, w, c = img.shape
    m = mask_weights(arrays["mask"])
    if not m.any():
        raise BadInput("empty mask: select a region first")
    if int((m > 0).sum()) < 16:
        raise BadInput(f"region too small: select at least 16 pixels (got {int((m > 0).sum())})")
    colour = c - 1 if c in (2, 4) else c
    full = MAX_VALUE[DTYPE_NAMES[image.dtype]]
    out_params = {}
    source = resolve_class(params.get("source_class")) or CLASSES[0]
    out_params["source_class"] = source["name"]
    steps = int(params.get("steps") or 3)
    delay = 0.01 if steps > 3 else 0.0  # a long request (the cancel case) takes steps / 100 seconds
    for i in range(steps):
        progress("project", i + 1, steps, 0.5 / (i + 1))
        time.sleep(delay)
    target_img = img.copy()
    swap, blend = params.get("swap"), params.get("blend")
    if swap is not None:
        tgt = resolve_class(swap["target"])
        out_params["target_class"] = tgt["name"]
        for lab in swap.get("labels") or []:
            resolve_class(lab["class"])
        target_img[:, :, :colour] = full - img[:, :, :colour]
    if blend is not None:
        ref = arrays["reference"].astype(np.float64)
        dx, dy = blend["shift"]
        shifted = img.copy()
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        if abs(dx) < w and abs(dy) < h:
            shifted[yd, xd, :colour] = ref[ys, xs, :colour]
        target_img = shifted
        out_params["shift"] = [dx, dy]
    result = {"image": finish(image, target_img, m)}
    if params.get("return_recon"):
        levels = full / 7.0
        recon = np.rint(img / levels) * levels
        result["recon"] = recon.astype(image.dtype)
        out_params["loss"] = 0.125
    return out_params, result


def summary(arrays):
    out = {}
    for name, a in arrays.items():
        out[name] = {"dtype": DTYPE_NAMES.get(a.dtype, str(a.dtype)), "shape": list(a.shape),
                     "sum": float(a.astype(np.float64).sum()), "nonzero": int(np.count_nonzero(a))}
    return out


def log_request(log_path, op, params, arrays):
    if log_path:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"op": op, "params": params, "arrays": summary(arrays),
                                 "time": time.time()}) + "\n")


HELLO = {"engine_version": "fake-0", "device": "cpu", "models": ["fake"], "default_model": "fake"}


class FakeHandler:
    """The stand-in as an ``engine.serve.server.EngineServer`` handler (hello / classes / run)."""

    def __init__(self, log_path=None):
        self.log_path = log_path

    def hello(self):
        return dict(HELLO)

    def classes(self, params):
        log_request(self.log_path, "classes", params, {})
        q = (params.get("search") or "").lower()
        return {"classes": [c for c in CLASSES if q in c["name"]]}

    def run(self, op, params, arrays, job):
        from engine.serve.server import OpError

        log_request(self.log_path, op, params, arrays)
        if op != "edit":
            raise OpError(P.E_UNKNOWN_OP, f"the stand-in engine only does edit, not {op!r}")
        try:
            return edit(params, arrays, job.progress)
        except BadInput as exc:
            raise OpError(P.E_BAD_INPUT, str(exc)) from None


def serve_with_engine_server(bind: str, log_path: str | None) -> None:
    from engine.serve.server import EngineServer

    server = EngineServer(FakeHandler(log_path), bind=bind)
    server.bind()
    signal.signal(signal.SIGTERM, lambda *a: server.stop())
    print(f"fake engine (engine.serve.server.EngineServer) listening on {bind}", flush=True)
    server.serve_forever()


def serve(bind: str, log_path: str | None) -> None:
    """A minimal ROUTER loop of its own (no heartbeats, one request at a time)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(bind)
    print(f"fake engine listening on {bind}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def send(ident, rid, kind, params=None, arrays=None):
        frames = P.encode_message({"id": rid, "type": kind, "params": params or {}}, arrays or {})
        sock.send_multipart([ident] + frames)

    while not stop:
        if not sock.poll(200):
            continue
        frames = sock.recv_multipart()
        ident, rest = frames[0], frames[1:]
        try:
            header, arrays = P.decode_message(rest)
        except P.ProtocolError as exc:
            send(ident, exc.request_id or "", "error", {"code": exc.code, "message": exc.message})
            continue
        rid, op, params = header["id"], header.get("op"), header["params"]
        np_arrays = {name: to_np(a) for name, a in arrays.items()}
        log_request(log_path, op, params, np_arrays)
        try:
            P.validate_request(op, params, arrays)
            if op == "hello":
                send(ident, rid, "result", dict(HELLO, protocol=P.PROTOCOL_VERSION, state="ready"))
            elif op == "classes":
                q = (params.get("search") or "").lower()
                send(ident, rid, "result", {"classes": [c for c in CLASSES if q in c["name"]]})
            elif op == "status":
                send(ident, rid, "result", {"state": "ready", "queue": 0})
            elif op == "cancel":
                send(ident, rid, "result", {})
            elif op == "edit":
                def progress(stage, step, total, loss, ident=ident, rid=rid):
                    send(ident, rid, "progress", {"stage": stage, "step": step, "total": total, "loss": loss})
                out_params, out_arrays = edit(params, np_arrays, progress)
                send(ident, rid, "result", out_params, {k: from_np(v) for k, v in out_arrays.items()})
            else:
                send(ident, rid, "error", {"code": P.E_UNKNOWN_OP, "message": "the stand-in engine only "
                                           f"does hello, classes, status and edit, not {op!r}"})
        except BadInput as exc:
            send(ident, rid, "error", {"code": P.E_BAD_INPUT, "message": str(exc)})
        except P.ProtocolError as exc:
            send(ident, rid, "error", {"code": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - reported to the client like the real engine does
            send(ident, rid, "error", {"code": P.E_ENGINE_ERROR, "message": f"{type(exc).__name__}: {exc}"})
    sock.close()
    ctx.term()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default=P.DEFAULT_ADDRESS)
    ap.add_argument("--log", default=None, help="append every request as a JSON line")
    ap.add_argument("--server", choices=("auto", "engine", "own"), default="auto",
                    help="engine: serve through the project's engine.serve.server.EngineServer (heartbeats, queue, "
                         "the real error handling); own: a minimal loop; auto: engine when importable")
    args = ap.parse_args(argv)
    use_engine = args.server == "engine"
    if args.server == "auto":
        try:
            import engine.serve.server  # noqa: F401

            use_engine = True
        except Exception:  # noqa: BLE001 - any import problem: fall back to the own loop
            use_engine = False
    if use_engine:
        serve_with_engine_server(args.bind, args.log)
    else:
        serve(args.bind, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
