"""ZeroMQ server of the Neural Collage engine (protocol v1, see bridge/PROTOCOL.md).

One ROUTER socket owned by the main loop thread; image jobs run one at a time
on a worker thread (the device is single-use) which talks back to the main
loop through an inproc PAIR socket, so only the owning thread touches each
socket.

Handler contract (``engine.serve.handler.Engine`` implements it)::

    handler.hello() -> dict                     # engine_version, device, models, default_model...
    handler.classes(params) -> dict             # {"classes": [{"id", "name"}...], ...}
    handler.run(op, params, arrays, job) -> (params: dict, arrays: dict[str, np.ndarray])

``hello`` and ``classes`` are called on the main loop thread, possibly while a
job runs: they must be cheap and thread-safe.  ``run`` is called on the worker
thread with read-only numpy arrays (copy before modifying) and must call
``job.progress(stage, step, total, loss)`` at every step: it raises
:class:`JobCancelled` once a cancel was requested.  Bad input -> raise
``OpError(code, message)``.
"""

# ruff: noqa: UP031  (printf-style formatting is used on purpose: it reads well with %d/%r)
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable

import numpy as np
import zmq

from bridge.protocol import (
    DEFAULT_ADDRESS,
    DEFAULT_LIMITS,
    E_BAD_REQUEST,
    E_BUSY,
    E_CANCELLED,
    E_ENGINE_ERROR,
    E_LOADING,
    E_TOO_LARGE,
    HEARTBEAT_INTERVAL,
    IMAGE_OPS,
    OPS,
    PROTOCOL_VERSION,
    Array,
    Limits,
    MiB,
    ProtocolError,
    decode_header,
    decode_message,
    encode_message,
    validate_request,
)
from engine.arrays import WIRE_DTYPES
from engine.serve.security import (
    KEYS_HINT,
    ClientKeys,
    ServerConfigError,
    is_loopback_address,
    load_client_keys,
    load_secret_key,
    split_address,
)

log = logging.getLogger("neural_collage.server")

SERVER_VERSION = "1.0"
DEFAULT_MAX_QUEUE = 16

_server_ids = itertools.count(1)


