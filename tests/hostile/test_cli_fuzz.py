"""Property-based fuzzing of the `neural-collage` command line with arbitrary file bytes for every reader (photo,
mask, reference, saved latent, Chainer checkpoint) and hostile arguments (class names, regions, output paths).

Properties of every run: exit code 0 or 2; nothing escapes ``main`` (no traceback); on 2, one error line; the
output exists only after a success and is then a complete image; no temporary or partial file is left behind.
The command lines run in one long-lived subprocess (tests/hostile/cli_runner.py: torch and the model load once).
"""
from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
from hostile_harness import COUNTS, fuzz_settings, outcome
from hypothesis import given
from hypothesis import strategies as st
from hostile_strategies import hostile_text


HERE = Path(__file__).resolve().parent


# -- files -----------------------------------------------------------------------------------------------------
def photo(h=40, w=40, c=3, dtype=np.uint8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx * 7 + yy * 3) % 256).astype(np.float64) / 255.0
    img = np.repeat(base[:, :, None], c, axis=2)
    if dtype == np.uint8:
        return np.rint(img * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(img * 65535).astype(np.uint16)
    return img.astype(dtype)


def encoded(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb_header(w: int, h: int, bit_depth: int = 8, color: int = 0, rows: int = 4) -> bytes:
    """A PNG announcing w x h pixels with only ``rows`` rows of data (the decoder allocates for all of them)."""
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color] * bit_depth // 8
    raw = (b"\0" + bytes(w * bpp)) * rows
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def npz_bytes(arrays: dict, pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays) if not pickle else np.savez(buf, **{k: np.array([v, None], dtype=object)
                                                                for k, v in arrays.items()})
    return buf.getvalue()


def npy_with_header(header: str, data: bytes = b"") -> bytes:
    h = header.encode("latin1")
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    if len(h) < 65536:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(h)) + h + data


