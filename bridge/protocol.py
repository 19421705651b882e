"""Neural Collage bridge protocol, version 1: framing (see bridge/PROTOCOL.md).

What a message looks like on the wire: the header, the array frames, the size limits, the dtypes.
What each operation's params mean and which values they take: bridge/requests.py. Errors and their
codes: bridge/errors.py.

Standard library only: this module runs inside GIMP's bundled Python (3.9+),
where numpy may be missing.  numpy arrays are still accepted by
:func:`encode_message` through duck typing (``.dtype``, ``.shape`` and the
buffer protocol), without importing numpy.

A message is a list of frames: frame 0 is a UTF-8 JSON header, then exactly
one raw frame per entry of ``header["arrays"]`` (C order, little-endian).
Nothing received is ever unpickled or evaluated.
"""

# ruff: noqa: UP031  (printf-style formatting is used on purpose: it reads well with %d/%r)
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import (  # noqa: F401 - re-exported: the codes and errors every user of the framing needs
    E_BAD_INPUT,
    E_BAD_REQUEST,
    E_BAD_VERSION,
    E_BUSY,
    E_CANCELLED,
    E_ENGINE_ERROR,
    E_LOADING,
    E_MODEL_MISSING,
    E_TOO_LARGE,
    E_UNKNOWN_OP,
    ERROR_CODES,
    BridgeError,
    ProtocolError,
)

PROTOCOL_VERSION = 1

#: Fixed loopback address of the engine (port 5581 = "55" + "81", unassigned by IANA).
DEFAULT_PORT = 5581
DEFAULT_ADDRESS = "tcp://127.0.0.1:%d" % DEFAULT_PORT

# ---------------------------------------------------------------------------
# Size limits (defaults; the server may override them, see Limits)
# ---------------------------------------------------------------------------
MiB = 1024 * 1024
MAX_HEADER_BYTES = 1 * MiB
MAX_MESSAGE_BYTES = 512 * MiB
MAX_DIMS = 4
MAX_DIM = 65536
MAX_ELEMENTS = 2 ** 28
MAX_ARRAYS = 32
MAX_NAME_LENGTH = 128
MAX_ID_LENGTH = 256

#: Interval at which the server sends ``heartbeat`` replies for pending requests.
HEARTBEAT_INTERVAL = 1.0
#: Default silence after which a client considers the engine dead.
HEARTBEAT_TIMEOUT = 10.0

#: The one dtype table: protocol name -> (item size in bytes, numpy's ``dtype.str``, memoryview format
#: character in native byte order).  All multi-byte types are little-endian on the wire.
DTYPE_TABLE = {
    "uint8": (1, "|u1", "B"),
    "uint16": (2, "<u2", "H"),
    "float32": (4, "<f4", "f"),
    "int64": (8, "<i8", "q"),
    "float64": (8, "<f8", "d"),
}
#: dtype name -> item size in bytes
DTYPES = {name: spec[0] for name, spec in DTYPE_TABLE.items()}
#: dtype name -> numpy dtype string (``numpy.dtype(NUMPY_DTYPES[name])``)
NUMPY_DTYPES = {name: spec[1] for name, spec in DTYPE_TABLE.items()}
_NUMPY_STR = {spec[1]: name for name, spec in DTYPE_TABLE.items()}
_FORMAT_CHARS = {spec[2]: name for name, spec in DTYPE_TABLE.items()}

# ---------------------------------------------------------------------------
# Reply types (the operations and their params: bridge/requests.py; errors: bridge/errors.py)
# ---------------------------------------------------------------------------
REPLY_TYPES = ("result", "error", "progress", "queued", "heartbeat", "preview")


class Limits:
    """Size limits enforced by :func:`decode_message` (and by the server)."""

    __slots__ = (
        "max_arrays",
        "max_dim",
        "max_dims",
        "max_elements",
        "max_header_bytes",
        "max_message_bytes",
    )

    def __init__(self, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_dims: int = MAX_DIMS,
                 max_dim: int = MAX_DIM, max_elements: int = MAX_ELEMENTS,
                 max_arrays: int = MAX_ARRAYS):
        self.max_header_bytes = int(max_header_bytes)
        self.max_message_bytes = int(max_message_bytes)
        self.max_dims = int(max_dims)
        self.max_dim = int(max_dim)
        self.max_elements = int(max_elements)
        self.max_arrays = int(max_arrays)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "Limits({})".format(", ".join("%s=%d" % kv for kv in self.as_dict().items()))


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: the longest part of a received value an error message echoes
SHOWN_CHARS = 60


