"""Fuzz the server with >= 1,000 random and malformed messages (seeded, time-bounded)."""

# ruff: noqa: UP031
from __future__ import annotations

import json
import os
import random
import socket
import time

import numpy as np
import pytest
import zmq
from bridge_fakes import FakeHandler

from bridge.client import EngineClient
from bridge.protocol import Limits, MiB, decode_message, encode_message
from bridge.zmtp import greeting
from engine.serve.server import EngineServer

N_MESSAGES = 1200
SEED = 20240611
LIMITS = Limits(max_message_bytes=4 * MiB)  # small, so "too large" cases are cheap


@pytest.fixture(scope="module")
def server():
    srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", limits=LIMITS)
    srv.start()
    yield srv
    srv.stop()


def hdr(rng, **fields):
    h = {"v": 1, "id": "f%d" % rng.randrange(10 ** 9), "op": "hello", "params": {}}
    h.update(fields)
    return h


def jbytes(obj):
    return json.dumps(obj).encode()


def junk(rng, n):
    return bytes(rng.randrange(256) for _ in range(n))


def rand_json(rng, depth=0):
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randrange(-10 ** 6, 10 ** 6)
    if kind == 1:
        return rng.random() * 1e6
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return [rand_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"k%d" % i: rand_json(rng, depth + 1) for i in range(rng.randrange(4))}


DESC = {"name": "image", "dtype": "uint8", "shape": [4, 4, 3]}


