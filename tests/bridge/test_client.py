"""EngineClient (both transports) against the real server with the fake handler."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest
import zmq
from bridge_fakes import FakeHandler, invert

from bridge.client import (
    BridgeError,
    Cancelled,
    EngineClient,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    ensure_engine,
)
from bridge.protocol import Array
from engine.cli.serve import keys_main
from engine.serve.server import EngineServer

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_ENGINE = os.path.join(HERE, "bridge_fake_engine.py")
TRANSPORTS = ["pyzmq", "zmtp"]


@pytest.fixture(scope="module")
def server():
    handler = FakeHandler()
    srv = EngineServer(handler, bind="tcp://127.0.0.1:*", heartbeat_interval=0.2)
    srv.start()
    srv.fake = handler
    yield srv
    srv.stop()


@pytest.fixture(params=TRANSPORTS)
def client(request, server):
    c = EngineClient(server.address, timeout=10, transport=request.param, heartbeat_timeout=5)
    yield c
    c.close()


def as_np(arr: Array) -> np.ndarray:
    return np.frombuffer(arr.data, dtype=arr.dtype).reshape(arr.shape)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def image(dtype, h=33, w=47, c=4, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.random((h, w, c), dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, (h, w, c), dtype=dtype)


SWAP = {"target": "goldfish", "strength": 1.0, "layers": "all", "poisson": True}


# ---------------------------------------------------------------------------
# every op, both transports
# ---------------------------------------------------------------------------
def test_hello_classes_status(client):
    info = client.hello()
    assert info["protocol_version"] == 1 and info["state"] == "ready"
    assert info["device"] == "cpu" and info["default_model"] == "fake" and info["models"] == ["fake"]
    assert info["limits"]["max_header_bytes"] == 1 << 20
    assert [c["name"] for c in client.classes("cat")["classes"]] == ["tabby cat"]
    assert len(client.classes()["classes"]) == 6
    status = client.status()
    assert status["running"] is None and status["queue_length"] == 0


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_project_roundtrip(client, dtype):
    img = image(dtype, c=3)
    seen = []
    reply = client.call("project", {"class": None, "steps": 4, "region": [1, 2, 10, 10]}, {"image": img},
                        on_progress=lambda *a: seen.append(a))
    assert reply.params == {"class_id": 2, "class_name": "tabby cat", "loss": 0.5}
    assert reply.arrays["recon"].dtype == dtype and reply.arrays["recon"].shape == img.shape
    assert reply.arrays["recon"].tobytes() == img.tobytes()
    assert seen[0] == ("project", 1, 4, 1.0) and seen[-1][:3] == ("done", 4, 4)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_swap_roundtrip(client, dtype):
    img = image(dtype, seed=3)
    mask = (np.random.default_rng(1).random(img.shape[:2]) > 0.5).astype(np.uint8)
    label = np.zeros(img.shape[:2], np.float32)
    params = dict(SWAP, labels=[{"class": "daisy", "strength": 0.5, "mask": "daisy_mask"}])
    reply = client.call("swap", params, {"image": img, "mask": mask, "daisy_mask": label})
    assert reply.params == {"target": "goldfish"}
    assert reply.arrays["image"].tobytes() == invert(img).tobytes()


def test_blend_roundtrip(client):
    img, ref = image("uint8"), image("float32", 20, 30, 3, seed=5)
    reply = client.call("blend", {"strength": 0.7, "layers": [1, 2], "shift": [4, -3], "poisson": False},
                        {"image": img, "mask": np.ones(img.shape[:2], np.float32), "reference": ref,
                         "reference_mask": np.ones((20, 30), np.uint8)})
    assert reply.arrays["image"].dtype == "float32"
    assert reply.arrays["image"].tobytes() == ref.tobytes()


def test_edit_roundtrip(client):
    img, ref = image("uint8", 64, 64), image("uint8", 64, 64, seed=9)
    params = {"poisson": True, "steps": 2, "cache_key": "img-1", "return_recon": True,
              "swap": {"target": 3, "strength": 0.5, "layers": "first",
                       "labels": [{"class": 1, "strength": 1, "mask": "lab"}]},
              "blend": {"strength": 1.0, "layers": "rest", "shift": [0, 0]}}
    arrays = {"image": img, "mask": np.ones((64, 64), np.uint8), "reference": ref,
              "lab": np.zeros((64, 64), np.uint8)}
    reply = client.call("edit", params, arrays)
    assert reply.params["source_class"] == 2
    assert reply.params["labels"] == sorted(arrays)
    assert as_np(reply.arrays["image"]).tobytes() == invert(img).tobytes()
    assert reply.arrays["recon"].tobytes() == img.tobytes()


def test_cancel_op_for_unknown_request(client):
    reply = client.call("cancel", {"id": "nope"})
    assert reply.params == {"id": "nope", "cancelled": False, "state": "unknown"}


def test_large_image(client):
    img = image("float32", 1024, 1024, 4)  # 16 MiB
    reply = client.call("project", {}, {"image": img})
    assert reply.arrays["recon"].tobytes() == img.tobytes()


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("op,params,arrays,code", [
    ("nope", {}, {}, "unknown_op"),
    ("swap", {"target": "x"}, {"image": np.zeros((2, 2, 3), np.uint8)}, "bad_request"),
    ("project", {"fail": "op"}, {"image": np.zeros((2, 2, 3), np.uint8)}, "bad_input"),
    ("project", {"fail": "crash"}, {"image": np.zeros((2, 2, 3), np.uint8)}, "engine_error"),
    ("project", {"fail": "bad_result"}, {"image": np.zeros((2, 2, 3), np.uint8)}, "engine_error"),
])
def test_error_replies(client, op, params, arrays, code):
    with pytest.raises(EngineError) as info:
        client.call(op, params, arrays)
    assert info.value.code == code and info.value.message
    assert client.hello()["state"] == "ready"  # the connection is still usable


def test_cancel_from_progress_callback(client, server):
    steps_seen = []

    def on_progress(stage, step, total, loss):
        steps_seen.append(step)
        return step < 3

    t0 = time.monotonic()
    with pytest.raises(Cancelled) as info:
        client.call("project", {"steps": 200, "step_time": 0.06}, {"image": image("uint8")},
                    on_progress=on_progress)
    assert time.monotonic() - t0 < 3.0
    assert info.value.code == "cancelled"
    _rid, cancel_step, stop_step = server.fake.cancelled[-1]
    assert stop_step - cancel_step <= 1, (cancel_step, stop_step)  # stopped within one step
    assert client.status()["running"] is None


def test_queued_callback(server):
    slow = EngineClient(server.address, transport="pyzmq", timeout=5)
    t = threading.Thread(target=slow.call, args=("project", {"steps": 8, "step_time": 0.05},
                                                 {"image": image("uint8")}))
    t.start()
    time.sleep(0.15)
    positions = []
    c = EngineClient(server.address, transport="zmtp", timeout=5)
    c.call("swap", SWAP, {"image": image("uint8"), "mask": np.ones((33, 47), np.uint8)},
           on_queued=positions.append)
    c.close()
    t.join()
    slow.close()
    assert positions and positions[0] == 1


# ---------------------------------------------------------------------------
# unavailable / timeouts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nothing_listening(transport):
    address = f"tcp://127.0.0.1:{free_port()}"
    c = EngineClient(address, timeout=10, transport=transport, connect_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable) as info:
        c.hello()
    assert time.monotonic() - t0 < 2.0
    assert address in str(info.value) and "neural-collage serve" in str(info.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_engine_that_never_answers(transport):
    ctx = zmq.Context()
    mute = ctx.socket(zmq.ROUTER)
    mute.setsockopt(zmq.LINGER, 0)
    port = mute.bind_to_random_port("tcp://127.0.0.1")
    try:
        c = EngineClient(f"tcp://127.0.0.1:{port}", timeout=0.5, transport=transport)
        t0 = time.monotonic()
        with pytest.raises(EngineTimeout, match="did not answer"):
            c.hello()
        assert time.monotonic() - t0 < 2.0
        c.close()
    finally:
        mute.close(0)
        ctx.term()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_engine_goes_silent_after_acknowledging(transport):
    """Heartbeats stop (hung engine): EngineTimeout after heartbeat_timeout."""
    ctx = zmq.Context()
    fake = ctx.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    from bridge.protocol import decode_message, encode_message

    def serve():
        if fake.poll(5000):
            msg = fake.recv_multipart()
            h, _ = decode_message(msg[1:])
            fake.send_multipart([msg[0]] + encode_message({"id": h["id"], "type": "heartbeat"}))

    th = threading.Thread(target=serve)
    th.start()
    try:
        c = EngineClient(f"tcp://127.0.0.1:{port}", timeout=5, transport=transport, heartbeat_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(EngineTimeout, match="silent"):
            c.call("project", {}, {"image": image("uint8")})
        assert 0.4 < time.monotonic() - t0 < 2.0
        c.close()
    finally:
        th.join()
        fake.close(0)
        ctx.term()


def test_client_reconnects_after_engine_restart():
    for transport in TRANSPORTS:
        srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*")
        address = srv.start()
        c = EngineClient(address, timeout=5, transport=transport, connect_timeout=1)
        assert c.hello()["state"] == "ready"
        srv.stop()
        with pytest.raises((EngineUnavailable, EngineTimeout)):
            c.hello(timeout=1)
        srv2 = EngineServer(FakeHandler(), bind=address)
        srv2.start()
        assert c.hello()["state"] == "ready"
        c.close()
        srv2.stop()


def test_transport_selection_errors():
    with pytest.raises(ValueError):
        EngineClient(transport="carrier-pigeon")
    with pytest.raises(BridgeError, match="CURVE encryption needs pyzmq"):
        EngineClient(transport="zmtp", curve_server_key="x" * 40)
    with pytest.raises(BridgeError, match="pyzmq"):
        EngineClient("ipc:///tmp/nc-test.sock", transport="zmtp")
    assert EngineClient().transport == "pyzmq"  # auto picks pyzmq when it imports


def test_ipc_with_pyzmq(tmp_path):
    address = "ipc://%s" % (tmp_path / "engine.sock")
    srv = EngineServer(FakeHandler(), bind=address)
    srv.start()
    try:
        c = EngineClient(address, transport="pyzmq", timeout=5)
        img = image("uint8")
        assert c.call("project", {}, {"image": img}).arrays["recon"].tobytes() == img.tobytes()
        c.close()
    finally:
        srv.stop()


def test_curve_encryption(tmp_path):
    assert keys_main(str(tmp_path)) == 0
    srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*",
                       curve_secret_key_file=str(tmp_path / "engine.key_secret"))
    address = srv.start()
    try:
        c = EngineClient(address, transport="pyzmq", timeout=5,
                         curve_server_key=str(tmp_path / "engine.key"))
        img = image("uint8")
        assert c.call("project", {}, {"image": img}).arrays["recon"].tobytes() == img.tobytes()
        c.close()
        plain = EngineClient(address, transport="pyzmq", timeout=1, connect_timeout=0.5)
        with pytest.raises((EngineUnavailable, EngineTimeout)):
            plain.hello()
        plain.close()
        with pytest.raises(EngineUnavailable, match="CURVE"):
            EngineClient(address, transport="zmtp", timeout=2).hello()
    finally:
        srv.stop()


# ---------------------------------------------------------------------------
# ensure_engine
# ---------------------------------------------------------------------------
def engine_command(address, *extra):
    return [sys.executable, FAKE_ENGINE, "--bind", address, *extra]


def test_ensure_engine_reuses_running_engine(server):
    c = ensure_engine(server.address, command=["false-command-never-run"], start_timeout=5)
    assert c.hello()["state"] == "ready"
    c.close()


def test_ensure_engine_command_not_found(tmp_path):
    with pytest.raises(EngineUnavailable, match="could not be started"):
        ensure_engine(f"tcp://127.0.0.1:{free_port()}", command=["/nonexistent/neural-collage", "serve"],
                      log_path=str(tmp_path / "e.log"), probe_timeout=0.5, connect_timeout=0.5)


def test_ensure_engine_without_command():
    with pytest.raises(EngineUnavailable, match="neural-collage serve"):
        ensure_engine(f"tcp://127.0.0.1:{free_port()}", command=None, probe_timeout=0.5,
                      connect_timeout=0.5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ensure_engine_starts_engine(tmp_path, transport):
    address = f"tcp://127.0.0.1:{free_port()}"
    log = str(tmp_path / "engine.log")
    c = ensure_engine(address, command=engine_command(address, "--load-time", "0.3"), log_path=log,
                      start_timeout=30, probe_timeout=0.5, transport=transport, connect_timeout=0.5)
    try:
        info = c.hello()
        assert info["state"] == "ready" and info["engine_version"] == "fake-0"
        img = image("uint8")
        assert c.call("project", {}, {"image": img}).arrays["recon"].tobytes() == img.tobytes()
        # a second ensure_engine reuses it
        c2 = ensure_engine(address, command=["/nonexistent"], probe_timeout=2, transport=transport)
        assert c2.hello()["state"] == "ready"
        c2.close()
    finally:
        pid = c.hello()["pid"]
        c.close()
        os.kill(pid, signal.SIGTERM)
    with open(log) as fh:
        assert "engine listening on" in fh.read()


def test_ensure_engine_quotes_log_on_failure(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    log = str(tmp_path / "engine.log")
    cmd = engine_command(address, "--fail-load")
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable) as info:
        ensure_engine(address, command=cmd, log_path=log, start_timeout=20, probe_timeout=0.5,
                      connect_timeout=0.5)
    assert time.monotonic() - t0 < 15
    text = str(info.value)
    assert "exited with code 1" in text and "fake weights not found" in text and log in text


def test_ensure_engine_timeout_quotes_log(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    log = str(tmp_path / "engine.log")
    script = "import time\nfor i in range(40): print('line', i, flush=True)\ntime.sleep(3)\n"
    with pytest.raises(EngineUnavailable) as info:
        ensure_engine(address, command=[sys.executable, "-c", script], log_path=log, start_timeout=1.5,
                      probe_timeout=0.3, connect_timeout=0.3)
    text = str(info.value)
    assert "did not become ready" in text and "line 39" in text and "line 10\n" not in text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_over_engine_limit(transport):
    from bridge.protocol import Limits
    srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", limits=Limits(max_message_bytes=1 << 20))
    address = srv.start()
    try:
        c = EngineClient(address, transport=transport, timeout=1)
        big = np.zeros((1024, 1024, 2), np.uint8)  # 2 MiB in one frame
        with pytest.raises((EngineTimeout, EngineUnavailable)):  # libzmq drops the connection
            c.call("project", {}, {"image": big})
        assert c.hello()["limits"]["max_message_bytes"] == 1 << 20
        with pytest.raises(EngineError) as info:  # now the client knows the limit
            c.call("project", {}, {"image": big})
        assert info.value.code == "too_large" and "--max-message-mb" in info.value.message
        small = np.zeros((8, 8, 3), np.uint8)
        assert c.call("project", {}, {"image": small}).arrays["recon"].shape == (8, 8, 3)
        c.close()
    finally:
        srv.stop()
