# Runs INSIDE GIMP 3 (python-fu-eval batch interpreter; Gimp, GLib and Gio are already imported there):
#   gimp-console-3.0 -i -n -d --batch-interpreter=python-fu-eval \
#       -b 'NC_CFG = "/tmp/.../cfg.json"; exec(open("/tmp/.../gimp_cases.py").read())' --quit
# Standard library only. Each case opens the test photo, prepares layers/selection/channels, calls one
# Neural Collage procedure non-interactively through the PDB and prints one line
#   NCJSON {"case": ..., "status": ..., "message": ..., "before": [...], "after": [...], "new": {...}, ...}
# Pixels the host compares are written as raw files into the work folder (format named in the record).
# "NC_STOP_ENGINE" asks the host to stop the engine; the host answers by creating <work>/engine_stopped.
# ruff: noqa: F821 - Gimp, Gio and NC_CFG are globals of GIMP's python-fu-eval interpreter
import hashlib
import json
import os
import time
import traceback

import gi

gi.require_version("Gegl", "0.4")
from gi.repository import Gegl

Gegl.init(None)
with open(NC_CFG, encoding="utf-8") as _fh:  # NC_CFG is set on the -b command line
    CFG = json.load(_fh)
WORK = CFG["work"]


def emit(obj):
    print("NCJSON " + json.dumps(obj), flush=True)


def precision_key(image):
    name = image.get_precision().value_name.lower()
    if "_u8_" in name:
        return "u8"
    if "_u16_" in name:
        return "u16"
    return "float"


def fmt_of(image, drawable):
    model = ("Y'A" if drawable.has_alpha() else "Y'") if drawable.is_gray() else (
        "R'G'B'A" if drawable.has_alpha() else "R'G'B'")
    return f"{model} {precision_key(image)}"


def rect(x, y, w, h):
    return Gegl.Rectangle.new(int(x), int(y), int(w), int(h))


