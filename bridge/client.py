"""Client side of the Neural Collage bridge (runs inside GIMP's Python).

Standard library only; pyzmq is used when it can be imported, otherwise the
pure-Python ZMTP transport in :mod:`bridge.zmtp`.  Both behave the same.

    client = EngineClient()                       # tcp://127.0.0.1:5581
    info = client.hello()
    reply = client.call("swap", {...}, {"image": img, "mask": mask},
                        on_progress=lambda stage, step, total, loss: not user_cancelled())
    reply.arrays["image"]                         # bridge.protocol.Array

Not thread-safe: use one EngineClient per thread.
"""

# ruff: noqa: UP031  (printf-style formatting is used on purpose)
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .errors import (
    E_TOO_LARGE,
    L_CONNECTION_LOST,
    L_HANDSHAKE,
    L_KEY_REFUSED,
    L_SILENT,
    BridgeError,
    Cancelled,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    ProtocolError,
    error_from_reply,
)
from .protocol import (
    DEFAULT_ADDRESS,
    HEARTBEAT_TIMEOUT,
    PROTOCOL_VERSION,
    Array,
    Limits,
    decode_message,
    encode_message,
    frames_size,
)
from .zmtp import CURVE_NEEDS_PYZMQ, ZmtpError, ZmtpSocket, parse_tcp_address

try:  # optional: GIMP's bundled Python usually lacks it
    import zmq
except Exception:  # noqa: BLE001 - ImportError, or a broken binary wheel
    zmq = None

HAVE_PYZMQ = zmq is not None
# libzmq >= 4.3 reports why a CURVE handshake failed (0 on older builds: the generic message is used)
AUTH_FAILED = getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)
HANDSHAKE_FAILURES = AUTH_FAILED | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0) | getattr(
    zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)

START_HINT = ("start it with `neural-collage serve` (or enable \"start the engine automatically\" "
              "in the plug-in settings)")

#: What the client accepts from the engine (it trusts its engine more than the engine trusts clients).
CLIENT_LIMITS = Limits(max_header_bytes=16 * 1024 * 1024, max_message_bytes=1 << 34,
                       max_elements=1 << 32, max_arrays=256)


__all__ = [  # the errors live in bridge/errors.py; importing them from here keeps working
    "BridgeError", "Cancelled", "EngineClient", "EngineError", "EngineTimeout", "EngineUnavailable", "ProtocolError",
    "Reply", "ensure_engine",
]


class Reply:
    """A final ``result``: ``params`` (dict) and ``arrays`` (name -> Array)."""

    __slots__ = ("arrays", "header", "id", "op", "params")

    def __init__(self, header: dict[str, Any], arrays: dict[str, Array], op: str):
        self.header = header
        self.id = header.get("id")
        self.op = op
        self.params: dict[str, Any] = header.get("params") or {}
        self.arrays: dict[str, Array] = arrays

    def __repr__(self) -> str:
        return f"Reply(op={self.op!r}, params={self.params!r}, arrays={self.arrays!r})"


def load_key_pair(keys: Any) -> tuple[bytes, bytes]:
    """A client's CURVE (public, secret) Z85 pair, given itself or as a secret key file path
    (``<name>.key_secret`` from ``neural-collage keys --name <name>``)."""
    if isinstance(keys, (tuple, list)) and len(keys) == 2:
        return _as_bytes(keys[0]), _as_bytes(keys[1])
    path = os.fspath(keys)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    public = re.search(r'public-key\s*=\s*"([^"]{40})"', text)
    secret = re.search(r'secret-key\s*=\s*"([^"]{40})"', text)
    if not (public and secret):
        raise ValueError(f"{path} holds no CURVE key pair (use the *.key_secret file written by "
                         "`neural-collage keys`)")
    return public.group(1).encode("ascii"), secret.group(1).encode("ascii")


