"""The worker watchdog: a job that stops making progress (a hang in a native library, an endless loop) becomes an
error reply and a restarted worker, never a silent hang; a job that raises anything at all (even a BaseException or
an unencodable message) still gets its one final reply.  In process, with handlers that misbehave on purpose, so
the time to detect and recover is measured exactly."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bridge.client import EngineClient, EngineError

from engine.serve.server import EngineServer, OpError

STALL_TIMEOUT = 1.0
IMG = np.zeros((4, 4, 3), np.uint8)
RESULTS: dict[str, float] = {}


class Misbehaving:
    """``stall``: blocks without progress until released; ``raise``: raises what ``what`` names; else: a result."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def hello(self):
        return {"engine_version": "test"}

    def classes(self, params):
        return {"classes": []}

    def run(self, op, params, arrays, job):
        self.calls += 1
        what = params.get("what")
        if what == "stall":
            job.progress("start", 0, 1, None)
            self.release.wait(30)  # a hang: no progress, no cancel check
            return {}, {"recon": arrays["image"]}
        if what == "keyboard":
            raise KeyboardInterrupt
        if what == "system_exit":
            raise SystemExit(3)
        if what == "surrogate":
            raise OpError("bad_input", "model 'x\ud800' unknown")
        if what == "bad_code":
            raise OpError("x\udcff", "y")
        if what == "unencodable_result":
            return {"name": "\ud800"}, {"recon": arrays["image"]}
        return {"ok": True}, {"recon": arrays["image"]}


def reset(self):
    """Servers call handler.reset() when they restart a stalled worker (a fresh lock, a fresh cache)."""


Misbehaving.reset = reset


@pytest.fixture
def served():
    handler = Misbehaving()
    srv = EngineServer(handler, bind="tcp://127.0.0.1:*", heartbeat_interval=0.1, stall_timeout=STALL_TIMEOUT)
    srv.start()
    try:
        yield srv, handler
    finally:
        handler.release.set()
        srv.stop()


@pytest.mark.parametrize("what", ["keyboard", "system_exit", "surrogate", "bad_code", "unencodable_result"])
def test_any_exception_from_a_job_still_gets_its_final_reply(served, what):
    srv, handler = served
    with EngineClient(srv.address, timeout=10, heartbeat_timeout=5) as c:
        try:
            c.call("project", {"what": what}, {"image": IMG})
        except EngineError as exc:
            assert exc.code in ("engine_error", "bad_input"), exc
            assert exc.message
        assert c.call("project", {}, {"image": IMG}).params == {"ok": True}  # the worker lives
        assert c.hello()["state"] == "ready"


def test_a_stalled_worker_becomes_an_error_and_a_restarted_worker(served):
    srv, handler = served
    with EngineClient(srv.address, timeout=30, heartbeat_timeout=5) as c:
        t0 = time.monotonic()
        with pytest.raises(EngineError) as info:
            c.call("project", {"what": "stall"}, {"image": IMG})
        detected = time.monotonic() - t0
        assert info.value.code == "engine_error" and "stalled" in info.value.message
        status = c.status()
        assert status["worker"]["restarts"] == 1
        t1 = time.monotonic()
        assert c.call("project", {}, {"image": IMG}).params == {"ok": True}
        recovered = time.monotonic() - t1
        hello = c.hello()
        assert hello["state"] == "ready" and hello["worker"]["restarts"] == 1 and hello["worker"]["alive"]
    handler.release.set()  # the old worker returns at last: its late result goes nowhere
    time.sleep(0.3)
    with EngineClient(srv.address, timeout=10) as c:
        assert c.call("project", {}, {"image": IMG}).params == {"ok": True}
    RESULTS.update(detect_s=round(detected, 2), recover_s=round(recovered, 3), stall_timeout=STALL_TIMEOUT)
    assert STALL_TIMEOUT <= detected < STALL_TIMEOUT + 2.0, detected
    print("watchdog: stall timeout %.1f s, detected after %.2f s, next job answered %.3f s later"
          % (STALL_TIMEOUT, detected, recovered))


def test_status_reports_the_worker_while_it_stalls(served):
    srv, handler = served
    with EngineClient(srv.address, timeout=30, heartbeat_timeout=5) as c, \
            EngineClient(srv.address, timeout=30) as watcher:
        done = threading.Event()
        errors = []

        def stall():
            try:
                c.call("project", {"what": "stall"}, {"image": IMG})
            except EngineError as exc:
                errors.append(exc.code)
            done.set()

        threading.Thread(target=stall, daemon=True).start()
        time.sleep(0.5)
        busy = watcher.status()
        assert busy["state"] == "ready" and busy["worker"]["alive"] and busy["worker"]["busy"]
        assert busy["worker"]["since_progress"] >= 0.3
        assert done.wait(10) and errors == ["engine_error"]
        assert watcher.hello()["state"] == "ready"
