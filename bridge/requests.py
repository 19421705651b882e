"""Typed requests and replies of the Neural Collage protocol: the one definition of every operation's params.

Standard library only (runs in GIMP's Python 3.9+). The plug-in builds these objects and sends
``to_wire()``; the server checks an incoming request with :func:`validate_request` before queueing it; the
engine's handler turns it back into an object with :func:`parse_request` and runs it. ``bridge/PROTOCOL.md``
holds the tables :func:`markdown` writes (``python -m bridge.requests --write`` refreshes them; a test checks
that they agree).

Every range lives here once (:data:`STEPS`, :data:`STRENGTH`, :data:`SHIFT`, :data:`LAYER_INDEX`,
:data:`MAX_LABELS`, ...). A value outside its range is a ``bad_request`` with one sentence naming the
parameter, the range and the value sent. What only the engine can know (class names, the model's layer
count, whether the region is large enough) stays the engine's check (``bad_input``).

One edit request for four wire ops: ``edit`` (what GIMP sends: ``swap`` and/or ``blend`` as nested
objects), ``swap``, ``blend`` (the nested object's fields at the top level) and ``project`` (no edit, the
reconstruction back) all parse into an :class:`EditRequest`; ``op`` remembers how it travels.

Unknown params are allowed and kept in ``extra`` (older engines ignore newer fields); unknown arrays are
refused.
"""
# ruff: noqa: UP031  (printf-style formatting is used on purpose, as in protocol.py)
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, ClassVar

from .errors import E_BAD_REQUEST, E_UNKNOWN_OP, ProtocolError
from .protocol import MAX_DIM, PROTOCOL_VERSION, short

# ---------------------------------------------------------------------------------------------------------
# Ranges: each defined once
# ---------------------------------------------------------------------------------------------------------


class Range:
    """A closed numeric range of a parameter (integers only when ``integer``)."""

    __slots__ = ("hi", "integer", "lo", "what")

    def __init__(self, lo: float, hi: float, integer: bool, what: str):
        self.lo, self.hi, self.integer, self.what = lo, hi, integer, what

    def contains(self, value: Any) -> bool:
        ok = _is_int(value) if self.integer else _is_number(value)
        return ok and self.lo <= value <= self.hi

    def text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return "%s between %s and %s" % (kind, _num(self.lo), _num(self.hi))

    def __repr__(self) -> str:
        return "Range(%s..%s)" % (_num(self.lo), _num(self.hi))


#: projection iterations; DEFAULT_STEPS when omitted, except on fully convolutional models, which calibrate at the
#: crop's own size with few steps (the engine's PhotoEditor.default_steps)
STEPS = Range(0, 5000, True, "projection iterations")
DEFAULT_STEPS = 200
#: how far an edit goes: 0 = unchanged, 1 = the full edit
STRENGTH = Range(0.0, 1.0, False, "0 = unchanged, 1 = full edit")
#: the shift operator U of feature blending, per axis, in image pixels
SHIFT = Range(-MAX_DIM, MAX_DIM, True, "image pixels")
#: one explicit generator layer (scope given as indices)
LAYER_INDEX = Range(0, 1023, True, "generator layer")
MAX_LAYER_INDICES = 64
#: extra classes of a multi-label swap
MAX_LABELS = 16
#: texture scale (issue 17): 2 = the material's features twice as large (fully convolutional models only)
SCALE = Range(0.25, 4.0, False, "texture scale: 2 = features twice as large")
DEFAULT_SCALE = 1.0
#: fast = the encoder's latent only; calibrated = plus ``steps`` calibration steps (the default)
MODES = ("fast", "calibrated")
#: per-layer strengths: one value (STRENGTH) per sCBN layer (swap) or per blend site (blend)
MAX_LAYER_STRENGTHS = 64
#: a small result for a live preview (issue 14): the edit of the image reduced (area averaging) so that its longer
#: side is at most this many pixels; the engine projects the reduced crop once (cached) and renders only that size
PREVIEW_SIZE = Range(32, 1024, True, "preview: longest side of the reduced result, px")
DEFAULT_PREVIEW_SIZE = 256
#: variations the plug-in inserts as one layer group (1 = one result, no group)
VARIATIONS = Range(1, 16, True, "results inserted as one layer group")
#: kinds of variations: (plug-in choice name, label). strength: a strip of N strengths evenly spaced from 1/N of
#: the chosen strength to it (the official demo's interpolation frames)
VARIATION_KINDS = (("strength", "Strength strip (1/N ... strength)"),)
#: a region's x, y (any integer) and w, h (at least 1)
REGION_SIZE = Range(1, MAX_DIM, True, "pixels")

