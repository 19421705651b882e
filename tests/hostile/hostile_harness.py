"""Black-box harness of the hostile-input suite (imported by tests/hostile/conftest.py and the tests): a real
engine (`python -m engine.cli serve`) in a subprocess, a
raw ZeroMQ DEALER speaking frames by hand, the bridge client as the control, and the CLI run as a subprocess.

Profiles (hypothesis): ``NC_FUZZ_PROFILE=ci`` (the default: fixed seed, small counts, part of the normal test
run) or ``NC_FUZZ_PROFILE=long`` (random seed, 25x the examples or NC_FUZZ_SCALE x; run on demand:
``NC_FUZZ_PROFILE=long .venv/bin/python -m pytest -q -p no:cacheprovider tests/hostile``).
At the end of a run the suite prints how many hostile messages and files it tried and the engine's peak memory.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import zmq
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("NC_FUZZ_PROFILE", "ci")
LONG = PROFILE == "long"

#: The engine's peak resident memory (VmHWM) must stay below this under any hostile input.  The engine with the
#: default model and one 128 px job needs about 0.5 GiB; what a request may cost is bounded by its budgets.
ENGINE_RSS_BUDGET = int(os.environ.get("NC_FUZZ_RSS_BUDGET_MB", "1536")) * 2 ** 20
#: Address-space ceiling of the engine subprocess: a safety net for this shared machine, far above the budget,
#: so a regression shows up as a failed assertion instead of taking the machine's memory.
ENGINE_AS_LIMIT = 6 * 2 ** 30
#: Every request must be answered finally within this (a job the engine accepted is cancelled after CANCEL_AFTER).
FINAL_TIMEOUT = 60.0
CANCEL_AFTER = 2.0

COUNTS: dict[str, int] = {"messages": 0, "files": 0, "cli_runs": 0}
#: how the hostile messages were answered (result, or the error code) and how the CLI runs ended (exit codes)
OUTCOMES: dict[str, int] = {}


def outcome(key: str) -> None:
    OUTCOMES[key] = OUTCOMES.get(key, 0) + 1
PEAKS: dict[str, int] = {}


#: how many times the CI profile's examples the long profile tries (NC_FUZZ_SCALE, default 25)
SCALE = float(os.environ.get("NC_FUZZ_SCALE", "25"))


def fuzz_settings(ci: int, long: int | None = None, **kw) -> settings:
    """Hypothesis settings of one property: ``ci`` examples with a fixed seed, or ``long`` (default
    NC_FUZZ_SCALE x ci) with a random seed under NC_FUZZ_PROFILE=long."""
    n = (long or max(1, int(SCALE * ci))) if LONG else ci
    return settings(max_examples=n, derandomize=not LONG, deadline=None, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck), **kw)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (ENGINE_AS_LIMIT, ENGINE_AS_LIMIT))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def vm_hwm(pid: int) -> int:
    """Peak resident memory (bytes) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Engine:
    """`python -m engine.cli serve` on a free loopback port, under an address-space ceiling."""

    def __init__(self, log_path: Path, *extra: str):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - open for the engine's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve", "--bind", self.address, "--device", "cpu",
             "--max-message-mb", "64", *extra],
            cwd=ROOT, env=child_env(), stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_limit_memory)
        self.wait_ready()

    def wait_ready(self, timeout: float = 180.0) -> dict:
        from bridge.client import EngineClient, EngineTimeout, EngineUnavailable

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive, "the engine exited while starting:\n" + self.log_tail()
            try:
                with EngineClient(self.address, timeout=5, transport="pyzmq") as c:
                    info = c.hello()
                if info.get("state") == "ready":
                    return info
            except (EngineTimeout, EngineUnavailable):
                pass
            time.sleep(0.3)
        raise AssertionError("the engine did not become ready:\n" + self.log_tail())

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_rss(self) -> int:
        peak = vm_hwm(self.proc.pid)
        PEAKS[self.address] = max(PEAKS.get(self.address, 0), peak)
        return peak

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class _Engines:
    """The session's engine; a test that finds it dead (a failure of an earlier test) gets a fresh one."""

    def __init__(self, folder: Path):
        self.folder, self.current, self.started = folder, None, 0

    def get(self) -> Engine:
        if self.current is None or not self.current.alive:
            if self.current is not None:
                self.current.stop()
            self.started += 1
            self.current = Engine(self.folder / f"engine-{self.started}.log")
        return self.current


