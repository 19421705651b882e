"""The interactive dialog: GIMP's generated ProcedureDialog, with a searchable class picker.

Imported and used only in the interactive branch of a procedure (GimpUi and Gtk are loaded here, never in a
non-interactive run). ``NEURAL_COLLAGE_TEST_DIALOG=ok|cancel`` answers the dialog by itself once it is up
(the e2e tests run GIMP under Xvfb); ``NEURAL_COLLAGE_TEST_HOOK=FILE`` runs that file with the dialog first.
"""
import os
import sys
import traceback

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import GimpUi, GLib, Gtk

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


def _answer_by_itself(dialog, procedure, answer):
    """Test hook: press OK or Cancel once the dialog is up."""
    response = Gtk.ResponseType.OK if answer == "ok" else Gtk.ResponseType.CANCEL

    def press():
        sys.stderr.write(f"NC_DIALOG {procedure.get_name()} shown, answering {answer}\n")
        hook = os.environ.get("NEURAL_COLLAGE_TEST_HOOK")  # e.g. the e2e tests' screenshot + widget dump
        if hook:
            try:
                import runpy

                runpy.run_path(hook, init_globals={"dialog": dialog, "procedure_name": procedure.get_name()})
            except Exception:  # noqa: BLE001 - the test sees the traceback and the missing files
                traceback.print_exc()
        dialog.response(response)
        return False

    GLib.timeout_add(300, press)


def show_dialog(procedure, config, class_names=None):
    """Run the procedure's dialog; True when the user pressed OK. ``class_names`` feeds the class pickers."""
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
    answer = os.environ.get("NEURAL_COLLAGE_TEST_DIALOG")
    if answer in ("ok", "cancel"):
        _answer_by_itself(dialog, procedure, answer)
    ok = dialog.run()
    dialog.destroy()
    return ok
