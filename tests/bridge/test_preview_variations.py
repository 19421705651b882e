"""Issue 14 on the wire: the preview size (``preview_size``), the variations' strength strip and the per-layer
strengths typed as text; each range defined once in bridge/requests.py."""
from __future__ import annotations

import pytest

from bridge import requests as R
from bridge.protocol import Array, ProtocolError
from bridge.requests import EditRequest, SwapParams, parse_request

IMG = Array("uint8", (4, 6, 3))
MASK = Array("uint8", (4, 6))
SWAP = {"target": 1, "strength": 0.8, "layers": "all", "poisson": True}


@pytest.mark.parametrize("op,params", [
    ("swap", dict(SWAP, preview_size=256)),
    ("edit", {"poisson": True, "swap": {"target": 1, "strength": 1, "layers": "all"}, "preview_size": 32}),
    ("edit", {"poisson": True, "swap": {"target": 1, "strength": 1, "layers": "all"}, "preview_size": 1024}),
])
def test_preview_size_is_accepted_in_range(op, params):
    req = parse_request(op, params, {"image": IMG, "mask": MASK})
    assert req.preview_size == params["preview_size"]


@pytest.mark.parametrize("value", [31, 1025, 0, 256.0, "256", True])
def test_preview_size_out_of_range_is_one_clear_sentence(value):
    with pytest.raises(ProtocolError) as info:
        parse_request("swap", dict(SWAP, preview_size=value), {"image": IMG, "mask": MASK})
    msg = info.value.message
    assert info.value.code == "bad_request"
    assert "'preview_size'" in msg and "between 32 and 1024" in msg and "\n" not in msg, msg


def test_preview_size_travels_and_is_absent_by_default():
    req = EditRequest(image=IMG, mask=MASK, swap=SwapParams(1, 1.0, "all"), preview_size=128)
    op, params, _arrays = req.to_wire()
    assert params["preview_size"] == 128
    assert parse_request(op, params, {"image": IMG, "mask": MASK}).preview_size == 128
    _op, plain, _a = EditRequest(image=IMG, mask=MASK, swap=SwapParams(1, 1.0, "all")).to_wire()
    assert "preview_size" not in plain


@pytest.mark.parametrize("text,expected", [
    ("", None), ("   ", None), (None, None), ("1,1,0.5,0", [1.0, 1.0, 0.5, 0.0]), ("1 0.25", [1.0, 0.25]),
    (" 0 , 1 ,", [0.0, 1.0]),
])
def test_layer_strengths_text(text, expected):
    assert R.parse_layer_strengths(text) == expected


@pytest.mark.parametrize("text,bad", [("1,2", "2"), ("1,x", "x"), ("nan", "nan"), ("-0.5", "-0.5"), ("1;1", "1;1")])
def test_bad_layer_strengths_text_is_one_sentence_naming_the_value(text, bad):
    with pytest.raises(ValueError) as info:
        R.parse_layer_strengths(text)
    msg = str(info.value)
    assert "layer strengths must be" in msg and bad in msg and "between 0 and 1" in msg and "\n" not in msg


def test_too_many_layer_strengths():
    with pytest.raises(ValueError, match="at most 64"):
        R.parse_layer_strengths(",".join(["1"] * 65))


def test_parsed_layer_strengths_pass_the_wire_check():
    values = R.parse_layer_strengths("1,1,0.5,0")
    req = EditRequest(image=IMG, mask=MASK, swap=SwapParams(1, 1.0, "all", layer_strengths=values))
    op, params, arrays = req.to_wire()
    assert parse_request(op, params, arrays).swap.layer_strengths == [1.0, 1.0, 0.5, 0.0]


def test_strength_strip():
    assert R.strength_strip(1.0, 1) == [1.0]
    assert R.strength_strip(1.0, 4) == [0.25, 0.5, 0.75, 1.0]
    strip = R.strength_strip(0.6, 3)
    assert strip[-1] == 0.6 and strip == pytest.approx([0.2, 0.4, 0.6])
    assert len(R.strength_strip(1.0, int(R.VARIATIONS.hi))) == 16
    for bad in (0, 17, 2.0):
        with pytest.raises(ValueError, match="variations must be an integer between 1 and 16"):
            R.strength_strip(1.0, bad)
    with pytest.raises(ValueError, match="strength"):
        R.strength_strip(1.5, 2)


def test_variation_kinds_and_ranges_are_documented():
    md = R.markdown()
    assert "`PREVIEW_SIZE` | 32..1024" in md and "`VARIATIONS` | 1..16" in md and "`SCALE` | 0.25..4" in md
    assert "`preview_size`" in md
    assert [k for k, _label in R.VARIATION_KINDS] == ["strength"]