#: Scope: which generator layers an edit acts on (paper Fig. 12-13). The wire value (``layers``: also the
#: CLI's ``--layers``), the plug-in's choice name, and its label. The wire also takes a list of layer indices.
SCOPES = (
    ("all", "all", "All layers"),
    ("first", "global", "Global (first layer only)"),
    ("rest", "local", "Local (all but the first layer)"),
)
LAYER_CHOICES = tuple(s[0] for s in SCOPES)

IMAGE_DTYPES = ("uint8", "uint16", "float32")
MASK_DTYPES = ("uint8", "float32")


def strength_strip(strength: float, n: int) -> list[float]:
    """The strengths of ``n`` variations of a strength strip: ``strength * k / n`` for k = 1..n (the last one is
    ``strength`` itself; ``n`` = 1 gives ``[strength]``)."""
    if not VARIATIONS.contains(n):
        raise ValueError("variations must be %s, got %s" % (VARIATIONS.text(), _show(n)))
    if not STRENGTH.contains(strength):
        raise ValueError("strength must be %s, got %s" % (STRENGTH.text(), _show(strength)))
    return [float(strength) * k / n for k in range(1, n + 1)]


def parse_layer_strengths(text: str | None) -> list[float] | None:
    """Per-layer strengths typed as text ("1, 1, 0.5, 0"; commas and/or spaces) -> a list of numbers, or None
    for an empty text (all layers at 1). ValueError with one sentence for anything else (the engine still checks
    that there is one value per layer of its model)."""
    parts = [p for p in (text or "").replace(",", " ").split() if p]
    if not parts:
        return None
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            v = None
        if v is None or not STRENGTH.contains(v):
            raise ValueError("layer strengths must be at most %d numbers between %s and %s separated by commas, "
                             "e.g. \"1,1,0.5,0\"; %s is not one" % (MAX_LAYER_STRENGTHS, _num(STRENGTH.lo),
                                                                  _num(STRENGTH.hi), _show(p)))
        values.append(v)
    if len(values) > MAX_LAYER_STRENGTHS:
        raise ValueError("layer strengths must be at most %d numbers, got %d" % (MAX_LAYER_STRENGTHS, len(values)))
    return values


def scope_layers(scope: str) -> str:
    """The wire ``layers`` value of a scope given by its plug-in name or its wire value."""
    for wire, nick, _label in SCOPES:
        if scope in (wire, nick):
            return wire
    raise ValueError("unknown scope %r: use %s" % (scope, ", ".join(s[1] for s in SCOPES)))


# ---------------------------------------------------------------------------------------------------------
# Value checks (type + range), each with the words of its error message
# ---------------------------------------------------------------------------------------------------------

def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_class(value: Any) -> bool:
    return isinstance(value, str) or _is_int(value)


def _is_layers(value: Any) -> bool:
    if value in LAYER_CHOICES:
        return True
    return (isinstance(value, list) and len(value) <= MAX_LAYER_INDICES
            and all(LAYER_INDEX.contains(v) for v in value))


def _is_shift(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(SHIFT.contains(v) for v in value)


def _is_region(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_int(v) for v in value)
            and REGION_SIZE.contains(value[2]) and REGION_SIZE.contains(value[3]))


def _is_layer_strengths(value: Any) -> bool:
    return (isinstance(value, list) and 1 <= len(value) <= MAX_LAYER_STRENGTHS
            and all(STRENGTH.contains(v) for v in value))


class Kind:
    """How one param is checked and described: ``test(value) -> bool`` and the words for the docs."""

    __slots__ = ("doc", "expect", "test")

    def __init__(self, test, expect: str, doc: str):
        self.test, self.expect, self.doc = test, expect, doc


STR = Kind(lambda v: isinstance(v, str), "a string", "str")
BOOL = Kind(lambda v: isinstance(v, bool), "true or false", "bool")
CLASS = Kind(_is_class, "a class name or id", "str | int")
UNIT = Kind(STRENGTH.contains, STRENGTH.text(), "number, %s..%s" % (_num(STRENGTH.lo), _num(STRENGTH.hi)))
STEPS_KIND = Kind(STEPS.contains, STEPS.text(), "int, %d..%d" % (STEPS.lo, STEPS.hi))
LAYERS = Kind(_is_layers, '"all", "first", "rest" or a list of at most %d layer indices %d..%d'
              % (MAX_LAYER_INDICES, LAYER_INDEX.lo, LAYER_INDEX.hi),
              '"all" | "first" | "rest" | [int, ...] (at most %d, each %d..%d)'
              % (MAX_LAYER_INDICES, LAYER_INDEX.lo, LAYER_INDEX.hi))