def load_public_key(key: Any) -> bytes:
    """A Z85 CURVE public key (40 chars), given itself or as a key file path."""
    if isinstance(key, bytes):
        key = key.decode("ascii")
    key = str(key).strip()
    if len(key) == 40 and not os.path.exists(key):
        return key.encode("ascii")
    with open(key, encoding="utf-8") as fh:
        text = fh.read()
    match = re.search(r'public-key\s*=\s*"([^"]{40})"', text)
    if match:
        return match.group(1).encode("ascii")
    stripped = text.strip()
    if len(stripped) == 40:
        return stripped.encode("ascii")
    raise ValueError(f"{key} holds no CURVE public key")


# ---------------------------------------------------------------------------
# Transports: connect / send / recv(timeout) -> frames or None / close
# ---------------------------------------------------------------------------
class _ZmtpTransport:
    name = "zmtp"

    def __init__(self, address: str, max_message_bytes: int):
        parse_tcp_address(address)  # fail early on ipc:// etc.
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.sock: ZmtpSocket | None = None

    def connect(self, timeout: float) -> None:
        if self.sock is not None and not self.sock.closed:
            try:  # drop stale replies, answer pings, notice a peer that went away
                while self.sock.recv_multipart(timeout=0) is not None:
                    pass
            except (ZmtpError, OSError):
                self.close()
        if self.sock is None or self.sock.closed:
            try:
                self.sock = ZmtpSocket.connect(self.address, timeout=timeout,
                                               max_message_bytes=self.max_message_bytes)
            except ZmtpError as exc:
                self.sock = None
                raise EngineUnavailable("something answers at %s but the ZeroMQ handshake failed: %s"
                                        % (self.address, exc), L_HANDSHAKE) from None
            except OSError as exc:
                self.sock = None
                raise EngineUnavailable(_unavailable_text(self.address, exc)) from None

    def send(self, frames: Sequence[Any], timeout: float) -> None:
        assert self.sock is not None
        self.sock.send_multipart(frames, timeout=timeout)

    def recv(self, timeout: float) -> list[Any] | None:
        assert self.sock is not None
        return self.sock.recv_multipart(timeout=max(0.0, timeout))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _PyZmqTransport:
    name = "pyzmq"

    def __init__(self, address: str, max_message_bytes: int, curve_server_key: Any = None,
                 curve_keys: Any = None, connect_timeout: float = 5.0):
        if zmq is None:
            raise BridgeError("pyzmq is not installed in this Python")
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.curve_server_key = curve_server_key
        self.curve_keys = curve_keys
        self.connect_timeout = connect_timeout
        self.ctx = zmq.Context()
        self.sock = None

    def connect(self, timeout: float) -> None:
        if self.sock is not None:
            while self.sock.poll(0, zmq.POLLIN):  # drop stale replies of abandoned requests
                self.sock.recv_multipart(copy=False)
            return
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on completed connections: POLLOUT = connected
        if self.max_message_bytes < (1 << 62):
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        if self.curve_server_key is not None:
            if not zmq.has("curve"):
                sock.close()
                raise BridgeError("this pyzmq/libzmq has no CURVE support")
            try:
                public, secret = load_key_pair(self.curve_keys) if self.curve_keys else zmq.curve_keypair()
                server_key = load_public_key(self.curve_server_key)
            except (OSError, ValueError) as exc:
                sock.close()
                raise BridgeError(f"CURVE key: {exc}") from None
            sock.curve_publickey = _as_bytes(public)
            sock.curve_secretkey = _as_bytes(secret)
            sock.curve_serverkey = server_key
            monitor = sock.get_monitor_socket(HANDSHAKE_FAILURES) if HANDSHAKE_FAILURES else None
        else:
            monitor = None
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            sock.close()
            raise EngineUnavailable(f"cannot connect to {self.address}: {exc}") from None
        self.sock = sock
        wait = max(0.0, min(timeout, self.connect_timeout))
        connected = sock.poll(int(wait * 1000), zmq.POLLOUT)
        failure = None
        if monitor is not None:
            if not connected and monitor.poll(100, zmq.POLLIN):
                # a monitor event: frame 1 = uint16 event id + uint32 value (native order), frame 2 = endpoint
                failure = struct.unpack("=H", monitor.recv_multipart()[0][:2])[0]
            sock.disable_monitor()
            monitor.close(linger=0)
        if not connected:
            self.close()
            if failure is not None and failure == AUTH_FAILED:
                raise EngineUnavailable(
                    f"the engine at {self.address} refused this client's CURVE key: its operator must add your "
                    "public key file (from `neural-collage keys --name <you>`) to the engine's --curve-clients "
                    "folder", L_KEY_REFUSED) from None
            if failure is not None:
                raise EngineUnavailable(
                    f"the encrypted handshake with the engine at {self.address} failed: check that the engine "
                    "public key given to this client is the one the engine serves with", L_HANDSHAKE) from None
            raise EngineUnavailable(_unavailable_text(self.address, None))

    def send(self, frames: Sequence[Any], timeout: float) -> None:
        assert self.sock is not None
        wait = max(0.0, min(timeout, self.connect_timeout))
        if not self.sock.poll(int(wait * 1000), zmq.POLLOUT):
            self.close()
            raise EngineUnavailable(_unavailable_text(self.address, None))
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.close()
            raise EngineUnavailable(f"lost the connection to the engine at {self.address}",
                                    L_CONNECTION_LOST) from None

    def recv(self, timeout: float) -> list[Any] | None:
        assert self.sock is not None
        if not self.sock.poll(int(max(0.0, timeout) * 1000), zmq.POLLIN):
            return None
        return [f.buffer for f in self.sock.recv_multipart(copy=False)]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
            self.ctx.term()
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter shutdown
            pass


