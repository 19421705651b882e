"""Engine access for the plug-in: the bridge client with the plug-in's error policy, and GIMP's progress bar.

Every failure becomes a :class:`UserError` whose text is the whole message, chosen by the error's *code*
(``bridge/errors.py``), never by its text. Cancel (the engine's ``cancelled``) becomes :class:`CancelledByUser`.
"""
import os

import nc_settings

try:  # the bridge is installed next to the plug-in; a missing one is reported when a procedure runs
    from bridge import client as bclient
    from bridge import errors as berrors
    from bridge import protocol as bprotocol
    from bridge import requests as brequests

    BRIDGE_ERROR = None
except ImportError as _exc:  # pragma: no cover - an incomplete installation
    bclient = berrors = bprotocol = brequests = None
    BRIDGE_ERROR = _exc


class UserError(Exception):
    """A failure the user can act on; its text is the whole message."""


class CancelledByUser(Exception):
    pass


def require_bridge():
    if BRIDGE_ERROR is not None:
        raise UserError(f"The Neural Collage bridge package is missing next to the plug-in ({BRIDGE_ERROR}). "
                        "Run install.py again.")


def unreachable_message(settings, detail=""):
    address = settings["address"]
    why = f" ({detail})" if detail else ""
    return (f"The Neural Collage engine does not answer at {address}{why}. Start it in a terminal with "
            f"'neural-collage serve' (or 'python3 -m engine.cli serve --bind {address}'), or turn on "
            "auto-start in Filters > Neural Collage > Settings...")


def _policy():
    """error code -> what the user is told (a function of the settings, the exception and the time limit).
    Codes not listed here are engine answers (bad_input, busy, model_missing, ...): their message is shown."""
    e = berrors
    shown = "Neural Collage engine: {exc}"
    timeout = ("Neural Collage engine: {exc}. (The plug-in waits {limit:.0f} s for a first answer; change it in "
               "Settings...)")
    return {
        e.L_UNREACHABLE: None,  # unreachable_message
        e.L_CONNECTION_LOST: shown,
        e.L_HANDSHAKE: shown,
        e.L_KEY_REFUSED: shown,
        e.L_TIMEOUT: timeout,
        e.L_SILENT: timeout,
        e.L_CLIENT: shown,
    }


class Engine:
    """The bridge client with the plug-in's error policy: every failure becomes a UserError."""

    def __init__(self, settings, progress_text=None):
        require_bridge()
        self.settings = settings
        self._started = False
        self._progress_text = progress_text or (lambda text: None)

    def _auto_start(self):
        """Start the engine with the configured command (once); True when it now answers."""
        argv = nc_settings.engine_argv(self.settings)
        if not (self.settings.get("auto_start") and argv) or self._started:
            return False
        self._started = True
        self._progress_text("Starting the Neural Collage engine...")
        cwd = os.getcwd()
        folder = self.settings.get("engine_cwd")
        if folder and not os.path.isdir(folder):
            raise UserError(f"The engine's folder {folder} (engine_cwd in {nc_settings.settings_path()}) does "
                            "not exist. Run install.py again, or set the engine command in Settings...")
        try:
            if folder:
                os.chdir(folder)
            client = bclient.ensure_engine(self.settings["address"], argv,
                                           start_timeout=self.settings.get("start_timeout", 180.0))
            client.close()
        except (berrors.BridgeError, OSError) as exc:
            raise UserError(f"Could not start the Neural Collage engine with "
                            f"{nc_settings.format_command(argv)}: {exc}") from None
        finally:
            os.chdir(cwd)
        return True

    def _client(self, limit):
        try:
            return bclient.EngineClient(self.settings["address"], limit, **nc_settings.curve_options(self.settings))
        except berrors.BridgeError as exc:
            raise UserError(f"Neural Collage engine: cannot use the encryption keys set in Settings... ({exc}). "
                            "Without pyzmq in GIMP's Python, clear the engine public key and reach the engine "
                            "through an SSH tunnel (ssh -L 5581:127.0.0.1:5581 host).") from None

    def call(self, op, params=None, arrays=None, on_progress=None, timeout=None):
        """One request by op name; returns the bridge Reply."""
        limit = timeout or self.settings["timeout"]
        for attempt in (0, 1):
            client = self._client(limit)
            try:
                return client.call(op, params or {}, arrays or {}, on_progress=on_progress)
            except berrors.BridgeError as exc:
                # nothing answers (or the connection dropped): an auto-start, when configured, and one more try
                retry = exc.code in (berrors.L_UNREACHABLE, berrors.L_CONNECTION_LOST)
                if retry and attempt == 0 and self._auto_start():
                    continue
                raise self.user_error(exc, limit) from None
            finally:
                client.close()
        raise UserError(unreachable_message(self.settings))

    def send(self, request, on_progress=None, timeout=None):
        """Send a ``bridge.requests`` request object; returns the bridge Reply."""
        op, params, arrays = request.to_wire()
        return self.call(op, params, arrays, on_progress=on_progress, timeout=timeout)

    def user_error(self, exc, limit):
        """The exception the user sees for a bridge error, chosen by its code."""
        if exc.code == berrors.E_CANCELLED:
            return CancelledByUser()
        policy = _policy()
        if exc.code not in policy:  # an engine answer: its own message says what to do
            return UserError(f"Neural Collage engine: {exc.message or exc}")
        text = policy[exc.code]
        if text is None:
            return UserError(unreachable_message(self.settings))
        return UserError(text.format(exc=exc, limit=limit))

    def hello(self, timeout=None):
        return brequests.HelloReply.from_wire(self.send(brequests.HelloRequest(), timeout=timeout).params or {})

    def classes(self, model=None, timeout=None):
        reply = self.send(brequests.ClassesRequest(model=model or None), timeout=timeout)
        return brequests.ClassesReply.from_wire(reply.params or {})


class Progress:
    """GIMP's progress bar fed from engine progress messages; returning False cancels the request.

    Cancel on GIMP's progress bar does not reach this code: GIMP kills the plug-in process
    (gimp_plug_in_progress_cancel_callback), the connection drops, and the engine cancels the job of the
    client that went away (tests/e2e/test_gimp_e2e.py::test_cancel_in_gimp)."""

    def __init__(self, gimp, title):
        self.gimp = gimp
        self.title = title
        gimp.progress_init(title)

    def __call__(self, stage, step, total, loss=None):
        text = f"{self.title}: {stage}"
        if total:
            text += f" {step}/{total}"
        if loss is not None:
            try:
                text += f" (loss {float(loss):.4f})"
            except (TypeError, ValueError):
                pass
        self.gimp.progress_set_text(text)
        frac = (float(step) / float(total)) if total else 0.0
        ok = self.gimp.progress_update(min(max(frac, 0.0), 1.0))
        return ok is not False

    def end(self):
        self.gimp.progress_end()
