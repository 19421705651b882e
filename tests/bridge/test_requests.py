"""Typed requests (bridge/requests.py) and errors (bridge/errors.py): round trips, every range refused with a
message naming parameter, range and value, unknown fields, and PROTOCOL.md's tables generated from them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bridge import errors as E
from bridge import requests as R
from bridge.protocol import Array, ProtocolError, decode_message, encode_message
from bridge.requests import BlendParams, EditRequest, Label, SwapParams, parse_request, validate_request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IMG = Array("uint8", (4, 6, 4))
MASK = Array("uint8", (4, 6))
FMASK = Array("float32", (4, 6))
REF = Array("float32", (8, 8, 3))
SWAP = {"target": "tabby cat", "strength": 0.8, "layers": "all", "poisson": True}
BLEND = {"strength": 1, "layers": [0, 2], "shift": [3, -2], "poisson": False}

VALID = [
    ("hello", {}, {}),
    ("status", {}, {}),
    ("classes", {"search": "cat", "model": None}, {}),
    ("cancel", {"id": "abc"}, {}),
    ("project", {}, {"image": IMG}),
    ("project", {"class": 3, "steps": 50, "region": [0, 0, 4, 4], "model": "default"}, {"image": IMG}),
    ("project", {"class": None}, {"image": REF}),
    ("swap", SWAP, {"image": IMG, "mask": MASK}),
    ("swap", dict(SWAP, target=7, layers="rest", source_class=None, steps=10,
                  labels=[{"class": "daisy", "strength": 0.5, "mask": "label0"}]),
     {"image": IMG, "mask": FMASK, "label0": MASK}),
    ("blend", BLEND, {"image": IMG, "mask": MASK, "reference": REF}),
    ("blend", dict(BLEND, reference_class="goldfish", source_class=1),
     {"image": IMG, "mask": MASK, "reference": REF, "reference_mask": Array("uint8", (8, 8))}),
    ("edit", {"poisson": True, "swap": {"target": 1, "strength": 0.5, "layers": "first"}, "blend": None,
              "cache_key": "layer-17", "return_recon": True}, {"image": IMG, "mask": MASK}),
    ("edit", {"poisson": False, "swap": None, "blend": {"strength": 0.2, "layers": "all", "shift": [0, 0]}},
     {"image": IMG, "mask": MASK, "reference": REF}),
    ("edit", {"poisson": False, "swap": dict(SWAP, labels=[{"class": 2, "strength": 1, "mask": "l"}]),
              "blend": BLEND, "extra_future_param": 1},
     {"image": IMG, "mask": MASK, "reference": REF, "reference_mask": Array("float32", (8, 8)),
      "l": MASK}),
]


INVALID = [
    ("frobnicate", {}, {}, "unknown_op"),
    ("cancel", {}, {}, "bad_request"),
    ("cancel", {"id": 3}, {}, "bad_request"),
    ("classes", {"search": 3}, {}, "bad_request"),
    ("hello", {}, {"image": IMG}, "bad_request"),
    ("project", {}, {}, "bad_request"),
    ("project", {"steps": "10"}, {"image": IMG}, "bad_request"),
    ("project", {"steps": -1}, {"image": IMG}, "bad_request"),
    ("project", {"class": True}, {"image": IMG}, "bad_request"),
    ("project", {"class": 1.5}, {"image": IMG}, "bad_request"),
    ("project", {"region": [0, 0, 0, 4]}, {"image": IMG}, "bad_request"),
    ("project", {"model": 3}, {"image": IMG}, "bad_request"),
    ("project", {}, {"image": MASK}, "bad_request"),
    ("project", {}, {"image": Array("uint8", (4, 6, 5))}, "bad_request"),
    ("project", {}, {"image": Array("int64", (4, 6, 3))}, "bad_request"),
    ("project", {}, {"image": IMG, "junk": MASK}, "bad_request"),
    ("swap", {k: v for k, v in SWAP.items() if k != "target"}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, strength=1.5), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, strength=float("nan")), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, layers="some"), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, layers=[1, -1]), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, poisson=1), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", SWAP, {"image": IMG}, "bad_request"),
    ("swap", SWAP, {"image": IMG, "mask": Array("uint8", (4, 5))}, "bad_request"),
    ("swap", SWAP, {"image": IMG, "mask": Array("uint16", (4, 6))}, "bad_request"),
    ("swap", dict(SWAP, labels=[{"class": 1, "strength": 1, "mask": "nope"}]),
     {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, labels={"class": 1}), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, labels=[{"class": 1, "mask": "l"}]), {"image": IMG, "mask": MASK, "l": MASK},
     "bad_request"),
    ("blend", BLEND, {"image": IMG, "mask": MASK}, "bad_request"),
    ("blend", dict(BLEND, shift=[1]), {"image": IMG, "mask": MASK, "reference": REF}, "bad_request"),
    ("blend", dict(BLEND, shift=[1.5, 2]), {"image": IMG, "mask": MASK, "reference": REF}, "bad_request"),
    ("blend", BLEND, {"image": IMG, "mask": MASK, "reference": REF, "reference_mask": MASK},
     "bad_request"),
    ("edit", {"swap": None, "blend": None}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("edit", {"poisson": True, "swap": "yes"}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("edit", {"poisson": True, "swap": {"strength": 1, "layers": "all"}}, {"image": IMG, "mask": MASK},
     "bad_request"),
    ("edit", {"poisson": True, "blend": BLEND}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("edit", {"poisson": True}, {"image": IMG, "mask": MASK, "reference": REF}, "bad_request"),
    ("edit", {"poisson": True, "cache_key": 5}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("edit", {"poisson": True, "return_recon": "yes"}, {"image": IMG, "mask": MASK}, "bad_request"),
]


VALID += [
    ("project", {"steps": 5000}, {"image": IMG}),
    ("project", {"steps": 0}, {"image": IMG, "mask": MASK}),
    ("edit", {"poisson": True, "region": [1, 1, 2, 2], "steps": 5000}, {"image": IMG, "mask": MASK}),
]
INVALID += [
    ("project", {"steps": 5001}, {"image": IMG}, "bad_request"),
    ("edit", {"poisson": True, "steps": 100000}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, steps=5001), {"image": IMG, "mask": MASK}, "bad_request"),
    ("edit", {"poisson": True, "region": [0, 0, 4]}, {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, labels=[{"class": 1, "strength": 1, "mask": "l"}] * 17),
     {"image": IMG, "mask": MASK, "l": MASK}, "bad_request"),
    ("swap", dict(SWAP, layers=list(range(65))), {"image": IMG, "mask": MASK}, "bad_request"),
    ("swap", dict(SWAP, layers=[1024]), {"image": IMG, "mask": MASK}, "bad_request"),
    ("blend", dict(BLEND, shift=[65537, 0]), {"image": IMG, "mask": MASK, "reference": REF}, "bad_request"),
]


@pytest.mark.parametrize("op,params,arrays", VALID)
def test_valid_requests(op, params, arrays):
    req = validate_request(op, params, arrays)
    assert req.op == op


@pytest.mark.parametrize("op,params,arrays,code", INVALID)
def test_invalid_requests(op, params, arrays, code):
    with pytest.raises(ProtocolError) as info:
        validate_request(op, params, arrays)
    assert info.value.code == code
    assert info.value.message.startswith(op + ": ") or code == "unknown_op"


# ---------------------------------------------------------------------------
# every range: refused outside, accepted at its ends, one sentence naming parameter, range and value
# ---------------------------------------------------------------------------
RANGE_CASES = [
    # (op, params, arrays, parameter in the message, the range's words, the value shown)
    ("project", {"steps": 5001}, {"image": IMG}, "'steps'", "between 0 and 5000", "5001"),
    ("project", {"steps": -1}, {"image": IMG}, "'steps'", "between 0 and 5000", "-1"),
    ("edit", {"poisson": True, "steps": 100000}, {"image": IMG, "mask": MASK}, "'steps'", "between 0 and 5000",
     "100000"),
    ("swap", dict(SWAP, strength=1.5), {"image": IMG, "mask": MASK}, "'strength'", "between 0 and 1", "1.5"),
    ("swap", dict(SWAP, strength=-0.1), {"image": IMG, "mask": MASK}, "'strength'", "between 0 and 1", "-0.1"),
    ("edit", {"poisson": True, "swap": dict(SWAP, strength=2)}, {"image": IMG, "mask": MASK}, "'swap.strength'",
     "between 0 and 1", "2"),
    ("swap", dict(SWAP, labels=[{"class": 1, "strength": 3, "mask": "l"}]), {"image": IMG, "mask": MASK, "l": MASK},
     "'labels[0].strength'", "between 0 and 1", "3"),
    ("blend", dict(BLEND, shift=[0, -65537]), {"image": IMG, "mask": MASK, "reference": REF}, "'shift'",
     "between -65536 and 65536", "-65537"),
    ("swap", dict(SWAP, layers=[0, 1024]), {"image": IMG, "mask": MASK}, "'layers'", "0..1023", "1024"),
    ("project", {"region": [0, 0, 0, 4]}, {"image": IMG}, "'region'", "between 1 and 65536", "0"),
    ("swap", dict(SWAP, labels=[{"class": 1, "strength": 1, "mask": "l"}] * 17),
     {"image": IMG, "mask": MASK, "l": MASK}, "'labels'", "at most 16", ""),
]


@pytest.mark.parametrize("op,params,arrays,name,words,value", RANGE_CASES)
def test_every_range_is_refused_with_a_clear_message(op, params, arrays, name, words, value):
    with pytest.raises(ProtocolError) as info:
        parse_request(op, params, arrays)
    msg = info.value.message
    assert info.value.code == "bad_request"
    assert name in msg and words in msg and value in msg, msg
    assert "\n" not in msg


def test_range_ends_are_accepted():
    for steps in (R.STEPS.lo, R.STEPS.hi):
        assert parse_request("project", {"steps": steps}, {"image": IMG}).steps == steps
    for strength in (R.STRENGTH.lo, R.STRENGTH.hi):
        assert parse_request("swap", dict(SWAP, strength=strength), {"image": IMG, "mask": MASK}).swap.strength == \
            strength
    shift = [int(R.SHIFT.lo), int(R.SHIFT.hi)]
    assert parse_request("blend", dict(BLEND, shift=shift), {"image": IMG, "mask": MASK, "reference": REF}
                         ).blend.shift == tuple(shift)
    assert parse_request("swap", dict(SWAP, layers=[0, 1023]), {"image": IMG, "mask": MASK}).swap.layers == [0, 1023]


def test_steps_limit_is_the_engines():
    """The bug of issue 15: the plug-in and the bridge allowed 100000 steps, the engine refused more than 5000.
    One limit now: the one the engine accepts."""
    assert (R.STEPS.lo, R.STEPS.hi) == (0, 5000)
    plugin = os.path.join(ROOT, "gimp_plugin", "neural_collage")
    for name in os.listdir(plugin):
        if name.endswith(".py"):
            with open(os.path.join(plugin, name), encoding="utf-8") as fh:
                assert "100000" not in fh.read(), name


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------
def _wire_round_trip(req):
    """to_wire -> real frames -> decode -> from_wire."""
    op, params, arrays = req.to_wire()
    header, decoded = decode_message(encode_message({"id": "x", "op": op, "params": params}, arrays))
    return parse_request(header["op"], header["params"], decoded), params


def test_edit_round_trip_through_frames():
    req = EditRequest(image=IMG, mask=MASK, model="default", source_class="grass", steps=50, poisson=False,
                      cache_key="nc:1", return_recon=True, region=(0, 1, 3, 2),
                      swap=SwapParams("snow", 0.5, "rest", [Label("rock", 0.25, "label3", FMASK)]),
                      blend=BlendParams(0.75, [0, 2], (3, -4), "brick"), reference=REF,
                      reference_mask=Array("uint8", (8, 8)), extra={"future": [1, 2]})
    back, params = _wire_round_trip(req)
    assert params["swap"] == {"target": "snow", "strength": 0.5, "layers": "rest",
                              "labels": [{"class": "rock", "strength": 0.25, "mask": "label3"}]}
    assert params["blend"] == {"strength": 0.75, "layers": [0, 2], "shift": [3, -4], "reference_class": "brick"}
    assert back == req  # dataclass equality: every field, arrays compared by bytes


@pytest.mark.parametrize("op", ["swap", "blend", "project"])
def test_flat_ops_round_trip(op):
    swap = SwapParams(7, 1.0, "all", [Label(2, 0.5, "l0", MASK)]) if op == "swap" else None
    blend = BlendParams(0.3, "first", (-1, 2)) if op == "blend" else None
    req = EditRequest(image=IMG, mask=MASK, op=op, steps=10, source_class=1, swap=swap, blend=blend,
                      reference=REF if blend else None, return_recon=op == "project",
                      poisson=op != "project" or True)
    back, params = _wire_round_trip(req)
    assert back == req
    if op == "swap":
        assert params["target"] == 7 and params["labels"][0]["mask"] == "l0" and "swap" not in params
    if op == "blend":
        assert params["shift"] == [-1, 2] and "blend" not in params
    if op == "project":
        assert params == {"class": 1, "steps": 10}


def test_what_the_plugin_sends_is_what_it_sent_before():
    """The wire layout of the plug-in's three edits (checked by the e2e tests against the stand-in engine)."""
    swap = EditRequest(image=IMG, mask=MASK, poisson=True, cache_key="nc:k",
                       swap=SwapParams("tabby", 1.0, "all"))
    assert swap.to_wire()[1] == {"poisson": True, "cache_key": "nc:k", "swap": {"target": "tabby", "strength": 1.0,
                                                                                "layers": "all"}, "blend": None}
    project = EditRequest(image=IMG, mask=MASK, poisson=False, return_recon=True, steps=20, model="m")
    assert project.to_wire()[1] == {"model": "m", "steps": 20, "poisson": False, "return_recon": True,
                                    "swap": None, "blend": None}
    blend = EditRequest(image=IMG, mask=MASK, blend=BlendParams(1.0, "all", (-3, 4)), reference=IMG,
                        reference_mask=MASK)
    op, params, arrays = blend.to_wire()
    assert params["blend"] == {"strength": 1.0, "layers": "all", "shift": [-3, 4]} and params["swap"] is None
    assert set(arrays) == {"image", "mask", "reference", "reference_mask"}


