"""Who may reach the engine: address checks (a non-loopback bind needs CURVE) and the CURVE key files the server
reads at bind (its secret key, the admitted clients' public keys)."""
from __future__ import annotations

import ipaddress
import os

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "lo", "lo0")
KEYS_HINT = ("create a key pair with `neural-collage keys` and start the engine with "
             "--curve-secret-key PATH (clients then need the public key), or bind to "
             "tcp://127.0.0.1:PORT and reach it through an ssh tunnel")


class ServerConfigError(Exception):
    """The server refuses to start (insecure bind, address in use, bad keys...)."""


def split_address(address: str) -> tuple[str, str]:
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise ServerConfigError(f"unsupported address {address!r}: use tcp://HOST:PORT or ipc://PATH")
    return scheme, rest


def is_loopback_address(address: str) -> bool:
    scheme, rest = split_address(address)
    if scheme != "tcp":
        return True  # ipc:// and inproc:// never leave the machine
    host = rest.rsplit(":", 1)[0]
    if ";" in host:
        host = host.split(";", 1)[1]
    host = host.strip("[]")
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, host names


def load_secret_key(path: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a key file written by :func:`keys_main`."""
    import zmq.auth
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ServerConfigError(f"cannot read the CURVE key file {path}: {exc}") from None
    if not secret:
        raise ServerConfigError(f"{path} holds no secret key (use the *.key_secret file written by "
                                "`neural-collage keys`)")
    return public, secret


def load_client_keys(folder: str) -> frozenset[bytes]:
    """The client public keys (z85, from the ``*.key`` files, ZPL format) in ``folder``; a clear error when
    there are none.  Read once, at bind: the engine admits the clients listed when it started."""
    import zmq.auth
    if not os.path.isdir(folder):
        raise ServerConfigError(f"--curve-clients: {folder} is not a folder (it should hold the clients' "
                                "public *.key files)")
    try:
        keys = zmq.auth.load_certificates(folder)
    except (OSError, ValueError) as exc:
        raise ServerConfigError(f"--curve-clients: cannot read the client keys in {folder}: {exc}") from None
    if not keys:
        raise ServerConfigError(f"--curve-clients: {folder} holds no client public keys (*.key files from "
                                "`neural-collage keys --name <client>`): no client could connect")
    return frozenset(keys)


class ClientKeys:
    """The ZAP credentials provider of ``--curve-clients``: admits the listed public keys."""

    def __init__(self, keys: frozenset[bytes]):
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys
