"""A small pure-Python ZMTP 3.x client (DEALER socket, NULL security) over TCP.

Used by the GIMP plug-in when pyzmq cannot be imported (GIMP's bundled Python
on Windows/macOS cannot install compiled wheels).  Standard library only.

Wire format implemented (ZMTP 3.0, rfc.zeromq.org/spec/23; 3.1, spec/37):

* greeting, 64 octets: signature ``FF 00*8 7F``, version major 3 / minor 1,
  mechanism ``"NULL"`` padded to 20 octets, as-server 0, 31 octets filler;
* then both peers send a READY command with metadata ``Socket-Type`` (and
  ``Identity``, empty here);
* frames: one flags octet (bit 0 MORE, bit 1 LONG, bit 2 COMMAND), a size of
  1 octet (short) or 8 octets big-endian (long), then the body;
* commands: body = name length (1 octet) + name + data.  PING (3.1) is
  answered with PONG carrying the same context; unknown commands are ignored;
  ERROR closes the connection.

The reader is an incremental state machine: a timeout can interrupt it at any
byte and the next call resumes where it stopped, so reads split at any
boundary (or interrupted by a timeout) never desynchronise the stream.
"""

# ruff: noqa: UP031  (printf-style formatting is used on purpose: it reads well with %d/%r)
from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from .protocol import MAX_MESSAGE_BYTES, BridgeError

FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04

SIGNATURE_HEAD = b"\xff" + b"\x00" * 8 + b"\x7f"
GREETING_SIZE = 64
VERSION_MAJOR = 3
VERSION_MINOR = 1
# peer socket types a DEALER may talk to (ZMTP socket semantics)
COMPATIBLE_PEERS = ("ROUTER", "DEALER", "REP")

_COALESCE = 65536  # frames smaller than this are gathered into one write

IPC_NEEDS_PYZMQ = ("ipc:// addresses need pyzmq: pip install pyzmq into GIMP's Python, "
                   "or run the engine on tcp://127.0.0.1:PORT")
CURVE_NEEDS_PYZMQ = ("CURVE encryption needs pyzmq: pip install pyzmq into GIMP's Python "
                     "or use a loopback/ssh tunnel")


class ZmtpError(BridgeError):
    """The peer broke the ZMTP protocol or sent an ERROR command."""


class ZmtpClosed(ZmtpError, ConnectionError):
    """The connection was closed (or reset) by the peer."""


