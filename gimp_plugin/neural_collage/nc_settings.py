"""Neural Collage plug-in settings: one JSON file, plain Python (no GIMP), shared with install.py.

The file ``nc_settings.json`` lives next to the plug-in (``<GIMP profile>/plug-ins/neural_collage/``);
``install.py`` writes it and Filters > Neural Collage > Settings... edits it. The environment variable
``NEURAL_COLLAGE_SETTINGS`` points the plug-in at another file (tests use it).

Keys:
  address         engine address, e.g. "tcp://127.0.0.1:5581"
  auto_start      start the engine when it does not answer (needs engine_command)
  engine_command  argv list that starts the engine, e.g. [".../venv/bin/python", "-m", "engine.cli", "serve"];
                  the plug-in appends "--bind <address>" (and "--model <model>" when a model is set)
  engine_cwd      folder the engine command runs in ("" = any; set for a source checkout run with --no-venv)
  model           model name passed to the engine ("" = the engine's default)
  timeout         seconds to wait for the engine's first answer to a request (a running edit may take longer:
                  the engine sends heartbeats and progress)
  margin          context around the selection sent to the engine, as a fraction of its size per side
  steps           optimisation steps of the projection (0 = the engine's default)
  engine_public_key  a remote engine's CURVE public key (40 characters) or its engine.key file; "" = no encryption
                  (loopback or an SSH tunnel). Encryption needs pyzmq in GIMP's Python.
  client_secret_key  this machine's CURVE key file (<name>.key_secret from `neural-collage keys --name <name>`),
                  for an engine that admits only listed clients (--curve-clients); "" = a throw-away key
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile

FILE_NAME = "nc_settings.json"
ENV_PATH = "NEURAL_COLLAGE_SETTINGS"
FALLBACK_ADDRESS = "tcp://127.0.0.1:5581"


def default_address() -> str:
    """The bridge's default address when the bridge is importable, else a fixed fallback."""
    try:
        from bridge.protocol import DEFAULT_ADDRESS

        return str(DEFAULT_ADDRESS)
    except Exception:  # noqa: BLE001 - any import problem means: use the fallback
        return FALLBACK_ADDRESS


def defaults() -> dict:
    return {
        "address": default_address(),
        "auto_start": False,
        "engine_command": [],
        "engine_cwd": "",
        "model": "",
        "timeout": 30.0,
        "margin": 0.25,
        "steps": 0,
        "engine_public_key": "",
        "client_secret_key": "",
    }


def settings_path(plugin_dir: str | None = None) -> str:
    env = os.environ.get(ENV_PATH)
    if env:
        return env
    if plugin_dir is None:
        plugin_dir = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(plugin_dir, FILE_NAME)


def parse_command(value) -> list:
    """An engine command as an argv list, from a list or from a shell-quoted string."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return []
        return shlex.split(value, posix=(os.name != "nt"))
    raise ValueError("engine_command must be a list of strings or a command line")


def format_command(argv) -> str:
    """The inverse of parse_command, for showing a command in a text field."""
    argv = parse_command(argv)
    if os.name == "nt":
        import subprocess

        return subprocess.list2cmdline(argv)
    return " ".join(shlex.quote(a) for a in argv)


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
    raise ValueError(f"not a yes/no value: {value!r}")


def validate(raw: dict) -> dict:
    """Defaults filled in, types checked; raises ValueError with a readable message on bad values.
    Unknown keys are kept (a newer plug-in may have written them)."""
    if not isinstance(raw, dict):
        raise TypeError("settings must be a JSON object")
    out = defaults()
    out.update(raw)
    address = str(out["address"] or "").strip()
    if not address:
        address = default_address()
    if "://" not in address:
        raise ValueError(f"engine address {address!r} must look like tcp://127.0.0.1:5581")
    out["address"] = address
    out["auto_start"] = _as_bool(out["auto_start"])
    out["engine_command"] = parse_command(out["engine_command"])
    out["engine_cwd"] = str(out["engine_cwd"] or "")
    out["model"] = str(out["model"] or "").strip()
    for key in ("engine_public_key", "client_secret_key"):
        out[key] = str(out[key] or "").strip()
    if out["client_secret_key"] and not out["engine_public_key"]:
        raise ValueError("client_secret_key is only used with encryption: set engine_public_key too")
    try:
        out["timeout"] = float(out["timeout"])
        out["margin"] = float(out["margin"])
        out["steps"] = int(out["steps"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"timeout, margin and steps must be numbers ({exc})") from None
    if out["timeout"] <= 0:
        raise ValueError("timeout must be positive")
    if not 0.0 <= out["margin"] <= 4.0:
        raise ValueError("margin must be between 0 and 4")
    if out["steps"] < 0:
        raise ValueError("steps must be 0 (engine default) or more")
    return out


def curve_options(settings: dict) -> dict:
    """EngineClient keyword arguments for the CURVE settings (empty when encryption is off)."""
    if not settings.get("engine_public_key"):
        return {}
    opts = {"curve_server_key": settings["engine_public_key"]}
    if settings.get("client_secret_key"):
        opts["curve_keys"] = settings["client_secret_key"]
    return opts


def load(path: str | None = None) -> tuple:
    """(settings, warning). A missing file gives the defaults; an unreadable or invalid one gives the defaults
    and a warning naming the file, so the plug-in can still run and say what is wrong."""
    path = path or settings_path()
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return defaults(), None
    except (OSError, ValueError) as exc:
        return defaults(), f"could not read settings file {path}: {exc}"
    try:
        return validate(raw), None
    except (TypeError, ValueError) as exc:
        return defaults(), f"ignoring settings file {path}: {exc}"


def save(settings: dict, path: str | None = None) -> str:
    """Validate and write atomically; returns the path written."""
    path = path or settings_path()
    data = validate(settings)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".nc_settings.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def engine_argv(settings: dict) -> list:
    """The full command that starts the engine for these settings ([] when none is configured)."""
    argv = list(settings.get("engine_command") or [])
    if not argv:
        return []
    if "--bind" not in argv:
        argv += ["--bind", settings["address"]]
    if settings.get("model") and "--model" not in argv:
        argv += ["--model", settings["model"]]
    return argv