def _as_bytes(value: Any) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def _unavailable_text(address: str, exc: BaseException | None) -> str:
    why = f" ({exc})" if exc is not None else ""
    return f"nothing answers at {address}{why}: the Neural Collage engine is not running; {START_HINT}"


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------
class EngineClient:
    """Talks to the engine at ``address``.

    ``timeout``: seconds to wait for the engine's first answer to a request
    (connection included).  Once the engine has acknowledged a request, the
    request may take as long as it needs, as long as the engine keeps sending
    heartbeats/progress: silence longer than ``heartbeat_timeout`` means a dead
    or hung engine.
    ``transport``: "auto" (pyzmq when importable, else the pure-Python ZMTP
    client), "pyzmq" or "zmtp".
    CURVE (``curve_server_key``: the engine's Z85 public key or key file;
    ``curve_keys``: the client's (public, secret) pair or its ``*.key_secret`` file, needed when the engine
    admits only listed clients (``--curve-clients``); a throw-away pair otherwise) needs pyzmq.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0, transport: str = "auto",
                 curve_server_key: Any = None, curve_keys: Any = None,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT, connect_timeout: float = 5.0,
                 limits: Limits | None = None):
        if transport not in ("auto", "pyzmq", "zmtp"):
            raise ValueError("transport must be 'auto', 'pyzmq' or 'zmtp'")
        if transport == "auto":
            transport = "pyzmq" if HAVE_PYZMQ else "zmtp"
        if curve_server_key is not None and transport != "pyzmq":
            raise BridgeError(CURVE_NEEDS_PYZMQ)
        if transport == "pyzmq" and not HAVE_PYZMQ:
            raise BridgeError("transport 'pyzmq' requested but pyzmq cannot be imported; "
                              "use transport='zmtp' (tcp:// only)")
        self.address = address
        self.timeout = float(timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.limits = limits or CLIENT_LIMITS
        #: the engine's size limits, learnt from the last hello()
        self.engine_limits: dict[str, Any] | None = None
        if transport == "pyzmq":
            self._transport: Any = _PyZmqTransport(address, self.limits.max_message_bytes,
                                                   curve_server_key, curve_keys, connect_timeout)
        else:
            try:
                self._transport = _ZmtpTransport(address, self.limits.max_message_bytes)
            except ValueError as exc:
                raise BridgeError(str(exc)) from None
        self.transport = transport

    # -- public API -------------------------------------------------------
    def call(self, op: str, params: Mapping[str, Any] | None = None,
             arrays: Mapping[str, Any] | None = None,
             on_progress: Callable[[str, int, int, float | None], Any] | None = None,
             timeout: float | None = None,
             on_queued: Callable[[int], Any] | None = None) -> Reply:
        """Send one request and wait for its final reply.

        ``arrays`` values: bridge Array, numpy arrays, or ``(dtype, shape, buffer)``.
        ``on_progress(stage, step, total, loss)`` may return False to cancel:
        the client sends ``cancel`` and raises :class:`Cancelled` once the engine
        confirms.  Raises EngineError, Cancelled, EngineUnavailable, EngineTimeout.
        """
        timeout = self.timeout if timeout is None else float(timeout)
        rid = uuid.uuid4().hex
        frames = encode_message({"v": PROTOCOL_VERSION, "id": rid, "op": op,
                                 "params": dict(params or {})}, arrays, self.limits)
        limit = (self.engine_limits or {}).get("max_message_bytes")
        if isinstance(limit, int) and frames_size(frames) > limit:
            # the engine would drop the connection (libzmq MAXMSGSIZE) rather than answer
            raise EngineError(E_TOO_LARGE, "the request has %.1f MiB, more than the engine accepts "
                              "(%.1f MiB; see `neural-collage serve --max-message-mb`)"
                              % (frames_size(frames) / 2 ** 20, limit / 2 ** 20))
        self._transport.connect(timeout)
        try:
            self._transport.send(frames, timeout)
            return self._wait(op, rid, timeout, on_progress, on_queued)
        except ProtocolError:  # (an EngineError too) a reply this side cannot read
            self._transport.close()  # never reuse a connection in an unknown state
            raise
        except EngineError:
            raise
        except (EngineUnavailable, EngineTimeout):
            self._transport.close()  # never reuse a connection in an unknown state
            raise
        except (ZmtpError, OSError) as exc:
            self._transport.close()
            raise EngineUnavailable(
                "lost the connection to the engine at %s during %r (%s): it probably crashed or was "
                "stopped, or dropped a request over its size limit; see the engine log"
                % (self.address, op, exc), L_CONNECTION_LOST) from None
        except BaseException:
            # e.g. KeyboardInterrupt or an exception from a callback: abandon the request
            self._try_cancel(rid)
            self._transport.close()
            raise

    def hello(self, timeout: float | None = None) -> dict[str, Any]:
        """Engine and protocol version, device, models, state ("loading"/"ready"), limits, pid."""
        info = self.call("hello", timeout=timeout).params
        limits = info.get("limits")
        if isinstance(limits, dict):
            self.engine_limits = limits
        return info

    def classes(self, search: str | None = None, model: str | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if search is not None:
            params["search"] = search
        if model is not None:
            params["model"] = model
        return self.call("classes", params, timeout=timeout).params

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        return self.call("status", timeout=timeout).params

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> EngineClient:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------
    def _wait(self, op: str, rid: str, timeout: float, on_progress: Any, on_queued: Any) -> Reply:
        sent = time.monotonic()
        last_seen: float | None = None
        cancel_id: str | None = None
        while True:
            now = time.monotonic()
            if last_seen is None:
                remaining = sent + timeout - now
                if remaining <= 0:
                    raise EngineTimeout(
                        "the engine at %s accepted the connection but did not answer %r within %.1f s; "
                        "it may be hung (see its log)" % (self.address, op, timeout))
            else:
                remaining = last_seen + self.heartbeat_timeout - now
                if remaining <= 0:
                    raise EngineTimeout(
                        "the engine at %s went silent for %.1f s while running %r (no heartbeat): it "
                        "probably crashed or hung; see the engine log and restart it"
                        % (self.address, self.heartbeat_timeout, op), L_SILENT)
            frames = self._transport.recv(remaining)
            if frames is None:
                continue
            header, arrays = decode_message(frames, self.limits)
            # an error with a null id answers a request whose header the engine could not read: ours
            unreadable = header.get("id") is None and header.get("type") == "error"
            if header.get("id") != rid and not unreadable:
                continue  # cancel acknowledgement, or a stale reply of an abandoned request
            last_seen = time.monotonic()
            kind = header.get("type")
            p = header["params"]
            if kind == "result":
                if cancel_id is not None:
                    raise Cancelled("cancelled (the engine had already finished)")
                return Reply(header, arrays, op)
            if kind == "error":
                raise error_from_reply(p, rid)
            if kind == "progress":
                if on_progress is not None and cancel_id is None:
                    keep = on_progress(p.get("stage"), p.get("step"), p.get("total"), p.get("loss"))
                    if keep is False:
                        cancel_id = self._send_cancel(rid)
            elif kind == "queued" and on_queued is not None:
                on_queued(p.get("position"))
            # heartbeat: nothing to do but note that the engine is alive

    def _send_cancel(self, rid: str) -> str:
        cid = uuid.uuid4().hex
        frames = encode_message({"v": PROTOCOL_VERSION, "id": cid, "op": "cancel",
                                 "params": {"id": rid}})
        self._transport.send(frames, self.timeout)
        return cid

    def _try_cancel(self, rid: str) -> None:
        try:
            self._send_cancel(rid)
        except Exception:  # noqa: BLE001, S110 - best effort: the original exception matters
            pass


# ---------------------------------------------------------------------------
# Engine lifecycle
# ---------------------------------------------------------------------------
def default_log_path() -> str:
    import tempfile
    return os.path.join(tempfile.gettempdir(), "neural-collage-engine.log")


def tail(path: str | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _quote_log(path: str | None) -> str:
    text = tail(path)
    if not text:
        return f" (engine log {path} is empty)" if path else ""
    return "\nLast lines of the engine log {}:\n{}".format(path, "\n".join("    " + ln for ln in
                                                                     text.splitlines()))


def start_engine(command: Sequence[str], log_path: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` detached from GIMP, stdout and stderr appended to ``log_path``."""
    log_path = log_path or default_log_path()
    directory = os.path.dirname(os.path.abspath(log_path))
    os.makedirs(directory, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
                                   | getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000))
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log:
        log.write(("\n--- {} starting engine: {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"),
                                                     " ".join(command))).encode("utf-8"))
        log.flush()
        return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, close_fds=True, **kwargs)