def case(rng):
    """One malformed message: (frames, expected error codes, expected id or None)."""
    k = rng.randrange(24)
    if k == 0:
        return [junk(rng, rng.randrange(1, 300))], {"bad_request"}, None
    if k == 1:
        return [jbytes(rng.choice([[1, 2], 3, "s", None, True, [rand_json(rng)]]))], {"bad_request"}, None
    if k == 2:
        h = hdr(rng)
        del h["id"]
        return [jbytes(h)], {"bad_request"}, None
    if k == 3:
        h = hdr(rng, id=rng.choice([1, None, [], {}, "x" * 300]))
        return [jbytes(h)], {"bad_request"}, None
    if k == 4:
        h = hdr(rng, v=rng.choice([0, 2, 99, "1", None, [1], 1.5, True]))
        return [jbytes(h)], {"bad_version"}, h["id"]
    if k == 5:
        h = hdr(rng, params=rng.choice([[], "p", 3, None, True, [rand_json(rng)]]))
        return [jbytes(h)], {"bad_request"}, h["id"]
    if k == 6:
        h = hdr(rng, op="op_%d" % rng.randrange(1000))
        return [jbytes(h)], {"unknown_op"}, h["id"]
    if k == 7:
        h = hdr(rng)
        del h["op"]
        return [jbytes(h)], {"bad_request"}, h["id"]
    if k == 8:  # descriptor / frame count mismatch
        n_desc, n_frames = rng.choice([(1, 0), (0, 1), (1, 2), (2, 1), (0, 3)])
        descs = [dict(DESC, name="a%d" % i) for i in range(n_desc)]
        h = hdr(rng, op="project", arrays=descs)
        return [jbytes(h)] + [bytes(48)] * n_frames, {"bad_request"}, h["id"]
    if k == 9:  # frame size does not match dtype/shape
        h = hdr(rng, op="project", arrays=[dict(DESC, dtype=rng.choice(["uint8", "uint16", "float32"]))])
        size = rng.choice([0, 1, 47, 49, 95, 97, 191, 1000])
        return [jbytes(h), bytes(size)], {"bad_request"}, h["id"]
    if k == 10:  # unsupported dtype
        h = hdr(rng, op="project", arrays=[dict(DESC, dtype=rng.choice(["int8", "bool", "float16", "object",
                                                                        "<f4", 5, None, "U10"]))])
        return [jbytes(h), bytes(48)], {"bad_request"}, h["id"]
    if k == 11:  # absurd shapes
        shape = rng.choice([[65537, 1, 3], [1, 1, 1, 1, 1], [65536, 65536, 4], [2 ** 40, 2 ** 40],
                            [30000, 30000, 1], [2 ** 62, 0, 2 ** 62]])
        h = hdr(rng, op="project", arrays=[dict(DESC, shape=shape)])
        return [jbytes(h), bytes(48)], {"too_large"}, h["id"]
    if k == 12:  # malformed shapes
        shape = rng.choice([[-1, 4, 3], [4.0, 4, 3], "4x4x3", None, [True, 4], [[4], 4], {"h": 4}])
        h = hdr(rng, op="project", arrays=[dict(DESC, shape=shape)])
        return [jbytes(h), bytes(48)], {"bad_request"}, h["id"]
    if k == 13:  # malformed descriptors
        desc = rng.choice(["image", 3, None, {"dtype": "uint8", "shape": [1]}, {"name": "", "dtype": "uint8",
                           "shape": [1]}, {"name": 5, "dtype": "uint8", "shape": [1]}])
        h = hdr(rng, op="project", arrays=[desc])
        return [jbytes(h), bytes(1)], {"bad_request"}, h["id"]
    if k == 14:  # too many frames / arrays
        n = rng.randrange(34, 60)
        descs = [dict(DESC, name="a%d" % i, shape=[1]) for i in range(n)]
        h = hdr(rng, op="project", arrays=descs)
        return [jbytes(h)] + [b"\0"] * n, {"too_large"}, h["id"]
    if k == 15:  # bad params for an image op
        op, params = rng.choice([
            ("project", {"steps": rng.choice(["10", 1.5, [], {}, True, -3])}),
            ("project", {"region": rng.choice([[0, 0, -1, 5], [0, 0], "all", [0.5, 0, 1, 1]])}),
            ("project", {"class": rng.choice([[rand_json(rng)], {}, 1.5, True])}),
            ("project", {"model": rng.choice([1, [], {}])}),
            ("swap", {"target": None, "strength": 2, "layers": "all", "poisson": True}),
            ("swap", {"target": "cat", "strength": 0.5, "layers": "some", "poisson": True}),
            ("blend", {"strength": 0.5, "layers": "all", "shift": [1], "poisson": True}),
            ("edit", {"poisson": "yes", "swap": 3}),
        ])
        frames = encode_message(hdr(rng, op=op, params=params), {"image": np.zeros((4, 4, 3), np.uint8)})
        return frames, {"bad_request"}, json.loads(frames[0])["id"]
    if k == 16:  # missing or unexpected arrays
        op = rng.choice(["project", "swap", "blend", "edit"])
        arrays = rng.choice([{}, {"mask": np.zeros((4, 4), np.uint8)},
                             {"image": np.zeros((4, 4, 3), np.uint8), "stray": np.zeros(3, np.uint8)},
                             {"image": np.zeros((4, 4), np.uint8)},
                             {"image": np.zeros((4, 4, 7), np.uint8)}])
        frames = encode_message(hdr(rng, op=op, params={"target": "x", "strength": 1, "layers": "all",
                                                        "poisson": True, "shift": [0, 0]}), arrays)
        return frames, {"bad_request"}, json.loads(frames[0])["id"]
    if k == 17:  # bad cancel / classes params
        op, params = rng.choice([("cancel", {}), ("cancel", {"id": 5}), ("classes", {"search": 3}),
                                 ("classes", {"model": [1]})])
        h = hdr(rng, op=op, params=params)
        return [jbytes(h)], {"bad_request"}, h["id"]
    if k == 18:  # empty or whitespace header
        return [rng.choice([b"", b" ", b"\n\t", b"{"])], {"bad_request"}, None
    if k == 19:  # non-standard JSON constants, invalid UTF-8 inside a string
        raw = rng.choice([b'{"v":1,"id":"x","op":"hello","params":{"a":NaN}}',
                          b'{"v":1,"id":"x","op":"hello","params":{"a":Infinity}}',
                          b'{"v":1,"id":"\xff\xfe","op":"hello"}'])
        return [raw], {"bad_request"}, None
    if k == 20:  # deep nesting
        depth = rng.randrange(10000, 100000)
        return [b"[" * depth + b"]" * depth], {"bad_request"}, None
    if k == 21:  # arrays not a list / op not a string / bad reply type
        h = hdr(rng, **rng.choice([{"arrays": {"image": DESC}}, {"arrays": "image"}, {"op": 5},
                                   {"op": None}, {"type": "bogus"}]))
        return [jbytes(h)], {"bad_request"}, h["id"]
    if k == 22:  # random header fields around a valid core: op "hello" with junk params is still valid
        h = hdr(rng, v=rng.choice([1, 1, 3]), op=rng.choice(["helo", "HELLO", "hello "]),
                params=rand_json(rng) if rng.random() < 0.5 else {})
        codes = {"bad_version"} if h["v"] != 1 else ({"unknown_op"} if isinstance(h["params"], dict)
                                                      else {"bad_request"})
        return [jbytes(h)], codes, h["id"]
    # k == 23: random byte flips in a valid swap request's header
    frames = encode_message(hdr(rng, op="swap", params={"target": "cat", "strength": 1, "layers": "all",
                                                        "poisson": True}),
                            {"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.uint8)})
    raw = bytearray(frames[0])
    for _ in range(rng.randrange(1, 4)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return [bytes(raw)] + [bytes(f) for f in frames[1:]], None, None  # anything but silence


def test_fuzz_server(server):
    rng = random.Random(SEED)
    ctx = zmq.Context()
    socks = []
    for _ in range(4):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(server.address)
        socks.append(s)
    t0 = time.monotonic()
    codes_seen = {}
    try:
        for i in range(N_MESSAGES):
            frames, codes, rid = case(rng)
            sock = socks[i % len(socks)]
            sock.send_multipart(frames)
            assert sock.poll(5000), "no reply to malformed message %d: %r" % (i, frames[0][:200])
            h, _ = decode_message(sock.recv_multipart())
            if h["type"] in ("heartbeat", "queued", "progress"):  # a mutated request that became valid
                while h["type"] not in ("result", "error"):
                    assert sock.poll(5000)
                    h, _ = decode_message(sock.recv_multipart())
            if codes is not None:
                assert h["type"] == "error", (i, frames[0][:200], h)
                assert h["params"]["code"] in codes, (i, frames[0][:200], h)
                assert isinstance(h["params"]["message"], str) and h["params"]["message"]
                if rid is not None:
                    assert h["id"] == rid, (i, frames[0][:200], h)
            key = h["params"].get("code", h["type"])
            codes_seen[key] = codes_seen.get(key, 0) + 1
            assert time.monotonic() - t0 < 30, "fuzzing too slow"

        # huge header, and a message over the total size limit (several frames below the per-frame limit)
        big = [b'{"v":1,"id":"big","op":"hello","params":{"pad":"' + b"x" * (MiB + 10) + b'"}}']
        descs = [dict(DESC, name="a%d" % i, shape=[3 * MiB]) for i in range(2)]
        over = [jbytes({"v": 1, "id": "over", "op": "project", "arrays": descs}), bytes(3 * MiB), bytes(3 * MiB)]
        for frames, rid in ((big, None), (over, "over")):
            socks[0].send_multipart(frames)
            assert socks[0].poll(5000)
            h, _ = decode_message(socks[0].recv_multipart())
            assert h["type"] == "error" and h["params"]["code"] == "too_large"
            if rid:
                assert h["id"] == rid

        # a single frame beyond the size limit: libzmq drops that connection; the server lives on
        socks[1].send_multipart([b"x", bytes(LIMITS.max_message_bytes + 1)])
        # raw TCP garbage and broken ZMTP streams
        host, port = server.address[len("tcp://"):].rsplit(":", 1)
        for j in range(20):
            with socket.create_connection((host, int(port)), timeout=2) as raw:
                if j % 2:
                    raw.sendall(greeting() + junk(rng, rng.randrange(1, 200)))
                else:
                    raw.sendall(junk(rng, rng.randrange(1, 200)))
                time.sleep(0.005)
    finally:
        for s in socks:
            s.close(0)
        ctx.term()

    elapsed = time.monotonic() - t0
    assert elapsed < 40
    # the server still answers valid requests, through both transports
    for transport in ("pyzmq", "zmtp"):
        with EngineClient(server.address, transport=transport, timeout=5) as c:
            assert c.hello()["state"] == "ready"
            img = np.full((4, 4, 3), 7, np.uint8)
            assert c.call("project", {}, {"image": img}).arrays["recon"].tobytes() == img.tobytes()
    assert server.stats["received"] >= N_MESSAGES
    assert {"bad_request", "bad_version", "unknown_op", "too_large"} <= set(codes_seen), codes_seen
    print("fuzz: %d messages in %.2f s: %s" % (N_MESSAGES, elapsed, codes_seen))


def test_fuzz_decode_never_raises_anything_but_protocol_error():
    from bridge.protocol import ProtocolError
    rng = random.Random(SEED + 1)
    for _ in range(2000):
        n = rng.randrange(1, 4)
        frames = []
        if rng.random() < 0.5:
            frames.append(jbytes(hdr(rng, arrays=[{"name": "a", "dtype": rng.choice(["uint8", "float32", "x"]),
                                                   "shape": [rng.randrange(-2, 5) for _ in range(rng.randrange(4))]}])))
        else:
            frames.append(jbytes(rand_json(rng)) if rng.random() < 0.7 else junk(rng, rng.randrange(40)))
        frames += [os.urandom(rng.randrange(0, 40)) for _ in range(n - 1)]
        try:
            decode_message(frames)
        except ProtocolError as exc:
            assert exc.code in ("bad_request", "bad_version", "too_large")
