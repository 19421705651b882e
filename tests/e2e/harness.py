"""Plumbing of the GIMP end-to-end tests: which GIMPs to test (3.0 and 3.2, each with and without pyzmq in
GIMP's Python), where they run (host or a Debian chroot), the engine (stand-in or real), installing the
plug-in into a throwaway profile, and running a batch script that reports JSON lines.

Targets (one pytest parameter each, ids "3.0", "3.0-zmq", "3.2", "3.2-zmq"):
  3.0      GIMP 3.0.4, Debian 13 (trixie) chroot /var/cache/neural-collage/gimp3-root, no python3-zmq
  3.0-zmq  the same plus python3-zmq                 /var/cache/neural-collage/gimp3-zmq-root
  3.2      GIMP 3.2.6, Debian forky chroot          /var/cache/neural-collage/gimp32-root, no python3-zmq
  3.2-zmq  the same plus python3-zmq                 /var/cache/neural-collage/gimp32-zmq-root
Each is built by tests/e2e/make_gimp_root.sh VERSION [zmq] when missing (needs root + debootstrap). The roots
without and with pyzmq are separate folders: nothing installs or removes pyzmq while tests share a root.
A host with gimp-console-3.N on PATH is used instead of that version's chroots (one target, "3.N-host").

Environment:
  NC_E2E_GIMP_VERSIONS  versions to test (default "3.0,3.2")
  NC_E2E_ZMQ=both|with|without   pyzmq variants to test (default both)
  NC_GIMP_ROOT          the 3.0 root without pyzmq (default /var/cache/neural-collage/gimp3-root); the others:
                        NC_GIMP_ROOT_30_ZMQ, NC_GIMP_ROOT_32, NC_GIMP_ROOT_32_ZMQ
  NC_E2E_GIMP=host|chroot|auto   force where GIMP runs (auto: host gimp-console-3.N if on PATH, else chroot)
  NC_E2E_ENGINE=fake|real|auto   stand-in engine (tests/e2e/fake_engine.py) or the real one
                        (python3 -m engine.cli serve --model default); auto = real when the default model's
                        weights are in engine/weights/default and torch/pyzmq/safetensors import, else fake
  NC_E2E_CASES          comma-separated case names of test_gimp_e2e.build_cases to run (the others' tests skip):
                        a shortcut for slow machines; unset (CI) runs everything
  NC_E2E_MODEL          model the real engine serves (default "default")
  NC_E2E_SAVE_DOCS=1    write before/after PNGs and the dialog screenshots to docs/gimp/
  NC_E2E_GIMP_TIMEOUT   seconds for the whole GIMP batch run (default 300, 1500 with the real engine)
  NC_E2E_BUDGET         test_runtime_budget's limit in seconds (default 180, 1200 with the real engine)
  NC_E2E_STEPS          projection steps the plug-in asks the real engine for (settings key "steps"; default 10,
                        0 = the engine's default); the stand-in engine ignores the settings key (it does as many
                        steps as a procedure's own "steps" argument asks, 3 otherwise)
  CI=true               a missing GIMP fails the tests instead of skipping them
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = "/var/cache/neural-collage"
DEFAULT_ROOT = f"{CACHE}/gimp3-root"
VERSIONS = {"3.0": "gimp3", "3.2": "gimp32"}  # GIMP version -> root name stem in CACHE
sys.path.insert(0, str(REPO))


class GimpUnavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# GIMP
# ---------------------------------------------------------------------------------------------------------

class Target:
    """One GIMP to test: ``version`` (3.0, 3.2), ``zmq`` (True/False: python3-zmq in the chroot or not; None:
    the host's GIMP as it is)."""

    def __init__(self, version: str, zmq: bool | None):
        self.version = version
        self.zmq = zmq

    @property
    def id(self) -> str:
        if self.zmq is None:
            return f"{self.version}-host"
        return self.version + ("-zmq" if self.zmq else "")

    @property
    def binary(self) -> str:
        return f"gimp-console-{self.version}"

    def root(self) -> str:
        env = "NC_GIMP_ROOT_" + self.version.replace(".", "") + ("_ZMQ" if self.zmq else "")
        if self.version == "3.0" and not self.zmq and os.environ.get("NC_GIMP_ROOT"):
            return os.environ["NC_GIMP_ROOT"]
        stem = VERSIONS[self.version]
        return os.environ.get(env) or f"{CACHE}/{stem}{'-zmq' if self.zmq else ''}-root"

    def __repr__(self) -> str:
        return f"Target({self.id})"


def targets() -> list:
    """The GIMPs to test (see the module docstring)."""
    mode = os.environ.get("NC_E2E_GIMP", "auto")
    zmq = {"both": (False, True), "with": (True,), "without": (False,)}[os.environ.get("NC_E2E_ZMQ", "both")]
    out = []
    for version in [v.strip() for v in os.environ.get("NC_E2E_GIMP_VERSIONS", "3.0,3.2").split(",") if v.strip()]:
        if version not in VERSIONS:
            raise ValueError(f"NC_E2E_GIMP_VERSIONS: unknown GIMP version {version} (known: {', '.join(VERSIONS)})")
        if mode == "host" or (mode == "auto" and shutil.which(f"gimp-console-{version}")):
            out.append(Target(version, None))
        else:
            out.extend(Target(version, z) for z in zmq)
    return out


class Gimp:
    """GIMP 3 on the host or in a chroot. Paths handed to GIMP are translated with ``inside``."""

    def __init__(self, root: str | None, target: Target | None = None):
        self.root = root  # None: host
        self.target = target or Target("3.0", None if root is None else False)

    @property
    def version(self) -> str:
        return self.target.version

    @property
    def where(self) -> str:
        return (f"GIMP {self.version} in chroot {self.root}" if self.root else f"GIMP {self.version} on the host")

    def wrap(self, argv: list) -> list:
        """``argv`` run inside the chroot, with /proc mounted in a private mount namespace (GIMP 3.2 needs
        /proc; nothing stays mounted). The command keeps the process id (every step execs)."""
        if not self.root:
            return list(argv)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', self.root, *argv]

    def inside(self, path) -> str:
        path = os.path.abspath(str(path))
        if not self.root:
            return path
        root = os.path.abspath(self.root)
        if not path.startswith(root + os.sep):
            raise ValueError(f"{path} is not inside the chroot {root}")
        return path[len(root):]

    def mkwork(self, prefix="nc-e2e-") -> Path:
        base = os.path.join(self.root, "tmp") if self.root else None
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        os.chmod(path, 0o755)
        return path

    def command(self, profile: Path, batch: str, env=None) -> list:
        home = "/tmp" if self.root else str(profile.parent)
        extra = [f"{k}={v}" for k, v in sorted((env or {}).items())]
        argv = ["env", "HOME=" + home, "GIMP3_DIRECTORY=" + self.inside(profile), "LANG=C.UTF-8",
                "NO_AT_BRIDGE=1", *extra, self.target.binary, "-i", "-n", "-d",
                "--batch-interpreter=python-fu-eval", "-b", batch, "--quit"]
        return self.wrap(argv)

    def xvfb_path(self):
        """Xvfb next to this GIMP (lets the tests open the plug-in's dialogs), or None."""
        if self.root:
            return "/usr/bin/Xvfb" if os.path.isfile(os.path.join(self.root, "usr/bin/Xvfb")) else None
        return shutil.which("Xvfb")

    def start_xvfb(self):
        """(process, DISPLAY) of a private X server, or (None, None) when Xvfb is missing."""
        xvfb = self.xvfb_path()
        if not xvfb:
            return None, None
        for num in range(91, 140):
            sock = os.path.join(self.root or "/", f"tmp/.X11-unix/X{num}")
            if os.path.exists(f"/tmp/.X11-unix/X{num}") or os.path.exists(sock):
                continue
            argv = [xvfb, f":{num}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
            proc = subprocess.Popen(self.wrap(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None and not os.path.exists(sock):
                time.sleep(0.1)
            if proc.poll() is None and os.path.exists(sock):
                return proc, f":{num}"
            proc.kill()
            proc.wait(5)
        return None, None

    def run_batch(self, profile: Path, batch: str, timeout: float, on_line=None, env=None) -> tuple:
        """Run one batch command; ``on_line(line)`` sees stdout lines as they come. Returns (rc, stdout,
        stderr). GIMP's exit code is not reliable: parse the output."""
        proc = subprocess.Popen(self.command(profile, batch, env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        err_lines = []
        t = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
        t.start()
        out_lines = []
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                out_lines.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            rc = proc.wait()
        finally:
            timer.cancel()
        t.join(5)
        out, err = "".join(out_lines), "".join(err_lines)
        for name, text in (("gimp_stdout.log", out), ("gimp_stderr.log", err)):  # for a look after a failure
            (profile.parent / name).write_text(text, errors="replace")
        return rc, out, err


def _chroot_ready(root: str, target: Target) -> bool:
    if not os.path.isfile(os.path.join(root, "usr", "bin", target.binary)):
        return False
    return not target.zmq or os.path.isdir(os.path.join(root, "usr", "lib", "python3", "dist-packages", "zmq"))


def find_gimp(target: Target | None = None, build: bool = True) -> Gimp:
    """The GIMP of ``target`` (default: 3.0 without pyzmq); raises GimpUnavailable with the reason."""
    target = target or Target("3.0", False)
    if target.zmq is None:
        if shutil.which(target.binary):
            return Gimp(None, target)
        raise GimpUnavailable(f"{target.binary} is not on PATH (NC_E2E_GIMP=host)")
    root = target.root()
    if _chroot_ready(root, target):
        if os.geteuid() != 0:
            raise GimpUnavailable(f"the GIMP chroot {root} needs root to enter")
        return Gimp(root, target)
    what = f"GIMP {target.version}" + (" with python3-zmq" if target.zmq else "")
    if not build:
        raise GimpUnavailable(f"no {what}: no chroot at {root}")
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise GimpUnavailable(f"no {what} (no chroot at {root}) and cannot build one here (needs root and "
                              f"debootstrap): run tests/e2e/make_gimp_root.sh {target.version}"
                              + (" zmq" if target.zmq else ""))
    argv = ["sh", str(HERE / "make_gimp_root.sh"), target.version] + (["zmq"] if target.zmq else [])
    res = subprocess.run(argv, env=dict(os.environ, NC_GIMP_ROOT=root), capture_output=True, text=True,
                         check=False)
    if res.returncode != 0 or not _chroot_ready(root, target):
        tail = (res.stderr or res.stdout)[-2000:]
        raise GimpUnavailable(f"building the {what} chroot {root} failed (rc {res.returncode}): {tail}")
    return Gimp(root, target)


def install_plugin(profile: Path, address: str, steps: int | None = None) -> str:
    """install.py into ``profile``; ``steps`` (when given) goes into the plug-in's settings file."""
    res = subprocess.run([sys.executable, str(REPO / "install.py"), "--no-venv", "--gimp-dir", str(profile),
                          "--address", address, "--no-auto-start"], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"install.py failed: {res.stdout} {res.stderr}")
    if steps is not None:
        sys.path.insert(0, str(REPO / "gimp_plugin" / "neural_collage"))
        import nc_settings

        path = profile / "plug-ins" / "neural_collage" / nc_settings.FILE_NAME
        settings, warning = nc_settings.load(str(path))
        if warning:
            raise RuntimeError(warning)
        nc_settings.save(dict(settings, steps=int(steps)), str(path))
    return res.stdout


def e2e_steps(kind: str) -> int | None:
    """Projection steps for the plug-in's settings: few with the real engine (the tests check behaviour, not
    quality), untouched (engine default) with the stand-in."""
    if kind != "real":
        return None
    return int(os.environ.get("NC_E2E_STEPS", "10"))


# ---------------------------------------------------------------------------------------------------------
# engine
# ---------------------------------------------------------------------------------------------------------

DEFAULT_WEIGHTS = REPO / "engine" / "weights" / "default"
DEFAULT_WEIGHT_FILES = ("config.json", "generator.safetensors", "discriminator.safetensors")


def real_engine_available() -> tuple:
    """(True, "") when the real engine can serve the default model here, else (False, why not)."""
    import importlib.util

    for part in ("serve/handler.py", "cli/__main__.py"):  # the handler, and `python -m engine.cli serve`
        if not (REPO / "engine" / part).is_file():
            return False, f"engine/{part} is missing"
    missing = [f for f in DEFAULT_WEIGHT_FILES if not (DEFAULT_WEIGHTS / f).is_file()]
    if missing:
        return False, f"the default weights are missing ({', '.join(missing)} in {DEFAULT_WEIGHTS})"
    for mod in ("torch", "zmq", "safetensors"):
        if importlib.util.find_spec(mod) is None:
            return False, f"{mod} is not importable by {sys.executable}"
    return True, ""


def engine_kind() -> str:
    kind = os.environ.get("NC_E2E_ENGINE", "auto")
    if kind == "auto":
        return "real" if real_engine_available()[0] else "fake"
    if kind not in ("fake", "real"):
        raise ValueError("NC_E2E_ENGINE must be fake, real or auto")
    return kind


class Engine:
    def __init__(self, kind: str, address: str, log_dir: Path):
        self.kind = kind
        self.address = address
        self.request_log = log_dir / "engine_requests.jsonl"
        self.output = log_dir / "engine_output.log"
        self.proc = None

    def start(self, timeout: float = 180.0) -> None:
        if self.kind == "fake":
            argv = [sys.executable, str(HERE / "fake_engine.py"), "--bind", self.address, "--log",
                    str(self.request_log)]
        else:
            argv = [sys.executable, "-m", "engine.cli", "serve", "--model", os.environ.get("NC_E2E_MODEL",
                                                                                           "default"),
                    "--bind", self.address]
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.output.read_text()[-3000:]
                raise RuntimeError(f"the {self.kind} engine exited ({self.proc.returncode}): {tail}")
            try:
                info = self.hello(2.0)
                if info.get("state", "ready") == "ready":
                    return
            except Exception as exc:  # noqa: BLE001 - still starting
                last = exc
            time.sleep(0.2)
        self.stop()
        tail = self.output.read_text()[-3000:]
        raise RuntimeError(f"the {self.kind} engine did not answer within {timeout:.0f} s ({last}): {tail}")

    def client(self, timeout=10.0):
        from bridge.client import EngineClient

        return EngineClient(self.address, timeout)

    def hello(self, timeout=5.0) -> dict:
        c = self.client(timeout)
        try:
            return c.hello()
        finally:
            c.close()

    def classes(self) -> list:
        c = self.client(30.0)
        try:
            return list(c.classes().get("classes") or [])
        finally:
            c.close()

    def requests(self) -> list:
        if not self.request_log.is_file():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def plugin_processes(gimp: Gimp, profile: Path) -> list:
    """PIDs of the processes running the Neural Collage plug-in installed in ``profile`` by the GIMP of
    ``gimp`` (GIMP starts one per call; a chroot shares the host's process table). Only this run's: the
    machine may run other GIMP sessions with the same plug-in at the same time, which must not be touched."""
    script = gimp.inside(profile / "plug-ins" / "neural_collage" / "neural_collage.py").encode()
    root = os.path.realpath(gimp.root or "/")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            proc_root = os.path.realpath(f"/proc/{entry}/root")
        except OSError:
            continue
        if script in argv and proc_root == root:
            pids.append(int(entry))
    return pids


def cancel_like_gimp(engine: Engine, total: int, gimp: Gimp, profile: Path, timeout: float = 900.0) -> dict:
    """Do what GIMP does when the user presses Cancel on a plug-in's progress: it kills the plug-in process
    (gimp_plug_in_progress_cancel_callback -> gimp_plug_in_close(plug_in, TRUE) in GIMP's
    app/plug-in/gimpplugin-progress.c). Waits until the engine reports progress on a stage of ``total`` steps
    (the projection; the real engine may search the class first, which took over 2 minutes on a loaded
    2-core machine: hence up to ``timeout`` = 15 minutes; it returns as soon as the progress shows), kills the plug-in,
    then measures how long the engine takes to be idle again (it should notice that its client went away and
    cancel the job, not compute it to the end)."""
    info = {"job": None, "killed": [], "engine_idle_after": None}
    c = engine.client(5.0)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = c.status().get("running")
            if running and running.get("step") and running.get("total") == total:
                info["job"] = running
                break
            time.sleep(0.05)
        if info["job"] is None:
            return info
        for pid in plugin_processes(gimp, profile):
            try:
                os.kill(pid, signal.SIGKILL)
                info["killed"].append(pid)
            except ProcessLookupError:
                pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            st = c.status()
            if st.get("running") is None and not st.get("queue_length"):
                info["engine_idle_after"] = round(time.monotonic() - t0, 2)
                break
            time.sleep(0.05)
    finally:
        c.close()
    return info


# ---------------------------------------------------------------------------------------------------------
# photos
# ---------------------------------------------------------------------------------------------------------

def write_photos(folder: Path) -> tuple:
    """(photo, reference photo): real photographs (scikit-image's sample data) as PNG, else textures."""
    import numpy as np
    from PIL import Image

    try:
        from skimage import data

        photo = data.chelsea()                                  # 300 x 451 cat
        ref = np.ascontiguousarray(data.astronaut()[40:200, 150:350])  # 160 x 200 crop
    except Exception:  # noqa: BLE001 - scikit-image missing: a deterministic texture instead
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:300, 0:451]
        base = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0), (xx + yy) % 256], -1)
        photo = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        ref = np.ascontiguousarray(photo[::-1, ::-1][:160, :200])
    p1, p2 = folder / "photo.png", folder / "reference.png"
    Image.fromarray(photo).save(p1)
    Image.fromarray(ref).save(p2)
    return p1, p2


# ---------------------------------------------------------------------------------------------------------
# raw pixel files written by gimp_cases.py
# ---------------------------------------------------------------------------------------------------------

def read_raw(work: Path, name: str, fmt: str, w: int, h: int):
    import numpy as np

    model, kind = fmt.rsplit(" ", 1)
    channels = {"Y": 1, "Y'": 1, "Y'A": 2, "YA": 2, "R'G'B'": 3, "R'G'B'A": 4}[model]
    dtype = {"u8": "<u1", "u16": "<u2", "float": "<f4"}[kind]
    a = np.frombuffer((work / name).read_bytes(), dtype=dtype)
    return a.reshape(h, w, channels)


def full_scale(fmt: str) -> float:
    return {"u8": 255.0, "u16": 65535.0, "float": 1.0}[fmt.rsplit(" ", 1)[1]]
