"""The GIMP plug-in and the bridge: Python 3.9 syntax, no heavy imports, plain helper modules work without
GIMP, and the installed plug-in file is executable."""
from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "gimp_plugin" / "neural_collage"
BRIDGE = ROOT / "bridge"
FORBIDDEN = {"numpy", "torch", "cv2", "PIL", "engine", "scipy", "skimage", "platformdirs", "tqdm"}

sys.path.insert(0, str(PLUGIN))
import nc_pixels as px
import nc_settings


def sources():
    files = sorted(PLUGIN.glob("*.py")) + sorted(BRIDGE.glob("*.py"))
    assert (PLUGIN / "neural_collage.py") in files
    return files


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_as_python_39(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_heavy_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def _text(name):
    return (PLUGIN / name).read_text(encoding="utf-8")


def test_plugin_shape():
    """The things GIMP needs to list the plug-in: shebang, Gimp.main, the four procedure names, menu path."""
    text = _text("neural_collage.py")
    assert text.startswith("#!/usr/bin/env python3\n")
    assert "Gimp.main(NeuralCollage.__gtype__, sys.argv)" in text
    procs = _text("nc_procedures.py")
    for name in ("python-fu-neural-collage-label-swap", "python-fu-neural-collage-feature-transplant",
                 "python-fu-neural-collage-project", "python-fu-neural-collage-settings"):
        assert f'"{name}"' in procs
    assert '"<Image>/Filters/Neural Collage"' in procs
    # one undo group, context pushed and popped around the only change to the image, in the GIMP adapter
    for name in sorted(p.name for p in PLUGIN.glob("*.py")):
        if name != "nc_image.py":
            assert "undo_group_start" not in _text(name) and "insert_layer" not in _text(name), name
    text = _text("nc_image.py")
    assert text.count("image.undo_group_start()") == 1 and text.count("image.undo_group_end()") == 1
    assert text.count("Gimp.context_push()") == 1 and text.count("Gimp.context_pop()") == 1
    group = text[text.index("def _in_one_undo_group"):text.index("def insert_result")]
    assert group.index("undo_group_start") < group.index("return work(") < group.index("finally:") < group.index(
        "undo_group_end")
    assert "image.remove_layer(item)" in group
    # every layer (one result, or the variations' group and its N layers) is inserted by a ``work`` that runs
    # inside that one undo group: one undo step whatever N is
    tree = ast.parse(text)
    funcs = _functions(tree)
    for name in ("insert_result", "insert_variations"):
        src = ast.unparse(funcs[name])
        assert src.count("_in_one_undo_group(image, layer, work)") == 1, name
        body = [n for n in funcs[name].body if not isinstance(n, ast.FunctionDef)]
        assert all("insert_layer" not in ast.unparse(n) and "_add_result_layer" not in ast.unparse(n)
                   for n in body), f"{name} changes the image outside its undo group"
    inserters = [n for n, f in funcs.items() if "image.insert_layer(" in ast.unparse(f) and n != "work"]
    assert sorted(inserters) == ["_add_result_layer", "insert_variations"], inserters  # (its group: inside work)
    variations = ast.unparse(funcs["insert_variations"])
    assert "Gimp.GroupLayer.new(image, group_name)" in variations and "_add_result_layer(image, layer, group" in \
        variations


def _functions(tree):
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_one_run_function_per_procedure():
    """Shaped like GIMP's own plug-ins: each procedure has its own run function; none branches on a kind."""
    tree = ast.parse(_text("neural_collage.py"))
    run = next(node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "RUN")
    targets = [v.id for v in run.value.values]
    assert targets == ["run_label_swap", "run_feature_blend", "run_project", "run_settings"]
    functions = _functions(tree)
    for name in targets:
        args = [a.arg for a in functions[name].args.args]
        assert args == ["procedure", "run_mode", "image", "drawables", "config", "data"], name
    for path in PLUGIN.glob("*.py"):
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))).values():
            assert "kind" not in [a.arg for a in fn.args.args], f"{path.name}:{fn.name} takes a kind"


