# Runs INSIDE a Neural Collage plug-in process under Xvfb (GIMP's Python, GTK 3), called by the plug-in's
# dialog test hook (NEURAL_COLLAGE_TEST_HOOK=<this file>) while the dialog is up, with the globals ``dialog``
# (the GimpUi.ProcedureDialog) and ``procedure_name``. Writes, next to this file:
#   dialog_<procedure>.png   a screenshot of the dialog's window
#   dialog_<procedure>.json  every widget (type, text, visible/mapped, box in the screenshot's pixels)
# so the host can check that the expected widgets exist, are shown, and drew something where they are.
# Standard library + gi only.
# ruff: noqa: F821 - dialog and procedure_name are handed in by the plug-in (runpy init_globals)
import json
import os

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, Gtk

for _ in range(200):  # let the dialog finish mapping and drawing
    if not Gtk.events_pending():
        break
    Gtk.main_iteration_do(False)

HERE = os.path.dirname(os.path.abspath(__file__))
# a case may ask for another answer than NEURAL_COLLAGE_TEST_DIALOG's (the plug-in reads ``answer`` back) and tag
# its files: gimp_cases.py writes dialog_answer.json for that case
answer, TAG = None, ""
if os.path.exists(os.path.join(HERE, "dialog_answer.json")):
    with open(os.path.join(HERE, "dialog_answer.json"), encoding="utf-8") as _fh:
        _want = json.load(_fh)
    answer, TAG = _want.get("answer"), "_" + _want.get("tag", "")
STEM = os.path.join(HERE, "dialog_" + procedure_name + TAG)
win = dialog.get_window()
alloc = dialog.get_allocation()  # a client-side-decorated window draws the dialog at an offset
origin = (alloc.x, alloc.y)


def text_of(w):
    for cls, getter in ((Gtk.Label, "get_text"), (Gtk.Button, "get_label"), (Gtk.Entry, "get_text")):
        if isinstance(w, cls):
            return getattr(w, getter)() or ""
    if isinstance(w, Gtk.ComboBox):
        child = w.get_child()
        if isinstance(child, Gtk.Entry):
            return child.get_text()
        it, model = w.get_active_iter(), w.get_model()
        if it is not None and model is not None:  # the active row's text columns (id | label)
            row = [model.get_value(it, i) for i in range(model.get_n_columns())]
            return " | ".join(v for v in row if isinstance(v, str))
    return ""


widgets = []


def walk(w, depth):
    res = w.translate_coordinates(dialog, 0, 0)
    x, y = (res[0], res[1]) if res else (-1, -1)
    entry = {"type": type(w).__gtype__.name, "text": text_of(w), "visible": bool(w.get_visible()),
             "mapped": bool(w.get_mapped()), "sensitive": bool(w.is_sensitive()), "depth": depth,
             "box": [x + origin[0], y + origin[1], w.get_allocated_width(), w.get_allocated_height()]}
    if isinstance(w, Gtk.ToggleButton):
        entry["active"] = bool(w.get_active())
    if isinstance(w, Gtk.ComboBox):
        entry["active"] = w.get_active()
    widgets.append(entry)
    if isinstance(w, Gtk.Container):
        kids = []
        w.forall(kids.append)  # internal children too (the dialog's button box, entries in combos)
        for k in kids:
            walk(k, depth + 1)


walk(dialog, 0)
shot = None
if win is not None:
    pix = Gdk.pixbuf_get_from_window(win, 0, 0, win.get_width(), win.get_height())
    if pix is not None:
        pix.savev(STEM + ".png", "png", [], [])
        shot = [pix.get_width(), pix.get_height()]
with open(STEM + ".json", "w", encoding="utf-8") as fh:
    json.dump({"procedure": procedure_name, "title": dialog.get_title(), "screenshot": shot,
               "widgets": widgets}, fh, indent=1)
