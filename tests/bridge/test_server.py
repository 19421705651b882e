"""EngineServer: scheduling, cancel, heartbeats, concurrency, crashes, security and CLI entry points."""

# ruff: noqa: UP031
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq
from bridge_fakes import FakeHandler, invert

from bridge.client import EngineClient, EngineTimeout, EngineUnavailable
from bridge.protocol import decode_message, encode_message
from engine.cli import serve as S
from engine.cli.serve import keys_main
from engine.serve.security import ServerConfigError, is_loopback_address, load_secret_key
from engine.serve.server import EngineServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FAKE_ENGINE = os.path.join(HERE, "bridge_fake_engine.py")
IMG = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
SWAP = {"target": "goldfish", "strength": 1.0, "layers": "all", "poisson": False}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Raw:
    """A raw pyzmq DEALER speaking the protocol by hand."""

    def __init__(self, address):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def send(self, rid, op, params=None, arrays=None):
        self.sock.send_multipart(encode_message({"id": rid, "op": op, "params": params or {}}, arrays))

    def recv(self, timeout=5.0):
        assert self.sock.poll(int(timeout * 1000)), "no reply"
        return decode_message(self.sock.recv_multipart())

    def until(self, rid, kinds=("result", "error"), timeout=5.0):
        """Messages for ``rid`` up to the first one of ``kinds``; returns (final header, all headers)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            h, _ = self.recv(max(0.01, deadline - time.monotonic()))
            if h["id"] == rid:
                seen.append(h)
                if h["type"] in kinds:
                    return h, seen

    def close(self):
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def server():
    handler = FakeHandler()
    srv = EngineServer(handler, bind="tcp://127.0.0.1:*", heartbeat_interval=0.1)
    srv.start()
    srv.fake = handler
    yield srv
    srv.stop()


# ---------------------------------------------------------------------------
# concurrency and scheduling
# ---------------------------------------------------------------------------
def test_eight_concurrent_clients_twenty_requests_each(server):
    errors = []
    counts = {}

    def worker(n):
        transport = "pyzmq" if n % 2 else "zmtp"
        try:
            with EngineClient(server.address, transport=transport, timeout=30) as c:
                for i in range(20):
                    img = np.full((5 + n, 7 + i, 3), (n * 20 + i) % 256, np.uint8)
                    img[0, 0, 0] = n
                    if i % 4 == 3:
                        reply = c.call("classes", {"search": "cat"})
                        assert reply.params["classes"][0]["name"] == "tabby cat"
                    else:
                        reply = c.call("swap", dict(SWAP, tag=[n, i]),
                                       {"image": img, "mask": np.ones(img.shape[:2], np.uint8)})
                        assert reply.arrays["image"].tobytes() == invert(img).tobytes(), (n, i)
                        assert reply.arrays["image"].shape == img.shape
                    counts[n] = counts.get(n, 0) + 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((n, repr(exc)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert counts == {n: 20 for n in range(8)}
    assert server.fake.max_active == 1  # the device is used by one job at a time
    assert time.monotonic() - t0 < 30


def test_replies_carry_their_own_ids(server):
    raw = Raw(server.address)
    ids = ["req-%d" % i for i in range(10)]
    for i, rid in enumerate(ids):
        raw.send(rid, "swap", SWAP, {"image": np.full((4, 4, 3), i, np.uint8), "mask": np.ones((4, 4), np.uint8)})
    results = {}
    while len(results) < len(ids):
        h, arrays = raw.recv()
        if h["type"] == "result":
            results[h["id"]] = arrays["image"].tobytes()
    for i, rid in enumerate(ids):
        assert results[rid] == bytes([255 - i]) * 48
    raw.close()


def test_queue_positions_cancel_queued_and_busy(server):
    server.max_queue = 4
    raw = Raw(server.address)
    arrays = {"image": IMG}
    raw.send("slow", "project", {"steps": 30, "step_time": 0.03}, arrays)
    first, _ = raw.until("slow", kinds=("heartbeat",))
    assert first["type"] == "heartbeat"  # acknowledgement: the job runs
    for rid in ("q1", "q2", "q3", "q4"):
        raw.send(rid, "project", {}, arrays)
        h, _ = raw.until(rid, kinds=("queued",))
        assert h["params"]["position"] == int(rid[1])
    raw.send("q5", "project", {}, arrays)  # max_queue=4
    h, _ = raw.until("q5")
    assert h["type"] == "error" and h["params"]["code"] == "busy"
    raw.send("st", "status")
    h, _ = raw.until("st")
    assert h["params"]["running"]["id"] == "slow" and h["params"]["queue_length"] == 4
    raw.send("c1", "cancel", {"id": "q2"})
    got = {}
    while "c1" not in got or "q2" not in got:
        h, _ = raw.recv()
        if h["type"] in ("result", "error"):
            got[h["id"]] = h
        elif h["type"] == "queued" and h["id"] == "q3":
            got.setdefault("q3_positions", []).append(h["params"]["position"])
    assert got["c1"]["params"] == {"id": "q2", "cancelled": True, "state": "queued"}
    assert got["q2"]["params"]["code"] == "cancelled"
    assert got["q3_positions"][-1] == 2
    finals = {}
    while len(finals) < 4:
        h, _ = raw.recv()
        if h["type"] in ("result", "error"):
            finals[h["id"]] = h["type"]
    assert finals == {"slow": "result", "q1": "result", "q3": "result", "q4": "result"}
    raw.close()


def test_duplicate_request_id_rejected(server):
    raw = Raw(server.address)
    raw.send("same", "project", {"steps": 10, "step_time": 0.02}, {"image": IMG})
    raw.send("same", "project", {}, {"image": IMG})
    h, _ = raw.until("same", kinds=("error",))
    assert h["params"]["code"] == "bad_request" and "already in use" in h["params"]["message"]
    h, _ = raw.until("same")
    assert h["type"] == "result"
    raw.close()


def test_heartbeats_while_running(server):
    raw = Raw(server.address)
    raw.send("hb", "project", {"steps": 10, "step_time": 0.06}, {"image": IMG})
    h, seen = raw.until("hb", timeout=10)
    kinds = [m["type"] for m in seen]
    assert h["type"] == "result"
    assert kinds[0] == "heartbeat" and kinds.count("heartbeat") >= 4  # 0.6 s at 0.1 s intervals
    assert "progress" in kinds
    raw.close()


def test_cancel_running_stops_within_one_step(server):
    raw = Raw(server.address)
    raw.send("long", "project", {"steps": 100, "step_time": 0.05}, {"image": IMG})
    while True:
        h, _ = raw.recv()
        if h["type"] == "progress" and h["params"]["step"] >= 3:
            break
    t0 = time.monotonic()
    raw.send("c", "cancel", {"id": "long"})
    h, _ = raw.until("long")
    assert time.monotonic() - t0 < 0.5
    assert h["type"] == "error" and h["params"]["code"] == "cancelled"
    _rid, cancel_step, stop_step = server.fake.cancelled[-1]
    assert stop_step - cancel_step <= 1
    raw.close()


def test_client_that_disappears_gets_its_job_cancelled(server):
    raw = Raw(server.address)
    raw.send("orphan", "project", {"steps": 200, "step_time": 0.02}, {"image": IMG})
    raw.until("orphan", kinds=("progress",))
    raw.close()
    deadline = time.monotonic() + 3
    while not any(c[0] == "orphan" for c in server.fake.cancelled):
        assert time.monotonic() < deadline, "job of a vanished client still running"
        time.sleep(0.05)
    with EngineClient(server.address, timeout=5) as c:
        assert c.status()["running"] is None


def test_hello_survives_broken_handler_hello(server):
    def broken():
        raise RuntimeError("no GPU today")

    server.fake.hello = broken
    with EngineClient(server.address, transport="zmtp", timeout=5) as c:
        info = c.hello()
    assert info["state"] == "ready" and "no GPU today" in info["hello_error"]


def test_classes_before_model_loaded():
    gate = threading.Event()

    def factory():
        gate.wait(5)
        return FakeHandler()

    srv = EngineServer(handler_factory=factory, bind="tcp://127.0.0.1:*")
    srv.start()
    try:
        with EngineClient(srv.address, timeout=5) as c:
            assert c.hello()["state"] == "loading"
            with pytest.raises(Exception, match="loading"):
                c.classes()
            done = []
            t = threading.Thread(target=lambda: done.append(c.call("project", {}, {"image": IMG})))
            t.start()
            time.sleep(0.2)
            gate.set()
            t.join(5)
            assert done and done[0].arrays["recon"].tobytes() == IMG.tobytes()
            assert c.hello()["state"] == "ready"
    finally:
        srv.stop()


# ---------------------------------------------------------------------------
# engine killed mid-request
# ---------------------------------------------------------------------------
def start_fake_engine(address, *extra, log=None):
    proc = subprocess.Popen([sys.executable, FAKE_ENGINE, "--bind", address, *extra],
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    probe = EngineClient(address, transport="zmtp", timeout=1)
    while True:
        try:
            if probe.hello()["state"] == "ready":
                break
        except (EngineUnavailable, EngineTimeout):
            assert time.monotonic() < deadline and proc.poll() is None, "fake engine did not start"
            time.sleep(0.1)
    probe.close()
    return proc


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_engine_killed_mid_request(transport):
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = start_fake_engine(address, "--step-time", "0.1")
    try:
        c = EngineClient(address, transport=transport, timeout=5, heartbeat_timeout=2.0)
        steps = []

        def on_progress(stage, step, total, loss):
            steps.append(step)
            if step == 3:
                os.kill(proc.pid, signal.SIGKILL)

        t0 = time.monotonic()
        with pytest.raises((EngineUnavailable, EngineTimeout)) as info:
            c.call("project", {"steps": 100}, {"image": IMG}, on_progress=on_progress)
        elapsed = time.monotonic() - t0
        assert elapsed < 0.3 * 3 + 2.0 + 1.5, elapsed  # within the heartbeat timeout
        text = str(info.value)
        assert address in text and ("crashed" in text or "lost" in text)
        c.close()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------
# security and addresses
# ---------------------------------------------------------------------------
def test_loopback_detection():
    for address in ("tcp://127.0.0.1:5581", "tcp://localhost:1", "tcp://[::1]:5", "tcp://127.3.4.5:9",
                    "ipc:///tmp/x", "inproc://x"):
        assert is_loopback_address(address), address
    for address in ("tcp://0.0.0.0:5581", "tcp://*:5581", "tcp://192.168.1.4:5581", "tcp://eth0:5581",
                    "tcp://example.org:5581", "tcp://[::]:5581"):
        assert not is_loopback_address(address), address


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:0", "tcp://*:0"])
def test_non_loopback_bind_without_keys_refused(address):
    with pytest.raises(ServerConfigError) as info:
        EngineServer(FakeHandler(), bind=address).bind()
    text = str(info.value)
    assert "refusing to listen" in text and "neural-collage keys" in text and "--curve-secret-key" in text


def test_non_loopback_bind_with_keys_allowed(tmp_path):
    keys_main(str(tmp_path))
    srv = EngineServer(FakeHandler(), bind="tcp://0.0.0.0:*",
                       curve_secret_key_file=str(tmp_path / "engine.key_secret"))
    port = int(srv.start().rsplit(":", 1)[1])
    try:
        c = EngineClient(f"tcp://127.0.0.1:{port}", transport="pyzmq", timeout=5,
                         curve_server_key=str(tmp_path / "engine.key"))
        assert c.hello()["state"] == "ready"
        c.close()
    finally:
        srv.stop()
    with pytest.raises(ServerConfigError, match="no secret key"):
        EngineServer(FakeHandler(), bind="tcp://0.0.0.0:*",
                     curve_secret_key_file=str(tmp_path / "engine.key")).bind()


def _key_args(out_dir, name):
    import argparse
    return S.add_keys_arguments(argparse.ArgumentParser()).parse_args(["--out-dir", str(out_dir), "--name", name])


def test_curve_clients_admits_only_listed_keys(tmp_path):
    """--curve-clients: the engine checks client keys (ZAP); an unlisted client gets a message saying so."""
    keys_main(str(tmp_path / "engine"))
    assert keys_main(_key_args(tmp_path / "alice", "alice")) == 0
    assert keys_main(_key_args(tmp_path / "mallory", "mallory")) == 0
    admitted = tmp_path / "clients"
    admitted.mkdir()
    (admitted / "alice.key").write_text((tmp_path / "alice" / "alice.key").read_text())
    srv = EngineServer(FakeHandler(), bind="tcp://0.0.0.0:*", curve_clients=str(admitted),
                       curve_secret_key_file=str(tmp_path / "engine" / "engine.key_secret"))
    port = int(srv.start().rsplit(":", 1)[1])
    server_key = str(tmp_path / "engine" / "engine.key")
    try:
        alice = EngineClient(f"tcp://127.0.0.1:{port}", transport="pyzmq", timeout=5, connect_timeout=3,
                             curve_server_key=server_key,
                             curve_keys=str(tmp_path / "alice" / "alice.key_secret"))
        assert alice.hello()["state"] == "ready"
        alice.close()
        # the folder is read once, when the engine starts: a key added later is not admitted
        (admitted / "mallory.key").write_text((tmp_path / "mallory" / "mallory.key").read_text())
        for keys in (str(tmp_path / "mallory" / "mallory.key_secret"), None):  # added late / throw-away
            intruder = EngineClient(f"tcp://127.0.0.1:{port}", transport="pyzmq", timeout=3, connect_timeout=2,
                                    curve_server_key=server_key, curve_keys=keys)
            with pytest.raises(EngineUnavailable) as info:
                intruder.hello()
            assert "refused this client's CURVE key" in str(info.value) and "--curve-clients" in str(info.value)
            intruder.close()
    finally:
        srv.stop()


def test_wrong_engine_key_is_a_handshake_failure(tmp_path):
    keys_main(str(tmp_path / "engine"))
    assert keys_main(_key_args(tmp_path / "other", "other")) == 0
    srv = EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*",
                       curve_secret_key_file=str(tmp_path / "engine" / "engine.key_secret"))
    port = int(srv.start().rsplit(":", 1)[1])
    try:
        c = EngineClient(f"tcp://127.0.0.1:{port}", transport="pyzmq", timeout=3, connect_timeout=2,
                         curve_server_key=str(tmp_path / "other" / "other.key"))
        with pytest.raises(EngineUnavailable) as info:
            c.hello()
        text = str(info.value)
        assert "handshake" in text or "nothing answers" in text  # libzmq may just drop the bad hello
        c.close()
    finally:
        srv.stop()


def test_curve_clients_folder_errors(tmp_path):
    keys_main(str(tmp_path / "engine"))
    secret = str(tmp_path / "engine" / "engine.key_secret")
    with pytest.raises(ServerConfigError, match="is not a folder"):
        EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", curve_secret_key_file=secret,
                     curve_clients=str(tmp_path / "nope")).bind()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServerConfigError, match="holds no client public keys"):
        EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", curve_secret_key_file=secret,
                     curve_clients=str(tmp_path / "empty")).bind()
    with pytest.raises(ServerConfigError, match="--curve-clients needs --curve-secret-key"):
        EngineServer(FakeHandler(), bind="tcp://127.0.0.1:*", curve_clients=str(tmp_path / "empty")).bind()


def test_client_key_pair_files(tmp_path):
    from bridge.client import load_key_pair

    assert keys_main(_key_args(tmp_path, "me")) == 0
    pub, sec = load_key_pair(str(tmp_path / "me.key_secret"))
    assert zmq.curve_public(sec) == pub
    assert load_key_pair((pub.decode(), sec)) == (pub, sec)
    with pytest.raises(ValueError, match="holds no CURVE key pair"):
        load_key_pair(str(tmp_path / "me.key"))


def test_busy_address(server):
    with pytest.raises(ServerConfigError) as info:
        EngineServer(FakeHandler(), bind=server.address).bind()
    assert str(info.value).startswith("address in use: another engine is already running at " + server.address)


def test_keys_main(tmp_path, capsys):
    out = tmp_path / "keys"
    assert keys_main(str(out)) == 0
    secret, public = out / "engine.key_secret", out / "engine.key"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    pub, sec = load_secret_key(str(secret))
    assert len(pub) == 40 and len(sec) == 40
    assert zmq.curve_public(sec) == pub
    assert "secret-key" not in public.read_text()
    assert pub.decode() in capsys.readouterr().out
    assert keys_main(str(out)) == 1  # no silent overwrite
    import argparse
    parser = S.add_keys_arguments(argparse.ArgumentParser())
    assert keys_main(parser.parse_args(["--out-dir", str(out), "--force"])) == 0
    assert load_secret_key(str(secret))[0] != pub


def test_serve_arguments():
    import argparse
    parser = S.add_serve_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert args.bind == "tcp://127.0.0.1:5581" and args.device == "auto" and args.max_message_mb == 512
    args = parser.parse_args(["--bind", "ipc:///tmp/x", "--model", "m", "--device", "cuda", "--log-file", "l",
                              "--curve-secret-key", "k", "--curve-clients", "d", "--max-message-mb", "64"])
    assert (args.model, args.device, args.log_file, args.curve_secret_key) == ("m", "cuda", "l", "k")
    assert args.curve_clients == "d" and parser.parse_args([]).curve_clients is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])


# ---------------------------------------------------------------------------
# serve_main as a process
# ---------------------------------------------------------------------------
def test_serve_main_lifecycle(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    log_file = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, FAKE_ENGINE, "--bind", address, "--load-time", "0.5",
                             "--log-file", str(log_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        c = EngineClient(address, transport="zmtp", timeout=5)
        states = set()
        deadline = time.monotonic() + 20
        while "ready" not in states:
            assert time.monotonic() < deadline
            try:
                states.add(c.hello()["state"])
            except EngineUnavailable:
                time.sleep(0.05)
        assert "loading" in states  # hello answers while the model loads
        # a second engine on the same address fails fast with a clear message
        second = subprocess.run([sys.executable, FAKE_ENGINE, "--bind", address], capture_output=True,
                                text=True, timeout=30, check=False)
        assert second.returncode == 2
        assert "address in use: another engine is already running at " + address in second.stderr
        assert c.call("swap", SWAP, {"image": IMG, "mask": np.ones((6, 8), np.uint8)}).arrays["image"]
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        out = proc.stdout.read().decode()
        proc.stdout.close()
    assert "engine listening on " + address in out and "engine ready" in out
    assert "engine listening on" in log_file.read_text()


def test_serve_main_load_failure_exits_nonzero():
    address = f"tcp://127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, FAKE_ENGINE, "--bind", address, "--fail-load"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert "fake weights not found" in out.stderr


def test_serve_main_refuses_public_bind():
    out = subprocess.run([sys.executable, FAKE_ENGINE, "--bind", "tcp://0.0.0.0:5599"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0:5599 without encryption" in out.stderr
