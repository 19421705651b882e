"""`neural-collage serve` and `neural-collage keys`: the engine server's command line (arguments, logging, the
handler factory, signals) and the CURVE key pair it needs for a non-loopback address."""
# ruff: noqa: UP031
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Callable

import zmq

from bridge.protocol import DEFAULT_ADDRESS, DEFAULT_LIMITS, Limits, MiB
from engine.serve.security import ServerConfigError
from engine.edit.budgets import add_budget_arguments, budgets_from_args
from engine.serve.server import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_STALL_TIMEOUT, EngineServer
from engine.device import PRECISION_HELP, PRECISIONS

log = logging.getLogger("neural_collage.server")


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--bind", default=DEFAULT_ADDRESS,
                        help="address to listen on (default %(default)s; tcp://HOST:PORT or ipc://PATH; "
                             "non-loopback tcp needs --curve-secret-key)")
    parser.add_argument("--model", default=None, help="model to load (default: the default model)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="compute device (default %(default)s)")
    parser.add_argument("--log-file", default=None, help="also write the log to this file")
    parser.add_argument("--curve-secret-key", default=None, metavar="PATH",
                        help="CURVE secret key file (from `neural-collage keys`): encrypts the "
                             "connection; required for non-loopback addresses")
    parser.add_argument("--curve-clients", default=None, metavar="DIR",
                        help="admit only the clients whose public key file (*.key, from `neural-collage keys "
                             "--name <client>`) is in DIR (needs --curve-secret-key)")
    parser.add_argument("--max-message-mb", type=int, default=DEFAULT_LIMITS.max_message_bytes // MiB,
                        help="largest accepted request in MiB (default %(default)s)")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                        help="image requests allowed to wait (default %(default)s)")
    parser.add_argument("--max-queue-mb", type=int, default=DEFAULT_MAX_QUEUE_BYTES // MiB,
                        help="image data the running and waiting requests may hold together, in MiB; a request "
                             "beyond it is answered 'busy' (default %(default)s)")
    parser.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="SECONDS",
                        help="a request that shows no progress for this long is answered with an error and the "
                             "worker restarted (default %(default)s; 0: never)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help=PRECISION_HELP)
    add_budget_arguments(parser)
    return parser


def configure_logging(log_file: str | None = None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("neural_collage")
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_nc_stderr", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(fmt)
        handler._nc_stderr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)


def serve_main(args: argparse.Namespace, handler_factory: Callable[[argparse.Namespace], Any]) -> int:
    """Run the engine server in the foreground until SIGINT/SIGTERM.

    ``handler_factory(args)`` builds the handler (loads the model); it runs on
    the worker thread after the address is bound, so a busy address fails fast
    and ``hello`` answers ``state: "loading"`` meanwhile.  Returns an exit code.
    """
    configure_logging(getattr(args, "log_file", None))
    max_mb = getattr(args, "max_message_mb", DEFAULT_LIMITS.max_message_bytes // MiB)
    limits = Limits(max_message_bytes=int(max_mb) * MiB)
    server = EngineServer(handler_factory=lambda: handler_factory(args),
                          bind=getattr(args, "bind", DEFAULT_ADDRESS), limits=limits,
                          curve_secret_key_file=getattr(args, "curve_secret_key", None),
                          curve_clients=getattr(args, "curve_clients", None),
                          max_queue=getattr(args, "max_queue", DEFAULT_MAX_QUEUE),
                          max_queue_bytes=int(getattr(args, "max_queue_mb", DEFAULT_MAX_QUEUE_BYTES // MiB)) * MiB,
                          stall_timeout=float(getattr(args, "stall_timeout", DEFAULT_STALL_TIMEOUT)))
    try:
        server.bind()
    except ServerConfigError as exc:
        log.error("%s", exc)
        return 2

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d received: stopping", signum)
        server.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread / unsupported
            pass
    return server.serve_forever()


def default_keys_dir() -> str:
    try:
        import platformdirs
        return os.path.join(platformdirs.user_config_dir("neural-collage"), "keys")
    except ImportError:
        return os.path.join(os.path.expanduser("~"), ".config", "neural-collage", "keys")


def add_keys_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out-dir", default=None,
                        help=f"directory for engine.key / engine.key_secret (default: {default_keys_dir()})")
    parser.add_argument("--name", default="engine", help="file name stem (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite existing keys")
    return parser


def _write_key_file(path: str, public: bytes, secret: bytes | None, mode: int) -> None:
    lines = ["#   Neural Collage engine CURVE key (ZeroMQ ZPL certificate format)",
             "#   %s" % ("SECRET: keep this file private" if secret else "public key: give it to clients"),
             "metadata", "curve",
             '    public-key = "{}"'.format(public.decode("ascii"))]
    if secret:
        lines.append('    secret-key = "{}"'.format(secret.decode("ascii")))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, mode)


def keys_main(args: Any = None) -> int:
    """Write a CURVE key pair: ``<name>.key`` (public) and ``<name>.key_secret`` (mode 0600).

    ``args`` is an argparse Namespace from :func:`add_keys_arguments`, or an output directory path.
    """
    if args is None or isinstance(args, (str, os.PathLike)):
        out_dir, name, force = args, "engine", False
    else:
        out_dir = getattr(args, "out_dir", None)
        name = getattr(args, "name", "engine") or "engine"
        force = bool(getattr(args, "force", False))
    out_dir = os.fspath(out_dir) if out_dir else default_keys_dir()
    if not zmq.has("curve"):
        print("this pyzmq/libzmq build has no CURVE support", file=sys.stderr)
        return 1
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    public_path = os.path.join(out_dir, name + ".key")
    secret_path = os.path.join(out_dir, name + ".key_secret")
    if not force and (os.path.exists(public_path) or os.path.exists(secret_path)):
        print(f"keys already exist in {out_dir} (use --force to replace them)", file=sys.stderr)
        return 1
    public, secret = zmq.curve_keypair()
    _write_key_file(secret_path, public, secret, 0o600)
    _write_key_file(public_path, public, None, 0o644)
    print(f"wrote {secret_path} (secret, mode 0600) and {public_path} (public)")
    print("engine public key: {}".format(public.decode("ascii")))
    print("start the engine with:  neural-collage serve --bind tcp://0.0.0.0:5581 "
          f"--curve-secret-key {secret_path}")
    print(f"and give clients the public key (or {public_path}); to admit only listed clients, copy each client's "
          "public key file (`neural-collage keys --name <client>` on its machine) into a folder and add "
          "--curve-clients FOLDER")
    return 0


def engine_handler(args: argparse.Namespace):
    """The handler `neural-collage serve` runs: the engine on ``--model`` / ``--device``."""
    from engine.serve.handler import Engine

    return Engine(args.model, args.device, budgets_from_args(args), getattr(args, "precision", "auto"))


def cmd_serve(args) -> int:
    return serve_main(args, engine_handler)


def cmd_keys(args) -> int:
    return keys_main(args)