SHIFT_KIND = Kind(_is_shift, "[dx, dy] integers between %d and %d" % (SHIFT.lo, SHIFT.hi),
                  "[dx, dy] ints, each %d..%d" % (SHIFT.lo, SHIFT.hi))
MODE = Kind(lambda v: v in MODES, " or ".join(MODES), " | ".join('"%s"' % m for m in MODES))
SCALE_KIND = Kind(SCALE.contains, SCALE.text(), "number, %s..%s" % (_num(SCALE.lo), _num(SCALE.hi)))
LAYER_STRENGTHS = Kind(_is_layer_strengths, "a list of at most %d numbers between 0 and 1, one per layer"
                       % MAX_LAYER_STRENGTHS, "[number 0..1, ...] (one per layer)")
PREVIEW_KIND = Kind(PREVIEW_SIZE.contains, PREVIEW_SIZE.text(), "int, %d..%d" % (PREVIEW_SIZE.lo, PREVIEW_SIZE.hi))
REGION = Kind(_is_region, "[x, y, w, h] integers with w, h between %d and %d" % (REGION_SIZE.lo, REGION_SIZE.hi),
              "[x, y, w, h] ints, w and h %d..%d" % (REGION_SIZE.lo, REGION_SIZE.hi))


class Param:
    """One param on the wire: its name, the attribute it fills, its kind, whether it is required, whether
    null is allowed (null = not given), and a line for the docs."""

    __slots__ = ("attr", "doc", "kind", "null", "required", "wire")

    def __init__(self, wire: str, kind: Kind, required: bool = False, null: bool = True, doc: str = "",
                 attr: str | None = None):
        self.wire, self.kind, self.required, self.null, self.doc = wire, kind, required, null, doc
        self.attr = attr or wire

    def check(self, value: Any, where: str, op: str) -> Any:
        if value is None and self.null and not self.required:
            return None
        if not self.kind.test(value):
            expect = self.kind.expect + (" or null" if self.null and not self.required else "")
            _fail(op, "parameter %r must be %s, got %s" % (where + self.wire, expect, _show(value)))
        return value

    def type_text(self) -> str:
        return self.kind.doc + (" | null" if self.null and not self.required else "")


def _show(value: Any) -> str:
    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return repr(value)[:60]


#: an error message echoes at most this much of what a client sent (names, values)
MAX_MESSAGE = 400


def _fail(op: str, message: str) -> None:
    text = "%s: %s" % (op, message)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "... (cut)"
    raise ProtocolError(E_BAD_REQUEST, text)


def _read(params: Mapping[str, Any], table: tuple, where: str, op: str) -> dict[str, Any]:
    """The attributes of ``table``'s params read from ``params`` (absent and optional -> None)."""
    out = {}
    for p in table:
        if p.wire not in params:
            if p.required:
                _fail(op, "parameter %r is required" % (where + p.wire))
            out[p.attr] = None
        else:
            out[p.attr] = p.check(params[p.wire], where, op)
    return out


def _extra(params: Mapping[str, Any], *tables: tuple) -> dict[str, Any]:
    known = {p.wire for t in tables for p in t}
    return {k: v for k, v in params.items() if k not in known}


def _write(obj: Any, table: tuple, out: dict[str, Any]) -> None:
    for p in table:
        value = getattr(obj, p.attr)
        if value is not None:
            out[p.wire] = list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------------------

def _dtype_shape(arr: Any) -> tuple[str, tuple]:
    """(dtype name, shape) of a bridge Array, a numpy array or a (dtype, shape, buffer) tuple."""
    if isinstance(arr, tuple) and len(arr) == 3:
        return str(arr[0]), tuple(arr[1])
    return str(arr.dtype), tuple(arr.shape)


def _check_image(op: str, name: str, arr: Any) -> None:
    dtype, shape = _dtype_shape(arr)
    if len(shape) != 3 or not 1 <= shape[2] <= 4 or shape[0] < 1 or shape[1] < 1:
        _fail(op, "array %r must have shape [H, W, C] with C in 1..4, got %r" % (name, list(shape)))
    if dtype not in IMAGE_DTYPES:
        _fail(op, "array %r must be %s, got %s" % (name, ", ".join(IMAGE_DTYPES), dtype))