def short(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages that echo what a peer sent (the
    repr escapes lone surrogates and control characters, so the message can always be encoded)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an error path must never fail on a repr
        text = "<%s>" % type(value).__name__
    if len(text) > limit:
        text = text[:limit] + "... (%d characters)" % len(text)
    return text


def _check_text(header: Any) -> None:
    """Raise UnicodeEncodeError when a string of a decoded header cannot be UTF-8 encoded: a lone surrogate
    written as a JSON escape (``"\\ud800"``) decodes to a Python string that no reply could carry."""
    stack = [header]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _byte_view(data: Any) -> memoryview:
    """A flat, C-ordered, unsigned-byte memoryview of ``data`` (copies only if not contiguous)."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes(order="C"))
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def check_shape(dtype: Any, shape: Any, limits: Limits = DEFAULT_LIMITS,
                name: str = "array") -> tuple[str, tuple[int, ...]]:
    """Validate a dtype name and shape against ``limits``; returns (dtype, shape tuple)."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError(E_BAD_REQUEST, "%s: dtype %s not supported (allowed: %s)"
                            % (name, short(dtype), ", ".join(DTYPES)))
    if not isinstance(shape, (list, tuple)):
        raise ProtocolError(E_BAD_REQUEST, f"{name}: shape must be a list of integers")
    if len(shape) > limits.max_dims:
        raise ProtocolError(E_TOO_LARGE, "%s: %d dimensions, at most %d allowed"
                            % (name, len(shape), limits.max_dims))
    count = 1
    for dim in shape:
        if not _is_int(dim) or dim < 0:
            raise ProtocolError(E_BAD_REQUEST, "%s: shape %s must hold non-negative integers"
                                % (name, short(list(shape))))
        if dim > limits.max_dim:
            raise ProtocolError(E_TOO_LARGE, "%s: dimension %d exceeds %d" % (name, dim, limits.max_dim))
        count *= dim
    if count > limits.max_elements:
        raise ProtocolError(E_TOO_LARGE, "%s: %d elements exceed %d" % (name, count, limits.max_elements))
    return dtype, tuple(shape)


class Array:
    """A typed n-dimensional array carried as raw little-endian, C-ordered bytes.

    ``data`` is a flat byte memoryview (zero-copy over whatever buffer it came from).
    The engine turns it into numpy with
    ``numpy.frombuffer(a.data, dtype=NUMPY_DTYPES[a.dtype]).reshape(a.shape)`` (see engine/serve/server.py).
    """

    __slots__ = ("data", "dtype", "shape")

    def __init__(self, dtype: str, shape: Sequence[int], data: Any = None,
                 limits: Limits = DEFAULT_LIMITS):
        self.dtype, self.shape = check_shape(dtype, shape, limits)
        if data is None:
            data = bytearray(self.nbytes)
        self.data = _byte_view(data)
        if len(self.data) != self.nbytes:
            raise ProtocolError(E_BAD_REQUEST, "array data has %d bytes, dtype %s shape %r needs %d"
                                % (len(self.data), self.dtype, list(self.shape), self.nbytes))

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype]

    @property
    def size(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @classmethod
    def from_buffer(cls, data: Any, dtype: str | None = None,
                    shape: Sequence[int] | None = None) -> Array:
        """Wrap ``data`` (bytes, bytearray, memoryview, array.array, numpy array...).

        ``dtype`` and ``shape`` default to the object's own (``.dtype``/``.shape``
        attributes or the memoryview's format and shape).  Zero-copy when contiguous.
        """
        if isinstance(data, Array):
            return data if dtype is None and shape is None else cls(
                dtype or data.dtype, shape if shape is not None else data.shape, data.data)
        own_dtype, data = _duck_dtype(data)
        if dtype is None:
            dtype = own_dtype
        if shape is None:
            own_shape = getattr(data, "shape", None)
            if own_shape is None:
                own_shape = memoryview(data).shape
            shape = tuple(int(d) for d in own_shape)
        if dtype is None:
            raise ProtocolError(E_BAD_REQUEST, f"cannot tell the dtype of {type(data).__name__}; pass dtype=")
        return cls(dtype, shape, data)

    def tobytes(self) -> bytes:
        return self.data.tobytes()

    def descriptor(self, name: str) -> dict[str, Any]:
        return {"name": name, "dtype": self.dtype, "shape": list(self.shape)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (self.dtype == other.dtype and self.shape == other.shape
                and self.data == other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={self.shape!r})"


def _duck_dtype(obj: Any) -> tuple[str | None, Any]:
    """Return (protocol dtype name or None, object to read bytes from).

    Understands numpy-like dtypes (``dtype.str`` such as ``'<f4'``) without
    importing numpy; big-endian numpy arrays are converted with ``astype``.
    """
    dt = getattr(obj, "dtype", None)
    if dt is None:
        try:
            fmt = memoryview(obj).format
        except TypeError:
            return None, obj
        fmt = fmt.lstrip("@=<")
        if sys.byteorder != "little" and fmt not in ("B",):
            return None, obj
        return _FORMAT_CHARS.get(fmt), obj
    if isinstance(dt, str):
        return dt, obj
    dstr = getattr(dt, "str", None)
    if isinstance(dstr, str):
        if dstr in _NUMPY_STR:
            return _NUMPY_STR[dstr], obj
        if dstr.startswith(">") and ("<" + dstr[1:]) in _NUMPY_STR and hasattr(obj, "astype"):
            return _NUMPY_STR["<" + dstr[1:]], obj.astype("<" + dstr[1:])
        name = getattr(dt, "name", dstr)
        raise ProtocolError(E_BAD_REQUEST, "dtype %s not supported (allowed: %s)" % (name, ", ".join(DTYPES)))
    return str(dt), obj


def as_array(value: Any, name: str = "array") -> Array:
    """Accept an Array, a numpy-like array or a ``(dtype, shape, buffer)`` tuple."""
    if isinstance(value, Array):
        return value
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], str):
        return Array(value[0], value[1], value[2])
    try:
        return Array.from_buffer(value)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"{name}: {exc.message}") from None
    except TypeError:
        raise ProtocolError(E_BAD_REQUEST, "%s: %s is not an array (needs dtype, shape and the buffer "
                            "protocol)" % (name, type(value).__name__)) from None


