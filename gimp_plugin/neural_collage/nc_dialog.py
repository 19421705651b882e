"""The interactive dialog: GIMP's generated ProcedureDialog, with a searchable class picker and, for label swap
and feature blend, a live preview (a GimpUi.PreviewArea below the generated widgets, fed by nc_preview.LivePreview:
every change of a setting re-renders the edited selection at preview size; the image itself is never touched).

Imported and used only in the interactive branch of a procedure (GimpUi and Gtk are loaded here, never in a
non-interactive run). ``NEURAL_COLLAGE_TEST_DIALOG=ok|cancel`` answers the dialog by itself once it is up
(the e2e tests run GIMP under Xvfb) and, with the live preview on, once the preview has been drawn (at most
``NEURAL_COLLAGE_TEST_PREVIEW_WAIT`` seconds, default 900); ``NEURAL_COLLAGE_TEST_HOOK=FILE`` runs that file with
the dialog first (its global ``answer``, when it sets one to "ok" or "cancel", overrides the answer). Every drawn
preview writes ``NC_PREVIEW drawn N WxH S s`` to stderr.
"""
import os
import sys
import traceback

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import Gimp, GimpUi, GLib, Gtk

CLASS_PROPERTIES = ("target-class", "source-class")


def _class_completion(dialog, prop, names):
    """Turn the text field of ``prop`` into a searchable class picker (substring completion)."""
    widget = dialog.get_widget(prop, GimpUi.LabelEntry.__gtype__)
    entry = widget.get_entry() if hasattr(widget, "get_entry") else widget
    store = Gtk.ListStore(str)
    for name in names:
        store.append([name])

    def match(completion, key, it, _data=None):
        text = store[it][0] or ""
        return (key or "").lower() in text.lower()

    comp = Gtk.EntryCompletion()
    comp.set_model(store)
    comp.set_text_column(0)
    comp.set_minimum_key_length(0)
    comp.set_match_func(match, None)
    entry.set_completion(comp)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    entry.set_tooltip_text(f"{len(names)} classes; type part of a name (or an id). {shown}")


PREVIEW_LABEL = "Preview"


def _add_preview(dialog, config, live):
    """A framed GimpUi.PreviewArea (and a status line) below the generated widgets, redrawn by ``live`` (an
    nc_preview.LivePreview) after every change of a setting while the "preview" argument is on."""
    frame = Gtk.Frame.new(PREVIEW_LABEL)
    box = Gtk.Box.new(Gtk.Orientation.VERTICAL, 4)
    box.set_border_width(6)
    area = GimpUi.PreviewArea.new()
    area.set_size_request(live.size, live.size)
    status = Gtk.Label.new("Preview: waiting for the engine...")
    status.set_line_wrap(True)
    status.set_max_width_chars(48)
    box.pack_start(area, True, True, 0)
    box.pack_start(status, False, False, 0)
    frame.add(box)
    dialog.get_content_area().pack_start(frame, True, True, 6)
    for widget in (frame, box, area, status):
        widget.set_visible(True)
    last = {"image": None}

    def paint():
        image = last["image"]
        w_area, h_area = area.get_allocated_width(), area.get_allocated_height()
        area.fill(0, 0, w_area, h_area, 128, 128, 128)
        if image is not None:
            h, w = int(image.shape[0]), int(image.shape[1])
            area.draw(max(0, (w_area - w) // 2), max(0, (h_area - h) // 2), w, h, Gimp.ImageType.RGB_IMAGE,
                      bytes(image.data), w * 3)
        area.queue_draw()
        return False

    def draw(image, message, seconds):
        if image is None:
            status.set_text(message or "No preview.")
            sys.stderr.write(f"NC_PREVIEW failed: {message}\n")
            return
        last["image"] = image
        paint()
        h, w = int(image.shape[0]), int(image.shape[1])
        status.set_text(f"Preview {w}x{h} px, {seconds:.2f} s")
        sys.stderr.write(f"NC_PREVIEW drawn {live.drawn} {w}x{h} {seconds:.2f} s\n")

    def changed(*_args):
        if not config.get_property("preview"):
            status.set_text("Preview off.")
            return
        status.set_text("Preview: rendering...")
        live.schedule(config, draw)

    area.connect("size-allocate", lambda *_a: GLib.idle_add(paint))
    config.connect("notify", changed)
    changed()
    return frame


def _answer_by_itself(dialog, procedure, answer, live=None):
    """Test hook: press OK or Cancel once the dialog is up (and its live preview, if on, has been drawn)."""
    limit = float(os.environ.get("NEURAL_COLLAGE_TEST_PREVIEW_WAIT", "900"))
    t0 = GLib.get_monotonic_time()

    def press():
        waited = (GLib.get_monotonic_time() - t0) / 1e6
        if live is not None and live.drawn < 1 and waited < limit:
            return True  # poll again
        chosen = answer
        hook = os.environ.get("NEURAL_COLLAGE_TEST_HOOK")  # e.g. the e2e tests' screenshot + widget dump
        if hook:
            try:
                import runpy

                out = runpy.run_path(hook, init_globals={"dialog": dialog, "procedure_name": procedure.get_name()})
                if out.get("answer") in ("ok", "cancel"):
                    chosen = out["answer"]
            except Exception:  # noqa: BLE001 - the test sees the traceback and the missing files
                traceback.print_exc()
        drawn = "" if live is None else f" after {live.drawn} preview(s)"
        sys.stderr.write(f"NC_DIALOG {procedure.get_name()} shown, answering {chosen}{drawn}\n")
        dialog.response(Gtk.ResponseType.OK if chosen == "ok" else Gtk.ResponseType.CANCEL)
        return False

    GLib.timeout_add(300, press)


def show_dialog(procedure, config, class_names=None, live=None):
    """Run the procedure's dialog; True when the user pressed OK. ``class_names`` feeds the class pickers;
    ``live`` (an nc_preview.LivePreview) adds the live preview."""
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
    if class_names:
        for prop in CLASS_PROPERTIES:
            if config.find_property(prop) is None:
                continue
            try:
                _class_completion(dialog, prop, class_names)
            except Exception:  # noqa: BLE001 - the plain text field still works
                traceback.print_exc()
    dialog.fill(None)
    if live is not None:
        try:
            _add_preview(dialog, config, live)
        except Exception:  # noqa: BLE001 - the dialog still works without its preview
            traceback.print_exc()
            live = None
    answer = os.environ.get("NEURAL_COLLAGE_TEST_DIALOG")
    if answer in ("ok", "cancel"):
        _answer_by_itself(dialog, procedure, answer, live if live is not None and config.get_property("preview")
                          else None)
    ok = dialog.run()
    dialog.destroy()
    return ok
