"""The declared procedures: names, menu labels, documentation and argument tables (as foggify.py declares its
one procedure). ``create(plugin, name, run)`` builds one; the ranges come from ``bridge/requests.py``.

Procedures (all take run-mode, image, drawables; the active drawable must be one layer):
  python-fu-neural-collage-label-swap         target-class, strength, scope, source-class, OPTIONS, poisson, steps
  python-fu-neural-collage-feature-transplant reference, strength, scope, OPTIONS, poisson, steps
                                              (menu: Feature Blend...)
  python-fu-neural-collage-project            steps
  python-fu-neural-collage-settings           address, auto-start, engine-command, model, timeout, keys
OPTIONS (issue 14): mode (fast | calibrated), scale (texture scale), layer-strengths (text "1,1,0.5,0"; empty = all
1), variations (1 = one result; N > 1: N results in one new layer group), variation-kind (strength: a strength
strip 1/N ... strength), preview (the dialog's live preview; ignored when not interactive).
Each edit returns (status, layer, message): the new layer (or the variations' group) and a sentence saying what was
done.

The feature blend keeps its registered name ``...-feature-transplant`` so scripts that call it keep working;
everywhere else (menu, CLI, protocol, code) it is the *feature blend*.
"""
import gi

gi.require_version("Gimp", "3.0")
import nc_settings
from gi.repository import Gimp, GObject
from nc_engine import brequests

MENU = "<Image>/Filters/Neural Collage"
PROC_SWAP = "python-fu-neural-collage-label-swap"
PROC_BLEND = "python-fu-neural-collage-feature-transplant"
PROC_PROJECT = "python-fu-neural-collage-project"
PROC_SETTINGS = "python-fu-neural-collage-settings"
PROCEDURES = (PROC_SWAP, PROC_BLEND, PROC_PROJECT, PROC_SETTINGS)
RW = GObject.ParamFlags.READWRITE

DOCS = {
    PROC_SWAP: ("Label Swap...", "Change the class of the selected region (sCBN label collage)",
                ("Re-synthesises the selected region as another class with spatial conditional batch "
                 "normalisation. target-class: class name or id (the dialog lists the engine's classes). "
                 "strength 0..1. scope: all = every generator layer, global = first layer only (shape), "
                 "local = all but the first (texture). source-class: empty = found by the engine. Channels "
                 "named 'label: <class>' add that class with the channel as its map. Without a selection "
                 "the whole layer is used. The result is a new layer above the active one.")),
    PROC_BLEND: ("Feature Blend...", "Blend a feature of a reference layer into the selection",
                 ("Blends the generator's internal features of the reference layer into the selected "
                  "region (the paper's feature blending). The reference's feature region is its layer mask, "
                  "else its alpha, else the whole layer; the shift is centre(selection) - centre(feature "
                  "region) in image pixels (reference content at p lands at p + shift). Without a selection "
                  "the feature stays where the reference layer lies. The result is a new layer above the "
                  "active one.")),
    PROC_PROJECT: ("Project Selection", "Insert the generator's reconstruction of the selected region",
                   ("Projects the selected region onto the generator's manifold and inserts the "
                    "reconstruction as a new layer so the fit can be judged. The projection is cached by "
                    "the engine, so edits of the same region that follow are quick.")),
    PROC_SETTINGS: ("Settings...", "Neural Collage engine settings",
                    ("Engine address, auto-start and its command, model and timeout. Stored as JSON next to "
                     "the plug-in (nc_settings.json).")),
}


def _scope_choice():
    """The scope argument's choices, from the bridge's one scope table (nick, label)."""
    scopes = brequests.SCOPES if brequests is not None else (("all", "all", "All layers"),)
    return _choice([(nick, label) for _wire, nick, label in scopes])


def _choice(rows):
    """A Gimp.Choice of (nick, label) rows."""
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(rows):
        choice.add(nick, i, label, "")
    return choice


def _range(name, fallback):
    """(lo, hi) of a range of bridge/requests.py (``fallback`` when the bridge is missing: the procedure still
    registers and says so when it runs)."""
    if brequests is None:
        return fallback
    rng = getattr(brequests, name)
    return rng.lo, rng.hi


def _steps_range():
    if brequests is None:  # no bridge: the procedure still registers and says so when it runs
        return 0, 0
    return int(brequests.STEPS.lo), int(brequests.STEPS.hi)


