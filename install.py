#!/usr/bin/env python3
"""Install Neural Collage for GIMP 3: the engine's Python environment and the GIMP plug-in.

    python3 install.py                      # venv + engine + plug-in into every GIMP 3 profile found
    python3 install.py --with-torch         # also pip install torch (--torch-spec, default torch==2.13.0)
    python3 install.py --no-venv            # use this Python for the engine, install nothing with pip
    python3 install.py --gimp-dir DIR       # a GIMP profile dir (the one holding plug-ins/), repeatable
    python3 install.py --newest-only        # only the newest GIMP 3.x profile of each kind (native, Flatpak, Snap)
    python3 install.py --check              # per GIMP version: profile, plug-in, settings; then the engine
    python3 install.py --uninstall          # remove the plug-in (and with --purge the engine venv)
    python3 install.py --dry-run ...        # say what would be done, change nothing

Standard library only, no admin rights, idempotent (running it again refreshes everything in place and
keeps the user's settings unless options override them).

GIMP keeps one profile per minor version (3.0, 3.2, 3.4, ...; 3.2 copies the 3.0 folder once, on its first
start, and ignores it afterwards). Every existing 3.x folder of every kind gets the plug-in (--newest-only:
the newest of each kind), unless --gimp-dir or GIMP3_DIRECTORY names the profile:
  Linux    $XDG_CONFIG_HOME/GIMP/3.x (~/.config), Flatpak ~/.var/app/org.gimp.GIMP/config/GIMP/3.x,
           Snap ~/snap/gimp/current/.config/GIMP/3.x
  Windows  %APPDATA%\\GIMP\\3.x
  macOS    ~/Library/Application Support/GIMP/3.x
A profile counts when its folder exists (GIMP was started once); when none exists but a GIMP 3 program is
on PATH, the native profile of its version (gimp-3.2 -> 3.2; else 3.0) is created. --check reports each
version's profile, plug-in (and whether its files match this checkout) and settings.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys

REPO = os.path.dirname(os.path.abspath(__file__))
PLUGIN_SRC = os.path.join(REPO, "gimp_plugin", "neural_collage")
BRIDGE_SRC = os.path.join(REPO, "bridge")
PLUGIN_NAME = "neural_collage"
PLUGIN_MAIN = "neural_collage.py"
MANIFEST = ".nc_install.json"
GIMP_VERSIONS = ("3.0", "3.2")
DEFAULT_TORCH_SPEC = "torch==2.13.0"
ENGINE_MODULE_ARGS = ["-m", "engine.cli", "serve"]

sys.path.insert(0, PLUGIN_SRC)
import nc_settings

# ---------------------------------------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------------------------------------

def platform_name(platform: str | None = None) -> str:
    p = platform or sys.platform
    if p.startswith("win"):
        return "windows"
    if p == "darwin":
        return "macos"
    return "linux"


PROFILE_KINDS = {
    # platform: [(kind, folder that holds GIMP's per-version folders, as a function of (env, home))]
    "linux": [
        ("", lambda env, home: os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "GIMP")),
        ("Flatpak", lambda env, home: os.path.join(home, ".var", "app", "org.gimp.GIMP", "config", "GIMP")),
        ("Snap", lambda env, home: os.path.join(home, "snap", "gimp", "current", ".config", "GIMP")),
    ],
    "windows": [
        ("", lambda env, home: os.path.join(env.get("APPDATA") or os.path.join(home, "AppData", "Roaming"),
                                            "GIMP")),
    ],
    "macos": [
        ("", lambda env, home: os.path.join(home, "Library", "Application Support", "GIMP")),
    ],
}
VERSION_DIR = re.compile(r"^3\.(\d{1,3})$")  # GIMP keeps one profile per minor version: 3.0, 3.2, 3.4, ...


def version_key(version: str) -> tuple:
    """'3.10' > '3.4' > '3.2': compare minor versions as numbers."""
    return tuple(int(p) for p in version.split("."))


def profile_label(version: str, kind: str = "") -> str:
    return f"GIMP {version}" + (f" ({kind})" if kind else "")


def profile_roots(platform: str | None = None, env=None, home: str | None = None) -> list:
    """[(kind, GIMP folder)] that hold GIMP 3's per-version profile folders on this platform."""
    env = os.environ if env is None else env
    home = home or env.get("HOME") or os.path.expanduser("~")
    return [(kind, where(env, home)) for kind, where in PROFILE_KINDS[platform_name(platform)]]


