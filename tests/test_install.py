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


# every profile layout of every platform, each with GIMP 3.0, 3.2 and 3.4 folders (and things that are not
# GIMP 3 profiles: 2.10, a backup copy, a file named like a version, a 3.x placeholder)
LAYOUTS = {
    "linux": [("", ".config/GIMP"), ("Flatpak", ".var/app/org.gimp.GIMP/config/GIMP"),
              ("Snap", "snap/gimp/current/.config/GIMP")],
    "linux-xdg": [("", "xdg/GIMP")],
    "win32": [("", "AppData/Roaming/GIMP")],
    "darwin": [("", "Library/Application Support/GIMP")],
}
VERSIONS = ("3.0", "3.2", "3.4")


def fake_profiles(home: Path, layout: str, versions=VERSIONS) -> dict:
    """Make the profile tree of ``layout`` under ``home``; returns {label: profile dir} of the real ones."""
    made = {}
    for kind, rel in LAYOUTS[layout]:
        root = home / rel
        for v in versions:
            (root / v / "plug-ins").mkdir(parents=True, exist_ok=True)
            made[f"GIMP {v}" + (f" ({kind})" if kind else "")] = str(root / v)
        (root / "2.10" / "plug-ins").mkdir(parents=True, exist_ok=True)
        (root / "3.2.bak").mkdir(exist_ok=True)
        (root / "3.x").mkdir(exist_ok=True)
        (root / "3.6").write_text("not a folder")
    return made


