"""Property-based fuzzing of the real engine through its socket (black box).

Every property checks, for each hostile request: exactly one final reply (result or error) comes for it, within
a bounded time (a job the engine accepted is cancelled after a few seconds, as a client would); an error names a
protocol error code other than ``engine_error`` (bad input is never an internal failure) with a short message;
the engine process is alive and its peak memory stays under the budget; and after it the engine still answers a
valid edit correctly (checked on the pixels).
"""
from __future__ import annotations

import json
import socket
import struct

import pytest
from hostile_harness import ENGINE_RSS_BUDGET, Raw, fuzz_settings, outcome, probe_edit, probe_raw
from hypothesis import given
from hypothesis import strategies as st
from hostile_strategies import encode, frame_mutation, hostile_text, image_request, mutated_request, nested

from bridge.protocol import ERROR_CODES
from bridge.zmtp import frame_header, greeting


#: errors the front door (decoding and validation) gives without the worker seeing the request
FRONT_DOOR = {"bad_request", "bad_version", "unknown_op", "too_large", "busy"}


class Checker:
    """Runs one hostile message and checks the per-request properties; probes a valid edit after every message
    that reached the worker and after every ``every``-th other one."""

    def __init__(self, raw: Raw, engine, every: int = 20):
        self.raw, self.engine, self.every, self.n = raw, engine, every, 0

    def __call__(self, frames: list[bytes]) -> dict:
        self.n += 1
        got = self.raw.exchange(frames, self.engine)
        final = got[-1][0]
        outcome("engine:" + (final["type"] if final["type"] == "result" else str(final["params"].get("code"))))
        kinds = [h["type"] for h, _ in got]
        assert kinds.count("result") + kinds.count("error") == 1
        if final["type"] == "error":
            p = final["params"]
            assert p.get("code") in ERROR_CODES, final
            assert p["code"] != "engine_error", "bad input reported as an internal failure: %r" % (p,)
            assert isinstance(p.get("message"), str) and 0 < len(p["message"]) <= 1000, final
        assert not self.raw.late, "replies after the final one: %r" % self.raw.late
        assert self.engine.alive
        peak = self.engine.peak_rss()
        assert peak < ENGINE_RSS_BUDGET, "engine peak memory %.0f MiB" % (peak / 2 ** 20)
        reached_worker = final["type"] == "result" or final["params"].get("code") not in FRONT_DOOR
        if reached_worker or self.n % self.every == 0:
            probe_raw(self.raw, self.engine)
        return final


@pytest.fixture
def check(raw, engine):
    c = Checker(raw, engine)
    yield c
    probe_raw(raw, engine)


@fuzz_settings(ci=150)
@given(req=mutated_request())
def test_headers_with_wrong_types_in_every_field(check, req):
    header, arrays = req
    check(encode(header, arrays))


@fuzz_settings(ci=40)
@given(req=image_request())
def test_image_mask_region_shapes_dtypes_and_values(check, req):
    header, arrays = req
    check(encode(header, arrays))


@fuzz_settings(ci=80)
@given(data=st.data())
def test_frame_counts_and_sizes_disagreeing_with_the_header(check, data):
    header, arrays = data.draw(st.one_of(mutated_request(), image_request()))
    frames = data.draw(frame_mutation(encode(header, arrays)))
    check(frames)


def _text_header(draw) -> bytes:
    kind = draw(st.sampled_from(["escape", "nest", "bytes", "bigint", "dup"]))
    if kind == "escape":  # unencodable text through JSON escapes, in any field a reply may echo
        field = draw(st.sampled_from(["id", "op", "model", "search", "class", "target", "cache_key", "key"]))
        text = draw(hostile_text)
        op = draw(st.sampled_from(["hello", "classes", "swap", "edit", "project", "cancel"]))
        h = {"v": 1, "id": "t", "op": op, "params": {}}
        if field in ("id", "op"):
            h[field] = text
        elif field == "key":
            h["params"][text] = 1
        else:
            h["params"][field] = text
        return json.dumps(h, ensure_ascii=True).encode()
    if kind == "nest":
        depth = draw(st.sampled_from([50, 500, 990, 1000, 5000, 100000]))
        inner = nested(depth, draw(st.sampled_from(["list", "dict"])))
        return ('{"v":1,"id":"n","op":"hello","params":{"x":%s}}' % inner).encode()
    if kind == "bigint":
        digits = draw(st.sampled_from([400, 4300, 5000, 100000]))
        return ('{"v":1,"id":"b","op":"project","params":{"steps":%s}}' % ("9" * digits)).encode()
    if kind == "dup":
        return b'{"v":1,"id":"d","op":"hello","op":"swap","params":{},"params":[]}'
    return draw(st.binary(max_size=300))


@fuzz_settings(ci=60)
@given(data=st.data())
def test_unencodable_text_deep_nesting_and_junk_headers(check, data):
    check([_text_header(data.draw)])


@fuzz_settings(ci=25)
@given(data=st.data())
def test_broken_zmtp_streams(engine, data):
    """Raw TCP: junk, a greeting then junk, frames announcing huge sizes, connections cut mid-frame."""
    from hostile_harness import COUNTS
    host, port = engine.address[len("tcp://"):].rsplit(":", 1)
    kind = data.draw(st.sampled_from(["junk", "greeting_junk", "huge_frame", "cut", "many_small"]))
    payload = b""
    if kind == "junk":
        payload = data.draw(st.binary(min_size=1, max_size=500))
    elif kind == "greeting_junk":
        payload = greeting() + data.draw(st.binary(min_size=1, max_size=500))
    elif kind == "huge_frame":  # a long frame header announcing up to 2^63 bytes, then a few
        size = data.draw(st.sampled_from([2 ** 31, 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1]))
        payload = greeting() + bytes([0x02]) + struct.pack(">Q", size) + b"x" * 100
    elif kind == "cut":
        payload = greeting()[: data.draw(st.integers(1, 63))]
    else:
        payload = greeting() + b"".join(frame_header(1, 1) + b"x" for _ in range(data.draw(st.integers(1, 2000))))
    COUNTS["messages"] += 1
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            s.sendall(payload)
        except OSError:
            pass
    assert engine.alive
    assert engine.peak_rss() < ENGINE_RSS_BUDGET


def test_engine_still_edits_through_both_transports(engine):
    for transport in ("pyzmq", "zmtp"):
        probe_edit(engine, transport)
