"""The pure-Python ZMTP client: against a real libzmq ROUTER and against a fake socket."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
import zmq

from bridge import zmtp
from bridge.zmtp import ZmtpClosed, ZmtpError, ZmtpSocket
from bridge_fakes import free_port


@pytest.fixture
def router():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)
    ctx.term()


def connect(address, **kw):
    return ZmtpSocket.connect(address, timeout=5.0, **kw)


# ---------------------------------------------------------------------------
# against libzmq
# ---------------------------------------------------------------------------
def test_handshake_and_multipart(router):
    router, address = router
    z = connect(address)
    assert z.peer_version[0] == 3
    assert z.peer_metadata["socket-type"] == b"ROUTER"
    parts = [b"head", b"", b"x" * 255, b"y" * 256, b"z" * 70000, b""]
    z.send_multipart(parts)
    assert router.poll(5000)
    msg = router.recv_multipart()
    identity = msg[0]
    assert msg[1:] == parts
    router.send_multipart([identity] + parts)
    assert [bytes(p) for p in z.recv_multipart(timeout=5)] == parts
    router.send_multipart([identity, b""])  # a single empty frame
    assert z.recv_multipart(timeout=5) == [b""]
    assert z.recv_multipart(timeout=0.05) is None  # nothing pending: timeout, not an error
    z.close()


def test_many_messages_both_directions(router):
    router, address = router
    z = connect(address)
    for i in range(200):
        z.send_multipart([b"%d" % i, os.urandom(i * 7)])
    identity = None
    for i in range(200):
        msg = router.recv_multipart()
        identity = msg[0]
        assert msg[1] == b"%d" % i and len(msg[2]) == i * 7
    for i in range(200):
        router.send_multipart([identity, b"%d" % i, b"q" * (i * 5)])
    for i in range(200):
        msg = z.recv_multipart(timeout=5)
        assert msg[0] == b"%d" % i and len(msg[1]) == i * 5
    z.close()


def test_64mb_payload_both_directions(router):
    router, address = router
    payload = os.urandom(1 << 16) * 1024  # 64 MiB
    z = connect(address)
    z.send_multipart([b"big", payload])
    assert router.poll(20000)
    msg = router.recv_multipart(copy=False)
    assert msg[1].bytes == b"big" and len(msg[2]) == len(payload)
    assert msg[2].buffer == payload
    router.send_multipart([msg[0].bytes, b"back", msg[2]], copy=False)
    got = z.recv_multipart(timeout=20)
    assert got[0] == b"back" and got[1] == payload
    z.close()


def test_answers_zmtp31_heartbeat_pings():
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.LINGER, 0)
    r.setsockopt(zmq.HEARTBEAT_IVL, 40)
    r.setsockopt(zmq.HEARTBEAT_TIMEOUT, 400)
    port = r.bind_to_random_port("tcp://127.0.0.1")
    try:
        z = connect(f"tcp://127.0.0.1:{port}")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # 2.5x the heartbeat timeout: alive only if we PONG
            assert z.recv_multipart(timeout=0.05) is None
        assert z.pings_answered >= 5
        z.send_multipart([b"still here"])
        assert r.poll(2000)
        assert r.recv_multipart()[1] == b"still here"
        z.close()
    finally:
        r.close(0)
        ctx.term()


def test_peer_going_away_is_reported(router):
    router, address = router
    z = connect(address)
    z.send_multipart([b"x"])
    router.recv_multipart()
    router.close(0)
    with pytest.raises(ZmtpClosed):
        z.recv_multipart(timeout=5)


def test_connection_refused():
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        connect(f"tcp://127.0.0.1:{port}")


def _serve_once(handler):
    """A raw TCP listener running ``handler(conn)`` for one connection."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def run():
        conn, _ = lsock.accept()
        try:
            handler(conn)
        finally:
            time.sleep(0.2)
            conn.close()
            lsock.close()

    threading.Thread(target=run, daemon=True).start()
    return f"tcp://127.0.0.1:{lsock.getsockname()[1]}"