def ensure_engine(address: str = DEFAULT_ADDRESS, command: Sequence[str] | None = None,
                  log_path: str | None = None, start_timeout: float = 120.0,
                  probe_timeout: float = 2.0, **client_kwargs: Any) -> EngineClient:
    """Return a client for a running engine, starting one with ``command`` if needed.

    An engine that answers ``hello`` is reused.  Otherwise, if ``command`` is
    given (e.g. ``["neural-collage", "serve"]``), it is started detached with
    its output in ``log_path`` and polled until it answers and has loaded its
    model; after ``start_timeout`` seconds (or if it exits) EngineUnavailable is
    raised quoting the last lines of the log.
    """
    client = EngineClient(address, **client_kwargs)
    try:
        info = client.hello(timeout=probe_timeout)
        if info.get("state", "ready") == "ready":
            return client
        started = None  # an engine is starting (loading its model): wait for it
    except (EngineUnavailable, EngineTimeout) as exc:
        if not command:
            raise EngineUnavailable(str(exc)) from None
        log_path = log_path or default_log_path()
        try:
            started = start_engine(command, log_path)
        except OSError as start_exc:
            raise EngineUnavailable("nothing answers at %s and the engine could not be started with %r: "
                                    "%s" % (address, " ".join(command), start_exc)) from None
    deadline = time.monotonic() + start_timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            info = client.hello(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if info.get("state", "ready") == "ready":
                return client
            last_error = "engine is {}".format(info.get("state"))
        except (EngineUnavailable, EngineTimeout) as exc:
            last_error = str(exc)
        if started is not None and started.poll() is not None:
            # it exited: maybe another engine won the race for the address
            try:
                info = client.hello(timeout=probe_timeout)
                if info.get("state", "ready") == "ready":
                    return client
            except BridgeError:
                pass
            client.close()
            raise EngineUnavailable("the engine (%s) exited with code %s before answering at %s%s"
                                    % (" ".join(command or ()), started.returncode, address,
                                       _quote_log(log_path)))
        time.sleep(0.2)
    client.close()
    raise EngineUnavailable("the engine did not become ready at %s within %.0f s (%s)%s"
                            % (address, start_timeout, last_error, _quote_log(log_path)))
