"""install.py with a temporary HOME / APPDATA: profile discovery, dry run, install, idempotent re-install,
uninstall and --check."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install.py"

spec = importlib.util.spec_from_file_location("nc_install", INSTALL)
inst = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inst)

needs_bridge = pytest.mark.skipif(not (ROOT / "bridge" / "client.py").exists(),
                                  reason="bridge/client.py missing")


def run_install(home: Path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("GIMP3_DIRECTORY", "XDG_CONFIG_HOME",
                                                              "XDG_DATA_HOME", "APPDATA")}
    env.update(HOME=str(home), PATH=os.environ.get("PATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(INSTALL), *args], capture_output=True, text=True, env=env,
                          check=False)


def tree(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = (hashlib.sha1(p.read_bytes()).hexdigest(),
                                               stat.S_IMODE(p.stat().st_mode))
    return out


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    return h


# ---- discovery ----------------------------------------------------------------------------------------

def test_candidate_profiles_per_platform(tmp_path):
    linux = [d for _l, d in inst.candidate_profiles("linux", {}, "/h")]
    assert "/h/.config/GIMP/3.0" in linux and "/h/.config/GIMP/3.2" in linux
    assert "/h/.var/app/org.gimp.GIMP/config/GIMP/3.0" in linux
    assert "/h/snap/gimp/current/.config/GIMP/3.2" in linux
    xdg = inst.candidate_profiles("linux", {"XDG_CONFIG_HOME": "/x"}, "/h")
    assert xdg[0] == ("GIMP 3.0", "/x/GIMP/3.0")
    win = [d for _l, d in inst.candidate_profiles("win32", {"APPDATA": "C:/Users/u/AppData/Roaming"}, "/h")]
    assert win == [os.path.join("C:/Users/u/AppData/Roaming", "GIMP", v) for v in ("3.0", "3.2")]
    mac = [d for _l, d in inst.candidate_profiles("darwin", {}, "/h")]
    assert mac == ["/h/Library/Application Support/GIMP/3.0", "/h/Library/Application Support/GIMP/3.2"]


def test_find_profiles(tmp_path, monkeypatch):
    home = tmp_path / "h"
    monkeypatch.setattr(inst, "gimp_program", lambda: None)
    assert inst.find_profiles(None, "linux", {}, str(home)) == []
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.2").mkdir(parents=True)
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    found = [d for _l, d in inst.find_profiles(None, "linux", {}, str(home))]
    assert found == [str(home / ".config/GIMP/3.0"), str(home / ".var/app/org.gimp.GIMP/config/GIMP/3.2")]
    env = {"GIMP3_DIRECTORY": "/g"}
    assert inst.find_profiles(None, "linux", env, str(home)) == [("GIMP3_DIRECTORY", "/g")]
    assert inst.find_profiles([str(tmp_path / "p" / "plug-ins")], "linux", {}, str(home)) == [
        ("--gimp-dir", str(tmp_path / "p"))]
    appdata = tmp_path / "AppData" / "Roaming"
    (appdata / "GIMP" / "3.2").mkdir(parents=True)
    assert inst.find_profiles(None, "win32", {"APPDATA": str(appdata)}, str(home)) == [
        ("GIMP 3.2", str(appdata / "GIMP" / "3.2"))]
    # no profile yet but GIMP is installed: the native 3.0 profile is created
    monkeypatch.setattr(inst, "gimp_program", lambda: "/usr/bin/gimp")
    assert inst.find_profiles(None, "darwin", {}, str(tmp_path / "empty")) == [
        ("GIMP 3.0", str(tmp_path / "empty/Library/Application Support/GIMP/3.0"))]


def test_no_profile_is_an_error(tmp_path):
    res = run_install(tmp_path / "nohome", "--no-venv", env_extra={"PATH": "/nonexistent"})
    assert res.returncode == 2
    assert "No GIMP 3 profile found" in res.stderr and "--gimp-dir" in res.stderr


# ---- install / re-install / uninstall -----------------------------------------------------------------

@needs_bridge
def test_dry_run_changes_nothing(home):
    before = tree(home)
    res = run_install(home, "--dry-run", "--no-venv")
    assert res.returncode == 0, res.stderr
    assert tree(home) == before
    assert "[dry-run] copy gimp_plugin/neural_collage/neural_collage.py" in res.stdout
    assert "[dry-run] copy bridge/client.py" in res.stdout
    assert "dry run: nothing was changed" in res.stdout


@needs_bridge
def test_dry_run_venv_steps(home, tmp_path):
    venv = tmp_path / "venv"
    res = run_install(home, "--dry-run", "--venv", str(venv), "--with-torch", "--torch-spec", "torch==2.13.0")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"-m venv {venv}" in out
    pip = f"{venv}/bin/python -m pip install --disable-pip-version-check"
    assert f"{pip} torch==2.13.0" in out
    assert f"{pip} -e {ROOT}" in out
    assert out.index("torch==2.13.0") < out.index(f"-e {ROOT}")
    assert not venv.exists()
    res = run_install(home, "--dry-run", "--venv", str(venv), "--no-editable")
    assert "torch==" not in res.stdout  # torch only when asked for
    assert f"install --disable-pip-version-check --upgrade {ROOT}" in res.stdout
    res = run_install(home, "--dry-run", "--venv", str(venv), env_extra={"NC_INSTALL_TORCH": "1",
                                                                          "NC_TORCH_SPEC": "torch==2.12.1"})
    assert "torch==2.12.1" in res.stdout


@needs_bridge
def test_install_reinstall_uninstall(home):
    res = run_install(home, "--no-venv")
    assert res.returncode == 0, res.stderr
    dest = home / ".config/GIMP/3.0/plug-ins/neural_collage"
    main = dest / "neural_collage.py"
    assert main.stat().st_mode & stat.S_IXUSR
    for name in ("nc_pixels.py", "nc_settings.py", "bridge/__init__.py", "bridge/client.py", "bridge/zmtp.py",
                 "bridge/protocol.py"):
        assert (dest / name).is_file(), name
    settings = json.loads((dest / "nc_settings.json").read_text())
    assert settings["engine_command"] == [sys.executable, "-m", "engine.cli", "serve"]
    assert settings["engine_cwd"] == str(ROOT)  # --no-venv: the engine runs from this checkout
    assert settings["auto_start"] is True
    assert settings["address"].startswith("tcp://127.0.0.1:")

    # the user changes a setting; a re-install keeps it and copies nothing
    settings["model"] = "my-model"
    settings["timeout"] = 99.0
    (dest / "nc_settings.json").write_text(json.dumps(settings))
    first = tree(home)
    res = run_install(home, "--no-venv")
    assert res.returncode == 0, res.stderr
    assert "copy " not in res.stdout and "write settings" not in res.stdout
    assert tree(home) == first

    # options override, stale files from an older install disappear, damaged files are repaired
    (dest / "old_helper.py").write_text("# from an older version\n")
    manifest = json.loads((dest / ".nc_install.json").read_text())
    (dest / ".nc_install.json").write_text(json.dumps([*manifest, "old_helper.py"]))
    (dest / "nc_pixels.py").write_text("broken")
    os.chmod(main, 0o644)
    res = run_install(home, "--no-venv", "--address", "tcp://127.0.0.1:6123", "--no-auto-start")
    assert res.returncode == 0, res.stderr
    assert not (dest / "old_helper.py").exists()
    source = ROOT / "gimp_plugin/neural_collage/nc_pixels.py"
    assert (dest / "nc_pixels.py").read_bytes() == source.read_bytes()
    assert main.stat().st_mode & stat.S_IXUSR
    settings = json.loads((dest / "nc_settings.json").read_text())
    assert settings["address"] == "tcp://127.0.0.1:6123" and settings["auto_start"] is False
    assert settings["model"] == "my-model" and settings["timeout"] == 99.0

    other = home / ".config/GIMP/3.0/plug-ins/someone_else/someone_else.py"
    other.parent.mkdir()
    other.write_text("#!/usr/bin/env python3\n")
    res = run_install(home, "--uninstall")
    assert res.returncode == 0, res.stderr
    assert not dest.exists()
    assert other.exists()
    res = run_install(home, "--uninstall")
    assert res.returncode == 0 and "not installed" in res.stdout


@needs_bridge
def test_gimp_dir_and_env_profile(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    prof = tmp_path / "profile"
    res = run_install(home, "--no-venv", "--gimp-dir", str(prof))
    assert res.returncode == 0, res.stderr
    assert (prof / "plug-ins/neural_collage/neural_collage.py").is_file()
    prof2 = tmp_path / "profile2"
    res = run_install(home, "--no-venv", env_extra={"GIMP3_DIRECTORY": str(prof2)})
    assert res.returncode == 0, res.stderr
    assert (prof2 / "plug-ins/neural_collage/neural_collage.py").is_file()


# ---- --check ------------------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_bridge
def test_check_reports_each_item(home):
    res = run_install(home, "--check", "--check-timeout", "1")
    assert res.returncode == 1
    assert "FAIL plug-in:" in res.stdout and "missing" in res.stdout
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    assert run_install(home, "--no-venv", "--address", address).returncode == 0
    res = run_install(home, "--check", "--check-timeout", "1")
    assert res.returncode == 1
    assert "OK   GIMP 3 profile (GIMP 3.0):" in res.stdout
    assert "OK   plug-in:" in res.stdout and "OK   bridge:" in res.stdout and "OK   settings:" in res.stdout
    assert f"FAIL engine at {address} does not answer" in res.stdout
    assert "neural-collage serve" in res.stdout

    pytest.importorskip("zmq")
    pytest.importorskip("numpy")
    engine = subprocess.Popen([sys.executable, str(ROOT / "tests/e2e/fake_engine.py"), "--bind", address],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            res = run_install(home, "--check", "--check-timeout", "2")
            if res.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.3)
    finally:
        engine.terminate()
        engine.wait(10)
    assert res.returncode == 0, res.stdout
    assert f"OK   engine at {address} answers hello: version fake-0 on cpu, models fake" in res.stdout
    assert "FAIL" not in res.stdout


def test_check_function_output_format(tmp_path, monkeypatch):
    """check() prints to any stream and counts only FAIL lines."""
    monkeypatch.setattr(inst, "engine_hello", lambda address, timeout=5.0: (True, "version x"))
    monkeypatch.setattr(inst, "gimp_program", lambda: None)
    args = inst.argparse.Namespace(gimp_dir=[str(tmp_path / "p")], address=None, check_timeout=1.0)
    buf = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = inst.check(args, out=buf)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("--   GIMP program: not on PATH")
    assert any(ln.startswith("FAIL GIMP 3 profile (--gimp-dir)") for ln in lines)
    assert any(ln.startswith("OK   engine at ") for ln in lines)
    assert rc == 1