def candidate_profiles(platform: str | None = None, env=None, home: str | None = None,
                       versions=GIMP_VERSIONS) -> list:
    """[(label, profile dir)] for the released versions ``versions`` (where they would be; the search itself
    finds any 3.x folder, see scan_profiles), native kind first, newest version last within a kind."""
    return [(profile_label(v, kind), os.path.join(root, v))
            for kind, root in profile_roots(platform, env, home) for v in versions]


def scan_profiles(platform: str | None = None, env=None, home: str | None = None) -> list:
    """[(label, profile dir, kind, version)] of every existing GIMP/3.x folder of every profile kind, in the
    order of PROFILE_KINDS, oldest version first within a kind."""
    out = []
    for kind, root in profile_roots(platform, env, home):
        try:
            names = os.listdir(root)
        except OSError:
            continue
        versions = sorted((n for n in names if VERSION_DIR.match(n) and os.path.isdir(os.path.join(root, n))),
                          key=version_key)
        out.extend((profile_label(v, kind), os.path.join(root, v), kind, v) for v in versions)
    return out


def newest_per_kind(found: list) -> list:
    """Of scan_profiles' entries, the newest version of each profile kind (each kind is its own GIMP
    installation: a distribution's GIMP 3.0 and a Flatpak 3.2 both stay usable)."""
    best = {}
    for entry in found:
        kind, version = entry[2], entry[3]
        if kind not in best or version_key(version) > version_key(best[kind][3]):
            best[kind] = entry
    return [e for e in found if best.get(e[2]) is e]


PROGRAM = re.compile(r"^gimp(?:-console)?-3\.(\d{1,3})(?:\.exe)?$")


def gimp_program() -> str | None:
    """A GIMP 3 program on PATH: the highest gimp-3.N / gimp-console-3.N, else gimp-3 / gimp."""
    best = None
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            m = PROGRAM.match(name)
            path = os.path.join(folder, name)
            if m and os.access(path, os.X_OK) and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), path)
    if best:
        return best[1]
    for name in ("gimp-3", "gimp", "gimp-console-3", "gimp-console"):
        path = shutil.which(name)
        if path:
            return path
    return None


def program_version(program: str | None) -> str:
    """'3.N' of a GIMP program from its name (gimp-3.2) or the name it links to (gimp -> gimp-3.2), else
    GIMP_VERSIONS[0]."""
    for path in (program or "", os.path.realpath(program) if program else ""):
        m = PROGRAM.match(os.path.basename(path))
        if m:
            return f"3.{int(m.group(1))}"
    return GIMP_VERSIONS[0]


def dir_label(path: str, how: str) -> str:
    """Label of a profile named by --gimp-dir or GIMP3_DIRECTORY: its version when the folder says it."""
    name = os.path.basename(os.path.normpath(path))
    return f"GIMP {name} ({how})" if VERSION_DIR.match(name) else how