def _check_mask(op: str, name: str, arr: Any, like: Any) -> None:
    dtype, shape = _dtype_shape(arr)
    if len(shape) != 2:
        _fail(op, "mask %r must have shape [H, W], got %r" % (name, list(shape)))
    if dtype not in MASK_DTYPES:
        _fail(op, "mask %r must be %s, got %s" % (name, " or ".join(MASK_DTYPES), dtype))
    if like is not None:
        lshape = _dtype_shape(like)[1]
        if shape != lshape[:2]:
            _fail(op, "mask %r has shape %r but its image is %dx%d" % (name, list(shape), lshape[0], lshape[1]))


def _array(arrays: Mapping[str, Any], name: str, op: str, required: bool) -> Any:
    arr = arrays.get(name)
    if arr is None and required:
        _fail(op, "array %r is required" % name)
    return arr


# ---------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------

class Request:
    """Base of the typed requests: ``op``, ``to_wire() -> (op, params, arrays)``, ``from_wire``."""

    op: ClassVar[str] = ""
    PARAMS: ClassVar[tuple] = ()
    extra: dict[str, Any]

    def to_wire(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        params: dict[str, Any] = dict(self.extra)
        _write(self, self.PARAMS, params)
        return self.op, params, {}

    def validate(self) -> Request:
        """Check the object as the receiving side will (raises ProtocolError); returns itself."""
        op, params, arrays = self.to_wire()
        parse_request(op, params, arrays)
        return self

    @classmethod
    def from_wire(cls, params: Mapping[str, Any], arrays: Mapping[str, Any] | None = None,
                  op: str | None = None) -> Request:
        op = op or cls.op
        _no_arrays(op, arrays)
        return cls(**_read(params, cls.PARAMS, "", op), extra=_extra(params, cls.PARAMS))


def _no_arrays(op: str, arrays: Mapping[str, Any] | None) -> None:
    if arrays:
        _fail(op, "unexpected array(s) %s" % ", ".join(repr(n) for n in sorted(arrays)))


@dataclass
class _NoParams(Request):
    extra: dict[str, Any] = field(default_factory=dict)


class HelloRequest(_NoParams):
    """``hello``: engine and protocol version, state, limits."""

    op: ClassVar[str] = "hello"


class StatusRequest(_NoParams):
    """``status``: what runs and what waits."""

    op: ClassVar[str] = "status"


@dataclass
class CancelRequest(Request):
    """``cancel``: stop a request sent on the same connection."""

    op: ClassVar[str] = "cancel"
    PARAMS: ClassVar[tuple] = (Param("id", STR, required=True, doc="id of the request to cancel"),)
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassesRequest(Request):
    """``classes``: the model's classes, optionally filtered."""

    op: ClassVar[str] = "classes"
    PARAMS: ClassVar[tuple] = (
        Param("model", STR, doc="model name; null = the engine's model"),
        Param("search", STR, doc="case-insensitive substring of the class name"),
    )
    model: str | None = None
    search: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Label:
    """One extra class of a multi-label swap, painted where its mask (an array named ``mask``) is set."""

    PARAMS: ClassVar[tuple] = (
        Param("class", CLASS, required=True, attr="cls", doc="class name or id"),
        Param("strength", UNIT, required=True, doc="how far this class goes"),
        Param("mask", STR, required=True, attr="mask_name", doc="name of its [H, W] mask array"),
    )
    cls: str | int
    strength: float
    mask_name: str
    mask: Any = None  # the array (bridge Array, numpy array or (dtype, shape, buffer))


@dataclass
class SwapParams:
    """Label swap (sCBN, paper eq. 1-2): the class painted into the mask and where in the generator."""

    PARAMS: ClassVar[tuple] = (
        Param("target", CLASS, required=True, doc="class painted into the mask (name or id)"),
        Param("strength", UNIT, required=True, doc=STRENGTH.what),
        Param("layers", LAYERS, required=True, doc="scope: generator layers the class acts on"),
        Param("layer_strengths", LAYER_STRENGTHS, doc="one strength per sCBN layer; null = all 1"),
        Param("match_colours", BOOL, doc="true: the photo's colour rendition, fitted around the selection (a grey "
                                         "photo stays grey); false or null (the default): the model's colours"),
    )
    target: str | int
    strength: float = 1.0
    layers: str | list[int] = "all"
    labels: list[Label] = field(default_factory=list)
    layer_strengths: list[float] | None = None
    match_colours: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_params(self) -> dict[str, Any]:
        out = dict(self.extra)
        _write(self, self.PARAMS, out)
        if self.labels:
            out["labels"] = [{"class": lb.cls, "strength": lb.strength, "mask": lb.mask_name}
                             for lb in self.labels]
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], arrays: Mapping[str, Any], image: Any, used: set,
                    where: str, op: str, table: tuple | None = None) -> SwapParams:
        values = _read(params, cls.PARAMS, where, op)
        labels = []
        raw = params.get("labels")
        if raw is not None:
            if not isinstance(raw, list) or len(raw) > MAX_LABELS:
                _fail(op, "parameter %r must be a list of at most %d objects" % (where + "labels", MAX_LABELS))
            for i, item in enumerate(raw):
                lw = "%slabels[%d]." % (where, i)
                if not isinstance(item, dict):
                    _fail(op, "%s must be an object" % lw[:-1])
                lv = _read(item, Label.PARAMS, lw, op)
                mask = _array(arrays, lv["mask_name"], op, True)
                _check_mask(op, lv["mask_name"], mask, image)
                used.add(lv["mask_name"])
                labels.append(Label(mask=mask, **lv))
        extra = _extra(params, cls.PARAMS, (Param("labels", STR),), table or ())
        return cls(labels=labels, extra=extra, **values)


