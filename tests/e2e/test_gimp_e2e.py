"""End to end: install the plug-in into a throwaway GIMP 3 profile, start an engine, and drive every Neural
Collage procedure through GIMP's PDB in one batch session (tests/e2e/gimp_cases.py), then check on the host:
result layer size/offset/position, pixels outside the selection unchanged and inside changed, existing layers
byte-identical with exactly one layer added, errors leave the image untouched, label channels reach the
engine, 16-bit/float/gray/alpha images and layers with offsets work.

    python3 -m pytest tests/e2e -q                  # real engine when the default weights are there
    NC_E2E_ENGINE=fake python3 -m pytest tests/e2e  # force the stand-in
    NC_E2E_SAVE_DOCS=1 ...                          # also write docs/gimp/*.png
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import harness
import numpy as np
import pytest

sys.path.insert(0, str(harness.REPO / "gimp_plugin" / "neural_collage"))
import nc_pixels as px

pytestmark = pytest.mark.e2e

MARGIN = 0.25
SEL = [150, 60, 120, 100]
FEATHER = 10
SWAP = "python-fu-neural-collage-label-swap"
TRANSPLANT = "python-fu-neural-collage-feature-transplant"
PROJECT = "python-fu-neural-collage-project"
ZERO_LAYERS = "0,0,0"  # one 0 per sCBN layer of the default model (3); the stand-in engine takes any count
CANCEL_STEPS = 3000  # the cancel case's request: long enough to be killed while the engine works on it


def build_cases(target: str, label: str, interactive: bool, work_inside: str, address: str) -> list:
    swap = {"target-class": target, "strength": 1.0, "scope": "all"}
    dialogs = [
        {"name": "interactive_swap", "setup": "basic", "proc": SWAP, "props": swap, "interactive": True},
        # the live preview draws at least once, then Cancel: the image must stay byte-identical
        {"name": "interactive_swap_cancel", "setup": "basic", "proc": SWAP, "interactive": True,
         "dialog_answer": {"answer": "cancel", "tag": "cancel"}, "props": dict(swap, strength=0.7)},
        {"name": "interactive_transplant", "setup": "transplant", "proc": TRANSPLANT, "interactive": True,
         "props": {"reference": "reference", "strength": 1.0, "scope": "all"}},
    ] if interactive else []
    settings_dialog = [{"name": "interactive_settings", "kind": "settings", "interactive": True, "props": {}}]
    # auto-start: the "engine command" runs inside GIMP's world (maybe a chroot without numpy/pyzmq), so it
    # only asks the host to start the engine (a flag file) and waits until the host says it has
    starter = (f"touch {work_inside}/start_engine; i=0; while [ ! -e {work_inside}/engine_started ] && "
               "[ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done")
    autostart = [
        {"name": "autostart_settings", "kind": "settings",
         "props": {"address": address, "auto-start": True, "engine-command": f"sh -c '{starter}'",
                   "model": "", "timeout": 30.0}},
        {"name": "autostart_swap", "setup": "basic", "proc": SWAP, "props": swap},
    ]
    return dialogs + [
        {"name": "swap_u8", "setup": "basic", "proc": SWAP, "props": swap, "save_before": True},
        # issue 14: the engine's options as procedure arguments, and variations
        {"name": "opt_scale1", "setup": "basic", "proc": SWAP, "props": dict(swap, mode="fast", scale=1.0)},
        {"name": "opt_scale2", "setup": "basic", "proc": SWAP, "props": dict(swap, mode="fast", scale=2.0)},
        {"name": "opt_layers_zero", "setup": "basic", "proc": SWAP,
         "props": dict(swap, mode="fast", **{"layer-strengths": ZERO_LAYERS})},
        {"name": "opt_strength_zero", "setup": "basic", "proc": SWAP, "props": dict(swap, mode="fast", strength=0.0)},
        {"name": "err_layer_strengths", "setup": "basic", "proc": SWAP,
         "props": dict(swap, **{"layer-strengths": "1, lots, 0"})},
        {"name": "variations", "setup": "basic", "proc": SWAP,
         "props": dict(swap, mode="fast", variations=3, **{"variation-kind": "strength"})},
        {"name": "swap_labels", "setup": "labels", "proc": SWAP, "props": dict(swap, scope="local")},
        {"name": "swap_u16", "setup": "basic", "setup_args": {"precision": "u16"}, "proc": SWAP,
         "props": dict(swap, strength=0.8, scope="global")},
        {"name": "swap_float_rgba", "setup": "basic", "setup_args": {"precision": "float", "alpha": True},
         "proc": SWAP, "props": swap},
        {"name": "swap_graya", "setup": "basic", "setup_args": {"gray": True, "alpha": True}, "proc": SWAP,
         "props": swap},
        {"name": "swap_offsets", "setup": "offsets", "proc": SWAP, "props": swap},
        {"name": "swap_nosel", "setup": "basic", "setup_args": {"sel": False}, "proc": SWAP, "props": swap},
        {"name": "transplant", "setup": "transplant", "proc": TRANSPLANT, "save_before": True,
         "props": {"reference": "reference", "strength": 1.0, "scope": "all"}},
        {"name": "transplant_nosel", "setup": "transplant", "setup_args": {"with_selection": False},
         "proc": TRANSPLANT, "props": {"reference": "reference", "strength": 1.0, "scope": "all"}},
        {"name": "project", "setup": "basic", "proc": PROJECT, "props": {}, "save_before": True},
        {"name": "err_unknown_class", "setup": "basic", "proc": SWAP,
         "props": dict(swap, **{"target-class": "zebra-unicorn-nonesuch"})},
        {"name": "err_too_small", "setup": "basic", "proc": SWAP, "props": swap,
         "setup_args": {"sel_box": [200, 100, 3, 3], "feather": 0}},
        {"name": "cancel_by_gimp", "setup": "basic", "proc": SWAP, "props": dict(swap, steps=CANCEL_STEPS),
         "cancel": True},
        {"name": "_stop", "kind": "stop_engine"},
        {"name": "err_engine_stopped", "setup": "basic", "proc": SWAP, "props": swap},
        *(settings_dialog if interactive else []),
        *autostart,
        {"name": "settings", "kind": "settings",
         "props": {"address": "tcp://127.0.0.1:1", "auto-start": False, "engine-command": "",
                   "model": "", "timeout": 12.5}},
    ]


def selected(cases: list) -> list:
    """NC_E2E_CASES=name,name,...: only these cases (plus the engine stop they may need) run in GIMP, the
    tests of the others skip. A developer's shortcut for slow machines; unset (CI) everything runs."""
    names = os.environ.get("NC_E2E_CASES", "").strip()
    if not names:
        return cases
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - {c["name"] for c in cases}
    if unknown:
        raise ValueError(f"NC_E2E_CASES: no such case {sorted(unknown)}")
    return [c for c in cases if c["name"] in wanted or c.get("kind") == "stop_engine"]


