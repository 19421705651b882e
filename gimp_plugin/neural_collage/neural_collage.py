#!/usr/bin/env python3
"""Neural Collage for GIMP 3: sCBN label swap, feature blend and manifold projection in the selection.

The heavy work happens in the Neural Collage engine (a separate PyTorch process, ``neural-collage serve``);
this plug-in only reads pixels, sends the crop around the selection over the bridge (standard library only)
and inserts the answer as a new layer. Menu: Filters > Neural Collage.

One run function per procedure, each shaped like GIMP's own foggify.py: read the settings, pick the layer,
ask the engine (and, interactively, the user), build the request from the image, send it, insert the answer.

  nc_procedures.py  the declared procedures: names, menu labels, documentation, arguments
  nc_image.py       the GIMP adapter: pixels, selection, channels in; the result layer (one undo group) out
  nc_requests.py    the request built from the image (bridge.requests.EditRequest)
  nc_engine.py      the engine: auto-start, the error policy (by error code), GIMP's progress bar
  nc_dialog.py      the interactive dialog (GimpUi/Gtk are imported only there), with the live preview
  nc_preview.py     the live preview's requests: debounced, sent from a thread, stale answers dropped
  nc_pixels.py, nc_settings.py   plain Python: boxes, masks, babl formats; the settings file
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
import nc_image as gimage
import nc_procedures as procs
import nc_requests as build
import nc_settings
from gi.repository import Gegl, Gimp, GLib, GObject
from nc_engine import CancelledByUser, Engine, Progress, UserError
from nc_requests import class_name

PLUGIN_VERSION = "0.1.0"


# ---------------------------------------------------------------------------------------------------------
# return values
# ---------------------------------------------------------------------------------------------------------

def _set_return(retval, index, value):
    if retval.length() > index:
        retval.remove(index)
    retval.insert(index, value)


def error_values(procedure, message):
    err = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, err)


def cancel_values(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def success_values(procedure, message, layer=None):
    retval = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    index = 1
    if layer is not None:
        _set_return(retval, index, GObject.Value(Gimp.Layer, layer))
        index += 1
    _set_return(retval, index, GObject.Value(GObject.TYPE_STRING, message))
    return retval


def reported(run):
    """Run a procedure; a UserError becomes its message, Cancel a CANCEL status, anything else a message
    naming the error (never a crash of GIMP's plug-in protocol)."""

    def wrapper(procedure, run_mode, image, drawables, config, data):
        try:
            return run(procedure, run_mode, image, drawables, config, data)
        except CancelledByUser:
            return cancel_values(procedure)
        except UserError as exc:
            return error_values(procedure, str(exc))
        except Exception as exc:  # noqa: BLE001 - report, never crash GIMP's plug-in protocol
            traceback.print_exc()
            return error_values(procedure, f"Neural Collage failed unexpectedly: {type(exc).__name__}: {exc} "
                                "(details on stderr)")

    wrapper.__name__ = run.__name__
    wrapper.__doc__ = run.__doc__
    return wrapper


# ---------------------------------------------------------------------------------------------------------
# the steps every edit shares
# ---------------------------------------------------------------------------------------------------------

def _is_interactive(run_mode):
    return run_mode == Gimp.RunMode.INTERACTIVE


def _dialog(procedure, config, class_names=None, live=None):
    import nc_dialog  # GimpUi and Gtk: only in the interactive branch

    return nc_dialog.show_dialog(procedure, config, class_names, live)


def _live_preview(engine, settings, image, layer, builder):
    """The dialog's live preview of an edit built by ``builder(job, config)`` (crop read as 8-bit RGB)."""
    import nc_preview

    def make_request(config):
        return builder(build.Job(image, layer, settings, rgb8=True), config)

    return nc_preview.LivePreview(engine, make_request, timeout=settings["timeout"])


def _start(drawables, image):
    """(settings, engine, job maker) of an edit on the one picked layer; the settings file's warning becomes a note."""
    Gegl.init(None)
    settings, warning = nc_settings.load()
    layer = gimage.pick_layer(drawables)
    engine = Engine(settings, Gimp.progress_set_text)

    def job():
        j = build.Job(image, layer, settings)
        if warning:
            j.notes.append(warning)
        return j

    return settings, engine, job


def _confirmed(procedure, run_mode, config, settings, engine, with_classes=False, live=None):
    """Non-interactive: True. Interactive: ask the engine first (a dialog is no use when the engine is down; the
    auto-start happens here), then show the dialog (with the engine's classes and the live preview); True on
    OK."""
    if not _is_interactive(run_mode):
        return True
    limit = min(30.0, settings["timeout"])
    if with_classes:
        return _dialog(procedure, config, engine.classes(settings.get("model"), timeout=limit).names(), live)
    engine.hello(timeout=limit)
    return _dialog(procedure, config, None, live)


def _send(engine, request, title):
    """Send the request with GIMP's progress bar; returns the reply as a bridge.requests.EditReply."""
    progress = Progress(Gimp, f"Neural Collage: {title.lower()}")
    try:
        reply = engine.send(request, on_progress=progress)
    finally:
        try:
            progress.end()
        except Exception:  # noqa: BLE001 - the result matters more than the progress bar
            traceback.print_exc()
    return build.brequests.EditReply.from_wire(reply.params or {}, reply.arrays)


def _check_answer(out, reply, job, same_size=True):
    if out is None:
        names = ", ".join(sorted(n for n in ("image", "recon") if getattr(reply, n) is not None)) or "none"
        raise UserError(f"The engine answered without an image (reply arrays: {names}).")
    if same_size and tuple(out.shape[:2]) != (job.box[3], job.box[2]):
        raise UserError(f"The engine answered with a {out.shape[1]}x{out.shape[0]} image for a "
                        f"{job.box[2]}x{job.box[3]} crop.")


def _send_variations(engine, request, config, title):
    """[(strength or None, reply)]: one reply, or one per strength of the variations' strength strip (each after the
    first reuses the engine's cached projection: same cache key)."""
    strengths = build.variation_strengths(config)
    if len(strengths) == 1:
        return [(None, _send(engine, request, title))]
    n = len(strengths)
    return [(s, _send(engine, build.with_strength(request, s), f"{title} {i + 1}/{n}"))
            for i, s in enumerate(strengths)]


def _insert_variations(procedure, run_mode, job, replies, name, title):
    """N > 1 variations as N layers in one new layer group above the active layer (one undo step)."""
    results = [(f"{name} (strength {s:.3g})", reply.image) for s, reply in replies]
    group = gimage.insert_variations(job.image, job.layer, job.box, results, f"{name}: {len(results)} variations",
                                     job.write_mask)
    Gimp.displays_flush()
    return _inserted(procedure, run_mode, job, group,
                     f"{title}: {len(results)} variations (strengths "
                     f"{', '.join(f'{s:.3g}' for s, _r in replies)}) in the new layer group '{group.get_name()}'.")


def _insert(procedure, run_mode, job, out, name, title, write_mask):
    """Insert the answer as a new layer (one undo group) and return the procedure's values."""
    new = gimage.insert_result(job.image, job.layer, job.box, out, name, write_mask)
    Gimp.displays_flush()
    return _inserted(procedure, run_mode, job, new, f"{title}: new layer '{name}' ({int(out.shape[1])}x"
                     f"{int(out.shape[0])} at {job.box[0]},{job.box[1]}).")


def _inserted(procedure, run_mode, job, layer, message):
    """The procedure's values after an insertion: ``message`` plus the job's notes (shown when interactive)."""
    if job.notes:
        message += " " + " ".join(job.notes)
        if _is_interactive(run_mode):
            Gimp.message(message)
    return success_values(procedure, message, layer)


# ---------------------------------------------------------------------------------------------------------
# the procedures
# ---------------------------------------------------------------------------------------------------------

@reported
def run_label_swap(procedure, run_mode, image, drawables, config, data):
    """Label swap (sCBN): the selection re-synthesised as the target class."""
    settings, engine, new_job = _start(drawables, image)
    build.layer_strengths(config)  # a bad value: one message before anything else happens
    live = _live_preview(engine, settings, image, drawables[0], build.build_swap) if _is_interactive(run_mode) \
        else None
    if not _confirmed(procedure, run_mode, config, settings, engine, with_classes=True, live=live):
        return cancel_values(procedure)
    job = new_job()
    request = build.build_swap(job, config)
    replies = _send_variations(engine, request, config, "Label swap")
    for _s, reply in replies:
        _check_answer(reply.image, reply, job)
    reply = replies[-1][1]
    swap = request.swap
    src = class_name(reply.source_class, class_name(request.source_class, "?"))
    tgt = swap.target
    if not isinstance(tgt, str):  # an id was typed: show the engine's name for it if it sent one
        sent = reply.target_class if reply.target_class is not None else reply.extra.get("target")
        tgt = class_name(sent, class_name(tgt))
    extra = [e for e in (class_name(lb.cls) for lb in swap.labels) if e != tgt]
    name = "Label swap: {} -> {}".format(src, ", ".join([tgt] + extra))
    if len(replies) > 1:
        return _insert_variations(procedure, run_mode, job, replies, name, "Label swap")
    return _insert(procedure, run_mode, job, reply.image, name, "Label swap", job.write_mask)


@reported
def run_feature_blend(procedure, run_mode, image, drawables, config, data):
    """Feature blend: a reference layer's feature moved onto the selection."""
    settings, engine, new_job = _start(drawables, image)
    build.layer_strengths(config)  # a bad value: one message before anything else happens
    live = _live_preview(engine, settings, image, drawables[0], build.build_blend) if _is_interactive(run_mode) \
        else None
    if not _confirmed(procedure, run_mode, config, settings, engine, live=live):
        return cancel_values(procedure)
    job = new_job()
    request = build.build_blend(job, config)
    replies = _send_variations(engine, request, config, "Feature blend")
    for _s, reply in replies:
        _check_answer(reply.image, reply, job)
    name = "Feature blend from {}".format(config.get_property("reference").get_name())
    if len(replies) > 1:
        return _insert_variations(procedure, run_mode, job, replies, name, "Feature blend")
    return _insert(procedure, run_mode, job, replies[0][1].image, name, "Feature blend", job.write_mask)


@reported
def run_project(procedure, run_mode, image, drawables, config, data):
    """Projection: the generator's reconstruction of the selection, as a new layer."""
    settings, engine, new_job = _start(drawables, image)
    if not _confirmed(procedure, run_mode, config, settings, engine):
        return cancel_values(procedure)
    job = new_job()
    request = build.build_project(job, config)
    reply = _send(engine, request, "Projection")
    out = reply.recon if reply.recon is not None else reply.image
    _check_answer(out, reply, job, same_size=False)
    loss = reply.loss if reply.loss is not None else reply.extra.get("projection_loss")
    if loss is not None:
        job.notes.append(f"Projection loss {loss}.")
    return _insert(procedure, run_mode, job, out, "Projection", "Projection", None)


@reported
def run_settings(procedure, run_mode, image, drawables, config, data):
    """Settings: engine address, auto-start and its command, model, timeout, encryption keys."""
    settings, _warning = nc_settings.load()
    if _is_interactive(run_mode):
        config.set_property("address", settings["address"])
        config.set_property("auto-start", settings["auto_start"])
        config.set_property("engine-command", nc_settings.format_command(settings["engine_command"]))
        config.set_property("model", settings["model"])
        config.set_property("timeout", settings["timeout"])
        config.set_property("engine-public-key", settings["engine_public_key"])
        config.set_property("client-secret-key", settings["client_secret_key"])
        if not _dialog(procedure, config):
            return cancel_values(procedure)
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
    if _is_interactive(run_mode):
        try:
            hello = Engine(nc_settings.validate(new), Gimp.progress_set_text).hello(timeout=10.0)
            message += " The engine answers: version {} on {}, default model {}.".format(
                hello.engine_version or "?", hello.device or "?", hello.default_model or "?")
        except UserError as exc:
            message += " " + str(exc)
        Gimp.message(message)
    return success_values(procedure, message)


# ---------------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------------

RUN = {procs.PROC_SWAP: run_label_swap, procs.PROC_BLEND: run_feature_blend, procs.PROC_PROJECT: run_project,
       procs.PROC_SETTINGS: run_settings}


class NeuralCollage(Gimp.PlugIn):
    def do_set_i18n(self, procname):
        return False

    def do_query_procedures(self):
        return list(procs.PROCEDURES)

    def do_create_procedure(self, name):
        return procs.create(self, name, RUN[name])


if __name__ == "__main__":
    Gimp.main(NeuralCollage.__gtype__, sys.argv)