def find_profiles(gimp_dirs=None, platform=None, env=None, home=None, create=True, newest_only=False) -> list:
    """[(label, profile dir)] to install into. ``gimp_dirs`` (from --gimp-dir) win, then GIMP3_DIRECTORY,
    then every existing GIMP/3.x folder of every kind (``newest_only``: the newest per kind); with none, the
    native profile of the GIMP program on PATH (its version from its name, else 3.0)."""
    env = os.environ if env is None else env
    if gimp_dirs:
        return [(dir_label(profile_dir(d), "--gimp-dir"), profile_dir(d)) for d in gimp_dirs]
    if env.get("GIMP3_DIRECTORY"):
        return [(dir_label(env["GIMP3_DIRECTORY"], "GIMP3_DIRECTORY"), env["GIMP3_DIRECTORY"])]
    found = scan_profiles(platform, env, home)
    if newest_only:
        found = newest_per_kind(found)
    if found or not create:
        return [(label, d) for label, d, _kind, _v in found]
    prog = gimp_program()
    if prog:
        version = program_version(prog)
        kind, root = profile_roots(platform, env, home)[0]
        return [(profile_label(version, kind), os.path.join(root, version))]
    return []


def profile_dir(path: str) -> str:
    """--gimp-dir accepts the profile dir or its plug-ins folder."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.basename(path.rstrip(os.sep)) == "plug-ins":
        return os.path.dirname(path.rstrip(os.sep))
    return path


def plugin_dir(profile: str) -> str:
    return os.path.join(profile, "plug-ins", PLUGIN_NAME)


def data_dir(platform=None, env=None, home=None) -> str:
    """Where the engine's virtual environment lives (per user)."""
    env = os.environ if env is None else env
    home = home or env.get("HOME") or os.path.expanduser("~")
    plat = platform_name(platform)
    if plat == "windows":
        base = env.get("LOCALAPPDATA") or env.get("APPDATA") or os.path.join(home, "AppData", "Local")
    elif plat == "macos":
        base = os.path.join(home, "Library", "Application Support")
    else:
        base = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "neural-collage")


def venv_python(venv: str, platform=None) -> str:
    if platform_name(platform) == "windows":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


# ---------------------------------------------------------------------------------------------------------
# actions (printed; skipped in --dry-run)
# ---------------------------------------------------------------------------------------------------------

class Installer:
    def __init__(self, dry_run=False, out=None):
        self.dry_run = dry_run
        self.out = out or sys.stdout

    def say(self, text):
        print(("[dry-run] " if self.dry_run else "") + text, file=self.out)
        self.out.flush()

    def run(self, argv, **kw):
        self.say("run: " + " ".join(argv))
        if not self.dry_run:
            subprocess.run(argv, check=True, **kw)

    def makedirs(self, path):
        if not os.path.isdir(path):
            self.say(f"create {path}")
            if not self.dry_run:
                os.makedirs(path, exist_ok=True)

    def copy(self, src, dst, executable=False):
        mode = 0o755 if executable else 0o644
        same = (os.path.isfile(dst) and _read(src) == _read(dst)
                and (stat.S_IMODE(os.stat(dst).st_mode) & 0o111) == (mode & 0o111))
        if same:
            return False
        self.say(f"copy {os.path.relpath(src, REPO)} -> {dst}")
        if not self.dry_run:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = dst + ".nc-tmp"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, mode)
            os.replace(tmp, dst)
        return True

    def remove(self, path):
        if os.path.lexists(path):
            self.say(f"remove {path}")
            if not self.dry_run:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def plugin_files() -> list:
    """[(source, path relative to the plug-in folder, executable)] of everything installed."""
    files = []
    for name in sorted(os.listdir(PLUGIN_SRC)):
        src = os.path.join(PLUGIN_SRC, name)
        if name.endswith(".py") and os.path.isfile(src):
            files.append((src, name, name == PLUGIN_MAIN))
    for name in sorted(os.listdir(BRIDGE_SRC)):
        src = os.path.join(BRIDGE_SRC, name)
        if os.path.isfile(src) and (name.endswith((".py", ".md"))):
            files.append((src, os.path.join("bridge", name), False))
    return files