def test_gimp_30_and_32_rules():
    """GimpUi/Gtk only in the dialog module (imported in the interactive branch only); enums never read
    through str(); libgimp results that report success are checked; no numbers parsed from str() of an enum."""
    for path in PLUGIN.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "str" and node.args:
                assert "Gimp." not in ast.unparse(node.args[0]), f"{path.name}: str() of {ast.unparse(node)}"
        if path.name != "nc_dialog.py":
            assert "GimpUi" not in text.replace("GimpUi/Gtk", "") or path.name == "neural_collage.py", path.name
            assert 'require_version("Gtk"' not in text and "import Gtk" not in text, path.name
        assert ".value_name" not in text and ".value_nick" not in text, f"{path.name} reads an enum's text"
        for line in text.splitlines():
            if "get_offsets()" in line or "Selection.bounds(" in line:
                assert "_checked(" in line, f"{path.name}: unchecked libgimp result: {line.strip()}"
    main = ast.parse(_text("neural_collage.py"))
    top = [n for n in main.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("nc_dialog" in ast.unparse(n) or "GimpUi" in ast.unparse(n) for n in top)


def test_plugin_checks_pdb_results():
    """From GIMP 3.2.6 a failing PDB call prints nothing: the result layer's calls are all checked, the unfinished
    layer is removed, and the undo group is closed only if it was opened."""
    text = (PLUGIN / "nc_image.py").read_text(encoding="utf-8")
    fn = text[text.index("def _add_result_layer"):]
    for call in ("_ok(started", "_ok(Gimp.Layer.new(", "_ok(image.insert_layer(", "_ok(new.set_offsets(",
                 "_ok(new.update(", "_ok(Gimp.GroupLayer.new(", "_ok(image.insert_layer(group"):
        assert call in fn, call
    assert "if started:\n            image.undo_group_end()" in fn


def test_plugin_imports_no_heavy_modules_at_runtime(tmp_path):
    """Import the helper modules in a fresh interpreter and check nothing heavy came along."""
    code = (f"import sys; sys.path.insert(0, {str(PLUGIN)!r}); sys.path.insert(0, {str(ROOT)!r}); "
            "import nc_pixels, nc_settings, nc_engine; import bridge.protocol, bridge.requests, bridge.errors, "
            "bridge.client; "
            f"bad = sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_installed_plugin_is_executable(tmp_path):
    if not (BRIDGE / "client.py").exists():
        pytest.skip("bridge/client.py not written yet")
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("GIMP3_DIRECTORY", None)
    prof = tmp_path / "profile"
    subprocess.run([sys.executable, str(ROOT / "install.py"), "--no-venv", "--gimp-dir", str(prof)],
                   check=True, env=env, capture_output=True)
    main = prof / "plug-ins" / "neural_collage" / "neural_collage.py"
    assert main.stat().st_mode & stat.S_IXUSR
    for name in ("client.py", "protocol.py", "requests.py", "errors.py", "zmtp.py", "__init__.py"):
        assert (prof / "plug-ins" / "neural_collage" / "bridge" / name).is_file(), name
    for name in ("nc_pixels.py", "nc_settings.py", "nc_engine.py", "nc_image.py", "nc_requests.py", "nc_dialog.py",
                 "nc_procedures.py"):
        assert (prof / "plug-ins" / "neural_collage" / name).is_file(), name


# ---- nc_pixels -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,key", [
    ("GIMP_PRECISION_U8_NON_LINEAR", "u8"), ("GIMP_PRECISION_U8_LINEAR", "u8"),
    ("GIMP_PRECISION_U16_PERCEPTUAL", "u16"), ("GIMP_PRECISION_U32_LINEAR", "float"),
    ("GIMP_PRECISION_HALF_LINEAR", "float"), ("GIMP_PRECISION_FLOAT_NON_LINEAR", "float"),
    ("GIMP_PRECISION_DOUBLE_LINEAR", "float"), ("u16-non-linear", "u16"),
])
def test_precision_key(name, key):
    assert px.precision_key(name) == key


def test_pixel_formats():
    f = px.PixelFormat(gray=False, alpha=True, key="u16")
    assert (f.babl, f.channels, f.dtype, f.bpp) == ("R'G'B'A u16", 4, "uint16", 8)
    f = px.PixelFormat(gray=True, alpha=False, key="float")
    assert (f.babl, f.channels, f.dtype, f.bpp) == ("Y' float", 1, "float32", 4)
    assert px.PixelFormat(True, True, "u8").babl == "Y'A u8"
    assert px.babl_for_array("uint8", 3) == "R'G'B' u8"
    assert px.babl_for_array("float32", 2) == "Y'A float"
    with pytest.raises(ValueError):
        px.babl_for_array("int64", 3)