@dataclass
class BlendParams:
    """Feature blend (paper eq. 3): the reference's features moved by the shift operator U into the mask."""

    PARAMS: ClassVar[tuple] = (
        Param("strength", UNIT, required=True, doc=STRENGTH.what),
        Param("layers", LAYERS, required=True, doc="scope: blend sites that are blended"),
        Param("shift", SHIFT_KIND, required=True, doc="reference content at p lands at p + shift"),
        Param("reference_class", CLASS, doc="class of the reference; null = found by the engine"),
        Param("layer_strengths", LAYER_STRENGTHS, doc="one strength per blend site; null = all 1"),
        Param("match_colours", BOOL, doc="true or null (the default): the reference's colours inside the selection "
                                         "and the photo's around it; false: the model's colours"),
    )
    strength: float = 1.0
    layers: str | list[int] = "all"
    shift: tuple[int, int] = (0, 0)
    reference_class: str | int | None = None
    layer_strengths: list[float] | None = None
    match_colours: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_params(self) -> dict[str, Any]:
        out = dict(self.extra)
        _write(self, self.PARAMS, out)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], where: str, op: str, table: tuple | None = None
                    ) -> BlendParams:
        values = _read(params, cls.PARAMS, where, op)
        values["shift"] = tuple(values["shift"])
        return cls(extra=_extra(params, cls.PARAMS, table or ()), **values)


_MODEL = Param("model", STR, doc="model name; null = the engine's model")
_SOURCE = Param("source_class", CLASS, doc="class of the region; null = found by the engine")
_STEPS = Param("steps", STEPS_KIND, doc="projection iterations; null = the model's default (%d on fixed-size "
              "models, a few at full size on fully convolutional ones)" % DEFAULT_STEPS)
_POISSON = Param("poisson", BOOL, required=True, doc="Poisson-blend the edit into the photo (an edit whose colours "
                 "were matched, a feature blend by default, is pasted with its soft mask)")
_REGION = Param("region", REGION, doc="the crop to project (image pixels); null = around the mask")
_MODE = Param("mode", MODE, doc="fast: the encoder's latent only; calibrated: + steps (null = calibrated)")
_SCALE = Param("scale", SCALE_KIND, doc="texture scale; null = %s" % _num(DEFAULT_SCALE))
_PREVIEW = Param("preview", BOOL, doc="calibrated mode: send the fast result first as a preview reply")
_PREVIEW_SIZE = Param("preview_size", PREVIEW_KIND, doc="a small result: the edit of the image reduced so its "
                      "longer side is at most this (the reply's image has that reduced size); null = full size")

#: the top-level params of each image op, in the order the docs list them
IMAGE_OP_PARAMS = {
    "edit": (_MODEL, _SOURCE, _STEPS, _POISSON,
             Param("cache_key", STR, doc="lets the engine reuse a projection of the same pixels"),
             Param("return_recon", BOOL, null=False, doc="also send the reconstruction back"),
             _REGION, _MODE, _SCALE, _PREVIEW, _PREVIEW_SIZE),
    "swap": (_MODEL, _SOURCE, _STEPS, _POISSON, _MODE, _SCALE, _PREVIEW, _PREVIEW_SIZE),
    "blend": (_MODEL, _SOURCE, _STEPS, _POISSON, _MODE, _SCALE, _PREVIEW, _PREVIEW_SIZE),
    "project": (_MODEL, Param("class", CLASS, attr="source_class", doc="class of the region; null = classify"),
                _STEPS, _REGION, _MODE, _SCALE),
}