def install_plugin(inst: Installer, profile: str, settings_update: dict) -> str:
    dest = plugin_dir(profile)
    inst.makedirs(dest)
    files = plugin_files()
    wanted = {rel for _src, rel, _x in files}
    old = _manifest(dest)
    for rel in sorted(set(old) - wanted):
        inst.remove(os.path.join(dest, rel))
    stale_cache = [os.path.join(dest, "__pycache__"), os.path.join(dest, "bridge", "__pycache__")]
    changed = 0
    for src, rel, exe in files:
        changed += inst.copy(src, os.path.join(dest, rel), executable=exe)
    if changed:
        for d in stale_cache:
            inst.remove(d)
    # settings: keep what the user chose, override with what this run decides
    path = os.path.join(dest, nc_settings.FILE_NAME)
    current, warning = nc_settings.load(path)
    if warning:
        inst.say("note: " + warning)
    new = dict(current)
    new.update(settings_update)
    new = nc_settings.validate(new)
    if new != current or not os.path.isfile(path):
        shown = json.dumps({k: new[k] for k in ("address", "auto_start", "engine_command", "model")})
        inst.say(f"write settings {path}: {shown}")
        if not inst.dry_run:
            nc_settings.save(new, path)
    manifest = sorted(wanted)
    if old != manifest and not inst.dry_run:
        with open(os.path.join(dest, MANIFEST), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.write("\n")
    return dest


def _manifest(dest):
    try:
        with open(os.path.join(dest, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
        return sorted(str(x) for x in data if isinstance(x, str) and ".." not in x)
    except (OSError, ValueError, TypeError):
        return []


def setup_venv(inst: Installer, venv: str, args) -> str:
    py = venv_python(venv)
    if args.recreate_venv:
        inst.remove(venv)
    if not os.path.isfile(py) or args.recreate_venv:
        argv = [sys.executable, "-m", "venv"]
        if args.system_site_packages:
            argv.append("--system-site-packages")
        inst.run(argv + [venv])
    else:
        inst.say(f"reuse virtual environment {venv}")
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    if args.with_torch:
        extra = ["--index-url", args.torch_index_url] if args.torch_index_url else []
        inst.run(pip + extra + [args.torch_spec])
    if args.editable:
        inst.run(pip + ["-e", REPO])
    else:
        inst.run(pip + ["--upgrade", REPO])
    return py


def engine_hello(address: str, timeout: float = 5.0):
    """(ok, text) for the engine at ``address``, asked with the bridge from this repository."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    try:
        from bridge.client import EngineClient
    except ImportError as exc:
        return False, f"bridge not importable: {exc}"
    try:
        client = EngineClient(address, timeout)
        try:
            p = client.hello()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is a FAIL line
        return False, f"{type(exc).__name__}: {exc}"
    models = ", ".join(map(str, p.get("models") or [])) or "?"
    return True, f"version {p.get('engine_version', '?')} on {p.get('device', '?')}, models {models}"


def outdated_files(dest: str) -> list:
    """Installed files (relative paths) that are missing or differ from this checkout's."""
    out = []
    for src, rel, _exe in plugin_files():
        path = os.path.join(dest, rel)
        if not os.path.isfile(path) or _read(path) != _read(src):
            out.append(rel)
    return out


def check_profile(label: str, prof: str, line):
    """The check lines of one GIMP profile, each naming its version; returns its settings (None: no
    plug-in)."""
    if not os.path.isdir(prof):
        line(False, f"{label}: profile {prof} does not exist")
        return None
    line(True, f"{label}: profile {prof}")
    dest = plugin_dir(prof)
    main = os.path.join(dest, PLUGIN_MAIN)
    if not os.path.isfile(main):
        line(False, f"{label}: plug-in {main} missing (run install.py)")
        return None
    ok = os.access(main, os.X_OK)
    line(ok, f"{label}: plug-in {main}" + ("" if ok else " not executable (run install.py)"))
    bridge = os.path.join(dest, "bridge")
    line(os.path.isfile(os.path.join(bridge, "client.py")), f"{label}: bridge {bridge}")
    stale = outdated_files(dest)
    if stale:
        shown = ", ".join(stale[:4]) + (", ..." if len(stale) > 4 else "")
        line(False, f"{label}: {len(stale)} plug-in files differ from this checkout ({shown}); run install.py "
                    "again")
    else:
        line(True, f"{label}: plug-in files match this checkout")
    spath = os.path.join(dest, nc_settings.FILE_NAME)
    settings, warning = nc_settings.load(spath)
    exists = os.path.isfile(spath)
    why = f" ({warning})" if warning else ("" if exists else " missing")
    line(warning is None and exists, f"{label}: settings {spath}{why}")
    if settings["engine_command"]:
        exe = settings["engine_command"][0]
        auto = "on" if settings["auto_start"] else "off"
        cmd = nc_settings.format_command(settings["engine_command"])
        line(os.path.isfile(exe) or bool(shutil.which(exe)), f"{label}: engine command {cmd} (auto-start {auto})")
    return settings


def check(args, out=None) -> int:
    """One line per check: OK / FAIL / -- (information). Returns 0 when nothing failed."""
    out = out or sys.stdout
    failures = 0

    def line(ok, text):
        nonlocal failures
        if ok is False:
            failures += 1
        tag = {True: "OK  ", False: "FAIL", None: "--  "}[ok]
        print(f"{tag} {text}", file=out)

    profiles = find_profiles(args.gimp_dir, create=False, newest_only=getattr(args, "newest_only", False))
    prog = gimp_program()
    line(None if prog is None else True,
         "GIMP program: " + (f"{prog} (GIMP {program_version(prog)})" if prog else
                             "not on PATH (normal for Flatpak, Snap, Windows and macOS)"))
    if not profiles:
        line(False, "GIMP 3 profile: none found (start GIMP 3 once, or pass --gimp-dir)")
    addresses = []
    installed, missing = [], []
    for label, prof in profiles:
        ok_before = failures
        settings = check_profile(label, prof, line)
        (installed if failures == ok_before else missing).append(label)
        if settings is not None:
            addresses.append(settings["address"])
    if profiles:
        line(None, "plug-in ready in: " + (", ".join(installed) or "none")
             + ("; problems in: " + ", ".join(missing) if missing else ""))
    if args.address:
        addresses = [args.address]
    for address in sorted(set(addresses or [nc_settings.default_address()])):
        ok, text = engine_hello(address, timeout=args.check_timeout)
        if ok:
            line(True, f"engine at {address} answers hello: {text}")
        else:
            hint = "" if "neural-collage serve" in text else (
                f"; start it with 'neural-collage serve --bind {address}'")
            line(False, f"engine at {address} does not answer ({text}){hint}")
    return 1 if failures else 0


def uninstall(args, inst: Installer) -> int:
    profiles = find_profiles(args.gimp_dir, create=False)
    if not profiles:
        inst.say("no GIMP 3 profile found; nothing to remove")
    for _label, prof in profiles:
        dest = plugin_dir(prof)
        if os.path.isdir(dest):
            inst.remove(dest)
        else:
            inst.say(f"not installed in {prof}")
    if args.purge:
        venv = args.venv or os.path.join(data_dir(), "venv")
        inst.remove(venv)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Install Neural Collage for GIMP 3 (plug-in + engine).")
    ap.add_argument("--gimp-dir", action="append", metavar="DIR",
                    help="GIMP profile folder (holding plug-ins/) to install into; repeatable")
    ap.add_argument("--no-venv", action="store_true",
                    help=f"use this Python ({sys.executable}) for the engine and pip install nothing")
    ap.add_argument("--venv", metavar="DIR",
                    help=f"engine virtual environment (default: {os.path.join(data_dir(), 'venv')})")
    ap.add_argument("--recreate-venv", action="store_true",
                    help="delete and recreate the virtual environment")
    ap.add_argument("--system-site-packages", action="store_true",
                    help="let the venv see this Python's packages (reuse an installed torch)")
    ap.add_argument("--with-torch", action="store_true", default=os.environ.get("NC_INSTALL_TORCH") == "1",
                    help="pip install torch (--torch-spec) before the engine; env NC_INSTALL_TORCH=1")
    ap.add_argument("--torch-spec", default=os.environ.get("NC_TORCH_SPEC", DEFAULT_TORCH_SPEC),
                    help=f"pip requirement for torch (default {DEFAULT_TORCH_SPEC})")
    ap.add_argument("--torch-index-url",
                    help="pip index for torch, e.g. https://download.pytorch.org/whl/cpu")
    ap.add_argument("--no-editable", dest="editable", action="store_false",
                    help="pip install a copy of the repository instead of an editable install")
    ap.add_argument("--address", help=f"engine address (default: keep, else {nc_settings.default_address()})")
    ap.add_argument("--auto-start", dest="auto_start", action="store_true", default=None,
                    help="let the plug-in start the engine when it does not answer (default)")
    ap.add_argument("--no-auto-start", dest="auto_start", action="store_false")
    ap.add_argument("--model", help="model the engine uses (default: the engine's default)")
    ap.add_argument("--newest-only", action="store_true",
                    help="install into (or --check) only the newest GIMP 3.x profile of each kind (native, "
                         "Flatpak, Snap) instead of every version found; --uninstall always removes it from all")
    ap.add_argument("--check", action="store_true", help="check GIMP, the plug-in and the engine")
    ap.add_argument("--check-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--uninstall", action="store_true", help="remove the plug-in from the GIMP profiles")
    ap.add_argument("--purge", action="store_true", help="with --uninstall: also delete the engine venv")
    ap.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    args = ap.parse_args(argv)

    if args.check:
        return check(args)
    inst = Installer(dry_run=args.dry_run)
    if args.uninstall:
        return uninstall(args, inst)

    profiles = find_profiles(args.gimp_dir, newest_only=args.newest_only)
    if not profiles:
        looked = [os.path.join(root, "3.x") + (f" ({kind})" if kind else "") for kind, root in profile_roots()]
        print("No GIMP 3 profile found. Start GIMP 3 once (so it creates its profile), or pass "
              "--gimp-dir DIR. Looked in:\n  " + "\n  ".join(looked), file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(BRIDGE_SRC, "client.py")):
        print(f"bridge/client.py is missing from {REPO}: incomplete checkout", file=sys.stderr)
        return 2

    if args.no_venv:
        python = sys.executable
        inst.say(f"engine Python: {python} (--no-venv, nothing installed with pip)")
    else:
        venv = os.path.abspath(args.venv or os.path.join(data_dir(), "venv"))
        try:
            python = setup_venv(inst, venv, args)
        except subprocess.CalledProcessError as exc:
            print(f"Setting up the engine environment failed ({exc}). Nothing was installed into GIMP.",
                  file=sys.stderr)
            return 1
    update = {"engine_command": [python] + ENGINE_MODULE_ARGS}
    if args.no_venv:
        # the repository is not pip-installed: the engine runs from this checkout
        update["engine_cwd"] = REPO
    else:
        update["engine_cwd"] = ""
    if args.address:
        update["address"] = args.address
    if args.model is not None:
        update["model"] = args.model
    if args.auto_start is not None:
        update["auto_start"] = args.auto_start
    for label, prof in profiles:
        inst.say(f"{label} profile: {prof}")
        first = not os.path.isfile(os.path.join(plugin_dir(prof), nc_settings.FILE_NAME))
        up = dict(update)
        if args.auto_start is None and first:
            up["auto_start"] = True
        dest = install_plugin(inst, prof, up)
        inst.say(f"plug-in ready: {dest} (restart GIMP; menu Filters > Neural Collage)")
    if args.dry_run:
        inst.say("dry run: nothing was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