def test_boxes():
    assert px.grow((10, 20, 100, 40), 0.25) == (-15, 10, 150, 60)
    assert px.grow((0, 0, 3, 3), 0.25) == (-1, -1, 5, 5)  # rounds outwards
    assert px.intersect((0, 0, 10, 10), (5, 5, 10, 10)) == (5, 5, 5, 5)
    assert px.intersect((0, 0, 10, 10), (10, 0, 5, 5)) is None
    assert px.union((0, 0, 2, 2), (5, 5, 1, 1)) == (0, 0, 6, 6)
    # selection 100x80 at (30, 20) on a 200x150 layer at offset (0, 0): grown 25 % then clipped
    assert px.crop_box((30, 20, 100, 80), (0, 0, 200, 150), 0.25) == (5, 0, 150, 120)
    # a layer with offsets: the crop stays inside the layer's extent
    assert px.crop_box((30, 20, 100, 80), (50, 10, 60, 60), 0.25) == (50, 10, 60, 60)
    assert px.crop_box((0, 0, 10, 10), (50, 50, 10, 10), 0.25) is None
    assert px.to_layer((55, 12, 4, 4), (50, 10)) == (5, 2, 4, 4)
    assert px.centre((10, 20, 5, 4)) == (12.5, 22.0)


def test_masks():
    m = px.paste_mask(6, 4, (1, 1, 3, 2))
    assert m == bytes([0] * 6 + [0, 255, 255, 255, 0, 0] * 2 + [0] * 6)
    assert px.mask_bbox(m, 6, 4) == (1, 1, 3, 2)
    assert px.mask_bbox(bytes(24), 6, 4) is None
    assert px.mask_bbox(px.full_mask(6, 4), 6, 4) == (0, 0, 6, 4)
    assert px.paste_mask(4, 4, (-2, -2, 3, 3)) == bytes([255, 0, 0, 0] + [0] * 12)
    assert px.multiply_masks(bytes([255, 128, 0]), bytes([255, 255, 9])) == bytes([255, 128, 0])
    with pytest.raises(ValueError):
        px.mask_bbox(bytes(5), 2, 2)


def test_label_channel_names():
    assert px.label_class("label: tiger") == "tiger"
    assert px.label_class("Label:tabby cat ") == "tabby cat"
    assert px.label_class("LABEL :  12") == "12"
    assert px.label_class("labels: x") is None
    assert px.label_class("Selection Mask copy") is None
    assert px.label_class("label:") is None


def test_crop_digest_is_stable():
    assert px.crop_digest(b"abc", 1) == px.crop_digest(b"abc", 1)
    assert px.crop_digest(b"abc", 1) != px.crop_digest(b"abd", 1)


# ---- nc_settings ---------------------------------------------------------------------------------------

def test_settings_defaults_and_roundtrip(tmp_path):
    path = str(tmp_path / "s.json")
    s, warn = nc_settings.load(path)
    assert warn is None and s == nc_settings.defaults()
    assert s["address"].startswith("tcp://127.0.0.1:")
    s.update(address="tcp://127.0.0.1:6000", auto_start="yes",
             engine_command="/opt/venv/bin/python -m engine.cli serve", model="default")
    nc_settings.save(s, path)
    back, warn = nc_settings.load(path)
    assert warn is None
    assert back["auto_start"] is True
    assert back["engine_command"] == ["/opt/venv/bin/python", "-m", "engine.cli", "serve"]
    assert nc_settings.engine_argv(back) == ["/opt/venv/bin/python", "-m", "engine.cli", "serve", "--bind",
                                             "tcp://127.0.0.1:6000", "--model", "default"]
    assert json.loads(Path(path).read_text())["address"] == "tcp://127.0.0.1:6000"