def test_blend_match_colours_is_optional_and_a_bool():
    """Absent (the plug-in's requests): the engine's default, the reference's colours; false keeps the model's."""
    base = {"strength": 1.0, "layers": "all", "shift": [0, 0]}
    arrays = {"image": IMG, "mask": MASK, "reference": REF}
    top = {"poisson": True, "swap": None}
    assert parse_request("edit", {**top, "blend": base}, arrays).blend.match_colours is None
    assert parse_request("edit", {**top, "blend": {**base, "match_colours": False}},
                         arrays).blend.match_colours is False
    with pytest.raises(ProtocolError, match="match_colours"):
        parse_request("edit", {**top, "blend": {**base, "match_colours": "no"}}, arrays)


def test_from_wire_takes_numpy_arrays_as_the_engine_does():
    img = np.zeros((4, 6, 3), np.uint16)
    mask = np.ones((4, 6), np.float32)
    req = parse_request("swap", SWAP, {"image": img, "mask": mask})
    assert req.image is img and req.mask is mask and req.swap.target == "tabby cat"
    with pytest.raises(ProtocolError, match="mask 'mask' has shape"):
        parse_request("swap", SWAP, {"image": img, "mask": np.ones((5, 6), np.uint8)})
    with pytest.raises(ProtocolError, match="must be uint8, uint16, float32, got int16"):
        parse_request("project", {}, {"image": img.astype(np.int16)})