class CLIRunner:
    """tests/hostile/cli_runner.py: `neural-collage` command lines run one after the other in one subprocess
    (torch and the model load once), under the same address-space ceiling as the engine."""

    def __init__(self, weights: Path):
        env = child_env()
        env["NEURAL_COLLAGE_WEIGHTS"] = str(weights)  # import-chainer writes there
        env["NEURAL_COLLAGE_MAX_NPZ_MB"] = "64"
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_runner.py"))], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=_limit_memory)

    def __call__(self, argv: list, env: dict | None = None) -> dict:
        COUNTS["cli_runs"] += 1
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the CLI runner died (killed for memory?) on %r" % (argv,)
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class Raw:
    """A pyzmq DEALER that sends hand-made frames and collects every reply of a request up to its final one."""

    def __init__(self, address: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.late: list[dict] = []

    def recv(self, timeout: float):
        if not self.sock.poll(int(max(timeout, 0.0) * 1000)):
            return None
        from bridge.client import CLIENT_LIMITS
        from bridge.protocol import decode_message

        frames = self.sock.recv_multipart()
        header, arrays = decode_message(frames, CLIENT_LIMITS)  # the engine's replies are always valid
        return header, arrays

    def exchange(self, frames: list, engine: Engine, timeout: float = FINAL_TIMEOUT,
                 cancel_after: float = CANCEL_AFTER, count: bool = True) -> list[tuple[dict, dict]]:
        """Send ``frames``; return every reply up to and including the first final one (result/error).  A job
        the engine acknowledged is cancelled after ``cancel_after`` s, as a client would.  A reply for a request
        that comes after the final one is recorded in ``late`` (the engine must answer each request once)."""
        if count:
            COUNTS["messages"] += 1
        self.sock.send_multipart(frames, copy=True)
        got: list[tuple[dict, dict]] = []
        t0 = time.monotonic()
        cancelled = False
        while True:
            left = t0 + timeout - time.monotonic()
            assert left > 0, "no final reply within %.0f s (got %r); engine log:\n%s" % (
                timeout, [h for h, _ in got], engine.log_tail())
            msg = self.recv(min(left, 0.5))
            if got and not cancelled and time.monotonic() - t0 > cancel_after:
                rid = got[-1][0].get("id")
                if isinstance(rid, str):
                    self.send_json({"v": 1, "id": "cancel-" + rid, "op": "cancel", "params": {"id": rid}})
                    cancelled = True
            if msg is None:
                assert engine.alive, "the engine died; its log:\n" + engine.log_tail()
                continue
            header, arrays = msg
            rid = header.get("id")
            if isinstance(rid, str) and rid.startswith("cancel-"):
                continue  # the cancel's own answer
            got.append((header, arrays))
            if header["type"] in ("result", "error"):
                self.fence(engine)
                return got

    def fence(self, engine: Engine) -> None:
        """A hello with a fresh id: whatever arrives before its answer came after a final reply (``late``)."""
        fid = "fence-" + uuid.uuid4().hex
        self.send_json({"v": 1, "id": fid, "op": "hello", "params": {}})
        deadline = time.monotonic() + 30
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            assert msg is not None, "no answer to hello after a final reply; engine log:\n" + engine.log_tail()
            if msg[0].get("id") == fid:
                return
            if not str(msg[0].get("id", "")).startswith("cancel-"):
                self.late.append(msg[0])

    def send_json(self, header: dict) -> None:
        self.sock.send_multipart([json.dumps(header).encode()])

    def drain(self, wait: float = 0.0) -> list[dict]:
        out = []
        while True:
            msg = self.recv(wait)
            if msg is None:
                return out
            out.append(msg[0])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


# ---------------------------------------------------------------------------------------------------------------
# the control: a valid edit, checked on its pixels
# ---------------------------------------------------------------------------------------------------------------
PROBE_SIZE = 48


def probe_arrays():
    yy, xx = np.mgrid[0:PROBE_SIZE, 0:PROBE_SIZE]
    image = np.stack([xx * 5, yy * 5, (xx + yy) * 2], axis=2).clip(0, 255).astype(np.uint8)
    mask = np.zeros((PROBE_SIZE, PROBE_SIZE), np.uint8)
    mask[12:36, 12:36] = 255
    return image, mask


PROBE_PARAMS = {"target": "snow", "strength": 1.0, "layers": "all", "poisson": False, "source_class": "grass",
                "steps": 1}


def check_probe(image: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(out[mask == 0], image[mask == 0]), "pixels outside the selection changed"
    inside = np.abs(out[mask == 255].astype(int) - image[mask == 255].astype(int)).mean()
    assert inside > 1.0, f"the selection hardly changed ({inside:.2f})"


def probe_edit(engine: Engine, transport: str = "pyzmq") -> float:
    """A valid label swap through the bridge client; asserts on its pixels; returns its time in seconds."""
    from bridge.client import EngineClient

    image, mask = probe_arrays()
    t0 = time.monotonic()
    with EngineClient(engine.address, timeout=60, transport=transport) as c:
        reply = c.call("swap", PROBE_PARAMS, {"image": image, "mask": mask})
    out = np.frombuffer(reply.arrays["image"].data, np.uint8).reshape(reply.arrays["image"].shape)
    check_probe(image, mask, out)
    return time.monotonic() - t0


def probe_raw(raw: Raw, engine: Engine) -> None:
    """The same valid edit through the fuzzing socket itself (so nothing stale may arrive before its answer)."""
    from bridge.protocol import encode_message

    image, mask = probe_arrays()
    frames = encode_message({"v": 1, "id": "probe-" + uuid.uuid4().hex, "op": "swap",
                             "params": PROBE_PARAMS}, {"image": image, "mask": mask})
    got = raw.exchange([bytes(f) for f in frames], engine, cancel_after=1e9, count=False)
    header, arrays = got[-1]
    assert header["type"] == "result", header
    out = np.frombuffer(arrays["image"].data, np.uint8).reshape(arrays["image"].shape)
    check_probe(image, mask, out)