def test_settings_bad_file_gives_defaults_and_warning(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    s, warn = nc_settings.load(str(path))
    assert s == nc_settings.defaults() and "could not read" in warn
    path.write_text(json.dumps({"address": "localhost", "timeout": 5}))
    s, warn = nc_settings.load(str(path))
    assert s == nc_settings.defaults() and "tcp://" in warn


def test_settings_validation():
    with pytest.raises(ValueError):
        nc_settings.validate({"timeout": -1})
    with pytest.raises(ValueError):
        nc_settings.validate({"auto_start": "maybe"})
    with pytest.raises(ValueError):
        nc_settings.validate({"steps": "many"})
    v = nc_settings.validate({"future_key": 1, "address": ""})
    assert v["future_key"] == 1 and v["address"] == nc_settings.default_address()
    assert nc_settings.engine_argv(v) == []
    assert nc_settings.parse_command(nc_settings.format_command(["/a b/python", "-m", "x"])) == [
        "/a b/python", "-m", "x"]


def test_settings_path_env(tmp_path, monkeypatch):
    monkeypatch.setenv(nc_settings.ENV_PATH, str(tmp_path / "x.json"))
    assert nc_settings.settings_path() == str(tmp_path / "x.json")
    monkeypatch.delenv(nc_settings.ENV_PATH)
    assert nc_settings.settings_path("/p") == os.path.join("/p", nc_settings.FILE_NAME)


def test_mask_rects_cover_exactly_the_nonzero_pixels():
    w, h = 7, 5
    rows = [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 9, 9, 0, 0, 5, 0],
        [0, 9, 9, 0, 0, 5, 5],
        [1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    mask = bytes(v for r in rows for v in r)
    rects = px.mask_rects(mask, w, h)
    covered = set()
    for x, y, rw, rh in rects:
        for yy in range(y, y + rh):
            for xx in range(x, x + rw):
                assert (xx, yy) not in covered
                covered.add((xx, yy))
    assert covered == {(x, y) for y in range(h) for x in range(w) if rows[y][x]}
    assert (1, 1, 2, 2) in rects  # identical runs of consecutive rows merge
    assert px.mask_rects(px.full_mask(w, h), w, h) == [(0, 0, w, h)]
    assert px.mask_rects(bytes(w * h), w, h) == []
    assert px.max_masks(bytes([1, 200, 0]), bytes([3, 100, 0])) == bytes([3, 200, 0])


REMOVED_IN_312_313 = {"distutils", "imp", "asynchat", "asyncore", "smtpd", "cgi", "cgitb", "crypt", "imghdr",
                      "mailcap", "nntplib", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
                      "audioop", "chunk", "msilib", "nis", "ossaudiodev", "lib2to3"}


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stdlib_modules_removed_in_python_312_313(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & REMOVED_IN_312_313


def test_settings_curve_keys(tmp_path):
    assert nc_settings.curve_options(nc_settings.defaults()) == {}
    v = nc_settings.validate({"engine_public_key": " /keys/engine.key ", "client_secret_key": "/keys/me.key_secret"})
    assert nc_settings.curve_options(v) == {"curve_server_key": "/keys/engine.key",
                                            "curve_keys": "/keys/me.key_secret"}
    assert nc_settings.curve_options(nc_settings.validate({"engine_public_key": "k" * 40})) == {
        "curve_server_key": "k" * 40}
    with pytest.raises(ValueError, match="set engine_public_key too"):
        nc_settings.validate({"client_secret_key": "/keys/me.key_secret"})


def test_curve_settings_reach_a_curve_engine(tmp_path):
    """The settings' key files, passed as the plug-in passes them, open an encrypted connection to an engine that
    admits only listed clients; a missing key file is a BridgeError (the plug-in turns it into a message)."""
    zmq = pytest.importorskip("zmq")
    if not zmq.has("curve"):
        pytest.skip("libzmq without CURVE")
    import argparse

    sys.path.insert(0, str(ROOT / "tests" / "bridge"))
    from bridge_fakes import FakeHandler

    from bridge.client import EngineClient
    from bridge.protocol import BridgeError
    from engine.cli.serve import add_keys_arguments, keys_main
    from engine.serve.server import EngineServer

    keys_main(str(tmp_path / "engine"))
    keys_main(add_keys_arguments(argparse.ArgumentParser()).parse_args(["--out-dir", str(tmp_path / "me"),
                                                                         "--name", "me"]))
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "me.key").write_text((tmp_path / "me" / "me.key").read_text())
    srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", curve_clients=str(tmp_path / "clients"),
                       curve_secret_key_file=str(tmp_path / "engine" / "engine.key_secret"))
    address = srv.start()
    try:
        s = nc_settings.validate({"address": address, "engine_public_key": str(tmp_path / "engine" / "engine.key"),
                                  "client_secret_key": str(tmp_path / "me" / "me.key_secret")})
        c = EngineClient(s["address"], 5, **nc_settings.curve_options(s))
        assert c.hello()["state"] == "ready"
        c.close()
        bad = EngineClient(s["address"], 5, **nc_settings.curve_options(dict(s, client_secret_key="/nope")))
        with pytest.raises(BridgeError, match="CURVE key"):
            bad.hello()
        bad.close()
    finally:
        srv.stop()