def test_unknown_fields_are_kept_not_refused():
    req = parse_request("edit", {"poisson": True, "texture_scale": 2, "swap": dict(SWAP, fast=True)},
                        {"image": IMG, "mask": MASK})
    assert req.extra == {"texture_scale": 2}
    assert req.swap.extra == {"poisson": True, "fast": True}
    op, params, _arrays = req.to_wire()
    assert params["texture_scale"] == 2 and params["swap"]["fast"] is True
    flat = parse_request("swap", dict(SWAP, tag=[1, 2]), {"image": IMG, "mask": MASK})
    assert flat.swap.extra == {"tag": [1, 2]} and flat.to_wire()[1]["tag"] == [1, 2]
    assert parse_request("classes", {"search": "cat", "x": 1}).extra == {"x": 1}
    # unknown arrays are refused
    with pytest.raises(ProtocolError, match="unexpected array"):
        parse_request("edit", {"poisson": True}, {"image": IMG, "mask": MASK, "extra": MASK})


def test_validate_checks_what_the_receiver_checks():
    bad = EditRequest(image=IMG, mask=MASK, steps=100000)
    with pytest.raises(ProtocolError, match="between 0 and 5000"):
        bad.validate()
    assert EditRequest(image=IMG, mask=MASK, steps=5000).validate().steps == 5000
    with pytest.raises(ValueError, match="op must be one of"):
        EditRequest(image=IMG, op="frobnicate")