def read(drawable, box_image, fmt):
    _ok, ox, oy = drawable.get_offsets()
    x, y, w, h = box_image
    return bytes(drawable.get_buffer().get(rect(x - ox, y - oy, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def digest(drawable, image):
    w, h = drawable.get_width(), drawable.get_height()
    fmt = "Y'A float" if drawable.is_gray() else "R'G'B'A float"
    data = bytes(drawable.get_buffer().get(rect(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))
    return hashlib.sha1(data).hexdigest()


def snapshot(image):
    out = []
    for layer in image.get_layers():
        _ok, ox, oy = layer.get_offsets()
        entry = {"id": layer.get_id(), "name": layer.get_name(), "x": ox, "y": oy, "w": layer.get_width(),
                 "h": layer.get_height(), "digest": digest(layer, image)}
        mask = layer.get_mask()
        if mask is not None:
            data = mask.get_buffer().get(rect(0, 0, layer.get_width(), layer.get_height()), 1.0, "Y u8",
                                         Gegl.AbyssPolicy.NONE)
            entry["mask_digest"] = hashlib.sha1(bytes(data)).hexdigest()
        out.append(entry)
    channels = [{"name": c.get_name(), "digest": hashlib.sha1(bytes(c.get_buffer().get(
        rect(0, 0, image.get_width(), image.get_height()), 1.0, "Y u8", Gegl.AbyssPolicy.NONE))).hexdigest()}
        for c in image.get_channels()]
    return {"layers": out, "channels": channels}


def dump(name, data):
    path = os.path.join(WORK, name + ".raw")
    with open(path, "wb") as fh:
        fh.write(data)
    return os.path.basename(path)


def selection_bounds(image):
    _ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    return [x1, y1, x2 - x1, y2 - y1] if non_empty and not Gimp.Selection.is_empty(image) else None


def load(path=None):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path or CFG["photo"]))


def select(image, box, feather):
    image.select_ellipse(Gimp.ChannelOps.REPLACE, box[0], box[1], box[2], box[3])
    if feather:
        Gimp.Selection.feather(image, feather)


def call(procname, image, drawable, props, interactive=False):
    proc = Gimp.get_pdb().lookup_procedure(procname)
    cfg = proc.create_config()
    mode = Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE
    cfg.set_property("run-mode", mode)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [drawable])
    for k, v in props.items():
        if k == "reference":
            v = next(la for la in image.get_layers() if la.get_name() == v)
        cfg.set_property(k, v)
    res = proc.run(cfg)
    status = res.index(0).value_nick
    values = []
    for i in range(1, res.length()):
        v = res.index(i)
        values.append(v.get_name() if hasattr(v, "get_name") else v)
    return status, values


# ---- setups: return (image, active layer, info) --------------------------------------------------------

def setup_basic(precision=None, gray=False, alpha=False, sel=True, sel_box=None, feather=None):
    img = load()
    layer = img.get_layers()[0]
    if gray:
        img.convert_grayscale()
    if precision == "u16":
        img.convert_precision(Gimp.Precision.U16_NON_LINEAR)
    elif precision == "float":
        img.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    if alpha:
        layer.add_alpha()
    if sel:
        select(img, sel_box or CFG["sel"], CFG["feather"] if feather is None else feather)
    else:
        Gimp.Selection.none(img)
    return img, layer, {}


def setup_labels():
    img = load()
    layer = img.get_layers()[0]
    select(img, CFG["label_box"], 0)
    ch = Gimp.Selection.save(img)
    ch.set_name("label: " + CFG["label_class"])
    ch.set_visible(False)
    select(img, CFG["sel"], CFG["feather"])
    return img, layer, {"label_channel": ch.get_name()}


def setup_offsets():
    img = load()
    base = img.get_layers()[0]
    patch = base.copy()
    img.insert_layer(patch, None, 0)
    x, y, w, h = CFG["patch"]
    patch.resize(w, h, -x, -y)           # keep the photo's pixels under (x, y, w, h)
    patch.set_offsets(x + 7, y + 5)      # then move it: buffer and image coordinates now differ
    patch.set_name("patch")
    select(img, CFG["sel"], CFG["feather"])
    return img, patch, {}


def setup_transplant(with_selection=True):
    img = load()
    base = img.get_layers()[0]
    ref = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, img,
                               Gio.File.new_for_path(CFG["reference_photo"]))
    img.insert_layer(ref, None, 0)
    ref.set_name("reference")
    rx, ry = CFG["ref_offset"]
    ref.set_offsets(rx, ry)
    fx, fy, fw, fh = CFG["feature"]       # in the reference layer's coordinates
    img.select_ellipse(Gimp.ChannelOps.REPLACE, rx + fx, ry + fy, fw, fh)
    mask = ref.create_mask(Gimp.AddMaskType.SELECTION)
    ref.add_mask(mask)
    if with_selection:
        select(img, CFG["transplant_sel"], CFG["feather"])
    else:
        Gimp.Selection.none(img)
    return img, base, {"feature_image_box": [rx + fx, ry + fy, fw, fh]}


SETUPS = {
    "basic": setup_basic,
    "labels": setup_labels,
    "offsets": setup_offsets,
    "transplant": setup_transplant,
}