def test_non_zmtp_peer_is_rejected():
    address = _serve_once(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    with pytest.raises(ZmtpError, match="not a ZeroMQ"):
        connect(address)


def test_silent_peer_times_out():
    address = _serve_once(lambda conn: time.sleep(1.0))
    t0 = time.monotonic()
    with pytest.raises(ZmtpError, match="handshake"):
        ZmtpSocket.connect(address, timeout=0.3)
    assert time.monotonic() - t0 < 1.0


def test_curve_peer_needs_pyzmq():
    def curve_server(conn):
        conn.sendall(zmtp.SIGNATURE_HEAD + bytes((3, 0)) + b"CURVE".ljust(20, b"\0") + b"\1" + b"\0" * 31)
        time.sleep(0.5)

    with pytest.raises(ZmtpError, match="CURVE encryption needs pyzmq"):
        connect(_serve_once(curve_server))


def test_addresses():
    assert zmtp.parse_tcp_address("tcp://127.0.0.1:5581") == ("127.0.0.1", 5581)
    assert zmtp.parse_tcp_address("tcp://[::1]:5581") == ("::1", 5581)
    assert zmtp.parse_tcp_address("tcp://localhost:1") == ("localhost", 1)
    with pytest.raises(ValueError, match="need pyzmq"):
        zmtp.parse_tcp_address("ipc:///tmp/x.sock")
    for bad in ("tcp://127.0.0.1", "tcp://:5", "tcp://h:0", "tcp://h:x", "udp://h:5", "h:5", "tcp://h:70000"):
        with pytest.raises(ValueError):
            zmtp.parse_tcp_address(bad)


def test_greeting_bytes():
    g = zmtp.greeting()
    assert len(g) == 64 and g[0] == 0xFF and g[9] == 0x7F
    assert g[10:12] == b"\x03\x01" and g[12:32] == b"NULL" + b"\0" * 16 and g[32] == 0


# ---------------------------------------------------------------------------
# fake socket: reads split at every byte boundary, timeouts anywhere
# ---------------------------------------------------------------------------
class FakeSocket:
    """Feeds ``stream`` in chunks given by ``sizes`` (cycled); optional timeouts between reads."""

    def __init__(self, stream, sizes=(1,), timeout_every=0):
        self.stream = bytes(stream)
        self.pos = 0
        self.sizes = list(sizes)
        self.calls = 0
        self.timeout_every = timeout_every
        self.sent = bytearray()
        self.timeout = None

    def settimeout(self, t):
        self.timeout = t

    def sendall(self, data):
        self.sent += bytes(data)

    def recv_into(self, view):
        self.calls += 1
        if self.timeout_every and self.calls % self.timeout_every == 0:
            raise socket.timeout("fake timeout")
        if self.pos >= len(self.stream):
            if self.timeout is not None:
                raise socket.timeout("no more data")
            return 0
        n = min(len(view), self.sizes[self.calls % len(self.sizes)], len(self.stream) - self.pos)
        view[:n] = self.stream[self.pos:self.pos + n]
        self.pos += n
        return n

    def close(self):
        pass


def frame(body, more=False, command=False):
    flags = (zmtp.FLAG_MORE if more else 0) | (zmtp.FLAG_COMMAND if command else 0)
    return zmtp.frame_header(flags, len(body)) + body


def command(name, data=b""):
    return frame(zmtp.command_body(name, data), command=True)


SERVER_READY = command("READY", zmtp.encode_metadata({"Socket-Type": b"ROUTER", "Identity": b""}))
MESSAGES = [
    [b"header", b"", b"a" * 300],
    [b""],
    [b"b" * 255, b"c" * 256],
    [bytes(range(256)) * 3],
]


def server_stream():
    out = bytearray(zmtp.greeting(as_server=True))
    out += SERVER_READY
    out += command("PING", struct.pack(">H", 30) + b"ctx-1")
    for i, msg in enumerate(MESSAGES):
        for j, part in enumerate(msg):
            out += frame(part, more=j < len(msg) - 1)
            if i == 2 and j == 0:
                out += command("FUTURE-COMMAND", b"ignored")  # commands may sit between frames
    out += command("PING", struct.pack(">H", 0))
    return bytes(out)


def read_all(sock):
    z = ZmtpSocket(sock)
    z.handshake(timeout=5)
    got = []
    for _ in MESSAGES:
        msg = None
        while msg is None:  # None = (fake) timeout: call again, the reader resumes
            msg = z.recv_multipart(timeout=5)
        got.append([bytes(p) for p in msg])
    while z.recv_multipart(timeout=5) is not None:  # consume the trailing PING
        pass
    return z, got


def expected_sent():
    out = bytearray(zmtp.greeting())
    out += command("READY", zmtp.encode_metadata({"Socket-Type": b"DEALER", "Identity": b""}))
    out += command("PONG", b"ctx-1")
    out += command("PONG", b"")
    return bytes(out)


def test_fake_socket_one_byte_at_a_time():
    sock = FakeSocket(server_stream(), sizes=(1,))
    z, got = read_all(sock)
    assert got == MESSAGES
    assert z.pings_answered == 2
    assert bytes(sock.sent) == expected_sent()


def test_fake_socket_split_at_every_byte_boundary():
    stream = server_stream()
    for cut in range(1, len(stream)):
        sock = FakeSocket(stream[:cut] + stream[cut:], sizes=(cut, len(stream)))
        _, got = read_all(sock)
        assert got == MESSAGES, cut


def test_fake_socket_with_timeouts_between_reads():
    for every in (2, 3, 5):
        for sizes in ((1,), (3, 1, 7), (64,)):
            sock = FakeSocket(server_stream(), sizes=sizes)
            z = ZmtpSocket(sock)
            z.handshake(timeout=5)  # a timeout during the handshake is fatal by design
            sock.timeout_every = every
            got = []
            while len(got) < len(MESSAGES):
                msg = z.recv_multipart(timeout=5)
                if msg is not None:
                    got.append([bytes(p) for p in msg])
            assert got == MESSAGES


def test_fake_socket_send_framing():
    sock = FakeSocket(b"")
    z = ZmtpSocket(sock)
    z.send_multipart([b"a", b"", b"x" * 256, memoryview(b"y" * 100000)])
    expected = frame(b"a", True) + frame(b"", True) + frame(b"x" * 256, True) + frame(b"y" * 100000)
    assert bytes(sock.sent) == expected
    assert expected[:2] == b"\x01\x01" and expected[5:14] == b"\x03" + struct.pack(">Q", 256)


@pytest.mark.parametrize("bad,match", [
    (b"\x08\x01x", "invalid frame flags"),
    (b"\x05\x01x", "MORE"),
    (b"\x02" + struct.pack(">Q", 1 << 40), "more than"),
])
def test_fake_socket_protocol_violations(bad, match):
    stream = zmtp.greeting(True) + SERVER_READY + bad
    z = ZmtpSocket(FakeSocket(stream, sizes=(5,)), max_message_bytes=1 << 20)
    z.handshake(timeout=5)
    with pytest.raises(ZmtpError, match=match):
        z.recv_multipart(timeout=5)


def test_fake_socket_error_command_and_bad_peer_type():
    stream = zmtp.greeting(True) + SERVER_READY + command("ERROR", b"\x0bshutting up")
    z = ZmtpSocket(FakeSocket(stream))
    z.handshake(timeout=5)
    with pytest.raises(ZmtpClosed, match="shutting up"):
        z.recv_multipart(timeout=5)
    pub = command("READY", zmtp.encode_metadata({"Socket-Type": b"PUB"}))
    with pytest.raises(ZmtpError, match="PUB"):
        ZmtpSocket(FakeSocket(zmtp.greeting(True) + pub)).handshake(timeout=5)
    old = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x02\x00" + b"\0" * 52
    with pytest.raises(ZmtpError, match="version 3"):
        ZmtpSocket(FakeSocket(old)).handshake(timeout=5)


def test_message_size_limit_spans_frames():
    stream = zmtp.greeting(True) + SERVER_READY + frame(b"a" * 600, more=True) + frame(b"b" * 600)
    z = ZmtpSocket(FakeSocket(stream), max_message_bytes=1000)
    z.handshake(timeout=5)
    with pytest.raises(ZmtpError, match="more than"):
        z.recv_multipart(timeout=5)