class OpError(Exception):
    """Raised by a handler for input it cannot use; becomes an ``error`` reply."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class JobCancelled(Exception):
    """Raised by :meth:`Job.progress` once the job's cancel was requested."""


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------
class Job:
    """One image request; handed to ``handler.run`` as ``job``."""

    PROGRESS_MIN_INTERVAL = 0.05  # seconds between progress messages (first/last/stage changes always sent)

    def __init__(self, identity: bytes, request_id: str, op: str, params: dict[str, Any],
                 arrays: dict[str, Array], send: Callable[[Job, str, dict[str, Any]], None] | None):
        self.identity = identity
        self.id = request_id
        self.op = op
        self.params = params
        self.arrays = arrays
        self._send = send
        self.cancel_event = threading.Event()
        self.created = time.monotonic()
        self.started: float | None = None
        self.stage: str | None = None
        self.step = 0
        self.total = 0
        self.loss: float | None = None
        self.cancel_step: int | None = None  # step reached when the cancel was requested
        self._last_sent = 0.0

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.identity, self.id)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        if not self.cancel_event.is_set():
            self.cancel_step = self.step
            self.cancel_event.set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled("cancelled at step %d of %d" % (self.step, self.total))

    def progress(self, stage: str, step: int, total: int, loss: float | None = None) -> None:
        """Report progress; raises JobCancelled if a cancel was requested."""
        self.check_cancelled()
        changed = stage != self.stage
        self.stage, self.step, self.total = str(stage), int(step), int(total)
        self.loss = None if loss is None else float(loss)
        now = time.monotonic()
        if (changed or step <= 0 or step >= total
                or now - self._last_sent >= self.PROGRESS_MIN_INTERVAL) and self._send is not None:
            self._last_sent = now
            self._send(self, "progress", {"stage": self.stage, "step": self.step,
                                          "total": self.total, "loss": self.loss})

    def describe(self, identity: bytes | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"op": self.op}
        if identity == self.identity:
            info["id"] = self.id
        if self.started is not None:
            info.update(stage=self.stage, step=self.step, total=self.total, loss=self.loss,
                        elapsed=round(time.monotonic() - self.started, 3))
        return info


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------
class EngineServer:
    """Serve ``handler`` on ``bind``.

    ``handler`` may be None when ``handler_factory`` is given: the factory then
    runs on the worker thread (model loading) while the main loop already
    answers ``hello`` with ``state: "loading"`` and queues image jobs.
    """

    def __init__(self, handler: Any = None, bind: str = DEFAULT_ADDRESS, log_file: str | None = None,
                 limits: Limits = DEFAULT_LIMITS, curve_secret_key_file: str | None = None,
                 curve_clients: str | None = None, handler_factory: Callable[[], Any] | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, heartbeat_interval: float = HEARTBEAT_INTERVAL):
        if handler is None and handler_factory is None:
            raise ValueError("EngineServer needs a handler or a handler_factory")
        self.handler = handler
        self.handler_factory = handler_factory
        self.bind_address = bind
        self.limits = limits
        self.curve_secret_key_file = curve_secret_key_file
        self.curve_clients = curve_clients
        self._auth: Any = None
        self.max_queue = max_queue
        self.heartbeat_interval = heartbeat_interval
        self.address: str | None = None   # actual endpoint once bound
        self.state = "loading" if handler is None else "ready"
        self.exit_code = 0
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._inbox: zmq.Socket | None = None
        self._outbox: zmq.Socket | None = None
        self._outbox_lock = threading.Lock()
        self._work: queue.Queue[Job | None] = queue.Queue()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._worker_busy = handler is None  # loading counts as busy
        self._worker: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._log_handler: logging.Handler | None = None
        self.stats = {"received": 0, "errors": 0, "jobs": 0}
        if log_file:
            self._log_handler = logging.FileHandler(log_file, encoding="utf-8")
            self._log_handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            log.addHandler(self._log_handler)
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)

    # -- lifecycle --------------------------------------------------------
    def bind(self) -> str:
        """Create the sockets and bind.  Raises ServerConfigError with a clear reason."""
        if self._router is not None:
            return self.address or self.bind_address
        address = self.bind_address
        split_address(address)
        keys = None
        clients: frozenset[bytes] | None = None
        if self.curve_secret_key_file:
            if not zmq.has("curve"):
                raise ServerConfigError("this pyzmq/libzmq build has no CURVE support")
            keys = load_secret_key(self.curve_secret_key_file)
            if self.curve_clients:
                clients = load_client_keys(self.curve_clients)
            else:
                log.warning("CURVE without --curve-clients: any client that has the engine's public key may "
                            "connect; list the clients' public keys in a folder and pass it with "
                            "--curve-clients to admit only them")
        elif self.curve_clients:
            raise ServerConfigError("--curve-clients needs --curve-secret-key (client keys are checked only on "
                                    "encrypted connections)")
        elif not is_loopback_address(address):
            raise ServerConfigError(
                f"refusing to listen on {address} without encryption: that address is reachable from other "
                "machines, and anyone who can connect could use the engine and read your images. "
                f"To serve over the network, {KEYS_HINT}.")
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # learn when a client is gone
        router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)  # per frame, enforced by libzmq
        router.setsockopt(zmq.RCVHWM, 0)
        router.setsockopt(zmq.SNDHWM, 10000)
        if keys is not None:
            if clients is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("neural_collage.engine.auth"))
                self._auth.start()
                self._auth.configure_curve_callback(domain="*", credentials_provider=ClientKeys(clients))
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = keys
        try:
            router.bind(address)
        except zmq.ZMQError as exc:
            router.close(linger=0)
            self._stop_auth()
            ctx.term()
            if exc.errno == zmq.EADDRINUSE:
                raise ServerConfigError(
                    f"address in use: another engine is already running at {address} (or another program "
                    "uses that port). Stop it, or choose another address with --bind."
                ) from None
            raise ServerConfigError(f"cannot listen on {address}: {exc}") from None
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT) or address
        inbox = ctx.socket(zmq.PAIR)
        inproc = "inproc://neural-collage-server-%d-%d" % (os.getpid(), next(_server_ids))
        inbox.bind(inproc)
        outbox = ctx.socket(zmq.PAIR)
        outbox.connect(inproc)
        self._ctx, self._router, self._inbox, self._outbox = ctx, router, inbox, outbox
        log.info("engine listening on %s%s (protocol v%d)", self.address,
                 (" with CURVE encryption" + (f", admitting the client keys in {self.curve_clients}"
                                               if self.curve_clients else "")) if keys else "", PROTOCOL_VERSION)
        return self.address

    def start(self) -> str:
        """Bind and run the main loop on a background thread (for tests/embedding)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                self.bind()
            except BaseException as exc:  # noqa: BLE001 - re-raised by start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self.serve_forever()

        self._loop_thread = threading.Thread(target=target, name="nc-engine-loop", daemon=True)
        self._loop_thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        assert self.address is not None
        return self.address

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the main loop to stop; waits for it when it runs on another thread."""
        self._stop.set()
        if self._loop_thread is not None and self._loop_thread is not threading.current_thread():
            self._stopped.wait(timeout)

    def serve_forever(self) -> int:
        """Run the main loop until :meth:`stop`.  Returns the exit code."""
        self.bind()
        self._worker = threading.Thread(target=self._worker_main, name="nc-engine-worker", daemon=True)
        self._worker.start()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._inbox, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_interval
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(next_beat - time.monotonic(), 0.2))
                events = dict(poller.poll(int(wait * 1000) + 1))
                if self._inbox in events:
                    self._drain_inbox()
                if self._router in events:
                    for _ in range(64):  # fairness with the inbox
                        if not self._handle_incoming():
                            break
                now = time.monotonic()
                if now >= next_beat:
                    self._send_heartbeats()
                    next_beat = now + self.heartbeat_interval
        finally:
            self._shutdown()
        return self.exit_code

    def _shutdown(self) -> None:
        if self._running is not None:
            self._running.cancel()
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(5.0)
        for sock in (self._router, self._inbox):
            if sock is not None:
                sock.close(linger=0)
        self._stop_auth()
        if self._worker is None or not self._worker.is_alive():
            if self._outbox is not None:
                self._outbox.close(linger=0)
            if self._ctx is not None:
                self._ctx.term()
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
        log.info("engine stopped")
        self._stopped.set()

    # -- incoming ---------------------------------------------------------
    def _recv_request(self) -> tuple[bytes, list[Any], str | None] | None:
        """One message from the ROUTER: (identity, frames, problem) or None when nothing waits."""
        router = self._router
        try:
            identity = router.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        frames: list[Any] = []
        total = 0
        problem = None
        more = router.getsockopt(zmq.RCVMORE)
        while more:
            frame = router.recv(copy=False)
            more = frame.more
            total += len(frame)
            if problem is not None:
                continue
            if len(frames) >= self.limits.max_arrays + 1:
                problem = "too many frames (at most %d arrays)" % self.limits.max_arrays
                frames = frames[:1]  # keep the header: it may carry the request id
            elif total > self.limits.max_message_bytes:
                problem = "message larger than %d bytes" % self.limits.max_message_bytes
                frames = frames[:1]
            else:
                frames.append(frame)
        return identity, frames, problem

    def _handle_incoming(self) -> bool:
        got = self._recv_request()
        if got is None:
            return False
        identity, frames, problem = got
        self.stats["received"] += 1
        rid = None
        try:
            if problem is not None:
                rid = self._peek_id(frames)
                raise ProtocolError(E_TOO_LARGE, problem, rid)
            if not frames:
                raise ProtocolError(E_BAD_REQUEST, "empty message (expected a JSON header frame)")
            header, arrays = decode_message(frames, self.limits)
            rid = header["id"]
            op = header.get("op")
            if not isinstance(op, str):
                raise ProtocolError(E_BAD_REQUEST, "requests need an 'op' string", rid)
            validate_request(op, header["params"], arrays)
            self._dispatch(identity, rid, op, header["params"], arrays)
        except ProtocolError as exc:
            rid = exc.request_id if exc.request_id is not None else rid
            self.stats["errors"] += 1
            log.info("rejected request %r from %s: %s", rid, identity.hex(), exc)
            self._reply_error(identity, rid, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - never let the loop die
            self.stats["errors"] += 1
            log.error("internal error on request %r: %s\n%s", rid, exc, traceback.format_exc())
            self._reply_error(identity, rid, E_ENGINE_ERROR, f"{type(exc).__name__}: {exc}")
        return True

    @staticmethod
    def _peek_id(frames: list[Any]) -> str | None:
        """The request id of a message rejected before full decoding, if it can be read."""
        try:
            return decode_header(frames[0]).get("id")
        except ProtocolError as exc:
            return exc.request_id
        except (IndexError, TypeError):
            return None

    def _dispatch(self, identity: bytes, rid: str, op: str, params: dict[str, Any],
                  arrays: dict[str, Array]) -> None:
        if op == "hello":
            self._reply(identity, rid, "result", self._hello())
        elif op == "status":
            self._reply(identity, rid, "result", self._status(identity))
        elif op == "cancel":
            self._reply(identity, rid, "result", self._cancel(identity, params["id"]))
        elif op == "classes":
            if self.handler is None:
                raise ProtocolError(E_LOADING, "the engine is still loading its model; try again "
                                    "in a moment", rid)
            result = self._call_handler(rid, self.handler.classes, dict(params))
            if result is not None:
                self._reply(identity, rid, "result", result)
        elif op in IMAGE_OPS:
            self._submit(Job(identity, rid, op, params, arrays, self._job_send))
        else:  # pragma: no cover - validate_request rejects unknown ops
            raise ProtocolError(E_BAD_REQUEST, f"unhandled op {op!r}", rid)

    def _call_handler(self, rid: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            result = fn(*args)
        except OpError as exc:
            raise ProtocolError(exc.code, exc.message, rid) from None
        if not isinstance(result, dict):
            raise TypeError(f"handler returned {type(result).__name__} instead of a dict")
        return result

    def _hello(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.handler is not None:
            try:
                info.update(self.handler.hello())
            except Exception as exc:  # noqa: BLE001 - hello must answer even if the handler is broken
                log.error("handler.hello() failed: %s", exc)
                info["hello_error"] = str(exc)
        info.update({
            "protocol_version": PROTOCOL_VERSION,
            "server_version": SERVER_VERSION,
            "state": self.state,
            "pid": os.getpid(),
            "ops": list(OPS),
            "limits": self.limits.as_dict(),
            "heartbeat_interval": self.heartbeat_interval,
        })
        return info

    def _status(self, identity: bytes) -> dict[str, Any]:
        return {
            "state": self.state,
            "running": self._running.describe(identity) if self._running is not None else None,
            "queue_length": len(self._waiting),
            "queue": [job.describe(identity) for job in self._waiting],
        }

    def _cancel(self, identity: bytes, target: str) -> dict[str, Any]:
        job = self._running
        if job is not None and job.key == (identity, target):
            job.cancel()
            log.info("cancel requested for running job %s (%s)", target, job.op)
            return {"id": target, "cancelled": True, "state": "running"}
        for job in list(self._waiting):
            if job.key == (identity, target):
                self._waiting.remove(job)
                self._reply_error(job.identity, job.id, E_CANCELLED, "cancelled while queued")
                self._send_positions()
                return {"id": target, "cancelled": True, "state": "queued"}
        return {"id": target, "cancelled": False, "state": "unknown"}

    # -- scheduling -------------------------------------------------------
    def _submit(self, job: Job) -> None:
        pending = ([self._running] if self._running else []) + list(self._waiting)
        if any(p.key == job.key for p in pending):
            raise ProtocolError(E_BAD_REQUEST, f"request id {job.id!r} is already in use", job.id)
        if len(self._waiting) >= self.max_queue:
            raise ProtocolError(E_BUSY, "the engine is busy: %d requests are waiting" % len(self._waiting),
                                job.id)
        self._waiting.append(job)
        self.stats["jobs"] += 1
        if not self._start_next():
            self._reply(job.identity, job.id, "queued", {"position": len(self._waiting)})

    def _start_next(self) -> bool:
        """Hand the next waiting job to the worker if it is idle; True if a job started."""
        if self._worker_busy or not self._waiting:
            return False
        job = self._waiting.popleft()
        self._running = job
        self._worker_busy = True
        job.started = time.monotonic()
        self._reply(job.identity, job.id, "heartbeat", {})  # acknowledgement: it runs now
        self._work.put(job)
        self._send_positions()
        return True

    def _send_positions(self) -> None:
        for position, job in enumerate(self._waiting, 1):
            self._reply(job.identity, job.id, "queued", {"position": position})

    def _send_heartbeats(self) -> None:
        jobs = ([self._running] if self._running else []) + list(self._waiting)
        for job in jobs:
            self._reply(job.identity, job.id, "heartbeat", {})

    def _client_gone(self, identity: bytes) -> None:
        if self._running is not None and self._running.identity == identity:
            log.info("client of running job %s went away: cancelling it", self._running.id)
            self._running.cancel()
        gone = [job for job in self._waiting if job.identity == identity]
        for job in gone:
            self._waiting.remove(job)
        if gone:
            log.info("dropped %d queued job(s) of a client that went away", len(gone))
            self._send_positions()

    # -- outgoing ---------------------------------------------------------
    def _reply(self, identity: bytes, rid: str | None, kind: str, params: dict[str, Any],
               arrays: dict[str, Any] | None = None) -> None:
        frames = encode_message({"v": PROTOCOL_VERSION, "id": rid, "type": kind, "params": params},
                                arrays, _REPLY_LIMITS)
        self._send(identity, frames)

    def _reply_error(self, identity: bytes, rid: str | None, code: str, message: str) -> None:
        self._reply(identity, rid, "error", {"code": code, "message": message})

    def _send(self, identity: bytes, frames: list[Any]) -> None:
        try:
            self._router.send_multipart([identity] + list(frames), flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._client_gone(identity)
            elif exc.errno == zmq.EAGAIN:
                log.warning("client %s is not reading its replies: message dropped", identity.hex())
            else:
                log.error("send failed: %s", exc)

    def _drain_inbox(self) -> None:
        while True:
            try:
                msg = self._inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            kind = msg[0].bytes
            if kind == b"send":
                self._send(msg[1].bytes, msg[2:])
            elif kind == b"final":
                self._send(msg[1].bytes, msg[2:])
                self._running = None
                self._worker_busy = False
                self._start_next()
            elif kind == b"ready":
                self.state = "ready"
                self._worker_busy = False
                log.info("engine ready")
                self._start_next()
            elif kind == b"failed":
                self.state = "failed"
                self.exit_code = 1
                log.error("engine failed to start: %s", msg[1].bytes.decode("utf-8", "replace"))
                for job in list(self._waiting):
                    self._reply_error(job.identity, job.id, E_ENGINE_ERROR, "the engine failed to start")
                self._waiting.clear()
                self._stop.set()

    # -- worker thread ----------------------------------------------------
    def _outbox_send(self, frames: list[Any]) -> None:
        with self._outbox_lock:
            self._outbox.send_multipart(frames, copy=False)

    def _job_send(self, job: Job, kind: str, params: dict[str, Any],
                  arrays: dict[str, Any] | None = None) -> None:
        frames = encode_message({"v": PROTOCOL_VERSION, "id": job.id, "type": kind, "params": params},
                                arrays, _REPLY_LIMITS)
        self._outbox_send([b"send", job.identity] + frames)

    def _worker_main(self) -> None:
        if self.handler is None:
            try:
                self.handler = self.handler_factory()
            except BaseException as exc:  # noqa: BLE001 - reported, then the server stops
                log.error("loading the engine failed:\n%s", traceback.format_exc())
                self._outbox_send([b"failed", (f"{type(exc).__name__}: {exc}").encode()])
                return
            self._outbox_send([b"ready"])
        while True:
            job = self._work.get()
            if job is None:
                break
            frames = self._run_job(job)
            job.arrays = {}
            # the final reply and "job done" travel together: no heartbeat can follow a result
            self._outbox_send([b"final", job.identity] + frames)

    def _run_job(self, job: Job) -> list[Any]:
        """Run one job; returns the frames of its final reply."""
        t0 = time.monotonic()

        def error(code: str, message: str) -> list[Any]:
            return encode_message({"v": PROTOCOL_VERSION, "id": job.id, "type": "error",
                                   "params": {"code": code, "message": message}})

        try:
            arrays = {name: to_numpy(arr) for name, arr in job.arrays.items()}
            out = self.handler.run(job.op, job.params, arrays, job)
            if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)
                    and isinstance(out[1], dict)):
                raise TypeError("handler.run must return (params: dict, arrays: dict)")
            params, out_arrays = out
            try:
                frames = encode_message({"v": PROTOCOL_VERSION, "id": job.id, "type": "result",
                                         "params": params}, out_arrays, _REPLY_LIMITS)
            except ProtocolError as exc:
                raise RuntimeError(f"the engine produced an invalid reply: {exc.message}") from None
            log.info("%s %s done in %.2f s", job.op, job.id, time.monotonic() - t0)
            return frames
        except JobCancelled:
            log.info("%s %s cancelled at step %d/%d", job.op, job.id, job.step, job.total)
            return error(E_CANCELLED, "cancelled at step %d of %d" % (job.step, job.total))
        except OpError as exc:
            log.info("%s %s rejected: %s", job.op, job.id, exc)
            return error(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - any engine failure becomes an error reply
            log.error("%s %s failed:\n%s", job.op, job.id, traceback.format_exc())
            return error(E_ENGINE_ERROR, f"{type(exc).__name__}: {exc}")


_REPLY_LIMITS = Limits(max_header_bytes=16 * MiB, max_message_bytes=1 << 34, max_elements=1 << 32,
                       max_arrays=256)


def to_numpy(arr: Array) -> np.ndarray:
    """Zero-copy, read-only numpy view of a received Array."""
    return np.frombuffer(arr.data, dtype=np.dtype(WIRE_DTYPES[arr.dtype])).reshape(arr.shape)
