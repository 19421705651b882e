"""Message framing (bridge/protocol.py) and the standard-library-only rules of bridge/."""

from __future__ import annotations

import array
import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bridge import protocol as P
from bridge.protocol import Array, Limits, ProtocolError, decode_message, encode_message

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE_FILES = sorted(os.path.join(ROOT, "bridge", f) for f in os.listdir(os.path.join(ROOT, "bridge"))
                      if f.endswith(".py"))


def header(**kw):
    h = {"v": 1, "id": "r1", "op": "hello", "params": {}}
    h.update(kw)
    return h


def frames_of(h, *data):
    return [json.dumps(h).encode()] + list(data)


def code_of(frames, limits=None):
    with pytest.raises(ProtocolError) as info:
        decode_message(frames, limits)
    return info.value.code


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "int64", "float64"])
def test_roundtrip_numpy_all_dtypes(dtype):
    rng = np.random.default_rng(1)
    a = (rng.random((7, 5, 3)) * 200).astype(dtype)
    frames = encode_message(header(), {"image": a, "mask": a[..., 0].copy()})
    h, arrays = decode_message(frames)
    assert h["arrays"][0] == {"name": "image", "dtype": dtype, "shape": [7, 5, 3]}
    got = np.frombuffer(arrays["image"].data, dtype=dtype).reshape(arrays["image"].shape)
    assert got.tobytes() == a.tobytes()
    assert arrays["mask"].shape == (7, 5)
    assert arrays["image"].nbytes == a.nbytes and arrays["image"].itemsize == a.itemsize


def test_encode_is_zero_copy_for_contiguous_numpy():
    a = np.zeros((64, 64, 4), np.uint8)
    frames = encode_message(header(), {"image": a})
    a[0, 0, 0] = 42
    assert bytes(frames[1][:1]) == b"\x2a"  # the frame is a view of the array's memory


def test_non_contiguous_and_big_endian_numpy():
    a = np.arange(60, dtype=np.float32).reshape(5, 12)
    view = a[:, ::3]
    _, arrays = decode_message(encode_message(header(), {"x": view}))
    assert np.array_equal(np.frombuffer(arrays["x"].data, "<f4").reshape(5, 4), view)
    big = a.astype(">f4")
    _, arrays = decode_message(encode_message(header(), {"x": big}))
    assert arrays["x"].dtype == "float32"
    assert np.array_equal(np.frombuffer(arrays["x"].data, "<f4").reshape(5, 12), a)


def test_unsupported_numpy_dtype_rejected():
    with pytest.raises(ProtocolError, match="not supported"):
        encode_message(header(), {"x": np.zeros(3, np.int16)})
    with pytest.raises(ProtocolError):
        encode_message(header(), {"x": np.zeros(3, bool)})


def test_array_forms_without_numpy():
    raw = bytes(range(24))
    a = Array("uint8", (2, 3, 4), raw)
    b = Array.from_buffer(array.array("f", [1.0, 2.0, 3.0]))
    c = ("uint16", [3], b"\x01\x00\x02\x00\x03\x00")
    d = Array.from_buffer(bytearray(6), dtype="uint16", shape=(3,))
    frames = encode_message(header(), {"a": a, "b": b, "c": c, "d": d})
    _, arrays = decode_message(frames)
    assert arrays["a"] == a and arrays["a"].tobytes() == raw
    assert arrays["b"].dtype == "float32" and arrays["b"].shape == (3,)
    assert arrays["c"].tobytes() == c[2]
    assert arrays["d"].shape == (3,)
    with pytest.raises(ProtocolError, match="needs 24"):
        Array("uint8", (2, 3, 4), b"short")
    with pytest.raises(ProtocolError, match="not an array"):
        encode_message(header(), {"x": 3})


def test_nan_in_header_becomes_null():
    frames = encode_message({"id": "x", "type": "progress", "params": {"loss": float("nan")}})
    h, _ = decode_message(frames)
    assert h["params"]["loss"] is None


def test_encode_limits():
    with pytest.raises(ProtocolError) as info:
        encode_message(header(), {"x": np.zeros(100, np.uint8)}, Limits(max_message_bytes=50))
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError) as info:
        encode_message(header(params={"x": "y" * 2000}), None, Limits(max_header_bytes=1000))
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError):
        encode_message(header(params={"x": object()}))


# ---------------------------------------------------------------------------
# strict decoding
# ---------------------------------------------------------------------------
def test_decode_rejects_malformed_headers():
    assert code_of([]) == "bad_request"
    assert code_of([b"\xff\xfe"]) == "bad_request"
    assert code_of([b"not json"]) == "bad_request"
    assert code_of([b"[1, 2]"]) == "bad_request"
    assert code_of([b'{"v": 1, "id": "x", "params": {"a": NaN}}']) == "bad_request"
    assert code_of(frames_of({"v": 1, "op": "hello"})) == "bad_request"      # no id
    assert code_of(frames_of(header(id=5))) == "bad_request"
    assert code_of(frames_of(header(id="x" * 300))) == "bad_request"
    assert code_of(frames_of(header(params=[]))) == "bad_request"
    assert code_of(frames_of(header(params=None))) == "bad_request"
    assert code_of(frames_of(header(op=3))) == "bad_request"
    assert code_of(frames_of(header(type="bogus"))) == "bad_request"
    assert code_of(frames_of(header(arrays={}))) == "bad_request"
    assert code_of([b"[" * 100000 + b"]" * 100000]) == "bad_request"