def run_case(case):
    name = case["name"]
    record = {"case": name}
    img = None
    try:
        img, layer, info = SETUPS[case["setup"]](**case.get("setup_args", {}))
        record.update(info)
        record["image_size"] = [img.get_width(), img.get_height()]
        record["precision"] = precision_key(img)
        record["selection"] = selection_bounds(img)
        _ok, ox, oy = layer.get_offsets()
        record["active"] = {"id": layer.get_id(), "name": layer.get_name(), "x": ox, "y": oy,
                            "w": layer.get_width(), "h": layer.get_height()}
        if case.get("save_before"):
            fmt = fmt_of(img, layer)
            record["before_raw"] = dump(name + "_before", read(layer, (ox, oy, layer.get_width(),
                                                                       layer.get_height()), fmt))
            record["before_fmt"] = fmt
        before = snapshot(img)
        if case.get("cancel"):  # the host kills this plug-in run once the engine works on it (GIMP's Cancel)
            print("NC_CANCEL_NEXT", flush=True)
        answer_file = os.path.join(WORK, "dialog_answer.json")  # read by dialog_hook.py: this case's answer
        if case.get("dialog_answer"):
            with open(answer_file, "w", encoding="utf-8") as fh:
                json.dump(case["dialog_answer"], fh)
        t0 = time.time()
        try:
            status, values = call(case["proc"], img, layer, case.get("props", {}), case.get("interactive", False))
        finally:
            if os.path.exists(answer_file):
                os.remove(answer_file)
        record["seconds"] = round(time.time() - t0, 3)
        record["status"] = status
        plain = (str, int, float, bool, type(None))
        record["values"] = [v if isinstance(v, plain) else repr(v) for v in values]
        after = snapshot(img)
        record["before"], record["after"] = before, after
        old_ids = {la["id"] for la in before["layers"]}
        new = [la for la in img.get_layers() if la.get_id() not in old_ids]
        record["n_new"] = len(new)
        if new and new[0].is_group_layer():  # variations: one group holding the results
            grp = new[0]
            kids = grp.get_children()
            record["group"] = {"name": grp.get_name(), "position": img.get_item_position(grp),
                               "active_position": img.get_item_position(layer),
                               "children": [{"name": k.get_name(), "group": k.is_group_layer(),
                                             "digest": digest(k, img), "box": [*k.get_offsets()[1:],
                                                                                k.get_width(), k.get_height()]}
                                            for k in kids]}
        elif new:
            nl = new[0]
            _ok, nx, ny = nl.get_offsets()
            box = [nx, ny, nl.get_width(), nl.get_height()]
            fmt = fmt_of(img, layer)
            record["new"] = {"name": nl.get_name(), "x": nx, "y": ny, "w": box[2], "h": box[3], "fmt": fmt,
                             "position": img.get_item_position(nl),
                             "active_position": img.get_item_position(layer),
                             "raw": dump(name + "_new", read(nl, box, fmt)),
                             "orig_raw": dump(name + "_orig", read(layer, box, fmt)),
                             "sel_raw": dump(name + "_sel", bytes(img.get_selection().get_buffer().get(
                                 rect(*box), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))}
            if case["setup"] == "transplant":
                ref = next(la for la in img.get_layers() if la.get_name() == "reference")
                record["new"]["ref_raw"] = dump(name + "_ref", read(ref, box, fmt))
                record["new"]["refmask_raw"] = dump(name + "_refmask", read(ref.get_mask(), box, "Y u8"))
    except Exception:  # noqa: BLE001 - reported to the host; the other cases still run
        record["exception"] = traceback.format_exc()
    finally:
        if img is not None:
            img.delete()
    emit(record)


def wait_engine_stopped():
    print("NC_STOP_ENGINE", flush=True)
    flag = os.path.join(WORK, "engine_stopped")
    deadline = time.time() + 60
    while not os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.1)
    emit({"case": "_engine_stopped", "ok": os.path.exists(flag)})


def run_settings_case(case):
    record = {"case": case["name"]}
    try:
        proc = Gimp.get_pdb().lookup_procedure("python-fu-neural-collage-settings")
        cfg = proc.create_config()
        interactive = case.get("interactive", False)
        cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE)
        for k, v in case["props"].items():
            cfg.set_property(k, v)
        res = proc.run(cfg)
        record["status"] = res.index(0).value_nick
        record["values"] = [str(res.index(i)) for i in range(1, res.length())]
    except Exception:  # noqa: BLE001 - reported to the host
        record["exception"] = traceback.format_exc()
    emit(record)


def env_record():
    """What this GIMP and its Python are: versions, and whether pyzmq imports (the plug-ins run the same
    interpreter with the same path) and the installed bridge picks it."""
    import sys

    record = {"case": "_env", "gimp": Gimp.version(), "python": list(sys.version_info[:3]),
              "pygobject": list(gi.version_info)}
    try:
        import zmq

        record["zmq"] = zmq.__version__
    except ImportError as exc:
        record["zmq"] = None
        record["zmq_error"] = str(exc)
    sys.path.insert(0, CFG["plugin_dir"])
    try:
        from bridge import client

        record["bridge_pyzmq"] = client.HAVE_PYZMQ
        record["bridge_file"] = client.__file__
    except Exception:  # noqa: BLE001 - reported to the host
        record["exception"] = traceback.format_exc()
    finally:
        sys.path.remove(CFG["plugin_dir"])
    emit(record)


env_record()
for _case in CFG["cases"]:
    if _case.get("kind") == "stop_engine":
        wait_engine_stopped()
    elif _case.get("kind") == "settings":
        run_settings_case(_case)
    else:
        run_case(_case)
print("NCDONE", flush=True)