def _settings_arguments(proc):
    d = nc_settings.defaults()
    proc.add_string_argument("address", "Engine a_ddress", "e.g. tcp://127.0.0.1:5581", d["address"], RW)
    proc.add_boolean_argument("auto-start", "Start the engine _automatically when it does not answer",
                              "Run the engine command below when the engine is not reachable", d["auto_start"], RW)
    proc.add_string_argument("engine-command", "Engine comma_nd",
                             "Command line that starts the engine, e.g. /path/venv/bin/python -m "
                             "engine.cli serve (--bind is added)", "", RW)
    proc.add_string_argument("model", "_Model", "Model name; empty = the engine's default", "", RW)
    proc.add_double_argument("timeout", "T_imeout (s)",
                             "How long to wait for the engine's first answer (a running edit may take longer "
                             "while the engine reports progress)", 1.0, 86400.0, d["timeout"], RW)
    proc.add_string_argument("engine-public-key", "Engine public _key (encryption)",
                             "A remote engine's CURVE public key or its engine.key file; empty = no encryption "
                             "(local engine or SSH tunnel). Needs pyzmq in GIMP's Python", "", RW)
    proc.add_string_argument("client-secret-key", "Your _secret key file (encryption)",
                             "Your <name>.key_secret from `neural-collage keys --name <name>`, for an engine "
                             "that admits only listed clients; empty = a throw-away key", "", RW)
    proc.add_string_return_value("message", "Message", "What was saved", "", RW)


def _swap_arguments(proc):
    proc.add_string_argument("target-class", "_Target class", "Class name or id to paint into the selection", "",
                             RW)
    proc.add_double_argument("strength", "Stre_ngth", "0 = unchanged, 1 = full swap", 0.0, 1.0, 1.0, RW)
    proc.add_choice_argument("scope", "Scop_e", "Generator layers the new class acts on", _scope_choice(), "all",
                             RW)
    proc.add_string_argument("source-class", "So_urce class",
                             "Class of the original region; empty = found automatically", "", RW)


def _blend_arguments(proc):
    proc.add_layer_argument("reference", "Re_ference layer",
                            "Layer holding the feature; its mask (or alpha) marks the feature", False, RW)
    proc.add_double_argument("strength", "Stre_ngth", "0 = unchanged, 1 = full blend", 0.0, 1.0, 1.0, RW)
    proc.add_choice_argument("scope", "Scop_e", "Generator layers that are blended", _scope_choice(), "all", RW)


def _option_arguments(proc, what):
    """The engine's options and the dialog's preview (issue 14), shared by label swap and feature blend."""
    modes = brequests.MODES if brequests is not None else ("fast", "calibrated")
    labels = {"fast": "Fast (the encoder only)", "calibrated": "Calibrated (+ projection steps)"}
    proc.add_choice_argument("mode", "_Mode", "fast: the encoder's projection only; calibrated: plus projection "
                             "steps (better fit, slower)", _choice([(m, labels.get(m, m)) for m in modes]),
                             "calibrated", RW)
    lo, hi = _range("SCALE", (0.25, 4.0))
    proc.add_double_argument("scale", "Te_xture scale", "2 = the new texture's features twice as large", float(lo),
                             float(hi), 1.0, RW)
    proc.add_string_argument("layer-strengths", "_Layer strengths",
                             f"One strength 0..1 per {what}, separated by commas, e.g. 1,1,0.5,0; empty = all 1", "",
                             RW)
    lo, hi = _range("VARIATIONS", (1, 16))
    proc.add_int_argument("variations", "_Variations", "1 = one result; N = N results in one new layer group",
                          int(lo), int(hi), 1, RW)
    kinds = brequests.VARIATION_KINDS if brequests is not None else (("strength", "Strength strip"),)
    proc.add_choice_argument("variation-kind", "Variation _kind", "strength: N strengths evenly spaced from 1/N of "
                             "the strength to the strength", _choice(kinds), kinds[0][0], RW)
    proc.add_boolean_argument("preview", "Live pre_view", "Show the edit in the dialog while the settings change",
                              True, RW)


def _edit_arguments(proc, poisson):
    if poisson:
        proc.add_boolean_argument("poisson", "_Poisson blending", "Blend the edge of the edit seamlessly", True, RW)
    lo, hi = _steps_range()
    proc.add_int_argument("steps", "Pro_jection steps", "0 = the engine's default", lo, hi, 0, RW)
    proc.add_layer_return_value("layer", "Layer", "The layer added", True, RW)
    proc.add_string_return_value("message", "Message", "What was done", "", RW)


def create(plugin, name, run):
    """The Gimp.ImageProcedure ``name`` with its menu entry, documentation and arguments."""
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run, None)
    label, blurb, help_text = DOCS[name]
    proc.set_menu_label(label)
    proc.set_documentation(blurb, help_text, name)
    proc.set_attribution("Neural Collage for GIMP", "Neural Collage for GIMP contributors", "2025")
    proc.add_menu_path(MENU)
    if name == PROC_SETTINGS:
        proc.set_image_types("*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        _settings_arguments(proc)
        return proc
    proc.set_image_types("RGB*, GRAY*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
    if name == PROC_SWAP:
        _swap_arguments(proc)
        _option_arguments(proc, "sCBN layer")
    elif name == PROC_BLEND:
        _blend_arguments(proc)
        _option_arguments(proc, "blend site")
    _edit_arguments(proc, poisson=name != PROC_PROJECT)
    return proc