# ---------------------------------------------------------------------------
# Encoding / decoding
# ---------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dump_json(header: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(header), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, RecursionError) as exc:
        raise ProtocolError(E_BAD_REQUEST, "header is not JSON-serialisable: %s" % short(str(exc), 200)) from None
    # text that is not valid Unicode (lone surrogates) goes out as "?": encoding never fails here
    return text.encode("utf-8", "replace")


def encode_message(header: Mapping[str, Any], arrays: Mapping[str, Any] | None = None,
                   limits: Limits | None = None) -> list[Any]:
    """Build the frames of one message.

    ``header`` is copied; its ``"arrays"`` entry is generated from ``arrays``
    (a mapping name -> Array, numpy-like array or ``(dtype, shape, buffer)``), and
    ``"v"`` defaults to PROTOCOL_VERSION.  Returns ``[header_bytes, buffer, ...]``;
    array buffers are zero-copy memoryviews when the source is C-contiguous.
    """
    limits = limits or DEFAULT_LIMITS
    out = dict(header)
    out.setdefault("v", PROTOCOL_VERSION)
    out.setdefault("params", {})
    descriptors = []
    frames: list[Any] = [b""]
    total = 0
    for name, value in (arrays or {}).items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise ProtocolError(E_BAD_REQUEST, "array names must be non-empty strings of at most %d "
                                "characters" % MAX_NAME_LENGTH)
        arr = as_array(value, name)
        check_shape(arr.dtype, arr.shape, limits, name)
        descriptors.append(arr.descriptor(name))
        frames.append(arr.data)
        total += arr.nbytes
    if len(descriptors) > limits.max_arrays:
        raise ProtocolError(E_TOO_LARGE, "%d arrays, at most %d allowed"
                            % (len(descriptors), limits.max_arrays))
    out["arrays"] = descriptors
    frames[0] = _dump_json(out)
    if len(frames[0]) > limits.max_header_bytes:
        raise ProtocolError(E_TOO_LARGE, "header has %d bytes, at most %d allowed"
                            % (len(frames[0]), limits.max_header_bytes))
    if total + len(frames[0]) > limits.max_message_bytes:
        raise ProtocolError(E_TOO_LARGE, "message has %d bytes, at most %d allowed"
                            % (total + len(frames[0]), limits.max_message_bytes))
    return frames


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_header(frame: Any, limits: Limits | None = None) -> dict[str, Any]:
    """Parse and validate frame 0.  Raises ProtocolError (with request_id when readable)."""
    limits = limits or DEFAULT_LIMITS
    raw = _byte_view(frame)
    if len(raw) > limits.max_header_bytes:
        raise ProtocolError(E_TOO_LARGE, "header has %d bytes, at most %d allowed"
                            % (len(raw), limits.max_header_bytes))
    try:
        header = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(E_BAD_REQUEST, "header is not UTF-8 JSON: %s" % str(exc)[:200]) from None
    try:
        _check_text(header)
    except UnicodeEncodeError:
        raise ProtocolError(E_BAD_REQUEST, "header holds text that is not valid Unicode (a lone surrogate "
                            "escape such as \\ud800)") from None
    if not isinstance(header, dict):
        raise ProtocolError(E_BAD_REQUEST, "header must be a JSON object")
    rid = header.get("id")
    if rid is None and header.get("type") == "error":
        pass  # error reply to a request whose id could not be read
    elif not isinstance(rid, str) or len(rid) > MAX_ID_LENGTH:
        raise ProtocolError(E_BAD_REQUEST, "header 'id' must be a string of at most %d characters"
                            % MAX_ID_LENGTH)
    if header.get("v") != PROTOCOL_VERSION or isinstance(header.get("v"), bool):
        raise ProtocolError(E_BAD_VERSION, "protocol version %s not supported; this side speaks v%d"
                            % (short(header.get("v")), PROTOCOL_VERSION), rid)
    params = header.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError(E_BAD_REQUEST, "'params' must be a JSON object", rid)
    header["params"] = params
    if "op" in header and not isinstance(header["op"], str):
        raise ProtocolError(E_BAD_REQUEST, "'op' must be a string", rid)
    if "type" in header and header["type"] not in REPLY_TYPES:
        raise ProtocolError(E_BAD_REQUEST, "'type' must be one of {}".format(", ".join(REPLY_TYPES)), rid)
    descriptors = header.get("arrays", [])
    if not isinstance(descriptors, list):
        raise ProtocolError(E_BAD_REQUEST, "'arrays' must be a list", rid)
    if len(descriptors) > limits.max_arrays:
        raise ProtocolError(E_TOO_LARGE, "%d arrays, at most %d allowed"
                            % (len(descriptors), limits.max_arrays), rid)
    seen = set()
    for desc in descriptors:
        if not isinstance(desc, dict):
            raise ProtocolError(E_BAD_REQUEST, "array descriptors must be objects", rid)
        name = desc.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise ProtocolError(E_BAD_REQUEST, "array 'name' must be a non-empty string of at most %d "
                                "characters" % MAX_NAME_LENGTH, rid)
        if name in seen:
            raise ProtocolError(E_BAD_REQUEST, "array name %s used twice" % short(name), rid)
        seen.add(name)
        try:
            check_shape(desc.get("dtype"), desc.get("shape"), limits, name)
        except ProtocolError as exc:
            exc.request_id = rid
            raise
    header["arrays"] = descriptors
    return header