@dataclass
class EditRequest(Request):
    """One photo edit: crop -> project -> label swap and/or feature blend -> compose (or only project).

    ``op`` is how it travels: "edit" (``swap``/``blend`` nested), "swap" / "blend" (that part's fields at the
    top level) or "project" (neither; ``recon`` comes back). Arrays: ``image`` [H, W, C]; ``mask`` [H, W]
    (optional for project); with blend ``reference`` [H2, W2, C2] and ``reference_mask`` [H2, W2]; one mask
    per label.
    """

    image: Any = None
    mask: Any = None
    op: str = "edit"  # type: ignore[misc]
    model: str | None = None
    source_class: str | int | None = None
    steps: int | None = None
    poisson: bool = True
    cache_key: str | None = None
    return_recon: bool = False
    region: tuple[int, int, int, int | None] = None
    mode: str | None = None
    scale: float | None = None
    preview: bool | None = None
    preview_size: int | None = None
    swap: SwapParams | None = None
    blend: BlendParams | None = None
    reference: Any = None
    reference_mask: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in IMAGE_OP_PARAMS:
            raise ValueError("op must be one of %s" % ", ".join(IMAGE_OP_PARAMS))

    @property
    def steps_or_default(self) -> int:
        return DEFAULT_STEPS if self.steps is None else self.steps

    def to_wire(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        op = self.op
        params: dict[str, Any] = dict(self.extra)
        _write(self, IMAGE_OP_PARAMS[op], params)
        if op == "edit":
            params["swap"] = self.swap.to_params() if self.swap is not None else None
            params["blend"] = self.blend.to_params() if self.blend is not None else None
            if not self.return_recon:
                params.pop("return_recon", None)
        elif op == "swap":
            if self.swap is None:
                raise ValueError("a swap request needs swap=SwapParams(...)")
            params.update(self.swap.to_params())
        elif op == "blend":
            if self.blend is None:
                raise ValueError("a blend request needs blend=BlendParams(...)")
            params.update(self.blend.to_params())
        arrays: dict[str, Any] = {"image": self.image}
        if self.mask is not None:
            arrays["mask"] = self.mask
        if self.swap is not None:
            for lb in self.swap.labels:
                arrays[lb.mask_name] = lb.mask
        if self.blend is not None:
            arrays["reference"] = self.reference
            if self.reference_mask is not None:
                arrays["reference_mask"] = self.reference_mask
        return op, params, arrays

    @classmethod
    def from_wire(cls, params: Mapping[str, Any], arrays: Mapping[str, Any] | None = None,
                  op: str | None = None) -> EditRequest:
        op = op or "edit"
        arrays = arrays or {}
        top = IMAGE_OP_PARAMS[op]
        image = _array(arrays, "image", op, True)
        _check_image(op, "image", image)
        mask = _array(arrays, "mask", op, op != "project")
        if mask is not None:
            _check_mask(op, "mask", mask, image)
        used = {"image", "mask"}
        values = _read(params, top, "", op)
        if values.get("region") is not None:
            values["region"] = tuple(values["region"])
        values["poisson"] = True if values.get("poisson") is None else values["poisson"]
        values["return_recon"] = bool(values.get("return_recon")) or op == "project"
        swap = blend = None
        skip: tuple = (Param("swap", STR), Param("blend", STR))
        if op == "edit":
            raw_swap, raw_blend = params.get("swap"), params.get("blend")
            for key, raw in (("swap", raw_swap), ("blend", raw_blend)):
                if raw is not None and not isinstance(raw, dict):
                    _fail(op, "parameter %r must be an object or null, got %s" % (key, _show(raw)))
            if raw_swap is not None:
                swap = SwapParams.from_params(raw_swap, arrays, image, used, "swap.", op)
            if raw_blend is not None:
                blend = BlendParams.from_params(raw_blend, "blend.", op)
            extra = _extra(params, top, skip)
        elif op == "swap":
            swap = SwapParams.from_params(params, arrays, image, used, "", op, top)
            extra = {}
        elif op == "blend":
            blend = BlendParams.from_params(params, "", op, top)
            extra = {}
        else:
            extra = _extra(params, top)
        reference = reference_mask = None
        if blend is not None:
            reference = _array(arrays, "reference", op, True)
            _check_image(op, "reference", reference)
            reference_mask = _array(arrays, "reference_mask", op, False)
            if reference_mask is not None:
                _check_mask(op, "reference_mask", reference_mask, reference)
            used.update(("reference", "reference_mask"))
        unexpected = sorted(set(arrays) - used)
        if unexpected:
            _fail(op, "unexpected array(s) %s" % ", ".join(repr(n) for n in unexpected))
        return cls(image=image, mask=mask, op=op, swap=swap, blend=blend, reference=reference,
                   reference_mask=reference_mask, extra=extra, **values)


# ---------------------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------------------

@dataclass
class EditReply:
    """The result of an image op: ``image`` (the edited crop; absent for project), ``recon`` (the
    reconstruction, when asked for), the classes used and the projection's loss."""

    image: Any = None
    recon: Any = None
    source_class: str | None = None
    source_class_id: int | None = None
    loss: float | None = None
    target_class: str | None = None
    reference_class: str | None = None
    class_id: int | None = None      # project: the projected class (= source_class_id)
    class_name: str | None = None    # project: its name (= source_class)
    # how the result was made (issue 17): mode, texture scale, the square crop's side in image pixels, the side
    # the generator rendered, whether the crop was resampled (crop_size != render_size), whether this is the
    # fast preview of a calibrated edit, and seconds per stage
    mode: str | None = None
    scale: float | None = None
    crop_size: int | None = None
    render_size: int | None = None
    resampled: bool | None = None
    preview: bool | None = None
    seconds: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple] = ("source_class", "source_class_id", "loss", "target_class", "reference_class",
                               "class_id", "class_name", "mode", "scale", "crop_size", "render_size", "resampled",
                               "preview", "seconds")

    def to_wire(self) -> tuple[dict[str, Any], dict[str, Any]]:
        params = dict(self.extra)
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is not None or name == "loss":  # loss: null in fast mode (nothing was measured)
                params[name] = value
        arrays = {name: getattr(self, name) for name in ("image", "recon") if getattr(self, name) is not None}
        return params, arrays

    @classmethod
    def from_wire(cls, params: Mapping[str, Any], arrays: Mapping[str, Any]) -> EditReply:
        values = {name: params.get(name) for name in cls.FIELDS}
        extra = {k: v for k, v in params.items() if k not in cls.FIELDS}
        return cls(image=arrays.get("image"), recon=arrays.get("recon"), extra=extra, **values)