@pytest.mark.parametrize("v", [None, 0, 2, "1", True, 1.5])
def test_decode_bad_version_keeps_request_id(v):
    h = header()
    if v is None:
        del h["v"]
    else:
        h["v"] = v
    with pytest.raises(ProtocolError) as info:
        decode_message(frames_of(h))
    assert info.value.code == "bad_version"
    assert info.value.request_id == "r1"


def desc(name="image", dtype="uint8", shape=(2, 2, 4)):
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def test_decode_rejects_bad_arrays():
    ok = bytes(16)
    assert decode_message(frames_of(header(arrays=[desc()]), ok))[1]["image"].shape == (2, 2, 4)
    assert code_of(frames_of(header(arrays=[desc()]))) == "bad_request"                 # frame missing
    assert code_of(frames_of(header(arrays=[desc()]), ok, ok)) == "bad_request"         # extra frame
    assert code_of(frames_of(header(), ok)) == "bad_request"                            # undeclared
    assert code_of(frames_of(header(arrays=[desc()]), bytes(15))) == "bad_request"      # size mismatch
    assert code_of(frames_of(header(arrays=[desc(dtype="float32")]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(dtype="int16")]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(dtype=None)]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(shape=(2, -2, 4))]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(shape=(2.0, 2, 4))]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(shape=(True, 2))]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[{"name": "image", "dtype": "uint8", "shape": "2x2"}]),
                             ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=[desc(shape=(1, 1, 1, 1, 16))]), ok)) == "too_large"
    assert code_of(frames_of(header(arrays=[desc(shape=(65537, 1))]), ok)) == "too_large"
    assert code_of(frames_of(header(arrays=[desc(shape=(65536, 65536, 4))]), ok)) == "too_large"
    assert code_of(frames_of(header(arrays=[desc(), desc()]), ok, ok)) == "bad_request"  # duplicate
    assert code_of(frames_of(header(arrays=[desc(name="")]), ok)) == "bad_request"
    assert code_of(frames_of(header(arrays=["image"]), ok)) == "bad_request"
    many = [desc(name=f"a{i}", shape=(1,)) for i in range(33)]
    assert code_of(frames_of(header(arrays=many), *[b"\0"] * 33)) == "too_large"


def test_decode_size_limits():
    small = Limits(max_header_bytes=100, max_message_bytes=1000)
    assert code_of(frames_of(header(params={"pad": "x" * 200})), small) == "too_large"
    big = frames_of(header(arrays=[desc(shape=(2000,))]), bytes(2000))
    assert code_of(big, small) == "too_large"


def test_decoded_arrays_are_views():
    data = bytearray(16)
    _, arrays = decode_message(frames_of(header(arrays=[desc()]), data))
    data[0] = 7
    assert arrays["image"].data[0] == 7


def test_constants():
    assert P.DEFAULT_ADDRESS == "tcp://127.0.0.1:5581"
    assert P.MAX_HEADER_BYTES == 1 << 20 and P.MAX_ELEMENTS == 1 << 28 and P.MAX_DIM == 65536
    assert P.DTYPES == {"uint8": 1, "uint16": 2, "float32": 4, "int64": 8, "float64": 8}
    assert P.NUMPY_DTYPES["uint16"] == "<u2" and P.NUMPY_DTYPES["uint8"] == "|u1"
    for name, numpy_str in P.NUMPY_DTYPES.items():
        assert np.dtype(numpy_str).itemsize == P.DTYPES[name] and np.dtype(numpy_str).name == name


# ---------------------------------------------------------------------------
# bridge/ runs in GIMP's Python: 3.9 syntax, standard library only
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", BRIDGE_FILES, ids=os.path.basename)
def test_bridge_parses_as_python39(path):
    with open(path, encoding="utf-8") as fh:
        src = fh.read()
    tree = ast.parse(src, filename=path, feature_version=(3, 9))
    assert "from __future__ import annotations" in src or not src.strip() or path.endswith("__init__.py")
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Match), "match statement needs Python 3.10"
        # X | Y evaluated at runtime (outside annotations) needs 3.10 for types
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "issubclass"):
            assert not any(isinstance(a, ast.BinOp) for a in node.args), ast.dump(node)


@pytest.mark.parametrize("path", BRIDGE_FILES, ids=os.path.basename)
def test_bridge_imports_only_stdlib(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for inner in node.body:
                if isinstance(inner, ast.Import):
                    guarded.update(alias.name for alias in inner.names)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            top = name.split(".")[0]
            assert top not in ("numpy", "torch", "engine", "PIL", "typing_extensions"), name
            if top == "zmq":
                assert name in guarded, "import zmq must be guarded by try/except"
            else:
                assert top in sys.stdlib_module_names or top == "__future__", name


def test_bridge_works_without_numpy_and_zmq():
    code = r"""
import sys
sys.modules["numpy"] = None
sys.modules["zmq"] = None
import bridge.client as c
from bridge.protocol import Array, encode_message, decode_message
assert not c.HAVE_PYZMQ
client = c.EngineClient("tcp://127.0.0.1:9")
assert client.transport == "zmtp"
frames = encode_message({"id": "x", "op": "hello"}, {"a": Array("uint8", (2, 2), b"abcd")})
h, arrays = decode_message(frames)
assert arrays["a"].tobytes() == b"abcd"
try:
    c.EngineClient("tcp://127.0.0.1:9", curve_server_key="x" * 40)
except c.BridgeError as exc:
    assert "CURVE encryption needs pyzmq" in str(exc)
else:
    raise SystemExit("no CURVE error")
try:
    c.EngineClient("ipc:///tmp/engine.sock")
except c.BridgeError as exc:
    assert "pyzmq" in str(exc)
else:
    raise SystemExit("no ipc error")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