def decode_message(frames: Sequence[Any], limits: Limits | None = None
                   ) -> tuple[dict[str, Any], dict[str, Array]]:
    """Validate and split ``frames`` into (header, {name: Array}).  Zero-copy for the arrays."""
    limits = limits or DEFAULT_LIMITS
    if not frames:
        raise ProtocolError(E_BAD_REQUEST, "empty message")
    header = decode_header(frames[0], limits)
    rid = header["id"]
    descriptors = header["arrays"]
    if len(frames) != len(descriptors) + 1:
        raise ProtocolError(E_BAD_REQUEST, "header describes %d arrays but %d data frames follow"
                            % (len(descriptors), len(frames) - 1), rid)
    arrays: dict[str, Array] = {}
    total = len(_byte_view(frames[0]))
    for desc, frame in zip(descriptors, frames[1:]):
        view = _byte_view(frame)
        total += len(view)
        if total > limits.max_message_bytes:
            raise ProtocolError(E_TOO_LARGE, "message exceeds %d bytes" % limits.max_message_bytes, rid)
        dtype, shape = desc["dtype"], tuple(desc["shape"])
        need = DTYPES[dtype]
        for dim in shape:
            need *= dim
        if len(view) != need:
            raise ProtocolError(E_BAD_REQUEST, "array %r: frame has %d bytes, dtype %s shape %r needs %d"
                                % (desc["name"], len(view), dtype, list(shape), need), rid)
        arr = Array.__new__(Array)
        arr.dtype, arr.shape, arr.data = dtype, shape, view
        arrays[desc["name"]] = arr
    return header, arrays


def frames_size(frames: Sequence[Any]) -> int:
    return sum(memoryview(f).nbytes for f in frames)