def test_simple_requests_and_replies():
    assert R.ClassesRequest(search="cat").to_wire() == ("classes", {"search": "cat"}, {})
    assert R.CancelRequest(id="abc").to_wire() == ("cancel", {"id": "abc"}, {})
    assert parse_request("hello", {}) == R.HelloRequest()
    reply = R.EditReply.from_wire({"source_class": "grass", "source_class_id": 4, "loss": 0.1, "shift": [1, 2]},
                                  {"image": IMG})
    assert reply.image is IMG and reply.recon is None and reply.extra == {"shift": [1, 2]}
    assert R.EditReply.from_wire(*reply.to_wire()) == reply
    classes = R.ClassesReply.from_wire({"classes": [{"id": 0, "name": "grass"}], "model": "default"})
    assert classes.names() == ["grass"] and R.ClassesReply.from_wire(classes.to_wire()) == classes
    hello = R.HelloReply.from_wire({"protocol_version": 1, "state": "loading", "device": "cpu", "models": []})
    assert hello.state == "loading" and hello.extra == {"models": []}
    assert R.HelloReply.from_wire(hello.to_wire()) == hello


def test_scope_vocabulary():
    assert [R.scope_layers(n) for n in ("all", "global", "local")] == ["all", "first", "rest"]
    assert R.scope_layers("rest") == "rest"
    with pytest.raises(ValueError, match="use all, global, local"):
        R.scope_layers("some")
    assert R.LAYER_CHOICES == ("all", "first", "rest")