@dataclass
class ClassesReply:
    """``classes``: ``[{"id": int, "name": str}, ...]`` and the model they belong to."""

    classes: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        out = dict(self.extra)
        out["classes"] = [dict(c) for c in self.classes]
        if self.model is not None:
            out["model"] = self.model
        return out

    @classmethod
    def from_wire(cls, params: Mapping[str, Any]) -> ClassesReply:
        raw = params.get("classes") or []
        classes = [c if isinstance(c, dict) else {"id": None, "name": str(c)} for c in raw]
        extra = {k: v for k, v in params.items() if k not in ("classes", "model")}
        return cls(classes=classes, model=params.get("model"), extra=extra)

    def names(self) -> list[str]:
        return [str(c.get("name", c.get("id", ""))) for c in self.classes]


@dataclass
class HelloReply:
    """``hello``: what the server reports (protocol, state, limits) plus what the engine adds."""

    protocol_version: int = PROTOCOL_VERSION
    server_version: str | None = None
    state: str = "ready"
    pid: int | None = None
    ops: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    heartbeat_interval: float | None = None
    engine_version: str | None = None
    device: str | None = None
    default_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple] = ("protocol_version", "server_version", "state", "pid", "ops", "limits",
                               "heartbeat_interval", "engine_version", "device", "default_model")

    def to_wire(self) -> dict[str, Any]:
        out = dict(self.extra)
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_wire(cls, params: Mapping[str, Any]) -> HelloReply:
        values = {name: params[name] for name in cls.FIELDS if name in params}
        extra = {k: v for k, v in params.items() if k not in cls.FIELDS}
        return cls(extra=extra, **values)


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------

IMMEDIATE_OPS = ("hello", "classes", "status", "cancel")
IMAGE_OPS = ("project", "swap", "blend", "edit")
OPS = IMMEDIATE_OPS + IMAGE_OPS

_SIMPLE = {"hello": HelloRequest, "status": StatusRequest, "cancel": CancelRequest, "classes": ClassesRequest}


