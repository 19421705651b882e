"""The plug-in's engine access (gimp_plugin/neural_collage/nc_engine.py) without GIMP: the error policy is keyed on
error codes, auto-start retries only when nothing answered, Cancel is not an error; and the pixel helpers the GIMP
adapter uses (nc_pixels)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gimp_plugin" / "neural_collage"))
import nc_engine
import nc_pixels as px
import nc_settings

from bridge import errors as E
from bridge.requests import ClassesRequest


class FakeClient:
    """Stands in for bridge.client.EngineClient: raises the next scripted error, else answers."""

    script: list = []
    sent: list = []

    def __init__(self, address, timeout, **kw):
        self.timeout = timeout

    def call(self, op, params, arrays, on_progress=None):
        FakeClient.sent.append((op, params))
        if FakeClient.script:
            raise FakeClient.script.pop(0)
        return type("Reply", (), {"params": {"classes": [{"id": 0, "name": "grass"}], "engine_version": "x"},
                                  "arrays": {}})()

    def close(self):
        pass


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setattr(nc_engine.bclient, "EngineClient", FakeClient)
    FakeClient.script, FakeClient.sent = [], []
    return nc_engine.Engine(nc_settings.defaults())


@pytest.mark.parametrize("exc,words", [
    (E.EngineUnavailable("nothing answers"), "does not answer at tcp://127.0.0.1:5581"),
    (E.EngineUnavailable("lost the connection to the engine", E.L_CONNECTION_LOST), "lost the connection"),
    (E.EngineUnavailable("the engine refused this client's CURVE key", E.L_KEY_REFUSED), "refused this client"),
    (E.EngineUnavailable("the encrypted handshake failed", E.L_HANDSHAKE), "handshake failed"),
    (E.EngineTimeout("did not answer", E.L_TIMEOUT), "waits 30 s"),
    (E.EngineTimeout("went silent", E.L_SILENT), "went silent"),
    (E.EngineError(E.E_BAD_INPUT, "unknown class 'x'"), "Neural Collage engine: unknown class 'x'"),
    (E.EngineError(E.E_BUSY, "the engine is busy"), "Neural Collage engine: the engine is busy"),
    (E.BridgeError("CURVE key: no such file"), "Neural Collage engine: CURVE key: no such file"),
])
def test_error_policy_by_code(engine, exc, words):
    FakeClient.script = [exc]
    with pytest.raises(nc_engine.UserError) as info:
        engine.call("hello")
    assert words in str(info.value)


def test_policy_reads_codes_not_text(engine):
    """A message that merely mentions a connection loss is still 'nothing answers' when its code says so."""
    FakeClient.script = [E.EngineUnavailable("lost the connection, CURVE handshake")]
    with pytest.raises(nc_engine.UserError, match="does not answer"):
        engine.call("hello")


def test_cancel_is_not_an_error(engine):
    FakeClient.script = [E.Cancelled("cancelled at step 3 of 9")]
    with pytest.raises(nc_engine.CancelledByUser):
        engine.call("edit")


def test_auto_start_retries_only_when_nothing_answered(engine, monkeypatch):
    engine.settings = dict(engine.settings, auto_start=True, engine_command=["neural-collage", "serve"])
    started = []
    monkeypatch.setattr(nc_engine.bclient, "ensure_engine", lambda *a, **k: started.append(a) or FakeClient(None, 1))
    FakeClient.script = [E.EngineUnavailable("nothing answers")]
    assert engine.classes().names() == ["grass"] and len(started) == 1
    engine._started = False
    FakeClient.script = [E.EngineUnavailable("refused", E.L_KEY_REFUSED)]
    with pytest.raises(nc_engine.UserError, match="refused"):
        engine.call("hello")
    assert len(started) == 1  # starting another engine cannot fix a refused key


def test_send_uses_the_typed_request(engine):
    engine.send(ClassesRequest(model="default", search="gr"))
    assert FakeClient.sent[-1] == ("classes", {"model": "default", "search": "gr"})
    assert engine.hello().engine_version == "x"


def test_pixel_helpers():
    assert px.itemsize("uint16") == 2 and px.itemsize("float32") == 4
    with pytest.raises(ValueError):
        px.itemsize("int64")
    assert px.alpha_of(bytes([1, 2, 3, 4])) == bytes([2, 4])
    w, h, bpp = 3, 2, 2
    data = bytes(range(w * h * bpp))
    mask = bytes([0, 9, 9, 0, 9, 9])
    chunks = px.masked_chunks(data, mask, w, h, bpp)
    assert chunks == [((1, 0, 2, 2), bytes([2, 3, 4, 5, 8, 9, 10, 11]))]
    with pytest.raises(ValueError):
        px.masked_chunks(data[:-1], mask, w, h, bpp)
