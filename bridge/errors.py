"""Errors of the Neural Collage bridge: one error type with codes, used by both ends (see PROTOCOL.md).

Standard library only: this module runs inside GIMP's bundled Python (3.9+) and in the engine.

Every error the bridge raises is a :class:`BridgeError` with a ``code`` and a ``message``:

* **wire codes** (``E_*``, :data:`ERROR_CODES`) travel in ``error`` replies. The engine's handler raises
  :class:`EngineError` with one of them; the server sends ``{code, message}``; the client raises
  :class:`EngineError` with the same code again (:class:`Cancelled` for ``cancelled``).
  :class:`ProtocolError` is an :class:`EngineError` for a message that breaks the protocol itself
  (``bad_request``, ``bad_version``, ``too_large``, ``unknown_op``), on whichever side notices it.
* **local codes** (``L_*``, :data:`LOCAL_CODES`) never travel: they say why the client could not get an
  answer at all (:class:`EngineUnavailable`, :class:`EngineTimeout`) or could not be set up.

A caller decides what to do from ``exc.code``, never from the message text.
"""
from __future__ import annotations

# -- wire codes (the "code" of an error reply) -----------------------------------------------------------
E_BAD_REQUEST = "bad_request"      # malformed header, params or frames
E_BAD_VERSION = "bad_version"      # header "v" is not PROTOCOL_VERSION
E_TOO_LARGE = "too_large"          # a size limit was exceeded
E_UNKNOWN_OP = "unknown_op"        # "op" is not one of OPS
E_BUSY = "busy"                    # job queue full
E_LOADING = "loading"              # engine still loading its model (classes only)
E_CANCELLED = "cancelled"          # request was cancelled
E_ENGINE_ERROR = "engine_error"    # unexpected failure inside the engine
E_MODEL_MISSING = "model_missing"  # requested model (weights) not installed
E_BAD_INPUT = "bad_input"          # well-formed but unusable input (engine-side check)
ERROR_CODES = (
    E_BAD_REQUEST, E_BAD_VERSION, E_TOO_LARGE, E_UNKNOWN_OP, E_BUSY, E_LOADING,
    E_CANCELLED, E_ENGINE_ERROR, E_MODEL_MISSING, E_BAD_INPUT,
)

# -- local codes (client side only, never sent) ----------------------------------------------------------
L_CLIENT = "client_error"            # the client cannot be set up (transport, keys, address form)
L_UNREACHABLE = "unreachable"        # nothing answers at the address
L_CONNECTION_LOST = "connection_lost"  # the connection dropped while a request was under way
L_HANDSHAKE = "handshake_failed"     # something answers, but the (ZMTP or CURVE) handshake failed
L_KEY_REFUSED = "key_refused"        # the engine refused this client's CURVE key
L_TIMEOUT = "timeout"                # connected, but no first answer in time
L_SILENT = "silent"                  # an acknowledged request's heartbeats stopped
LOCAL_CODES = (L_CLIENT, L_UNREACHABLE, L_CONNECTION_LOST, L_HANDSHAKE, L_KEY_REFUSED, L_TIMEOUT, L_SILENT)


class BridgeError(Exception):
    """Base class of every error raised by the bridge package: ``code`` (wire or local) and ``message``."""

    code = L_CLIENT

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class EngineError(BridgeError):
    """An error with a wire code: raised by the engine's handler, sent as an ``error`` reply, raised again by
    the client.  ``request_id``: the id of the request it answers, when known."""

    def __init__(self, code: str, message: str, request_id: str | None = None):
        BridgeError.__init__(self, message, code)
        self.args = (f"{code}: {message}",)
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ProtocolError(EngineError):
    """A message violates the protocol (``code``: bad_request, bad_version, too_large or unknown_op)."""


class Cancelled(EngineError):
    """The request was cancelled (by ``on_progress`` returning False, or another cancel)."""

    def __init__(self, message: str = "cancelled", request_id: str | None = None):
        super().__init__(E_CANCELLED, message, request_id)


class EngineUnavailable(BridgeError):
    """Nothing answers at the address, or the connection to the engine was lost (``code`` says which)."""

    code = L_UNREACHABLE


class EngineTimeout(BridgeError):
    """The engine accepted the connection but did not answer (or went silent) in time."""

    code = L_TIMEOUT


def error_from_reply(params: dict, request_id: str | None = None) -> EngineError:
    """The exception an ``error`` reply's params stand for (unknown codes are kept as they are)."""
    code = str(params.get("code", E_ENGINE_ERROR))
    message = str(params.get("message", ""))
    if code == E_CANCELLED:
        return Cancelled(message or "cancelled", request_id)
    return EngineError(code, message, request_id)


def reply_params(exc: EngineError) -> dict:
    """The params of the ``error`` reply that carries ``exc``."""
    return {"code": exc.code, "message": exc.message}