@pytest.fixture(scope="module")
def run(gimp, tmp_path_factory):
    t0 = time.time()
    work = gimp.mkwork()
    profile = work / "profile"
    port = harness.free_port()
    address = f"tcp://127.0.0.1:{port}"
    kind = harness.engine_kind()
    harness.install_plugin(profile, address, harness.e2e_steps(kind))
    photo, ref = harness.write_photos(work)
    engine = harness.Engine(kind, address, work)
    engine.start()
    xvfb, display = gimp.start_xvfb()
    shutil.copy(harness.HERE / "dialog_hook.py", work / "dialog_hook.py")
    env = {"DISPLAY": display, "NEURAL_COLLAGE_TEST_DIALOG": "ok",
           "NEURAL_COLLAGE_TEST_HOOK": gimp.inside(work / "dialog_hook.py")} if display else {}
    try:
        classes = [c["name"] for c in engine.classes()]
        assert len(classes) >= 3, classes
        target, label = classes[1], classes[2]
        cfg = {"work": gimp.inside(work), "photo": gimp.inside(photo), "reference_photo": gimp.inside(ref),
               "sel": SEL, "feather": FEATHER, "label_box": [180, 80, 50, 40], "label_class": label,
               "patch": [60, 30, 300, 200], "ref_offset": [250, 120], "feature": [60, 40, 80, 70],
               "transplant_sel": [60, 60, 90, 80],
               "plugin_dir": gimp.inside(profile / "plug-ins" / "neural_collage"),
               "cases": selected(build_cases(target, label, bool(display), gimp.inside(work), address))}
        (work / "cfg.json").write_text(json.dumps(cfg))
        shutil.copy(harness.HERE / "gimp_cases.py", work / "gimp_cases.py")
        batch = 'NC_CFG = "{0}/cfg.json"; exec(open("{0}/gimp_cases.py").read())'.format(gimp.inside(work))

        cancel_info: dict = {}

        def cancel() -> None:
            cancel_info.update(harness.cancel_like_gimp(engine, CANCEL_STEPS, gimp, profile))

        cancel_thread = threading.Thread(target=cancel, daemon=True)

        def on_line(line):
            if line.strip() == "NC_STOP_ENGINE":
                if cancel_thread.ident is not None:  # the cancel case comes first: its job must be over
                    cancel_thread.join(1100)  # cancel_like_gimp: up to 900 s for progress, 120 s to idle
                engine.stop()
                (work / "engine_stopped").write_text("1")
            elif line.strip() == "NC_CANCEL_NEXT":
                cancel_thread.start()

        def restart_on_request():  # the auto-start case's engine command asks for this
            while not done.wait(0.1):
                if (work / "start_engine").exists():
                    engine.start()
                    (work / "engine_started").write_text("1")
                    return

        done = threading.Event()
        watcher = threading.Thread(target=restart_on_request, daemon=True)
        watcher.start()

        timeout = float(os.environ.get("NC_E2E_GIMP_TIMEOUT", "300" if engine.kind == "fake" else "1500"))
        rc, out, err = gimp.run_batch(profile, batch, timeout, on_line, env)
        done.set()
        watcher.join(200)
    finally:
        engine.stop()
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    records = {}
    for line in out.splitlines():
        if line.startswith("NCJSON "):
            rec = json.loads(line[len("NCJSON "):])
            records[rec["case"]] = rec
    if "NCDONE" not in out or len(records) < min(5, len(cfg["cases"])):
        pytest.fail(f"GIMP batch run did not finish (rc {rc}).\nstdout:\n{out[-4000:]}\n"
                    f"stderr (tail):\n{err[-6000:]}")
    result = {"records": records, "work": work, "engine": engine, "profile": profile, "stderr": err,
              "gimp": gimp, "cases": {c["name"] for c in cfg["cases"]},
              "cancel": cancel_info,
              "dialogs": bool(display),
              "target": target, "label": label, "seconds": time.time() - t0, "requests": engine.requests()}
    why = "" if engine.kind == "real" else " ({})".format(harness.real_engine_available()[1] or "NC_E2E_ENGINE")
    print(f"\nGIMP e2e ({gimp.where}, {engine.kind} engine{why}): {result['seconds']:.1f} s")
    yield result
    if os.environ.get("NC_E2E_KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

def rec(run, name):
    if name not in run["cases"] and not name.startswith("_"):
        pytest.skip(f"case {name} not selected (NC_E2E_CASES)")
    r = run["records"].get(name)
    assert r is not None, f"case {name} did not report (stderr tail: {run['stderr'][-3000:]})"
    assert "exception" not in r, r["exception"]
    return r


def assert_untouched(r):
    assert r["after"] == r["before"], "the image changed although the procedure failed"


def assert_one_layer_added(r):
    before = {la["id"]: la for la in r["before"]["layers"]}
    after = {la["id"]: la for la in r["after"]["layers"]}
    assert len(after) == len(before) + 1
    for lid, la in before.items():
        assert after[lid] == la, f"existing layer {la['name']} changed"
    assert r["after"]["channels"] == r["before"]["channels"]
    new = r["new"]
    assert new["position"] == new["active_position"] - 1, "new layer is not right above the active one"


def pixels(run, r):
    n = r["new"]
    work = run["work"]
    new = harness.read_raw(work, n["raw"], n["fmt"], n["w"], n["h"]).astype(np.float64)
    orig = harness.read_raw(work, n["orig_raw"], n["fmt"], n["w"], n["h"]).astype(np.float64)
    sel = harness.read_raw(work, n["sel_raw"], "Y u8", n["w"], n["h"])[:, :, 0]
    return new, orig, sel


def expected_box(r, region=None):
    a = r["active"]
    region = region or r["selection"] or [a["x"], a["y"], a["w"], a["h"]]
    return list(px.crop_box(tuple(region), (a["x"], a["y"], a["w"], a["h"]), MARGIN))


def check_edit(run, r, inverted=True):
    """Outside the selection: byte-identical; inside: changed (the stand-in inverts colour channels)."""
    assert r["status"] == "success", r.get("values")
    assert_one_layer_added(r)
    new, orig, sel = pixels(run, r)
    scale = harness.full_scale(r["new"]["fmt"])
    outside, inside = sel == 0, sel == 255
    assert outside.sum() > 100 and inside.sum() > 100
    assert np.array_equal(new[outside], orig[outside]), "pixels outside the selection changed"
    diff = np.abs(new[inside] - orig[inside])
    colour = new.shape[2] - 1 if new.shape[2] in (2, 4) else new.shape[2]
    if run["engine"].kind == "fake" and inverted:
        assert np.allclose(new[inside][:, :colour], scale - orig[inside][:, :colour], atol=scale * 1e-3)
        if new.shape[2] in (2, 4):
            assert np.array_equal(new[inside][:, colour], orig[inside][:, colour]), "alpha changed"
    else:
        assert diff[:, :colour].mean() > 0.01 * scale, "pixels inside the selection did not change"
    return new, orig, sel


def edit_requests(run):
    return [q for q in run["requests"] if q["op"] == "edit"]


def save_docs(run, r, stem, with_before=True):
    if (os.environ.get("NC_E2E_SAVE_DOCS") != "1" or run["gimp"].target.id not in ("3.0", "3.0-host")
            or run["engine"].kind != "real"):  # the stand-in's inverted colours are no picture of the plug-in
        return
    from PIL import Image

    docs = harness.REPO / "docs" / "gimp"
    docs.mkdir(parents=True, exist_ok=True)
    a, n = r["active"], r["new"]
    before = harness.read_raw(run["work"], r["before_raw"], r["before_fmt"], a["w"], a["h"]).copy()
    after = before.copy()
    new = harness.read_raw(run["work"], n["raw"], n["fmt"], n["w"], n["h"])
    x, y = n["x"] - a["x"], n["y"] - a["y"]
    after[y:y + n["h"], x:x + n["w"]] = new
    if "ref_raw" in n:  # show the reference layer (through its mask) where the user placed it
        ref = harness.read_raw(run["work"], n["ref_raw"], n["fmt"], n["w"], n["h"]).astype(np.float64)
        m = harness.read_raw(run["work"], n["refmask_raw"], "Y u8", n["w"], n["h"]).astype(np.float64) / 255
        region = before[y:y + n["h"], x:x + n["w"]].astype(np.float64)
        before[y:y + n["h"], x:x + n["w"]] = np.rint(region * (1 - m) + ref * m).astype(before.dtype)
    if with_before:
        Image.fromarray(before).save(docs / f"{stem}_before.png")
    Image.fromarray(after).save(docs / f"{stem}_after.png")


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------

def test_gimp_version_and_bridge_transport(run):
    """The GIMP and Python this target is meant to have, and the plug-in's bridge uses pyzmq exactly where
    the chroot has python3-zmq (else the pure-Python ZMTP client)."""
    env = rec(run, "_env")
    target = run["gimp"].target
    assert env["gimp"].startswith(target.version + "."), env
    assert env["python"][:2] >= [3, 11], env
    if target.zmq is not None:
        assert (env["zmq"] is not None) == target.zmq, env
        assert env["bridge_pyzmq"] == target.zmq, env
    assert env["bridge_file"].startswith(str(run["gimp"].inside(run["profile"]))), env
    print(f"\n{target.id}: GIMP {env['gimp']}, Python {'.'.join(map(str, env['python']))}, PyGObject "
          f"{'.'.join(map(str, env['pygobject']))}, pyzmq {env['zmq']}")


def test_label_swap_u8(run):
    r = rec(run, "swap_u8")
    assert r["precision"] == "u8" and r["new"]["fmt"] == "R'G'B' u8"
    check_edit(run, r)
    assert [r["new"]["x"], r["new"]["y"], r["new"]["w"], r["new"]["h"]] == expected_box(r)
    assert r["selection"] == [140, 50, 140, 120]  # 120 x 100 ellipse feathered by 10
    name = r["new"]["name"]
    assert name.startswith("Label swap: ") and name.endswith(f"-> {run['target']}"), name
    if run["engine"].kind == "fake":
        assert name == f"Label swap: tabby -> {run['target']}"
    assert r["values"][0] == name  # the layer return value
    assert "new layer" in r["values"][1]
    save_docs(run, r, "label_swap")


def test_request_carries_soft_mask_and_crop_only(run):
    if run["engine"].kind != "fake":
        pytest.skip("request log only with the stand-in engine")
    q = edit_requests(run)[0]
    r = rec(run, "swap_u8")
    assert q["arrays"]["image"]["shape"] == [r["new"]["h"], r["new"]["w"], 3]
    assert q["arrays"]["image"]["dtype"] == "uint8"
    m = q["arrays"]["mask"]
    # soft selection: more non-zero pixels than fully selected ones (sum / 255 < nonzero)
    assert m["sum"] / 255.0 < m["nonzero"] - 50
    assert q["params"]["swap"] == {"target": run["target"], "strength": 1.0, "layers": "all"}
    assert q["params"]["poisson"] is True and q["params"]["blend"] is None
    assert q["params"]["cache_key"].startswith("nc:")


def test_label_channel_reaches_engine(run):
    r = rec(run, "swap_labels")
    check_edit(run, r)
    assert r["label_channel"] == f"label: {run['label']}"
    assert run["label"] in r["new"]["name"]
    if run["engine"].kind == "fake":
        q = [q for q in edit_requests(run) if q["params"]["swap"] and q["params"]["swap"].get("labels")]
        assert len(q) == 1
        swap = q[0]["params"]["swap"]
        assert swap["layers"] == "rest"  # scope local
        assert swap["labels"] == [{"class": run["label"], "strength": 1.0, "mask": swap["labels"][0]["mask"]}]
        arr = q[0]["arrays"][swap["labels"][0]["mask"]]
        assert arr["dtype"] == "uint8" and arr["shape"] == q[0]["arrays"]["mask"]["shape"]
        # the channel is a 50 x 40 ellipse: roughly pi/4 * 2000 pixels, read at full resolution
        assert 1400 < arr["nonzero"] < 1700


def test_label_swap_u16(run):
    r = rec(run, "swap_u16")
    assert r["new"]["fmt"] == "R'G'B' u16"
    check_edit(run, r, inverted=False)
    if run["engine"].kind == "fake":
        new, orig, sel = pixels(run, r)
        inside = sel == 255
        # strength travels to the engine; the stand-in inverts regardless: 16-bit values are kept exactly
        assert np.allclose(new[inside], 65535 - orig[inside], atol=1)
        q = next(q for q in edit_requests(run) if q["arrays"]["image"]["dtype"] == "uint16")
        assert q["params"]["swap"]["strength"] == pytest.approx(0.8)
        assert q["params"]["swap"]["layers"] == "first"


def test_label_swap_float_rgba(run):
    r = rec(run, "swap_float_rgba")
    assert r["precision"] == "float" and r["new"]["fmt"] == "R'G'B'A float"
    check_edit(run, r)
    if run["engine"].kind == "fake":
        assert any(q["arrays"]["image"]["dtype"] == "float32" and q["arrays"]["image"]["shape"][2] == 4
                   for q in edit_requests(run))


def test_label_swap_gray_alpha(run):
    r = rec(run, "swap_graya")
    assert r["new"]["fmt"] == "Y'A u8"
    check_edit(run, r)


def test_layer_with_offsets(run):
    r = rec(run, "swap_offsets")
    a = r["active"]
    assert (a["x"], a["y"], a["w"], a["h"]) == (67, 35, 300, 200)
    check_edit(run, r)
    box = [r["new"]["x"], r["new"]["y"], r["new"]["w"], r["new"]["h"]]
    assert box == expected_box(r) == [105, 35, 210, 165]  # clipped to the layer at the top


def test_no_selection_uses_whole_layer(run):
    r = rec(run, "swap_nosel")
    assert r["selection"] is None
    assert r["status"] == "success"
    assert_one_layer_added(r)
    a, n = r["active"], r["new"]
    assert (n["x"], n["y"], n["w"], n["h"]) == (a["x"], a["y"], a["w"], a["h"])
    assert "No selection" in r["values"][1]
    new, orig, _sel = pixels(run, r)
    assert np.abs(new - orig).mean() > (10 if run["engine"].kind == "fake" else 1)


def test_feature_transplant(run):
    r = rec(run, "transplant")
    assert r["status"] == "success", r.get("values")
    assert_one_layer_added(r)
    assert r["new"]["name"] == "Feature blend from reference"
    sel = r["selection"]
    n = r["new"]
    refmask = harness.read_raw(run["work"], n["refmask_raw"], "Y u8", n["w"], n["h"])[:, :, 0]
    fb = px.mask_bbox(refmask.tobytes(), n["w"], n["h"])
    feat = (n["x"] + fb[0], n["y"] + fb[1], fb[2], fb[3])
    # the crop covers the selection and the reference's feature region, each grown by the margin
    want = px.intersect(px.union(px.grow(tuple(sel), MARGIN), px.grow(feat, MARGIN)),
                        tuple(r["active"][k] for k in ("x", "y", "w", "h")))
    assert (n["x"], n["y"], n["w"], n["h"]) == want
    (sx, sy), (fx, fy) = px.centre(tuple(sel)), px.centre(feat)
    shift = [round(sx - fx), round(sy - fy)]
    assert shift[0] < -150 and shift[1] < -50  # the feature (lower right) moves to the selection (upper left)
    assert f"shift {shift[0]:+d},{shift[1]:+d}" in r["values"][1]
    new, orig, selm = pixels(run, r)
    assert np.array_equal(new[selm == 0], orig[selm == 0])
    if run["engine"].kind == "fake":
        q = next(q for q in edit_requests(run) if q["params"].get("blend"))
        assert q["params"]["blend"]["shift"] == shift
        assert q["params"]["swap"] is None
        assert set(q["arrays"]) == {"image", "mask", "reference", "reference_mask"}
        # inside the selection the stand-in pastes the reference moved by the shift
        ref = harness.read_raw(run["work"], n["ref_raw"], n["fmt"], n["w"], n["h"]).astype(np.float64)
        ys, xs = np.nonzero(selm == 255)
        src_y, src_x = ys - shift[1], xs - shift[0]
        ok = (src_y >= 0) & (src_y < n["h"]) & (src_x >= 0) & (src_x < n["w"])
        assert ok.sum() > 1000
        assert np.array_equal(new[ys[ok], xs[ok]], ref[src_y[ok], src_x[ok]])
    else:
        assert np.abs(new[selm == 255] - orig[selm == 255]).mean() > 2
    save_docs(run, r, "feature_transplant")


def test_feature_transplant_without_selection(run):
    r = rec(run, "transplant_nosel")
    assert r["status"] == "success", r.get("values")
    assert_one_layer_added(r)
    assert "shift +0,+0" in r["values"][1]
    assert "No selection" in r["values"][1]


def test_projection(run):
    r = rec(run, "project")
    assert r["status"] == "success", r.get("values")
    assert_one_layer_added(r)
    assert r["new"]["name"] == "Projection"
    assert [r["new"]["x"], r["new"]["y"], r["new"]["w"], r["new"]["h"]] == expected_box(r)
    new, orig, _sel = pixels(run, r)
    assert np.abs(new - orig).mean() > 1
    if run["engine"].kind == "fake":
        q = next(q for q in edit_requests(run) if q["params"].get("return_recon"))
        assert q["params"]["swap"] is None and q["params"]["blend"] is None
        swap_key = edit_requests(run)[0]["params"]["cache_key"]
        # same image content, region and model as the first swap: the same cache key
        assert q["params"]["cache_key"].split(":")[3:] == swap_key.split(":")[3:]
    save_docs(run, r, "projection", with_before=False)  # same photo and selection as label_swap_before


def test_unknown_class_is_reported_and_image_untouched(run):
    r = rec(run, "err_unknown_class")
    assert r["status"] == "execution-error"
    assert_untouched(r)
    msg = r["values"][0]
    assert "zebra-unicorn-nonesuch" in msg or "class" in msg.lower(), msg
    if run["engine"].kind == "fake":
        assert "unknown class 'zebra-unicorn-nonesuch'" in msg


def test_region_too_small(run):
    r = rec(run, "err_too_small")
    assert r["status"] == "execution-error"
    assert_untouched(r)
    if run["engine"].kind == "fake":
        assert "region too small" in r["values"][0]


def test_cancel_in_gimp(run):
    """Cancel on GIMP's progress bar kills the plug-in (GIMP's gimp_plug_in_progress_cancel_callback); the
    harness does the same while the engine works on a 3,000-step request. The image stays untouched and the
    engine drops the job of the client that went away instead of computing it to the end."""
    r = rec(run, "cancel_by_gimp")
    info = run["cancel"]
    assert info.get("job"), f"the engine never reported progress on the request: {info}"
    assert info["job"]["step"] < CANCEL_STEPS, info
    assert info["killed"], "no plug-in process was found to kill"
    assert r["status"] != "success", r
    assert_untouched(r)
    assert info["engine_idle_after"] is not None and info["engine_idle_after"] < 15.0, info


def test_engine_stopped(run):
    assert rec(run, "_engine_stopped")["ok"]
    r = rec(run, "err_engine_stopped")
    assert r["status"] == "execution-error"
    assert_untouched(r)
    msg = r["values"][0]
    assert "does not answer" in msg and "neural-collage serve" in msg and "auto-start" in msg, msg


def test_auto_start(run):
    """With auto-start on, a call to a stopped engine runs the configured command (with --bind appended)
    and succeeds once the engine answers."""
    s = rec(run, "autostart_settings")
    assert s["status"] == "success", s
    r = rec(run, "autostart_swap")
    check_edit(run, r)
    assert (Path(run["work"]) / "start_engine").exists()


def test_settings_procedure_writes_json(run):
    r = rec(run, "settings")
    assert r["status"] == "success", r
    data = json.loads((Path(run["profile"]) / "plug-ins" / "neural_collage" / "nc_settings.json").read_text())
    assert data["address"] == "tcp://127.0.0.1:1" and data["timeout"] == 12.5 and data["auto_start"] is False


# ---------------------------------------------------------------------------------------------------------
# issue 14: mode / scale / layer strengths as arguments, variations, the live preview
# ---------------------------------------------------------------------------------------------------------

def _logged_swaps(run):
    """The swap params the stand-in engine logged (the real engine keeps no request log)."""
    return [q["params"].get("swap") or {} for q in edit_requests(run)]


def test_mode_scale_and_layer_strengths_reach_the_engine(run):
    """Non-interactive calls set mode, texture scale and per-layer strengths: scale 2 gives another result than
    scale 1; per-layer strengths all 0 give the unedited result (= strength 0, up to float rounding) and not the
    full swap."""
    r1, r2 = rec(run, "opt_scale1"), rec(run, "opt_scale2")
    rz, r0 = rec(run, "opt_layers_zero"), rec(run, "opt_strength_zero")
    n1, _o, _s = check_edit(run, r1)
    for r in (r2, rz, r0):
        assert r["status"] == "success", r.get("values")
        assert_one_layer_added(r)
    n2, nz, n0 = pixels(run, r2)[0], pixels(run, rz)[0], pixels(run, r0)[0]
    if run["engine"].kind == "real":
        assert np.abs(n2 - n1).mean() > 1.0, "texture scale 2 gave the same pixels as scale 1"
        # the same result up to float rounding (two different code paths in the engine: at most 1 level)
        assert np.abs(nz - n0).max() <= 1 and np.abs(nz - n0).mean() < 0.01, \
            "layer strengths 0,0,0 differ from the unedited (strength 0) result"
        assert np.abs(nz - n1).mean() > 1.0, "layer strengths 0,0,0 gave the full swap"
    else:
        params = [q["params"] for q in edit_requests(run)]
        assert any(p.get("scale") == 2.0 and p.get("mode") == "fast" for p in params), params
        assert any(s.get("layer_strengths") == [0.0, 0.0, 0.0] for s in _logged_swaps(run))


def test_bad_layer_strengths_is_one_clear_error_and_image_untouched(run):
    r = rec(run, "err_layer_strengths")
    assert r["status"] == "execution-error", r
    msg = r["values"][0] if r["values"] else ""
    assert "layer strengths must be" in msg and '"lots"' in msg and "left as it was" in msg, msg
    assert "\n" not in msg
    assert_untouched(r)
    assert r["n_new"] == 0


def test_variations_are_one_group_of_n_layers(run):
    """variations=3: one new layer group right above the active layer holding 3 result layers (strengths 1/3,
    2/3, 1: three different results, each the size and place of a single edit); the existing layers are
    byte-identical. The group and its layers are inserted inside one undo group (nc_image.insert_variations;
    GIMP 3's PDB cannot count undo steps, tests/test_plugin_static.py checks that every insertion runs inside
    that one group)."""
    r = rec(run, "variations")
    assert r["status"] == "success", r.get("values")
    assert r["n_new"] == 1 and "group" in r, r
    g = r["group"]
    assert g["position"] == g["active_position"] - 1
    kids = g["children"]
    assert len(kids) == 3 and not any(k["group"] for k in kids), kids
    names = [k["name"] for k in kids]  # top first: the last variation (the full strength) is on top
    assert names[0].endswith("(strength 1)") and names[2].endswith("(strength 0.333)"), names
    assert len({k["digest"] for k in kids}) == 3, "the variations are not different"
    box = expected_box(r)
    assert all(k["box"] == box for k in kids), (kids, box)
    before = {la["id"]: la for la in r["before"]["layers"]}
    after = {la["id"]: la for la in r["after"]["layers"]}
    assert len(after) == len(before) + 1 and all(after[i] == la for i, la in before.items())
    assert "3 variations" in r["values"][-1]


def test_cancel_after_the_live_preview_leaves_the_image_untouched(run):
    """The Label Swap dialog under Xvfb with its live preview on: the test hook waits until the preview has been
    drawn (from the engine, at preview size), then presses Cancel: CANCEL status, the image byte-identical, no
    layer added (the preview never writes into the image, so there is no undo step to add either)."""
    _needs_dialogs(run)
    r = rec(run, "interactive_swap_cancel")
    err = run["stderr"]
    assert f"NC_DIALOG {SWAP} shown, answering cancel after" in err, err[-3000:]
    import re

    n = re.search(f"NC_DIALOG {SWAP} shown, answering cancel after (\\d+) preview", err)
    assert n and int(n.group(1)) >= 1, "Cancel came before the preview was drawn"
    sizes = [(int(w), int(h)) for w, h in re.findall(r"NC_PREVIEW drawn \d+ (\d+)x(\d+)", err)]
    assert sizes and all(max(s) <= 256 for s in sizes), sizes
    assert r["status"] == "cancel", r
    assert_untouched(r)
    assert r["n_new"] == 0


def test_runtime_budget(run):
    budget = float(os.environ.get("NC_E2E_BUDGET", "180" if run["engine"].kind == "fake" else "1200"))
    assert run["seconds"] < budget, f"the e2e session took {run['seconds']:.0f} s"


def _needs_dialogs(run):
    if not run["dialogs"]:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but Xvfb is missing next to GIMP (make_gimp_root.sh installs it)")
        pytest.skip("no Xvfb next to GIMP: the dialogs cannot be opened")


def test_interactive_label_swap_dialog(run):
    """INTERACTIVE run mode under Xvfb: the generated dialog (with the class completion) opens, is answered
    with OK by the plug-in's test hook, and the edit runs with the values passed in."""
    _needs_dialogs(run)
    r = rec(run, "interactive_swap")
    assert "NC_DIALOG python-fu-neural-collage-label-swap shown, answering ok" in run["stderr"]
    check_edit(run, r)
    assert r["new"]["name"].endswith(f"-> {run['target']}")
    if run["engine"].kind == "fake":
        assert any(q["op"] == "classes" for q in run["requests"]), "the dialog did not ask for the class list"
    assert "Traceback" not in run["stderr"].split("NC_DIALOG python-fu-neural-collage-label-swap")[0][-3000:]


def test_interactive_transplant_dialog(run):
    _needs_dialogs(run)
    r = rec(run, "interactive_transplant")
    assert "NC_DIALOG python-fu-neural-collage-feature-transplant shown, answering ok" in run["stderr"]
    assert r["status"] == "success", r.get("values")
    assert_one_layer_added(r)


def test_interactive_settings_dialog(run):
    _needs_dialogs(run)
    r = rec(run, "interactive_settings")
    assert "NC_DIALOG python-fu-neural-collage-settings shown, answering ok" in run["stderr"]
    assert r["status"] == "success", r
    assert "settings saved" in r["values"][0]
    assert "does not answer" in r["values"][0]  # the engine is stopped by then: the dialog says so


# ---------------------------------------------------------------------------------------------------------
# dialog screenshots (tests/e2e/dialog_hook.py runs inside the plug-in while each dialog is up)
# ---------------------------------------------------------------------------------------------------------

SETTINGS = "python-fu-neural-collage-settings"
OPTION_WIDGETS = ["Mode", "Texture scale", "Layer strengths", "Variations", "Variation kind", "Live preview",
                  "Preview"]
DIALOG_WIDGETS = {
    SWAP: ("label_swap", ["Target class", "Strength", "Scope", "Source class", "Poisson blending",
                          "Projection steps"] + OPTION_WIDGETS),
    TRANSPLANT: ("feature_transplant", ["Reference layer", "Strength", "Scope", "Poisson blending",
                                        "Projection steps"] + OPTION_WIDGETS),
    SETTINGS: ("settings", ["Engine address", "Start the engine automatically when it does not answer",
                            "Engine command", "Model", "Timeout (s)", "Engine public key (encryption)",
                            "Your secret key file (encryption)"]),
}


def _plain(text):
    return (text or "").replace("_", "").strip()


def dialog_shot(run, proc):
    """(widget dump, screenshot as an RGB array) of one dialog."""
    from PIL import Image

    stem = run["work"] / f"dialog_{proc}"
    assert stem.with_suffix(".json").is_file(), (
        f"no widget dump from the {proc} dialog (stderr tail: {run['stderr'][-3000:]})")
    dump = json.loads(stem.with_suffix(".json").read_text())
    shot = np.asarray(Image.open(stem.with_suffix(".png")).convert("RGB"))
    assert dump["screenshot"] == [shot.shape[1], shot.shape[0]]
    return dump, shot


def drawn(shot, box):
    """True when the screenshot shows something (text, a frame) inside ``box``: not a flat area."""
    x, y, w, h = box
    crop = shot[max(y, 0):y + h, max(x, 0):x + w].astype(np.int32).sum(axis=2) / 3.0
    return crop.size > 0 and crop.max() - crop.min() > 60 and (np.abs(crop - np.median(crop)) > 40).sum() >= 8


def check_preview_area(dump, shot, proc):
    """The dialog's GimpPreviewArea is shown, at least 128 px, and shows a picture (not the flat grey it starts
    with); its status line gives the preview's size and time."""
    areas = [x for x in dump["widgets"] if x["type"] == "GimpPreviewArea" and x["visible"] and x["mapped"]]
    # (GIMP 3.2's layer chooser of Feature Blend has a small preview area of its own: the thumbnail)
    big = [x for x in areas if x["box"][2] >= 128 and x["box"][3] >= 128]
    assert len(big) == 1, f"{proc}: {len(big)} preview areas of at least 128 px ({areas})"
    x, y, w, h = big[0]["box"]
    crop = shot[y:y + h, x:x + w].astype(np.int32)
    assert crop.std() > 10 and len(np.unique(crop.reshape(-1, 3), axis=0)) > 200, f"{proc}: the preview is blank"
    status = [x["text"] for x in dump["widgets"] if x["text"].startswith("Preview ")]
    assert status and " px, " in status[0], status


def test_cancelled_dialog_showed_the_preview(run):
    _needs_dialogs(run)
    rec(run, "interactive_swap_cancel")
    dump = json.loads((run["work"] / f"dialog_{SWAP}_cancel.json").read_text())
    from PIL import Image

    check_preview_area(dump, np.asarray(Image.open(run["work"] / f"dialog_{SWAP}_cancel.png").convert("RGB")), SWAP)


@pytest.mark.parametrize("proc", [SWAP, TRANSPLANT, SETTINGS])
def test_dialog_screenshot_shows_expected_widgets(run, proc):
    """Each dialog under Xvfb: every argument's label is a mapped widget inside the window and the screenshot
    shows it (not a blank area); OK and Cancel are there; the widget that edits each argument follows its
    label (a text field, a spin/scale, a combo box or radio buttons, a check box)."""
    _needs_dialogs(run)
    rec(run, {SWAP: "interactive_swap", TRANSPLANT: "interactive_transplant", SETTINGS: "interactive_settings"}[proc])
    stem, labels = DIALOG_WIDGETS[proc]
    dump, shot = dialog_shot(run, proc)
    h, w = shot.shape[:2]
    assert w >= 300 and h >= 150, (w, h)
    shown = [x for x in dump["widgets"] if x["visible"] and x["mapped"]]
    for label in labels + ["OK", "Cancel"]:
        hits = [x for x in shown if _plain(x["text"]) == label]
        assert hits, f"{proc}: no visible widget '{label}' in {[_plain(x['text']) for x in shown if x['text']]}"
        x0, y0, bw, bh = hits[0]["box"]
        assert min(x0, y0) >= 0 and x0 + bw <= w and y0 + bh <= h and bw > 4 and bh > 4, (label, hits[0])
        assert drawn(shot, hits[0]["box"]), f"{proc}: '{label}' is blank in the screenshot at {hits[0]['box']}"
    types = {x["type"] for x in shown}
    if proc != TRANSPLANT:
        assert "GtkEntry" in types, types  # the text fields (class names, address, command)
    if proc == TRANSPLANT:  # the reference layer's chooser (GimpDrawableChooser in 3.0, GimpItemChooser in 3.2)
        assert types & {"GimpDrawableChooser", "GimpItemChooser", "GimpLayerComboBox"}, types
    assert any("Spin" in t or "Scale" in t for t in types), types
    assert "GtkCheckButton" in types, types  # Poisson blending / auto-start
    if proc != SETTINGS:
        # the scope choice: a combo box showing "All layers" (3.0.4), radio buttons with all three (3.2.6)
        scope = [x for x in shown if any(p.strip() == "All layers" for p in _plain(x["text"]).split("|"))]
        assert scope, f"{proc}: the scope choice shows none of its labels ({sorted(types)})"
        assert drawn(shot, scope[0]["box"]), scope[0]
        print(f"\n{run['gimp'].target.id} {proc}: scope is a {scope[0]['type']}")
    if proc != SETTINGS:  # the live preview: GIMP's preview area, drawn (the hook waited for the first preview)
        check_preview_area(dump, shot, proc)
    if os.environ.get("NC_E2E_SAVE_DOCS") == "1":
        docs = harness.REPO / "docs" / "gimp"
        docs.mkdir(parents=True, exist_ok=True)
        if run["gimp"].target.zmq is not True:
            shutil.copy(run["work"] / f"dialog_{proc}.png", docs / f"dialog_{stem}_{run['gimp'].version}.png")
