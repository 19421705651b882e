"""The dialog's live preview, without any UI: debounced requests for a small result, sent from a thread so the
dialog never freezes, with stale answers dropped.

A change of the dialog's settings calls :meth:`LivePreview.schedule`; 250 ms after the last change the request is
built on the main thread (it reads pixels through GIMP's PDB, which must stay on the main thread) with
``preview_size`` set, so the engine renders the edit of the crop reduced to at most that many pixels (its
projection of the reduced crop is computed once and cached under the request's cache key: every later change costs
one render at preview size). The request is sent from a worker thread (either bridge path: pyzmq or the pure-Python
ZMTP client, one connection per request); the answer is handed to the main loop with ``GLib.idle_add``. One
request is in flight at a time: changes made meanwhile are sent when it is back, and an answer for settings that
have changed since is dropped. The preview never touches the image.
"""
import threading
import time
import traceback

from gi.repository import GLib
from nc_engine import UserError, brequests

DELAY_MS = 250


class LivePreview:
    """``make_request(config)`` builds the edit request (main thread); ``draw(image, message, seconds)`` shows an
    answer (main thread): ``image`` a bridge Array (H x W x 3, uint8) or None with ``message`` saying why."""

    def __init__(self, engine, make_request, size=None, timeout=None):
        self.engine = engine
        self.make_request = make_request
        self.size = int(size or brequests.DEFAULT_PREVIEW_SIZE)
        self.timeout = timeout
        self.generation = 0   # bumped by every change: an answer for an older one is stale
        self.drawn = 0        # previews drawn (the e2e tests wait for the first)
        self.dropped = 0      # stale answers dropped
        self.failed = 0
        self._timer = None
        self._busy = False
        self._pending = None

    def schedule(self, config, draw):
        """A setting changed: (re)start the 250 ms debounce timer."""
        self.generation += 1
        if self._timer is not None:
            GLib.source_remove(self._timer)
        self._timer = GLib.timeout_add(DELAY_MS, self._fire, config, draw)

    def _fire(self, config, draw):
        self._timer = None
        if self._busy:  # one request at a time: this one goes when the running one is back
            self._pending = (config, draw)
            return False
        gen = self.generation
        try:
            request = self.make_request(config)
            request.preview_size = self.size
            request.validate()
        except UserError as exc:
            self.failed += 1
            draw(None, str(exc), 0.0)
            return False
        except Exception as exc:  # noqa: BLE001 - a bad value must not break the dialog
            self.failed += 1
            draw(None, f"Preview: {exc}", 0.0)
            return False
        self._busy = True
        t0 = time.monotonic()

        def work():
            try:
                reply = self.engine.send(request, timeout=self.timeout)
                image = brequests.EditReply.from_wire(reply.params or {}, reply.arrays).image
                result = (image, None if image is not None else "The engine sent no preview image.")
            except UserError as exc:
                result = (None, str(exc))
            except Exception as exc:  # noqa: BLE001 - shown in the dialog, details on stderr
                traceback.print_exc()
                result = (None, f"Preview failed: {type(exc).__name__}: {exc}")
            GLib.idle_add(self._deliver, gen, result, time.monotonic() - t0, draw)

        threading.Thread(target=work, name="nc-preview", daemon=True).start()
        return False

    def _deliver(self, gen, result, seconds, draw):
        self._busy = False
        image, message = result
        if gen != self.generation:
            self.dropped += 1  # the settings changed meanwhile: the next request shows them
        elif image is None:
            self.failed += 1
            draw(None, message, seconds)
        elif len(image.shape) != 3 or image.shape[2] != 3 or str(image.dtype) != "uint8":
            self.failed += 1
            draw(None, f"The engine sent a {image.dtype} {list(image.shape)} preview; expected 8-bit RGB.", seconds)
        else:
            self.drawn += 1
            draw(image, None, seconds)
        if self._pending is not None:
            config, redraw = self._pending
            self._pending = None
            self._fire(config, redraw)
        return False