def zip_with(members: dict[str, bytes], declared: dict[str, int] | None = None) -> bytes:
    """A zip of ``members``; ``declared`` overrides a member's announced uncompressed size (lies)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    raw = bytearray(buf.getvalue())
    for name, size in (declared or {}).items():
        key = name.encode()
        i = raw.find(b"PK\x03\x04")
        while i >= 0:
            n = struct.unpack("<H", raw[i + 26:i + 28])[0]
            if raw[i + 30:i + 30 + n] == key:
                raw[i + 22:i + 26] = struct.pack("<I", size & 0xFFFFFFFF)
            i = raw.find(b"PK\x03\x04", i + 4)
        i = raw.find(b"PK\x01\x02")
        while i >= 0:
            n = struct.unpack("<H", raw[i + 28:i + 30])[0]
            if raw[i + 46:i + 46 + n] == key:
                raw[i + 24:i + 28] = struct.pack("<I", size & 0xFFFFFFFF)
            i = raw.find(b"PK\x01\x02", i + 4)
    return bytes(raw)


def mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "append", "same"]))
    b = bytearray(data)
    if kind == "flip" and b:
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        b = b[: draw(st.integers(0, len(b)))]
    elif kind == "append":
        b += draw(st.binary(max_size=200))
    return bytes(b)


def image_file(draw) -> tuple[bytes, str]:
    """(bytes, extension) of an image file: valid in every depth and layout, mutated, a bomb header, or junk."""
    kind = draw(st.sampled_from(["valid", "mutated", "bomb", "junk"]))
    ext = draw(st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".webp"]))
    if kind == "junk":
        return draw(st.binary(max_size=2000)), ext
    if kind == "bomb":
        w, h = draw(st.sampled_from([(30000, 30000), (65535, 65535), (100000, 1), (1, 2 ** 31 - 1), (20000, 20000)]))
        return png_bomb_header(w, h, color=draw(st.sampled_from([0, 2, 6]))), ".png"
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    c = draw(st.sampled_from([1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    if dtype == np.float32:
        ext = ".tif"
    elif dtype == np.uint16 and ext not in (".png", ".tif"):
        ext = ".png"
    elif ext == ".jpg" and c == 4:
        c = 3
    img = photo(h, w, c, dtype)
    if c == 1:
        img = img[:, :, 0]
    data = encoded(img, ext)
    return (mutate(data, draw) if kind == "mutated" else data), ext


def npz_file(draw) -> bytes:
    kind = draw(st.sampled_from(["latent", "pickle", "bomb", "huge_header", "huge_shape", "mutated", "junk",
                                 "fortran", "wrong"]))
    z = np.zeros((1, 8, 4, 4), np.float32)
    if kind == "latent":
        return npz_bytes({"z": z, "class_id": np.array(0), "loss": np.array(0.1)})
    if kind == "pickle":
        return npz_bytes({"z": z, "class_id": np.array(0), "loss": np.array(0.1)}, pickle=True)
    if kind == "bomb":
        member = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }")
        return zip_with({"z.npy": member, "class_id.npy": npy_with_header(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", bytes(8))},
            declared={"z.npy": draw(st.sampled_from([2 ** 30, 2 ** 32 - 1, 3 * 2 ** 30]))})
    if kind == "huge_header":
        return zip_with({"z.npy": npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"
                                                  + " " * draw(st.sampled_from([70000, 200000, 1000000])))})
    if kind == "huge_shape":
        shape = draw(st.sampled_from(["(2**40,)", "(1099511627776,)", "(-1,)", "(65536, 65536, 64)", "('a',)"]))
        return zip_with({"z.npy": npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape,
                                                  bytes(64))})
    if kind == "fortran":
        return zip_with({"z.npy": npy_with_header("{'descr': '|O', 'fortran_order': True, 'shape': (2,), }", bytes(16))})
    if kind == "wrong":
        return npz_bytes({"z": np.zeros((3,), np.float64), "class_id": np.array([1, 2]), "loss": np.array("x")})
    if kind == "mutated":
        return mutate(npz_bytes({"z": z, "class_id": np.array(0), "loss": np.array(0.1)}), draw)
    return draw(st.binary(max_size=1000))


# -- the property ----------------------------------------------------------------------------------------------
def check_run(res: dict, out: Path | None, folder: Path, allowed: set[str]) -> None:
    outcome("cli:exit %s" % res["code"])
    assert res["escaped"] is None, "an exception escaped the CLI:\n" + res["escaped"]
    assert res["code"] in (0, 2), res
    assert "Traceback" not in res["stderr"], res["stderr"]
    if res["code"] == 2:
        errors = [x for x in res["stderr"].splitlines() if ": error:" in x]
        assert len(errors) == 1, res["stderr"]
        assert len(errors[0]) < 600, errors[0]
        if out is not None:
            assert not out.exists(), "output written by a failed run"
    elif out is not None and out.suffix.lower() != ".npz":
        assert out.exists() and cv2.imread(str(out), cv2.IMREAD_UNCHANGED) is not None, "output unreadable"
    left = {p.name for p in folder.iterdir()} - allowed
    assert not left, f"files left behind: {left}"


@fuzz_settings(ci=30)
@given(data=st.data())
def test_every_reader_with_arbitrary_bytes(runner, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("cli")
    good = d / "good.png"
    cv2.imwrite(str(good), photo(40, 40))
    gmask = d / "gmask.png"
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 10:30] = 255
    cv2.imwrite(str(gmask), m)
    role = data.draw(st.sampled_from(["input", "mask", "ref", "latent", "chainer"]))
    out = d / "out.png"
    COUNTS["files"] += 1
    if role in ("input", "mask", "ref"):
        blob, ext = image_file(data.draw)
        f = d / ("file" + ext)
        f.write_bytes(blob)
        if role == "input":
            argv = ["swap", "--input", f, "--region", "2,2,20,20", "--to", "snow", "--class", "grass"]
        elif role == "mask":
            argv = ["swap", "--input", good, "--mask", f, "--to", "snow", "--class", "grass"]
        else:
            argv = ["blend", "--input", good, "--mask", gmask, "--ref", f, "--ref-region", "0,0,24,24",
                    "--class", "grass"]
    elif role == "latent":
        f = d / "latent.npz"
        f.write_bytes(npz_file(data.draw))
        argv = ["swap", "--input", good, "--mask", gmask, "--to", "snow", "--latent", f]
    else:
        src = d / "chainer"
        src.mkdir()
        (src / "ResNetGenerator_1.npz").write_bytes(npz_file(data.draw))
        res = runner(["weights", "import-chainer", src])
        check_run(res, None, d, {"good.png", "gmask.png", "chainer"})
        return
    res = runner([*argv, "--steps", "1", "--no-poisson", "-q", "-o", out])
    check_run(res, out, d, {"good.png", "gmask.png", f.name, "out.png"})


@fuzz_settings(ci=30)
@given(data=st.data())
def test_hostile_arguments(runner, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("args")
    good = d / "good.png"
    cv2.imwrite(str(good), photo(40, 40))
    cls = data.draw(st.one_of(hostile_text.filter(lambda s: "\x00" not in s), st.sampled_from(["snow", "3", "-1"])))
    region = data.draw(st.one_of(st.sampled_from(["0,0,20,20", "1,2,3", "a,b,c,d", "-5,-5,30,30", "0,0,0,5",
                                                  "99999999999999999999,0,20,20", "0,0,1,65536", ""]),
                                 hostile_text.filter(lambda s: "\x00" not in s)))
    ext = data.draw(st.sampled_from([".png", ".jpg", ".tif", ".xyz", "", ".PNG", ".exr", ".npz", "/"]))
    out = d / ("out" + ext) if ext != "/" else d / "outdir"
    if ext == "/":
        out.mkdir()
    argv = ["swap", "--input", good, "--region", region, "--to", cls, "--class", "grass", "--steps",
            data.draw(st.sampled_from(["1", "0", "-1", "x", "99999999"])), "--strength",
            data.draw(st.sampled_from(["1", "0.5", "nan", "inf", "-0", "2"])), "-q", "-o", out]
    COUNTS["files"] += 1
    res = runner(argv)
    outcome("cli:exit %s" % res["code"])
    assert res["escaped"] is None, "an exception escaped the CLI:\n" + res["escaped"]
    assert res["code"] in (0, 2) and "Traceback" not in res["stderr"], res
    if ext == "/":
        assert out.is_dir() and not any(out.iterdir())
    elif res["code"] != 0:
        assert not out.exists()
    left = {p.name for p in d.iterdir()} - {"good.png", out.name}
    assert not left, f"files left behind: {left}"


def test_runner_sees_a_success(runner, tmp_path):
    """The harness itself: a valid edit exits 0 and writes a readable image of the photo's size."""
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), photo(40, 40))
    out = tmp_path / "o.png"
    res = runner(["swap", "--input", good, "--region", "5,5,20,20", "--to", "snow", "--class", "grass",
                  "--steps", "1", "-q", "-o", out])
    assert res["code"] == 0, res
    assert cv2.imread(str(out)).shape == (40, 40, 3)
    shutil.rmtree(tmp_path, ignore_errors=True)
