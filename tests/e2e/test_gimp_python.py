"""The bridge and the plug-in compile and import with the Python that GIMP 3 itself runs (Debian 13: 3.13),
with no pyzmq: the pure-Python ZMTP client is what GIMP's bundled Pythons get."""
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bridge_and_plugin_compile_and_import_in_gimps_python(gimp):
    work = gimp.mkwork("nc-py-")
    shutil.copytree(REPO / "bridge", work / "bridge")
    shutil.copytree(REPO / "gimp_plugin" / "neural_collage", work / "neural_collage")
    script = (
        "import sys, compileall, importlib.util;"
        "ok = compileall.compile_dir(sys.argv[1], quiet=1);"
        "sys.path.insert(0, sys.argv[1]);"
        "import bridge.client as c;"
        "print(sys.version_info[:2], ok, importlib.util.find_spec('zmq') is None, c.__name__)"
    )
    argv = ["python3", "-c", script, gimp.inside(str(work))]
    if gimp.root:
        argv = ["chroot", gimp.root, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version, ok, no_zmq, name = out.stdout.strip().rsplit(" ", 3)
    assert ok == "True" and name == "bridge.client", out.stdout
    assert version.startswith("(3, 1"), out.stdout
