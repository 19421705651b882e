#!/usr/bin/env python3
"""Neural Collage for GIMP 3: sCBN label swap, feature transplant and manifold projection in the selection.

The heavy work happens in the Neural Collage engine (a separate PyTorch process, ``neural-collage serve``);
this plug-in only reads pixels, sends the crop around the selection over the bridge (standard library only)
and inserts the answer as a new layer. Menu: Filters > Neural Collage.

Procedures (all take run-mode, image, drawables; the active drawable must be one layer):
  python-fu-neural-collage-label-swap         target-class, strength, scope, source-class, poisson, steps
  python-fu-neural-collage-feature-transplant reference, strength, scope, poisson, steps
  python-fu-neural-collage-project            steps
  python-fu-neural-collage-settings           address, auto-start, engine-command, model, timeout
Each edit returns (status, layer, message): the new layer and a sentence saying what was done.

Coordinates: the selection, channels and the crop box are in image coordinates; each layer's buffer is read
at (box - layer offsets). The crop is the selection's bounding box grown by ``margin`` (settings, default
25 %) of its width/height per side, clipped to the active layer. The result layer is inserted right above the
active layer at the crop's position; outside the selection its pixels equal the original's.

Feature transplant: the reference layer's feature region is its layer mask if it has one, else its alpha,
else the whole layer. The selection marks where the feature goes. The shift sent to the engine is
    shift = centre(bounding box of the selection) - centre(bounding box of the reference feature region)
in image pixels, rounded: reference content at image point p lands at p + shift (the paper's operator U).
So a reference layer placed with its feature right over the selection needs no shift, and one placed
anywhere else is moved onto the selection. Without a selection the feature stays where the reference layer
puts it (shift 0) and its region is the target mask. The crop covers both regions.

Multi-label swap: every channel of the image named ``label: <class>`` adds that class with the channel
(full resolution, image coordinates, soft values kept) as its map.
"""
import os
import sys
import traceback

HERE = os.path.dirname(os.path.realpath(os.path.abspath(__file__)))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if not os.path.isdir(os.path.join(HERE, "bridge")):
    # running from a source checkout: gimp_plugin/neural_collage/ -> repository root holds bridge/
    _ROOT = os.path.dirname(os.path.dirname(HERE))
    if os.path.isdir(os.path.join(_ROOT, "bridge")) and _ROOT not in sys.path:
        sys.path.append(_ROOT)

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import nc_pixels as px
import nc_settings
from gi.repository import Gegl, Gimp, GLib, GObject

PLUGIN_VERSION = "0.1.0"
MENU = "<Image>/Filters/Neural Collage"
PROC_SWAP = "python-fu-neural-collage-label-swap"
PROC_TRANSPLANT = "python-fu-neural-collage-feature-transplant"
PROC_PROJECT = "python-fu-neural-collage-project"
PROC_SETTINGS = "python-fu-neural-collage-settings"
SCOPES = (("all", "all", "All layers"), ("global", "first", "Global (first layer only)"),
          ("local", "rest", "Local (all but the first layer)"))
RW = GObject.ParamFlags.READWRITE


class UserError(Exception):
    """A failure the user can act on; its text is the whole message."""