def parse_tcp_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` -> (host, port).  IPv6 hosts in brackets: ``tcp://[::1]:5581``."""
    if not isinstance(address, str):
        raise TypeError("address must be a string like tcp://127.0.0.1:5581")
    if address.startswith("ipc://"):
        raise ValueError(IPC_NEEDS_PYZMQ)
    if not address.startswith("tcp://"):
        raise ValueError(f"unsupported address {address!r}: the pure-Python transport only speaks "
                         "tcp://host:port")
    rest = address[len("tcp://"):]
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {address!r}: expected tcp://host:port")
    if ";" in host:
        raise ValueError(f"bad address {address!r}: source addresses are not supported")
    return host, int(port)


def greeting(as_server: bool = False) -> bytes:
    mechanism = b"NULL".ljust(20, b"\x00")
    data = (SIGNATURE_HEAD + bytes((VERSION_MAJOR, VERSION_MINOR)) + mechanism
            + bytes((1 if as_server else 0,)) + b"\x00" * 31)
    assert len(data) == GREETING_SIZE
    return data


def frame_header(flags: int, size: int) -> bytes:
    if size > 255:
        return struct.pack(">BQ", flags | FLAG_LONG, size)
    return struct.pack(">BB", flags, size)


def command_body(name: str, data: bytes = b"") -> bytes:
    raw = name.encode("ascii")
    return bytes((len(raw),)) + raw + data


def encode_metadata(props: dict[str, bytes]) -> bytes:
    out = bytearray()
    for key, value in props.items():
        raw = key.encode("ascii")
        out += bytes((len(raw),)) + raw + struct.pack(">I", len(value)) + value
    return bytes(out)


def decode_metadata(data: bytes) -> dict[str, bytes]:
    props = {}
    pos = 0
    while pos < len(data):
        nlen = data[pos]
        pos += 1
        if nlen == 0 or pos + nlen + 4 > len(data):
            raise ZmtpError("malformed READY metadata")
        name = bytes(data[pos:pos + nlen]).decode("ascii", "replace")
        pos += nlen
        (vlen,) = struct.unpack(">I", data[pos:pos + 4])
        pos += 4
        if pos + vlen > len(data):
            raise ZmtpError("malformed READY metadata")
        props[name.lower()] = bytes(data[pos:pos + vlen])
        pos += vlen
    return props


def split_command(body: bytes) -> tuple[str, bytes]:
    if len(body) < 1 or len(body) < 1 + body[0]:
        raise ZmtpError("malformed command frame")
    nlen = body[0]
    return bytes(body[1:1 + nlen]).decode("ascii", "replace"), bytes(body[1 + nlen:])


class ZmtpSocket:
    """One ZMTP connection acting as a DEALER socket.

    ``sock`` is anything with ``sendall``, ``recv_into``, ``settimeout`` and
    ``close`` (a real socket, or a fake in tests).  Not thread-safe.
    """

    def __init__(self, sock: Any, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 socket_type: str = "DEALER"):
        self.sock = sock
        self.max_message_bytes = max_message_bytes
        self.socket_type = socket_type
        self.peer_version: tuple[int, int] | None = None
        self.peer_metadata: dict[str, bytes] = {}
        self.pings_answered = 0
        self.closed = False
        self._buf = bytearray()          # bytes read but not consumed yet
        self._chunk = bytearray(_COALESCE)
        self._frame: list[Any] | None = None  # [flags, body bytearray, filled] being read
        self._parts: list[bytearray] = []        # frames of the message being read
        self._parts_size = 0
        self._deadline: float | None = None

    # -- connection -------------------------------------------------------
    @classmethod
    def connect(cls, address: str, timeout: float | None = 10.0, **kwargs: Any) -> ZmtpSocket:
        """Open a TCP connection to ``tcp://host:port`` and do the ZMTP handshake."""
        host, port = parse_tcp_address(address)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - exotic platforms
            pass
        zsock = cls(sock, **kwargs)
        try:
            zsock.handshake(timeout)
        except BaseException:
            zsock.close()
            raise
        return zsock

    def handshake(self, timeout: float | None = 10.0) -> None:
        """Exchange greetings and READY commands (NULL mechanism)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._handshake(deadline)
        except socket.timeout:
            self.close()
            raise ZmtpError("no ZMTP handshake from the peer within %.1f s" % (timeout or 0)) from None
        except ZmtpClosed as exc:
            raise ZmtpError("the peer closed the connection during the ZMTP handshake (%s); if it "
                            "requires encryption: %s" % (exc, CURVE_NEEDS_PYZMQ)) from None

    def _handshake(self, deadline: float | None) -> None:
        self._sendall(greeting(), deadline)
        # Read the signature first so that a non-ZMTP peer is reported early.
        self._need(10, deadline)
        if self._buf[0] != 0xFF or self._buf[9] != 0x7F:
            raise ZmtpError("the peer is not a ZeroMQ (ZMTP 3) endpoint")
        self._need(GREETING_SIZE, deadline)
        data = bytes(self._buf[:GREETING_SIZE])
        del self._buf[:GREETING_SIZE]
        major, minor = data[10], data[11]
        if major < 3:
            raise ZmtpError("peer speaks ZMTP %d.%d; version 3 is needed" % (major, minor))
        mechanism = data[12:32].rstrip(b"\x00")
        if mechanism != b"NULL":
            hint = " (" + CURVE_NEEDS_PYZMQ + ")" if mechanism == b"CURVE" else ""
            raise ZmtpError("peer uses security mechanism %r; only NULL is supported without pyzmq%s"
                            % (mechanism.decode("ascii", "replace"), hint))
        self.peer_version = (major, minor)
        meta = {"Socket-Type": self.socket_type.encode("ascii")}
        if self.socket_type in ("DEALER", "ROUTER", "REQ"):
            meta["Identity"] = b""
        self._send_command("READY", encode_metadata(meta), deadline)
        while True:
            flags, body = self._read_frame(deadline)
            if not flags & FLAG_COMMAND:
                raise ZmtpError("peer sent a message before READY")
            name, cdata = split_command(body)
            if name == "READY":
                self.peer_metadata = decode_metadata(cdata)
                peer_type = self.peer_metadata.get("socket-type", b"").decode("ascii", "replace")
                if peer_type not in COMPATIBLE_PEERS:
                    raise ZmtpError("peer socket type %r cannot talk to a %s socket"
                                    % (peer_type, self.socket_type))
                return
            if name == "ERROR":
                raise ZmtpError(f"peer refused the connection: {_error_reason(cdata)}")
            # anything else before READY: ignore

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    # -- sending ----------------------------------------------------------
    def send_multipart(self, frames: Sequence[Any], timeout: float | None = None) -> None:
        """Send one message.  Small frames are coalesced, large ones sent without copying."""
        if self.closed:
            raise ZmtpClosed("connection is closed")
        if not frames:
            raise ValueError("a message has at least one frame")
        deadline = None if timeout is None else time.monotonic() + timeout
        out = bytearray()
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            view = memoryview(frame)
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            out += frame_header(FLAG_MORE if i < last else 0, view.nbytes)
            if view.nbytes < _COALESCE:
                out += view
            else:
                if out:
                    self._sendall(out, deadline)
                    out = bytearray()
                self._sendall(view, deadline)
        if out:
            self._sendall(out, deadline)

    def _send_command(self, name: str, data: bytes = b"", deadline: float | None = None) -> None:
        body = command_body(name, data)
        self._sendall(frame_header(FLAG_COMMAND, len(body)) + body, deadline)

    def _sendall(self, data: Any, deadline: float | None) -> None:
        try:
            self._settimeout(deadline)
            self.sock.sendall(data)
        except socket.timeout:
            # part of a frame may be on the wire: the stream cannot be resumed
            self.close()
            raise ZmtpClosed("timed out while sending; connection closed") from None
        except OSError as exc:
            self.close()
            raise ZmtpClosed(f"connection lost while sending: {exc}") from None

    # -- receiving --------------------------------------------------------
    def recv_multipart(self, timeout: float | None = None) -> list[bytearray] | None:
        """Receive one message; ``None`` if ``timeout`` expires first (state is kept).

        ``timeout=0`` only consumes what has already arrived (non-blocking).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                flags, body = self._read_frame(deadline)
                if flags & FLAG_COMMAND:
                    self._handle_command(body, deadline)
                    continue
                self._parts.append(body)
                if not flags & FLAG_MORE:
                    parts, self._parts, self._parts_size = self._parts, [], 0
                    return parts
        except socket.timeout:
            return None

    def _handle_command(self, body: bytearray, deadline: float | None) -> None:
        name, data = split_command(body)
        if name == "PING":
            # PING = ttl (2 octets) + context (0..16 octets); PONG echoes the context
            self._send_command("PONG", data[2:18])
            self.pings_answered += 1
        elif name == "ERROR":
            self.close()
            raise ZmtpClosed(f"peer closed the connection: {_error_reason(data)}")
        # PONG, SUBSCRIBE, unknown commands...: ignored

    def _read_frame(self, deadline: float | None) -> tuple[int, bytearray]:
        if self._frame is None:
            self._need(2, deadline)
            flags = self._buf[0]
            if flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND):
                self.close()
                raise ZmtpError(f"invalid frame flags 0x{flags:02x}")
            if flags & FLAG_COMMAND and flags & FLAG_MORE:
                self.close()
                raise ZmtpError("command frame with MORE flag")
            if flags & FLAG_LONG:
                self._need(9, deadline)
                (size,) = struct.unpack(">Q", self._buf[1:9])
                del self._buf[:9]
            else:
                size = self._buf[1]
                del self._buf[:2]
            limit = 65535 + 256 if flags & FLAG_COMMAND else self.max_message_bytes - self._parts_size
            if size > limit:
                self.close()
                raise ZmtpError("peer sent a frame of %d bytes, more than the %d allowed"
                                % (size, max(limit, 0)))
            if not flags & FLAG_COMMAND:
                self._parts_size += size
            body = bytearray(size)
            take = min(size, len(self._buf))
            if take:
                body[:take] = self._buf[:take]
                del self._buf[:take]
            self._frame = [flags, body, take]
        flags, body, filled = self._frame
        size = len(body)
        if filled < size:
            view = memoryview(body)
            while filled < size:
                n = self._recv_into(view[filled:], deadline)
                filled += n
                self._frame[2] = filled
        self._frame = None
        return flags, body

    def _need(self, count: int, deadline: float | None) -> None:
        """Make ``self._buf`` hold at least ``count`` bytes."""
        while len(self._buf) < count:
            n = self._recv_into(memoryview(self._chunk), deadline)
            self._buf += memoryview(self._chunk)[:n]

    def _recv_into(self, view: memoryview, deadline: float | None) -> int:
        if self.closed:
            raise ZmtpClosed("connection is closed")
        self._settimeout(deadline)
        try:
            n = self.sock.recv_into(view)
        except (socket.timeout, BlockingIOError, InterruptedError):
            raise socket.timeout("timed out") from None
        except OSError as exc:
            self.close()
            raise ZmtpClosed(f"connection lost: {exc}") from None
        if not n:
            self.close()
            raise ZmtpClosed("connection closed by the peer")
        return n

    def _settimeout(self, deadline: float | None) -> None:
        if deadline is None:
            self.sock.settimeout(None)
            return
        # an expired deadline means "only what is already there" (non-blocking)
        self.sock.settimeout(max(0.0, deadline - time.monotonic()))


def _error_reason(data: bytes) -> str:
    if data:
        return bytes(data[1:1 + data[0]]).decode("utf-8", "replace") or "(no reason given)"
    return "(no reason given)"