def layout_env(home: Path, layout: str) -> tuple:
    """(platform, env) for find_profiles."""
    if layout == "win32":
        return "win32", {"APPDATA": str(home / "AppData" / "Roaming")}
    if layout == "linux-xdg":
        return "linux", {"XDG_CONFIG_HOME": str(home / "xdg")}
    return layout, {}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_3x_profile_of_every_layout_is_found(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(inst, "gimp_program", lambda: None)
    home = tmp_path / "home"
    made = fake_profiles(home, layout)
    platform, env = layout_env(home, layout)
    found = inst.find_profiles(None, platform, env, str(home))
    assert found == list(made.items())  # kinds in order, oldest version first within a kind
    newest = inst.find_profiles(None, platform, env, str(home), newest_only=True)
    assert newest == [(label, d) for label, d in made.items() if label.startswith("GIMP 3.4")]
    assert len(newest) == len(LAYOUTS[layout])  # one per kind (each kind is its own GIMP installation)
    # a later minor version needs no change to install.py
    for _kind, rel in LAYOUTS[layout]:
        (home / rel / "3.10").mkdir()
    newest = inst.find_profiles(None, platform, env, str(home), newest_only=True)
    assert [d for _l, d in newest] == [str(home / rel / "3.10") for _k, rel in LAYOUTS[layout]]
    # --gimp-dir and GIMP3_DIRECTORY still override the search
    assert inst.find_profiles(["/p/GIMP/3.2/plug-ins"], platform, env, str(home)) == [
        ("GIMP 3.2 (--gimp-dir)", "/p/GIMP/3.2")]
    assert inst.find_profiles(None, platform, dict(env, GIMP3_DIRECTORY="/g"), str(home)) == [
        ("GIMP3_DIRECTORY", "/g")]


def test_newest_per_kind_mixes_installations(tmp_path, monkeypatch):
    """A distribution's GIMP 3.0 next to a Flatpak 3.2 and 3.4: --newest-only keeps 3.0 and 3.4."""
    monkeypatch.setattr(inst, "gimp_program", lambda: None)
    home = tmp_path / "h"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    for v in ("3.4", "3.2"):
        (home / ".var/app/org.gimp.GIMP/config/GIMP" / v).mkdir(parents=True)
    assert [label for label, _d in inst.find_profiles(None, "linux", {}, str(home), newest_only=True)] == [
        "GIMP 3.0", "GIMP 3.4 (Flatpak)"]


def test_program_version(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gimp-3.0", "gimp-console-3.2", "gimp-3.10"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "gimp-3.12").write_text("not executable")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert inst.gimp_program() == str(bin_dir / "gimp-3.10")
    assert inst.program_version(inst.gimp_program()) == "3.10"
    (bin_dir / "gimp").symlink_to(bin_dir / "gimp-console-3.2")
    assert inst.program_version(str(bin_dir / "gimp")) == "3.2"
    assert inst.program_version("/usr/bin/gimp-nonesuch") == "3.0"
    # no profile yet: the native profile of that program's version is created
    monkeypatch.setattr(inst, "gimp_program", lambda: str(bin_dir / "gimp-console-3.2"))
    assert inst.find_profiles(None, "linux", {}, str(tmp_path / "empty")) == [
        ("GIMP 3.2", str(tmp_path / "empty/.config/GIMP/3.2"))]


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


def as_platform(monkeypatch, home: Path, layout: str):
    """Run install.py's main() in this process as if on ``layout``'s platform with HOME=home."""
    platform, env = layout_env(home, layout)
    real = inst.platform_name
    monkeypatch.setattr(inst, "platform_name", lambda p=None: real(p or platform))
    monkeypatch.setattr(inst, "gimp_program", lambda: None)
    monkeypatch.setattr(inst, "engine_hello", lambda address, timeout=5.0: (True, "version x on cpu"))
    for k in ("GIMP3_DIRECTORY", "XDG_CONFIG_HOME", "APPDATA"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(home))
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@needs_bridge
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_install_check_uninstall_every_version(tmp_path, monkeypatch, capsys, layout):
    home = tmp_path / "home"
    made = fake_profiles(home, layout)
    as_platform(monkeypatch, home, layout)
    assert inst.main(["--no-venv", "--address", "tcp://127.0.0.1:6001"]) == 0
    out = capsys.readouterr().out
    for label, prof in made.items():
        main = Path(prof) / "plug-ins/neural_collage/neural_collage.py"
        assert main.is_file() and main.stat().st_mode & stat.S_IXUSR, label
        assert f"{label} profile: {prof}" in out
    for _kind, rel in LAYOUTS[layout]:  # not GIMP 3 profiles: left alone
        assert not (home / rel / "2.10/plug-ins/neural_collage").exists()
        assert list((home / rel / "3.2.bak").iterdir()) == []

    assert inst.main(["--check"]) == 0
    out = capsys.readouterr().out
    for label in made:
        assert f"OK   {label}: plug-in files match this checkout" in out
        assert f"OK   {label}: settings " in out
    assert "--   plug-in ready in: " + ", ".join(made) in out

    # one version lacks the plug-in, another has an outdated copy: --check names exactly those
    broken, stale = list(made)[1], list(made)[-1]
    (Path(made[broken]) / "plug-ins/neural_collage/neural_collage.py").unlink()
    (Path(made[stale]) / "plug-ins/neural_collage/nc_pixels.py").write_text("# older version\n")
    assert inst.main(["--check"]) == 1
    out = capsys.readouterr().out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert fails == [f"FAIL {broken}: plug-in {made[broken]}/plug-ins/neural_collage/neural_collage.py missing "
                     "(run install.py)",
                     f"FAIL {stale}: 1 plug-in files differ from this checkout (nc_pixels.py); run install.py "
                     "again"], out
    assert f"; problems in: {broken}, {stale}" in out
    assert inst.main(["--no-venv"]) == 0  # a re-install repairs both
    capsys.readouterr()
    assert inst.main(["--check"]) == 0

    assert inst.main(["--uninstall", "--newest-only"]) == 0  # uninstall always removes it everywhere
    for prof in made.values():
        assert not (Path(prof) / "plug-ins/neural_collage").exists()
        assert (Path(prof) / "plug-ins").is_dir()


@needs_bridge
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_newest_only_install(tmp_path, monkeypatch, capsys, layout):
    home = tmp_path / "home"
    made = fake_profiles(home, layout)
    as_platform(monkeypatch, home, layout)
    assert inst.main(["--no-venv", "--newest-only"]) == 0
    for label, prof in made.items():
        assert (Path(prof) / "plug-ins/neural_collage/neural_collage.py").is_file() == label.startswith(
            "GIMP 3.4"), label
    capsys.readouterr()
    assert inst.main(["--check", "--newest-only"]) == 0
    out = capsys.readouterr().out
    assert "GIMP 3.0" not in out and "GIMP 3.2" not in out
    assert inst.main(["--check"]) == 1  # without the flag the older versions are reported as missing
    out = capsys.readouterr().out
    assert "FAIL GIMP 3.0: plug-in " in out and "FAIL GIMP 3.2: plug-in " in out


def test_no_profile_message_names_every_place(tmp_path):
    res = run_install(tmp_path / "nohome", "--no-venv", env_extra={"PATH": "/nonexistent"})
    assert res.returncode == 2
    home = tmp_path / "nohome"
    for rel in (".config/GIMP/3.x", ".var/app/org.gimp.GIMP/config/GIMP/3.x (Flatpak)",
                "snap/gimp/current/.config/GIMP/3.x (Snap)"):
        assert f"{home}/{rel}" in res.stderr, res.stderr


# ---- --check ------------------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_bridge
def test_check_reports_each_item(home):
    res = run_install(home, "--check", "--check-timeout", "1")
    assert res.returncode == 1
    assert "FAIL GIMP 3.0: plug-in " in res.stdout and "missing" in res.stdout
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    assert run_install(home, "--no-venv", "--address", address).returncode == 0
    res = run_install(home, "--check", "--check-timeout", "1")
    assert res.returncode == 1
    assert "OK   GIMP 3.0: profile " in res.stdout
    assert "OK   GIMP 3.0: plug-in " in res.stdout and "OK   GIMP 3.0: bridge " in res.stdout
    assert "OK   GIMP 3.0: settings " in res.stdout
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
    assert any(ln.startswith("FAIL --gimp-dir: profile ") and ln.endswith("does not exist") for ln in lines)
    assert any(ln.startswith("OK   engine at ") for ln in lines)
    assert rc == 1