class CancelledByUser(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# engine access
# ---------------------------------------------------------------------------------------------------------

def _bridge():
    try:
        from bridge import client as bclient
        from bridge import protocol as bprotocol
    except ImportError as exc:
        raise UserError(f"The Neural Collage bridge package is missing next to the plug-in ({exc}). "
                        "Run install.py again.") from None
    return bclient, bprotocol


def unreachable_message(settings, detail=""):
    address = settings["address"]
    why = f" ({detail})" if detail else ""
    return (f"The Neural Collage engine does not answer at {address}{why}. Start it in a terminal with "
            f"'neural-collage serve' (or 'python3 -m engine.cli serve --bind {address}'), or turn on "
            "auto-start in Filters > Neural Collage > Settings...")


class Engine:
    """The bridge client with the plug-in's error policy: every failure becomes a UserError."""

    def __init__(self, settings):
        self.settings = settings
        self.bclient, self.bprotocol = _bridge()
        self._started = False

    def _auto_start(self):
        """Start the engine with the configured command (once); True when it now answers."""
        argv = nc_settings.engine_argv(self.settings)
        if not (self.settings.get("auto_start") and argv) or self._started:
            return False
        self._started = True
        Gimp.progress_set_text("Starting the Neural Collage engine...")
        cwd = os.getcwd()
        folder = self.settings.get("engine_cwd")
        if folder and not os.path.isdir(folder):
            raise UserError(f"The engine's folder {folder} (engine_cwd in {nc_settings.settings_path()}) does "
                            "not exist. Run install.py again, or set the engine command in Settings...")
        try:
            if folder:
                os.chdir(folder)
            client = self.bclient.ensure_engine(self.settings["address"], argv,
                                                start_timeout=self.settings.get("start_timeout", 180.0))
            client.close()
        except (self.bprotocol.BridgeError, OSError) as exc:
            raise UserError(f"Could not start the Neural Collage engine with "
                            f"{nc_settings.format_command(argv)}: {exc}") from None
        finally:
            os.chdir(cwd)
        return True

    def call(self, op, params, arrays=None, on_progress=None, timeout=None):
        c = self.bclient
        limit = timeout or self.settings["timeout"]
        for attempt in (0, 1):
            try:
                client = c.EngineClient(self.settings["address"], limit, **nc_settings.curve_options(self.settings))
            except self.bprotocol.BridgeError as exc:
                raise UserError(f"Neural Collage engine: cannot use the encryption keys set in Settings... "
                                f"({exc}). Without pyzmq in GIMP's Python, clear the engine public key and reach "
                                "the engine through an SSH tunnel (ssh -L 5581:127.0.0.1:5581 host).") from None
            try:
                return client.call(op, params, arrays or {}, on_progress=on_progress)
            except c.Cancelled:
                raise CancelledByUser() from None
            except c.EngineUnavailable as exc:
                if attempt == 0 and self._auto_start():
                    continue
                text = str(exc)
                if "lost the connection" in text or "CURVE" in text or "handshake" in text:
                    raise UserError(f"Neural Collage engine: {text}") from None
                raise UserError(unreachable_message(self.settings)) from None
            except c.EngineTimeout as exc:
                raise UserError(f"Neural Collage engine: {exc}. (The plug-in waits {limit:.0f} s for a first "
                                "answer; change it in Settings...)") from None
            except c.EngineError as exc:
                text = getattr(exc, "message", None) or str(exc)
                raise UserError(f"Neural Collage engine: {text}") from None
            except self.bprotocol.BridgeError as exc:  # e.g. an unreadable key file named in Settings...
                raise UserError(f"Neural Collage engine: {exc}") from None
            finally:
                client.close()
        raise UserError(unreachable_message(self.settings))

    def array(self, dtype, shape, data):
        return self.bprotocol.Array(dtype, tuple(shape), data)


class Progress:
    """GIMP's progress bar fed from engine progress messages; returning False cancels the request.

    Cancel on GIMP's progress bar does not reach this code: GIMP kills the plug-in process
    (gimp_plug_in_progress_cancel_callback), the connection drops, and the engine cancels the job of the
    client that went away (tests/e2e/test_gimp_e2e.py::test_cancel_in_gimp)."""

    def __init__(self, title):
        self.title = title
        Gimp.progress_init(title)

    def __call__(self, stage, step, total, loss=None):
        text = f"{self.title}: {stage}"
        if total:
            text += f" {step}/{total}"
        if loss is not None:
            try:
                text += f" (loss {float(loss):.4f})"
            except (TypeError, ValueError):
                pass
        Gimp.progress_set_text(text)
        frac = (float(step) / float(total)) if total else 0.0
        ok = Gimp.progress_update(min(max(frac, 0.0), 1.0))
        return ok is not False

    def end(self):
        Gimp.progress_end()


# ---------------------------------------------------------------------------------------------------------
# pixels
# ---------------------------------------------------------------------------------------------------------

def _rect(box):
    return Gegl.Rectangle.new(int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def checked(result, what):
    """``result`` of a libgimp (PDB) call, or a UserError when the call failed (False or None): from GIMP 3.2.6
    a failing call prints nothing, so every result is looked at."""
    if result is None or result is False:
        raise UserError(f"GIMP could not {what}. The image was left as it was.")
    return result


def offsets(drawable):
    ok, ox, oy = drawable.get_offsets()
    checked(ok, f"read the offsets of '{drawable.get_name()}'")
    return ox, oy


def read_buffer(drawable, box_image, fmt):
    """Pixels of ``drawable`` under an image-space box, as bytes in babl format ``fmt`` (zero outside)."""
    ox, oy = offsets(drawable)
    return bytes(drawable.get_buffer().get(_rect(px.to_layer(box_image, (ox, oy))), 1.0, fmt,
                                           Gegl.AbyssPolicy.NONE))


def read_selection(image, box):
    return bytes(image.get_selection().get_buffer().get(_rect(box), 1.0, "Y u8", Gegl.AbyssPolicy.NONE))


def read_channel(channel, box):
    return bytes(channel.get_buffer().get(_rect(box), 1.0, "Y u8", Gegl.AbyssPolicy.NONE))


def layer_box(layer):
    ox, oy = offsets(layer)
    return (ox, oy, layer.get_width(), layer.get_height())


def precision_key(precision):
    """'u8', 'u16' or 'float' for a Gimp.Precision, compared by value: PyGObject >= 3.52 (GIMP 3.2's stack)
    makes GI enums Python IntEnums whose names and text differ from 3.50's (GIMP 3.0's)."""
    p = Gimp.Precision
    if precision in (p.U8_LINEAR, p.U8_NON_LINEAR, p.U8_PERCEPTUAL):
        return "u8"
    if precision in (p.U16_LINEAR, p.U16_NON_LINEAR, p.U16_PERCEPTUAL):
        return "u16"
    return "float"  # 32-bit integer, half, float and double images travel as float32


def pixel_format(image, drawable):
    return px.PixelFormat(drawable.is_gray(), drawable.has_alpha(), precision_key(image.get_precision()))


def feature_region(layer):
    """(u8 mask over the whole layer or None for 'all of it', description) of a reference layer."""
    w, h = layer.get_width(), layer.get_height()
    mask = layer.get_mask()
    if mask is not None:
        data = bytes(mask.get_buffer().get(_rect((0, 0, w, h)), 1.0, "Y u8", Gegl.AbyssPolicy.NONE))
        return data, "its layer mask"
    if layer.has_alpha():
        data = bytes(layer.get_buffer().get(_rect((0, 0, w, h)), 1.0, "Y'A u8", Gegl.AbyssPolicy.NONE))[1::2]
        if data.strip(b"\xff"):
            return data, "its alpha"
    return None, "the whole layer"


def feature_mask_crop(layer, box):
    """The reference's feature mask (layer mask, else alpha, else the layer's extent) over an image box."""
    mask = layer.get_mask()
    if mask is not None:
        return read_buffer(mask, box, "Y u8")
    if layer.has_alpha():
        return read_buffer(layer, box, "Y'A u8")[1::2]
    lb = layer_box(layer)
    return px.paste_mask(box[2], box[3], (lb[0] - box[0], lb[1] - box[1], lb[2], lb[3]))


def selection_region(image):
    """The selection's bounding box (image coordinates) or None when nothing is selected."""
    if Gimp.Selection.is_empty(image):
        return None
    ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    checked(ok, "read the selection's bounds")
    if not non_empty or x2 <= x1 or y2 <= y1:
        return None
    return px.box_from_bounds(x1, y1, x2, y2)


def label_channels(image):
    out = []
    for ch in image.get_channels():
        cls = px.label_class(ch.get_name())
        if cls:
            out.append((cls, ch))
    return out


def class_param(text):
    """A class given as text: an int when it is a number (a class id), else the name as typed."""
    text = (text or "").strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def class_name(value, fallback=""):
    if isinstance(value, dict):
        return str(value.get("name") or value.get("id") or fallback)
    if value is None or value == "":
        return fallback
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# the edit pipeline
# ---------------------------------------------------------------------------------------------------------

class Job:
    """Everything one edit reads from the image before the engine is called."""

    def __init__(self, image, layer, settings):
        self.image = image
        self.layer = layer
        self.settings = settings
        self.fmt = pixel_format(image, layer)
        self.lbox = layer_box(layer)
        self.notes = []
        self.box = None
        self.write_mask = None

    def set_box(self, region):
        box = px.crop_box(region, self.lbox, self.settings["margin"])
        if box is None:
            raise UserError(f"The selection does not overlap the layer '{self.layer.get_name()}'. Select a "
                            "region on it, or choose another layer.")
        self.box = box

    def image_array(self, engine):
        data = read_buffer(self.layer, self.box, self.fmt.babl)
        self.image_bytes = data
        return engine.array(self.fmt.dtype, (self.box[3], self.box[2], self.fmt.channels), data)

    def mask_array(self, engine, data):
        if not data.strip(b"\x00"):
            raise UserError(f"The selection is empty over the layer '{self.layer.get_name()}'.")
        self.write_mask = data
        return engine.array("uint8", (self.box[3], self.box[2]), data)

    def cache_key(self, model):
        x, y, w, h = self.box
        return (f"nc:{self.image.get_id()}:{self.layer.get_id()}:{x},{y},{w}x{h}:{model or 'default'}:"
                f"{self.fmt.key}:{px.crop_digest(self.image_bytes)}")


def pick_layer(drawables):
    if not drawables:
        raise UserError("No layer is active. Select one layer in the Layers dialog.")
    if len(drawables) != 1:
        raise UserError(f"Neural Collage works on one layer at a time; {len(drawables)} drawables are "
                        "selected.")
    d = drawables[0]
    if not d.is_layer() or d.is_layer_mask():
        raise UserError(f"Neural Collage works on a layer; '{d.get_name()}' is a mask or channel. "
                        "Select its layer.")
    if d.is_group_layer():
        raise UserError(f"'{d.get_name()}' is a layer group. Select a normal layer (or merge the group "
                        "first).")
    return d


def base_params(settings, config, with_poisson=True):
    params = {"poisson": bool(config.get_property("poisson")) if with_poisson else False}
    if settings.get("model"):
        params["model"] = settings["model"]
    steps = int(config.get_property("steps") or 0) if _has_prop(config, "steps") else 0
    steps = steps or int(settings.get("steps") or 0)
    if steps > 0:
        params["steps"] = steps
    return params


def _has_prop(config, name):
    return config.find_property(name) is not None


def scope_layers(choice):
    for nick, layers, _label in SCOPES:
        if choice == nick:
            return layers
    raise UserError(f"Unknown scope {choice!r}: use all, global or local.")


def build_swap(job, engine, config):
    image, settings = job.image, job.settings
    region = selection_region(image)
    if region is None:
        region = job.lbox
        job.notes.append("No selection: the whole layer was used.")
    job.set_box(region)
    arrays = {"image": job.image_array(engine)}
    if selection_region(image) is None:
        mask = px.paste_mask(job.box[2], job.box[3], (0, 0, job.box[2], job.box[3]))
    else:
        mask = read_selection(image, job.box)
    arrays["mask"] = job.mask_array(engine, mask)
    strength = float(config.get_property("strength"))
    target = class_param(config.get_property("target-class"))
    labels = []
    for i, (cls, channel) in enumerate(label_channels(image)):
        data = read_channel(channel, job.box)
        if not data.strip(b"\x00"):
            job.notes.append(f"Channel 'label: {cls}' is empty in the edited region and was skipped.")
            continue
        name = f"label{i}"
        arrays[name] = engine.array("uint8", (job.box[3], job.box[2]), data)
        job.write_mask = px.max_masks(job.write_mask, data)
        labels.append({"class": class_param(cls), "strength": strength, "mask": name})
    if target is None:
        if not labels:
            raise UserError("Choose a target class (a name or an id from the engine's class list), or add "
                            "channels named 'label: <class>'.")
        target = labels[0]["class"]
    swap = {"target": target, "strength": strength, "layers": scope_layers(config.get_property("scope"))}
    if labels:
        swap["labels"] = labels
    params = base_params(settings, config)
    params.update({"swap": swap, "blend": None,
                   "source_class": class_param(config.get_property("source-class"))})
    params["cache_key"] = job.cache_key(settings.get("model"))
    return params, arrays, {"target": target, "labels": labels}


def build_transplant(job, engine, config):
    image, settings, layer = job.image, job.settings, job.layer
    ref = config.get_property("reference")
    if ref is None:
        raise UserError("Choose the reference layer whose feature should be transplanted.")
    if ref.get_id() == layer.get_id():
        raise UserError(f"The reference layer must differ from the active layer '{layer.get_name()}'.")
    if ref.get_image().get_id() != image.get_id():
        raise UserError("The reference layer must belong to the same image.")
    if ref.is_group_layer():
        raise UserError(f"The reference '{ref.get_name()}' is a layer group; choose a normal layer.")
    fmask, how = feature_region(ref)
    rbox = layer_box(ref)
    if fmask is not None:
        inner = px.mask_bbox(fmask, rbox[2], rbox[3])
        if inner is None:
            raise UserError(f"The reference layer '{ref.get_name()}' marks no feature: {how} is empty.")
        feat = (rbox[0] + inner[0], rbox[1] + inner[1], inner[2], inner[3])
    else:
        feat = rbox
    region = selection_region(image)
    if region is None:
        target_region = feat
        shift = (0, 0)
        job.notes.append("No selection: the feature stays where the reference layer puts it.")
    else:
        target_region = region
        (sx, sy), (fx, fy) = px.centre(region), px.centre(feat)
        shift = (round(sx - fx), round(sy - fy))
    margin = settings["margin"]
    want = px.union(px.grow(target_region, margin), px.grow(feat, margin))
    box = px.intersect(want, job.lbox)
    if box is None or px.intersect(target_region, job.lbox) is None:
        raise UserError(f"The target region does not overlap the layer '{layer.get_name()}'.")
    job.box = box
    arrays = {"image": job.image_array(engine)}
    ref_mask = feature_mask_crop(ref, box)
    if region is None:
        mask = ref_mask
    else:
        mask = read_selection(image, box)
    arrays["mask"] = job.mask_array(engine, mask)
    ref_pixels = read_buffer(ref, box, job.fmt.babl)
    arrays["reference"] = engine.array(job.fmt.dtype, (box[3], box[2], job.fmt.channels), ref_pixels)
    arrays["reference_mask"] = engine.array("uint8", (box[3], box[2]), ref_mask)
    params = base_params(settings, config)
    params.update({"swap": None, "blend": {
        "strength": float(config.get_property("strength")),
        "layers": scope_layers(config.get_property("scope")),
        "shift": [shift[0], shift[1]],
    }})
    params["cache_key"] = job.cache_key(settings.get("model"))
    job.notes.append(f"Reference feature region: {how} of '{ref.get_name()}' ({feat[2]}x{feat[3]} at "
                     f"{feat[0]},{feat[1]}); shift {shift[0]:+d},{shift[1]:+d} px.")
    return params, arrays, {"reference": ref.get_name(), "shift": shift}


def build_project(job, engine, config):
    image = job.image
    region = selection_region(image)
    if region is None:
        region = job.lbox
        job.notes.append("No selection: the whole layer was projected.")
    job.set_box(region)
    arrays = {"image": job.image_array(engine)}
    if selection_region(image) is None:
        mask = px.full_mask(job.box[2], job.box[3])
    else:
        mask = read_selection(image, job.box)
    arrays["mask"] = job.mask_array(engine, mask)
    params = base_params(job.settings, config, with_poisson=False)
    params.update({"swap": None, "blend": None, "return_recon": True})
    params["cache_key"] = job.cache_key(job.settings.get("model"))
    return params, arrays, {}


def insert_result(image, layer, box, arr, name, write_mask=None):
    """Insert a new layer right above ``layer`` at the image position of ``box``, inside one undo group.

    With ``write_mask`` (u8 over the box) the new layer starts as an exact copy of ``layer`` under the box
    (a GEGL buffer copy: no colour conversion, so every pixel outside the mask is bit-identical in any
    precision) and ``arr`` is written only where the mask is non-zero. Without it ``arr`` fills the layer
    (the projection). Anything added is removed again if a step fails."""
    h, w = int(arr.shape[0]), int(arr.shape[1])
    channels = int(arr.shape[2]) if len(arr.shape) == 3 else 1
    babl = px.babl_for_array(arr.dtype, channels)
    bpp = channels * {"uint8": 1, "uint16": 2, "float32": 4}[arr.dtype]
    if write_mask is not None:
        alpha = layer.has_alpha()
    else:
        alpha = channels in (2, 4)
    if image.get_base_type() == Gimp.ImageBaseType.GRAY:
        itype = Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    else:
        itype = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
    data = bytes(arr.data)
    position = image.get_item_position(layer)
    if position < 0:
        raise UserError(f"GIMP could not find the layer '{layer.get_name()}' in the image.")
    Gimp.context_push()
    started = image.undo_group_start()
    new = None
    try:
        checked(started, "start an undo group")
        new = checked(Gimp.Layer.new(image, name, w, h, itype, 100.0, Gimp.LayerMode.NORMAL),
                      "create the result layer")
        checked(image.insert_layer(new, layer.get_parent(), position), "insert the result layer")
        checked(new.set_offsets(int(box[0]), int(box[1])), "place the result layer")
        buf = new.get_buffer()
        if write_mask is None:
            buf.set(_rect((0, 0, w, h)), babl, data)
        else:
            ox, oy = offsets(layer)
            layer.get_buffer().copy(_rect(px.to_layer(box, (ox, oy))), Gegl.AbyssPolicy.NONE, buf,
                                    _rect((0, 0, w, h)))
            stride = w * bpp
            for x, y, rw, rh in px.mask_rects(write_mask, w, h):
                if rh == 1:
                    chunk = data[y * stride + x * bpp:y * stride + (x + rw) * bpp]
                else:
                    chunk = b"".join(data[(y + r) * stride + x * bpp:(y + r) * stride + (x + rw) * bpp]
                                     for r in range(rh))
                buf.set(_rect((x, y, rw, rh)), babl, chunk)
        buf.flush()
        checked(new.update(0, 0, w, h), "update the result layer")
    except Exception:
        if new is not None:
            try:
                if new.get_image() is not None and not image.remove_layer(new):
                    sys.stderr.write("Neural Collage: GIMP could not remove the unfinished result layer\n")
            except Exception:  # noqa: BLE001 - keep the original error
                traceback.print_exc()
        raise
    finally:
        if started:
            image.undo_group_end()
        Gimp.context_pop()
    return new


def run_edit(kind, procedure, run_mode, image, drawables, config):
    Gegl.init(None)
    settings, warning = nc_settings.load()
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    progress = None
    try:
        layer = pick_layer(drawables)
        engine = Engine(settings)
        if interactive:
            # ask the engine first: a dialog is no use when the engine is down (auto-start happens here)
            classes = None
            if kind == "swap":
                classes = fetch_classes(engine, settings)
            else:
                engine.call("hello", {}, timeout=min(30.0, settings["timeout"]))
            if not show_dialog(procedure, config, classes):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        job = Job(image, layer, settings)
        if warning:
            job.notes.append(warning)
        builder = {"swap": build_swap, "transplant": build_transplant, "project": build_project}[kind]
        params, arrays, info = builder(job, engine, config)
        title = {"swap": "Label swap", "transplant": "Feature transplant", "project": "Projection"}[kind]
        progress = Progress(f"Neural Collage: {title.lower()}")
        reply = engine.call("edit", params, arrays, on_progress=progress)
        progress.end()
        progress = None
        rp = getattr(reply, "params", {}) or {}
        if kind == "project":
            out = reply.arrays.get("recon") or reply.arrays.get("image")
            name = "Projection"
            loss = rp.get("loss", rp.get("projection_loss"))
            if loss is not None:
                job.notes.append(f"Projection loss {loss}.")
        else:
            out = reply.arrays.get("image")
            if kind == "swap":
                src = class_name(rp.get("source_class"), class_name(params.get("source_class"), "?"))
                tgt = info["target"]
                if not isinstance(tgt, str):  # an id was typed: show the engine's name for it if it sent one
                    tgt = class_name(rp.get("target_class", rp.get("target")), class_name(tgt))
                extra = [class_name(lb["class"]) for lb in info["labels"]]
                extra = [e for e in extra if e != tgt]
                name = "Label swap: {} -> {}".format(src, ", ".join([tgt] + extra))
            else:
                name = "Feature transplant from {}".format(info["reference"])
        if out is None:
            names = ", ".join(sorted(reply.arrays)) or "none"
            raise UserError(f"The engine answered without an image (reply arrays: {names}).")
        if tuple(out.shape[:2]) != (job.box[3], job.box[2]) and kind != "project":
            raise UserError(f"The engine answered with a {out.shape[1]}x{out.shape[0]} image for a "
                            f"{job.box[2]}x{job.box[3]} crop.")
        new = insert_result(image, layer, job.box, out, name,
                            None if kind == "project" else job.write_mask)
        Gimp.displays_flush()
        message = (f"{title}: new layer '{name}' ({int(out.shape[1])}x{int(out.shape[0])} at "
                   f"{job.box[0]},{job.box[1]}).")
        if job.notes:
            message += " " + " ".join(job.notes)
        if interactive and job.notes:
            Gimp.message(message)
        retval = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        _set_return(retval, 1, GObject.Value(Gimp.Layer, new))
        _set_return(retval, 2, GObject.Value(GObject.TYPE_STRING, message))
        return retval
    except CancelledByUser:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except UserError as exc:
        return error_values(procedure, str(exc))
    except Exception as exc:  # noqa: BLE001 - report, never crash GIMP's plug-in protocol
        traceback.print_exc()
        return error_values(procedure, f"Neural Collage failed unexpectedly: {type(exc).__name__}: {exc} "
                            "(details on stderr)")
    finally:
        if progress is not None:
            try:
                progress.end()
            except Exception:  # noqa: BLE001 - the result matters more than the progress bar
                traceback.print_exc()


def _set_return(retval, index, value):
    if retval.length() > index:
        retval.remove(index)
    retval.insert(index, value)


def error_values(procedure, message):
    err = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, err)


# ---------------------------------------------------------------------------------------------------------
# interactive UI
# ---------------------------------------------------------------------------------------------------------

def fetch_classes(engine, settings):
    params = {}
    if settings.get("model"):
        params["model"] = settings["model"]
    reply = engine.call("classes", params, timeout=min(30.0, settings["timeout"]))
    return list((reply.params or {}).get("classes") or [])


def _class_completion(dialog, prop, classes):
    """Turn the text field of ``prop`` into a searchable class picker (substring completion)."""
    gi.require_version("Gtk", "3.0")
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi, Gtk

    widget = dialog.get_widget(prop, GimpUi.LabelEntry.__gtype__)
    entry = widget.get_entry() if hasattr(widget, "get_entry") else widget
    store = Gtk.ListStore(str)
    for c in classes:
        store.append(["%s" % (c.get("name") if isinstance(c, dict) else c)])

    def match(completion, key, it, _data=None):
        text = store[it][0] or ""
        return (key or "").lower() in text.lower()

    comp = Gtk.EntryCompletion()
    comp.set_model(store)
    comp.set_text_column(0)
    comp.set_minimum_key_length(0)
    comp.set_match_func(match, None)
    entry.set_completion(comp)
    names = ", ".join(str(r[0]) for r in list(store)[:12]) + (", ..." if len(classes) > 12 else "")
    entry.set_tooltip_text(f"{len(classes)} classes; type part of a name (or an id). {names}")


def show_dialog(procedure, config, classes=None):
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
    if classes:
        for prop in ("target-class", "source-class"):
            try:
                _class_completion(dialog, prop, classes)
            except Exception:  # noqa: BLE001 - the plain text field still works
                traceback.print_exc()
    dialog.fill(None)
    auto = os.environ.get("NEURAL_COLLAGE_TEST_DIALOG")
    if auto in ("ok", "cancel"):
        # test hook (the e2e tests run GIMP under Xvfb): answer the dialog by itself once it is up
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        response = Gtk.ResponseType.OK if auto == "ok" else Gtk.ResponseType.CANCEL

        def answer():
            sys.stderr.write(f"NC_DIALOG {procedure.get_name()} shown, answering {auto}\n")
            hook = os.environ.get("NEURAL_COLLAGE_TEST_HOOK")  # e.g. the e2e tests' screenshot + widget dump
            if hook:
                try:
                    import runpy

                    runpy.run_path(hook, init_globals={"dialog": dialog, "procedure_name": procedure.get_name()})
                except Exception:  # noqa: BLE001 - the test sees the traceback and the missing files
                    traceback.print_exc()
            dialog.response(response)
            return False

        GLib.timeout_add(300, answer)
    ok = dialog.run()
    dialog.destroy()
    return ok


# ---------------------------------------------------------------------------------------------------------
# settings procedure
# ---------------------------------------------------------------------------------------------------------

def run_settings(procedure, run_mode, image, drawables, config):
    settings, _warning = nc_settings.load()
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            config.set_property("address", settings["address"])
            config.set_property("auto-start", settings["auto_start"])
            config.set_property("engine-command", nc_settings.format_command(settings["engine_command"]))
            config.set_property("model", settings["model"])
            config.set_property("timeout", settings["timeout"])
            config.set_property("engine-public-key", settings["engine_public_key"])
            config.set_property("client-secret-key", settings["client_secret_key"])
            if not show_dialog(procedure, config):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        new = dict(settings)
        try:
            command = nc_settings.parse_command(config.get_property("engine-command"))
        except ValueError as exc:
            raise UserError(f"Settings not saved: the engine command cannot be read ({exc}).") from None
        if command != settings["engine_command"]:
            new["engine_cwd"] = ""  # the folder install.py chose belongs to the command it wrote
        new.update({
            "address": config.get_property("address"),
            "auto_start": bool(config.get_property("auto-start")),
            "engine_command": command,
            "model": config.get_property("model") or "",
            "timeout": float(config.get_property("timeout")),
            "engine_public_key": config.get_property("engine-public-key") or "",
            "client_secret_key": config.get_property("client-secret-key") or "",
        })
        try:
            path = nc_settings.save(new)
        except (TypeError, ValueError, OSError) as exc:
            raise UserError(f"Settings not saved: {exc}") from None
        message = f"Neural Collage settings saved to {path}."
        if run_mode == Gimp.RunMode.INTERACTIVE:
            try:
                reply = Engine(nc_settings.validate(new)).call("hello", {}, timeout=10.0)
                p = reply.params or {}
                message += " The engine answers: version {} on {}, default model {}.".format(
                    p.get("engine_version", "?"), p.get("device", "?"), p.get("default_model", "?"))
            except UserError as exc:
                message += " " + str(exc)
            Gimp.message(message)
        retval = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        _set_return(retval, 1, GObject.Value(GObject.TYPE_STRING, message))
        return retval
    except UserError as exc:
        return error_values(procedure, str(exc))


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------

def _swap_run(procedure, run_mode, image, drawables, config, data):
    return run_edit("swap", procedure, run_mode, image, drawables, config)


def _transplant_run(procedure, run_mode, image, drawables, config, data):
    return run_edit("transplant", procedure, run_mode, image, drawables, config)


def _project_run(procedure, run_mode, image, drawables, config, data):
    return run_edit("project", procedure, run_mode, image, drawables, config)


def _settings_run(procedure, run_mode, image, drawables, config, data):
    return run_settings(procedure, run_mode, image, drawables, config)


def _scope_choice():
    choice = Gimp.Choice.new()
    for i, (nick, _layers, label) in enumerate(SCOPES):
        choice.add(nick, i, label, "")
    return choice


DOCS = {
    PROC_SWAP: ("Label Swap...", "Change the class of the selected region (sCBN label collage)",
                ("Re-synthesises the selected region as another class with spatial conditional batch "
                "normalisation. target-class: class name or id (the dialog lists the engine's classes). "
                "strength 0..1. scope: all = every generator layer, global = first layer only (shape), "
                "local = all but the first (texture). source-class: empty = found by the engine. Channels "
                "named 'label: <class>' add that class with the channel as its map. Without a selection "
                "the whole layer is used. The result is a new layer above the active one.")),
    PROC_TRANSPLANT: ("Feature Transplant...", "Transplant a feature of a reference layer into the selection",
                      ("Blends the generator's internal features of the reference layer into the selected "
                      "region. The reference's feature region is its layer mask, else its alpha, else the "
                      "whole layer; the shift is centre(selection) - centre(feature region) in image pixels "
                      "(reference content at p lands at p + shift). Without a selection the feature stays "
                      "where the reference layer lies. The result is a new layer above the active one.")),
    PROC_PROJECT: ("Project Selection", "Insert the generator's reconstruction of the selected region",
                   ("Projects the selected region onto the generator's manifold and inserts the "
                   "reconstruction as a new layer so the fit can be judged. The projection is cached by "
                   "the engine, so edits of the same region that follow are quick.")),
    PROC_SETTINGS: ("Settings...", "Neural Collage engine settings",
                    ("Engine address, auto-start and its command, model and timeout. Stored as JSON next to "
                    "the plug-in (nc_settings.json).")),
}


class NeuralCollage(Gimp.PlugIn):
    def do_set_i18n(self, procname):
        return False

    def do_query_procedures(self):
        return [PROC_SWAP, PROC_TRANSPLANT, PROC_PROJECT, PROC_SETTINGS]

    def do_create_procedure(self, name):
        run = {PROC_SWAP: _swap_run, PROC_TRANSPLANT: _transplant_run, PROC_PROJECT: _project_run,
               PROC_SETTINGS: _settings_run}[name]
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        label, blurb, help_text = DOCS[name]
        proc.set_menu_label(label)
        proc.set_documentation(blurb, help_text, name)
        proc.set_attribution("Neural Collage for GIMP", "Neural Collage for GIMP contributors", "2025")
        proc.add_menu_path(MENU)
        if name == PROC_SETTINGS:
            proc.set_image_types("*")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            d = nc_settings.defaults()
            proc.add_string_argument("address", "Engine a_ddress", "e.g. tcp://127.0.0.1:5581",
                                     d["address"], RW)
            proc.add_boolean_argument("auto-start", "Start the engine _automatically when it does not answer",
                                      "Run the engine command below when the engine is not reachable",
                                      d["auto_start"], RW)
            proc.add_string_argument("engine-command", "Engine comma_nd",
                                     "Command line that starts the engine, e.g. /path/venv/bin/python -m "
                                     "engine.cli serve (--bind is added)", "", RW)
            proc.add_string_argument("model", "_Model", "Model name; empty = the engine's default", "", RW)
            proc.add_double_argument("timeout", "T_imeout (s)",
                                     "How long to wait for the engine's first answer (a running edit may "
                                     "take longer while the engine reports progress)",
                                     1.0, 86400.0, d["timeout"], RW)
            proc.add_string_argument("engine-public-key", "Engine public _key (encryption)",
                                     "A remote engine's CURVE public key or its engine.key file; empty = no "
                                     "encryption (local engine or SSH tunnel). Needs pyzmq in GIMP's Python", "",
                                     RW)
            proc.add_string_argument("client-secret-key", "Your _secret key file (encryption)",
                                     "Your <name>.key_secret from `neural-collage keys --name <name>`, for an "
                                     "engine that admits only listed clients; empty = a throw-away key", "", RW)
            proc.add_string_return_value("message", "Message", "What was saved", "", RW)
            return proc
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        if name == PROC_SWAP:
            proc.add_string_argument("target-class", "_Target class",
                                     "Class name or id to paint into the selection", "", RW)
            proc.add_double_argument("strength", "Stre_ngth", "0 = unchanged, 1 = full swap",
                                     0.0, 1.0, 1.0, RW)
            proc.add_choice_argument("scope", "Scop_e", "Generator layers the new class acts on",
                                     _scope_choice(), "all", RW)
            proc.add_string_argument("source-class", "So_urce class",
                                     "Class of the original region; empty = found automatically", "", RW)
        elif name == PROC_TRANSPLANT:
            proc.add_layer_argument("reference", "Re_ference layer",
                                    "Layer holding the feature; its mask (or alpha) marks the feature",
                                    False, RW)
            proc.add_double_argument("strength", "Stre_ngth", "0 = unchanged, 1 = full transplant",
                                     0.0, 1.0, 1.0, RW)
            proc.add_choice_argument("scope", "Scop_e", "Generator layers that are blended",
                                     _scope_choice(), "all", RW)
        if name in (PROC_SWAP, PROC_TRANSPLANT):
            proc.add_boolean_argument("poisson", "_Poisson blending", "Blend the edge of the edit seamlessly",
                                      True, RW)
        proc.add_int_argument("steps", "Pro_jection steps", "0 = the engine's default", 0, 100000, 0, RW)
        proc.add_layer_return_value("layer", "Layer", "The layer added", True, RW)
        proc.add_string_return_value("message", "Message", "What was done", "", RW)
        return proc


if __name__ == "__main__":
    Gimp.main(NeuralCollage.__gtype__, sys.argv)
