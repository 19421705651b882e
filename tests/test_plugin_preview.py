"""The dialog's live preview without GIMP (gimp_plugin/neural_collage/nc_preview.py): a stand-in GLib runs its
timers and idle calls by hand. Debounced (one request for a burst of changes), preview_size set, one request in
flight with the latest settings sent after it, stale answers dropped, failures shown as text."""
from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gimp_plugin" / "neural_collage"))

from bridge.protocol import Array  # noqa: E402
from bridge.requests import DEFAULT_PREVIEW_SIZE, EditRequest, SwapParams  # noqa: E402


class FakeGLib:
    def __init__(self):
        self.timers, self.idle, self.next_id = {}, [], 1
        self.lock = threading.Lock()

    def timeout_add(self, ms, fn, *args):
        self.next_id += 1
        self.timers[self.next_id] = (ms, fn, args)
        return self.next_id

    def source_remove(self, sid):
        self.timers.pop(sid)

    def idle_add(self, fn, *args):
        with self.lock:
            self.idle.append((fn, args))

    def fire_timers(self):
        timers, self.timers = self.timers, {}
        for _ms, fn, args in timers.values():
            fn(*args)

    def run_idle(self, expect, timeout=5.0):
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.idle) >= expect:
                    calls, self.idle = self.idle, []
                    break
            assert time.monotonic() < deadline, "no answer came back"
            time.sleep(0.01)
        for fn, args in calls:
            fn(*args)


@pytest.fixture
def preview(monkeypatch):
    glib = FakeGLib()
    repo = types.ModuleType("gi.repository")
    repo.GLib = glib
    gi = types.ModuleType("gi")
    gi.repository = repo
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repo)
    monkeypatch.delitem(sys.modules, "nc_preview", raising=False)
    import nc_preview

    return nc_preview, glib


class Engine:
    def __init__(self, fail=None):
        self.sent, self.fail, self.gate = [], fail, threading.Event()
        self.gate.set()

    def send(self, request, timeout=None):
        self.gate.wait(5)
        self.sent.append(request)
        if self.fail:
            raise self.fail
        h, w = 10, 12
        return types.SimpleNamespace(params={}, arrays={"image": Array("uint8", (h, w, 3), bytes(h * w * 3))})


def make_request(config):
    return EditRequest(image=Array("uint8", (40, 40, 3), bytes(4800)), mask=Array("uint8", (40, 40), bytes(1600)),
                       swap=SwapParams(config["target"], config["strength"], "all"), cache_key="k")


def test_a_burst_of_changes_is_one_request_at_preview_size(preview):
    nc_preview, glib = preview
    engine, drawn = Engine(), []
    live = nc_preview.LivePreview(engine, make_request)
    config = {"target": 1, "strength": 1.0}
    for s in (0.2, 0.4, 0.6):
        config["strength"] = s
        live.schedule(config, lambda *a: drawn.append(a))
    assert len(glib.timers) == 1 and next(iter(glib.timers.values()))[0] == nc_preview.DELAY_MS == 250
    glib.fire_timers()
    glib.run_idle(1)
    assert len(engine.sent) == 1 and engine.sent[0].preview_size == DEFAULT_PREVIEW_SIZE
    assert engine.sent[0].swap.strength == 0.6
    assert len(drawn) == 1 and drawn[0][0].shape == (10, 12, 3) and live.drawn == 1


def test_changes_while_a_request_runs_go_after_it_and_stale_answers_are_dropped(preview):
    nc_preview, glib = preview
    engine, drawn = Engine(), []
    engine.gate.clear()  # the first request hangs in the engine
    live = nc_preview.LivePreview(engine, make_request)
    config = {"target": 1, "strength": 1.0}
    live.schedule(config, lambda *a: drawn.append(a))
    glib.fire_timers()  # request 1 in flight
    config["target"] = 2
    live.schedule(config, lambda *a: drawn.append(a))
    glib.fire_timers()  # busy: kept as pending, nothing sent yet
    engine.gate.set()
    glib.run_idle(1)  # answer 1 is stale (settings changed): dropped, the pending request is sent
    assert live.dropped == 1 and drawn == []
    glib.run_idle(1)
    assert [r.swap.target for r in engine.sent] == [1, 2]
    assert len(drawn) == 1 and live.drawn == 1


def test_engine_errors_and_bad_settings_are_shown_as_text(preview):
    nc_preview, glib = preview
    from nc_engine import UserError

    drawn = []
    live = nc_preview.LivePreview(Engine(fail=UserError("Neural Collage engine: unknown class")), make_request)
    live.schedule({"target": "zebra", "strength": 1.0}, lambda *a: drawn.append(a))
    glib.fire_timers()
    glib.run_idle(1)
    assert drawn[0][0] is None and "unknown class" in drawn[0][1] and live.failed == 1

    def bad(config):
        raise UserError("Neural Collage: layer strengths must be ...")

    live = nc_preview.LivePreview(Engine(), bad)
    live.schedule({}, lambda *a: drawn.append(a))
    glib.fire_timers()
    assert drawn[-1][0] is None and "layer strengths" in drawn[-1][1] and live.engine.sent == []
