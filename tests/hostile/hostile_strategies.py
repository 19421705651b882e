"""Hypothesis strategies for hostile requests: JSON headers with wrong types in every field, unencodable text
(lone surrogates through JSON escapes), deep nesting, frame counts and sizes that disagree with the header, and
image / mask / region shapes, dtypes and values (NaN, Inf, thin rows) that are valid on the wire."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import strategies as st

# -- text and JSON values ------------------------------------------------------------------------------------------
#: any code point, lone surrogates included (json.dumps writes them as \\udXXX escapes, which json.loads accepts)
any_char = st.characters(exclude_categories=())
hostile_text = st.one_of(
    st.text(any_char, max_size=12),
    st.sampled_from(["\ud800", "x\udfff", "\udc80\ud800", "\x00", "\u202e", "\ufeff", "²", "١٢", "-0", " 3 ",
                     "grass\x00", "..", "/etc/passwd", "%s%n", "${x}", "\U0010ffff"]),
    st.integers(1, 64).map(lambda n: "\ud83d" * n),
    st.sampled_from([300, 10_000, 100_000]).map(lambda n: "g" * n),
)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2 ** 70, 2 ** 70), st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, -2 ** 63, 2 ** 64]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.5, -0.0, 1e308, 1e-320, 2.0]),
    hostile_text,
)
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(hostile_text, kids, max_size=5)), max_leaves=12)


def nested(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` levels deep."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# -- valid requests (the templates mutations start from) -----------------------------------------------------------
def probe_like_image(h: int, w: int, c: int, dtype: str) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx * 7 + yy * 3) % 256).astype(np.float64) / 255.0
    img = np.repeat(base[:, :, None], c, axis=2)
    if dtype == "uint8":
        return np.rint(img * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(img * 65535).astype(np.uint16)
    return img.astype(dtype)


def swap_params(**kw):
    p = {"target": "snow", "strength": 1.0, "layers": "all", "poisson": False, "source_class": "grass",
         "steps": 1}
    p.update(kw)
    return p


def nested_swap(**kw):
    p = {"target": "snow", "strength": 1.0, "layers": "all"}
    p.update(kw)
    return p


def blend_params(**kw):
    p = {"strength": 1.0, "layers": "all", "shift": [0, 0], "poisson": False, "source_class": "grass",
         "reference_class": "brick", "steps": 1}
    p.update(kw)
    return p


def template(op: str):
    """(params, arrays) of a small valid request of ``op``."""
    img = probe_like_image(24, 24, 3, "uint8")
    mask = np.zeros((24, 24), np.uint8)
    mask[4:20, 4:20] = 255
    if op in ("hello", "status"):
        return {}, {}
    if op == "classes":
        return {"search": "gr"}, {}
    if op == "cancel":
        return {"id": "nothing"}, {}
    if op == "project":
        return {"class": "grass", "steps": 1, "region": [4, 4, 16, 16]}, {"image": img}
    if op == "swap":
        return swap_params(), {"image": img, "mask": mask}
    if op == "blend":
        return blend_params(), {"image": img, "mask": mask, "reference": img[::-1].copy()}
    return ({"poisson": False, "source_class": "grass", "steps": 1, "swap": nested_swap(), "blend": None},
            {"image": img, "mask": mask})


OPS = ("hello", "classes", "status", "cancel", "project", "swap", "blend", "edit")
FIELDS = {  # every field a request of each op has, as a path into the header
    "hello": [], "status": [], "classes": [("params", "search"), ("params", "model")],
    "cancel": [("params", "id")],
    "project": [("params", k) for k in ("class", "steps", "region", "model", "mask")],
    "swap": [("params", k) for k in ("target", "strength", "layers", "poisson", "source_class", "steps", "labels",
                                     "region", "model", "cache_key")],
    "blend": [("params", k) for k in ("strength", "layers", "shift", "poisson", "source_class",
                                      "reference_class", "steps", "region", "model")],
    "edit": [("params", k) for k in ("poisson", "source_class", "steps", "swap", "blend", "cache_key",
                                     "return_recon", "region", "model")]
    + [("params", "swap", k) for k in ("target", "strength", "layers", "labels", "steps")],
}
TOP = [("v",), ("id",), ("op",), ("params",), ("arrays",), ("type",)]


def _set(header: dict, path: tuple, value, delete: bool = False) -> None:
    d = header
    for k in path[:-1]:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    if delete:
        d.pop(path[-1], None)
    else:
        d[path[-1]] = value


@st.composite
def mutated_request(draw):
    """(header dict, arrays dict) of a request with some fields replaced by hostile values, deleted or added."""
    from hypothesis.strategies import sampled_from
    op = draw(sampled_from(OPS))
    params, arrays = template(op)
    header = {"v": 1, "id": "m%d" % draw(st.integers(0, 10 ** 9)), "op": op, "params": params}
    paths = FIELDS[op] + TOP
    for _ in range(draw(st.integers(1, 3))):
        path = draw(sampled_from(paths))
        action = draw(st.sampled_from(["set", "set", "set", "delete"]))
        _set(header, path, draw(json_values), delete=action == "delete")
    if draw(st.booleans()):
        _set(header, ("params", draw(hostile_text)), draw(json_values))
    return header, arrays


# -- arrays that are valid on the wire -----------------------------------------------------------------------------
SIDES = st.one_of(st.integers(1, 80), st.sampled_from([15, 16, 17, 128, 129, 300]))
THIN = st.sampled_from([(1, 4096), (4096, 1), (1, 16384), (16384, 1), (1, 65536), (2, 30000), (3, 20000)])


@st.composite
def image_arrays(draw):
    """An image (shape, dtype, values), a mask that may disagree with it, and a region."""
    if draw(st.integers(0, 4)) == 0:
        h, w = draw(THIN)
    else:
        h, w = draw(SIDES), draw(SIDES)
    c = draw(st.sampled_from([1, 2, 3, 4]))
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    img = probe_like_image(h, w, c, dtype)
    if dtype == "float32":
        spice = draw(st.sampled_from([None, np.nan, np.inf, -np.inf, -1.0, 1e30, 3.4e38, -0.0]))
        if spice is not None:
            where = draw(st.sampled_from(["one", "all", "row"]))
            if where == "one":
                img[h // 2, w // 2, 0] = spice
            elif where == "row":
                img[h // 2] = spice
            else:
                img[:] = spice
    mkind = draw(st.sampled_from(["full", "box", "empty", "pixel", "row", "float", "float_nan", "uint16", "wrong"]))
    if mkind == "wrong":
        mask = np.full((max(1, h + draw(st.integers(-2, 2))), w), 255, np.uint8)
    elif mkind in ("float", "float_nan"):
        mask = np.full((h, w), draw(st.sampled_from([0.5, 1.0, 2.0, -1.0])), np.float32)
        if mkind == "float_nan":
            mask[h // 2, w // 2] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif mkind == "uint16":
        mask = np.full((h, w), 65535, np.uint16)
    else:
        mask = np.zeros((h, w), np.uint8)
        if mkind == "full":
            mask[:] = 255
        elif mkind == "box":
            mask[h // 4: h - h // 4, w // 4: w - w // 4] = 255
        elif mkind == "pixel":
            mask[h // 2, w // 2] = 255
        elif mkind == "row":
            mask[h // 2] = 255
    region = draw(st.one_of(
        st.none(),
        st.lists(st.integers(-2 ** 33, 2 ** 33), min_size=4, max_size=4),
        st.lists(st.integers(-5, 100), min_size=4, max_size=4),
        json_values,
    ))
    return img, mask, region


@st.composite
def image_request(draw):
    """(header, arrays): an image op with drawn arrays, shapes and region; params otherwise valid."""
    op = draw(st.sampled_from(["project", "swap", "blend", "edit"]))
    img, mask, region = draw(image_arrays())
    params, _ = template(op)
    arrays = {"image": img}
    if op != "project" or draw(st.booleans()):
        arrays["mask"] = mask
    if op == "blend":
        ref = img if draw(st.booleans()) else probe_like_image(*img.shape[:2], img.shape[2], "uint8")
        arrays["reference"] = ref
        if draw(st.booleans()):
            arrays["reference_mask"] = mask
    if op == "edit" and draw(st.booleans()):
        params["swap"] = nested_swap(labels=[{"class": "rock", "strength": 1.0, "mask": "mask"}])
    if region is not None or draw(st.booleans()):
        params["region"] = region
    if draw(st.integers(0, 3)) == 0:
        params["steps"] = draw(st.sampled_from([0, 1, 2, 5000, 100000]))
    header = {"v": 1, "id": "i%d" % draw(st.integers(0, 10 ** 9)), "op": op, "params": params}
    return header, arrays


# -- frames that disagree with the header --------------------------------------------------------------------------
@st.composite
def frame_mutation(draw, frames: list[bytes]):
    """Drop, add, truncate, extend or replace frames of an encoded message."""
    frames = list(frames)
    kind = draw(st.sampled_from(["drop", "add", "truncate", "extend", "junk_header", "empty", "many", "none"]))
    if kind == "drop" and len(frames) > 1:
        del frames[draw(st.integers(1, len(frames) - 1))]
    elif kind == "add":
        frames.append(draw(st.binary(max_size=64)))
    elif kind == "truncate" and len(frames) > 1:
        i = draw(st.integers(1, len(frames) - 1))
        frames[i] = frames[i][: draw(st.integers(0, max(0, len(frames[i]) - 1)))]
    elif kind == "extend" and len(frames) > 1:
        i = draw(st.integers(1, len(frames) - 1))
        frames[i] = frames[i] + bytes(draw(st.integers(1, 4096)))
    elif kind == "junk_header":
        raw = bytearray(frames[0])
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        frames[0] = bytes(raw)
    elif kind == "empty":
        frames = [b""] + frames[1:]
    elif kind == "many":
        frames = frames + [b"\0"] * draw(st.integers(30, 300))
    return frames


def encode(header: dict, arrays: dict) -> list[bytes]:
    """Frames of ``header`` + ``arrays`` written by hand (no validation: the header may lie)."""
    descs, data = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        descs.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape)})
        data.append(a.astype(a.dtype.newbyteorder("<")).tobytes())
    h = dict(header)
    h.setdefault("arrays", descs)
    return [json.dumps(h).encode()] + data