def parse_request(op: str, params: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> Request:
    """The typed request of one incoming message; raises ProtocolError (unknown_op / bad_request)."""
    if op not in OPS:
        raise ProtocolError(E_UNKNOWN_OP, "unknown op %s (known: %s)" % (short(op), ", ".join(OPS)))
    if op in _SIMPLE:
        return _SIMPLE[op].from_wire(params, arrays, op)
    return EditRequest.from_wire(params, arrays, op)


def validate_request(op: str, params: Mapping[str, Any], arrays: Mapping[str, Any]) -> Request:
    """Check an op's params and arrays (what the server does before queueing); returns the typed request."""
    return parse_request(op, params, arrays)


# ---------------------------------------------------------------------------------------------------------
# The tables of bridge/PROTOCOL.md
# ---------------------------------------------------------------------------------------------------------

MD_BEGIN = "<!-- BEGIN generated by `python -m bridge.requests --write`: do not edit by hand -->"
MD_END = "<!-- END generated -->"


def _md_rows(table: tuple, prefix: str = "") -> list[str]:
    rows = []
    for p in table:
        need = "required" if p.required else "optional"
        rows.append("| `%s%s` | %s | %s | %s |" % (prefix, p.wire, p.type_text().replace("|", "\\|"), need, p.doc))
    return rows


def markdown() -> str:
    """The per-op parameter tables and ranges of PROTOCOL.md, written from the definitions above."""
    head = ["| param | type | | meaning |", "| --- | --- | --- | --- |"]
    out = [MD_BEGIN, "", "#### Ranges (`bridge/requests.py`)", "",
           "| name | range | meaning |", "| --- | --- | --- |"]
    for name, rng in (("STEPS", STEPS), ("STRENGTH", STRENGTH), ("SHIFT", SHIFT), ("LAYER_INDEX", LAYER_INDEX),
                      ("REGION_SIZE", REGION_SIZE), ("SCALE", SCALE), ("PREVIEW_SIZE", PREVIEW_SIZE),
                      ("VARIATIONS", VARIATIONS)):
        out.append("| `%s` | %s..%s | %s |" % (name, _num(rng.lo), _num(rng.hi), rng.what))
    out += ["| `MAX_LABELS` | %d | labels of one swap |" % MAX_LABELS,
            "| `MAX_LAYER_INDICES` | %d | indices in one `layers` list |" % MAX_LAYER_INDICES,
            "| `DEFAULT_STEPS` | %d | `steps` when omitted |" % DEFAULT_STEPS, "",
            "Scope (`layers`): " + ", ".join('`"%s"` (plug-in: %s)' % (w, lab) for w, _n, lab in SCOPES)
            + ", or a list of layer indices.", ""]
    sections = [
        ("classes", ClassesRequest.PARAMS, [], "none"),
        ("cancel", CancelRequest.PARAMS, [], "none"),
        ("project", IMAGE_OP_PARAMS["project"], [], "`image` [H, W, C]; optional `mask` [H, W]"),
        ("swap", IMAGE_OP_PARAMS["swap"] + SwapParams.PARAMS, [("labels", Label.PARAMS)],
         "`image` [H, W, C], `mask` [H, W], one [H, W] mask per label"),
        ("blend", IMAGE_OP_PARAMS["blend"] + BlendParams.PARAMS, [],
         "`image` [H, W, C], `mask` [H, W], `reference` [H2, W2, C2], optional `reference_mask` [H2, W2]"),
        ("edit", IMAGE_OP_PARAMS["edit"], [("swap", SwapParams.PARAMS), ("labels", Label.PARAMS),
                                           ("blend", BlendParams.PARAMS)],
         "`image`, `mask`; `reference` (+ optional `reference_mask`) when `blend` is given; the label masks"),
    ]
    for op, table, nested, arrays in sections:
        out += ["#### `%s` params" % op, ""] + head + _md_rows(table)
        for key, sub in nested:
            if key == "labels":
                prefix = ("swap." if op == "edit" else "") + "labels[]."
                out.append("| `%slabels` | list (at most %d) | optional | extra classes, each: |"
                           % ("swap." if op == "edit" else "", MAX_LABELS))
            else:
                prefix = key + "."
                out.append("| `%s` | object \\| null | optional | see `%s.*` |" % (key, key))
            out += _md_rows(sub, prefix)
        out += ["", "Arrays: %s." % arrays, ""]
    out += ["Image arrays are %s; masks %s (0..255, or 0..1)." % (", ".join(IMAGE_DTYPES), " or ".join(MASK_DTYPES)),
            "", MD_END]
    return "\n".join(out)


def protocol_md_section(text: str) -> str:
    """The generated part of a PROTOCOL.md text (markers included); ValueError when the markers are missing."""
    start, end = text.find(MD_BEGIN), text.find(MD_END)
    if start < 0 or end < start:
        raise ValueError("PROTOCOL.md has no generated section (markers %r ... %r)" % (MD_BEGIN, MD_END))
    return text[start:end + len(MD_END)]


def _main(argv: list[str]) -> int:
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "PROTOCOL.md")
    if argv[1:] == ["--write"]:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        new = text.replace(protocol_md_section(text), markdown())
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
        print("wrote %s" % path)
    else:
        print(markdown())
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv))