# ---------------------------------------------------------------------------
# errors: one type with codes, both ends
# ---------------------------------------------------------------------------
def test_errors():
    exc = E.EngineError(E.E_BAD_INPUT, "unknown class 'x'")
    assert str(exc) == "bad_input: unknown class 'x'" and exc.message == "unknown class 'x'"
    assert isinstance(E.ProtocolError(E.E_BAD_REQUEST, "m"), E.EngineError)
    assert isinstance(E.Cancelled(), E.EngineError) and E.Cancelled().code == E.E_CANCELLED
    back = E.error_from_reply(E.reply_params(exc), "r1")
    assert type(back) is E.EngineError and (back.code, back.message, back.request_id) == (
        "bad_input", "unknown class 'x'", "r1")
    assert isinstance(E.error_from_reply({"code": "cancelled", "message": ""}), E.Cancelled)
    assert E.EngineUnavailable("x").code == E.L_UNREACHABLE
    assert E.EngineUnavailable("x", E.L_KEY_REFUSED).code == E.L_KEY_REFUSED
    assert E.EngineTimeout("x").code == E.L_TIMEOUT and E.BridgeError("x").code == E.L_CLIENT
    assert not set(E.ERROR_CODES) & set(E.LOCAL_CODES)
    from engine.serve.server import OpError

    assert OpError is E.EngineError


# ---------------------------------------------------------------------------
# PROTOCOL.md agrees with requests.py
# ---------------------------------------------------------------------------
def test_protocol_md_tables_are_generated_from_requests_py():
    with open(os.path.join(ROOT, "bridge", "PROTOCOL.md"), encoding="utf-8") as fh:
        text = fh.read()
    assert R.protocol_md_section(text) == R.markdown(), (
        "bridge/PROTOCOL.md is out of date: run `python -m bridge.requests --write`")
    # the ranges and every op's params appear in the generated tables
    section = R.protocol_md_section(text)
    assert "| `STEPS` | 0..5000 |" in section and "100000" not in section
    for op, table in R.IMAGE_OP_PARAMS.items():
        assert f"#### `{op}` params" in section
        for p in table:
            assert f"| `{p.wire}` |" in section
    for p in SwapParams.PARAMS + BlendParams.PARAMS:
        assert f"| `swap.{p.wire}` |" in section or f"| `blend.{p.wire}` |" in section


def test_protocol_md_check_fails_on_a_stale_copy():
    with open(os.path.join(ROOT, "bridge", "PROTOCOL.md"), encoding="utf-8") as fh:
        text = fh.read()
    stale = text.replace("0..5000", "0..100000")
    assert R.protocol_md_section(stale) != R.markdown()
    with pytest.raises(ValueError, match="no generated section"):
        R.protocol_md_section("# nothing here")


def test_requests_module_prints_the_tables():
    out = subprocess.run([sys.executable, "-m", "bridge.requests"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stdout.strip() == R.markdown()
