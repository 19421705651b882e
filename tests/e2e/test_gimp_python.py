"""The bridge and the plug-in compile and import with the Python that GIMP 3 itself runs (Debian 13: 3.13,
Debian forky: 3.14), and the bridge picks pyzmq exactly where the chroot has python3-zmq (else the
pure-Python ZMTP client, what GIMP's bundled Pythons on Windows and macOS get)."""
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
        "print(sys.version_info[:2], ok, c.HAVE_PYZMQ, c.__name__)"
    )
    out = subprocess.run(gimp.wrap(["python3", "-c", script, gimp.inside(str(work))]), capture_output=True,
                         text=True, timeout=120)
    shutil.rmtree(work, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    version, ok, have_pyzmq, name = out.stdout.strip().rsplit(" ", 3)
    assert ok == "True" and name == "bridge.client", out.stdout
    assert version.startswith("(3, 1"), out.stdout
    if gimp.target.zmq is not None:
        assert have_pyzmq == str(gimp.target.zmq), (gimp.target, out.stdout)
