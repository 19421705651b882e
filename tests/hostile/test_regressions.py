"""One regression test per bug of issue 16 ("Hostile input must never stop, wedge or exhaust the engine, and the
CLI must never print a traceback"), black box: the real engine subprocess and the real command line."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_harness import ENGINE_RSS_BUDGET, ROOT, _limit_memory, child_env, probe_edit, probe_raw, vm_hwm
from hostile_strategies import encode, probe_like_image, swap_params
from test_cli_fuzz import npy_with_header, png_bomb_header, zip_with




def final_of(raw, engine, header, arrays=None):
    got = raw.exchange(encode(header, arrays or {}), engine)
    return got[-1][0]


def error_code(final):
    assert final["type"] == "error", final
    return final["params"]["code"], final["params"]["message"]


# -- the engine ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["id", "classes_model"])
def test_lone_surrogate_does_not_stop_the_engine(raw, engine, where):
    if where == "id":
        frame = b'{"v":1,"id":"x\\ud800","op":"hello","params":{}}'  # the 35-byte request of the issue
    else:
        frame = b'{"v":1,"id":"c","op":"classes","params":{"model":"x\\ud800"}}'
    got = raw.exchange([frame], engine)
    code, _ = error_code(got[-1][0])
    assert code in ("bad_request", "bad_input")
    assert engine.alive
    probe_raw(raw, engine)


def test_lone_surrogate_model_in_an_edit_does_not_wedge_the_worker(raw, engine):
    image = probe_like_image(24, 24, 3, "uint8")
    mask = np.full((24, 24), 255, np.uint8)
    frame = encode({"v": 1, "id": "w", "op": "swap", "params": swap_params(model="x\ud800")},
                   {"image": image, "mask": mask})
    frame[0] = json.dumps(json.loads(frame[0]), ensure_ascii=True).encode()
    code, _ = error_code(raw.exchange(frame, engine)[-1][0])
    assert code in ("bad_request", "bad_input")
    probe_raw(raw, engine)  # answered in time: the worker lives
    from bridge.client import EngineClient
    with EngineClient(engine.address, timeout=10) as c:
        assert c.hello()["state"] == "ready"


@pytest.mark.parametrize("width", [16384, 65536])
def test_thin_row_selection_is_refused_before_the_work(raw, engine, width):
    image = np.zeros((1, width, 3), np.uint8)
    mask = np.full((1, width), 255, np.uint8)
    before = time.monotonic()
    final = final_of(raw, engine, {"v": 1, "id": "row", "op": "swap", "params": swap_params()},
                     {"image": image, "mask": mask})
    code, message = error_code(final)
    assert code == "too_large", final
    assert "--max-crop-side" in message, message  # names the limit and how to change it
    assert time.monotonic() - before < 10
    assert engine.peak_rss() < ENGINE_RSS_BUDGET
    probe_raw(raw, engine)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_float_image_is_bad_input(raw, engine, value):
    image = probe_like_image(32, 32, 3, "float32")
    image[5:9, 5:9] = value
    mask = np.zeros((32, 32), np.uint8)
    mask[4:28, 4:28] = 255
    code, message = error_code(final_of(raw, engine, {"v": 1, "id": "nan", "op": "swap",
                                                      "params": swap_params()}, {"image": image, "mask": mask}))
    assert code == "bad_input" and ("NaN" in message or "finite" in message), message


@pytest.mark.parametrize("region", [["a", 0, 5, 5], [0.5, 0, 20, 20], [0, 0, 2 ** 70, 5], [[0], 0, 20, 20],
                                    [0, 0, -5, 20], {"x": 1}, [2 ** 70, 0, 20, 20], [-(2 ** 40), 5, 20, 20]])
def test_junk_region_is_bad_input(raw, engine, region):
    image = probe_like_image(32, 32, 3, "uint8")
    mask = np.full((32, 32), 255, np.uint8)
    params = {"poisson": False, "source_class": "grass", "steps": 1, "region": region,
              "swap": {"target": "snow", "strength": 1.0, "layers": "all"}}
    code, message = error_code(final_of(raw, engine, {"v": 1, "id": "r", "op": "edit", "params": params},
                                        {"image": image, "mask": mask}))
    assert code in ("bad_input", "bad_request") and "region" in message, message


def test_selection_outside_the_region_is_bad_input(raw, engine):
    """Found by the long fuzz profile: a project whose mask does not reach into its region left Poisson an
    empty mask (engine_error)."""
    image = probe_like_image(64, 64, 3, "uint8")
    mask = np.zeros((64, 64), np.uint8)
    mask[50:60, 50:60] = 255
    code, message = error_code(final_of(raw, engine, {"v": 1, "id": "o", "op": "project", "params": {
        "class": "grass", "steps": 1, "region": [0, 0, 20, 20]}}, {"image": image, "mask": mask}))
    assert code == "bad_input" and "does not reach into the region" in message, message


def test_long_class_name_is_bad_input_and_not_echoed_whole(raw, engine):
    image = probe_like_image(32, 32, 3, "uint8")
    mask = np.full((32, 32), 255, np.uint8)
    code, message = error_code(final_of(raw, engine, {"v": 1, "id": "long", "op": "swap",
                                                      "params": swap_params(target="q" * 10_000)},
                                        {"image": image, "mask": mask}))
    assert code == "bad_input"
    assert len(message) < 400, len(message)


def test_steps_null_means_the_default_everywhere(raw, engine):
    """Issue 16 found `steps: null` passing the protocol check and failing in the engine.  bridge/requests.py (the
    one definition of the params) now documents null as "the model's default" and the engine runs it so: no
    engine_error, the default number of steps (the default model is fully convolutional: a few calibration steps
    at the crop's own size)."""
    from engine.edit.pipeline import FULLRES_STEPS as DEFAULT_STEPS

    image = probe_like_image(32, 32, 3, "uint8")
    mask = np.full((32, 32), 255, np.uint8)
    got = raw.exchange(encode({"v": 1, "id": "s", "op": "swap", "params": swap_params(steps=None)},
                              {"image": image, "mask": mask}), engine, cancel_after=0.5)
    final = got[-1][0]
    assert final["type"] == "result" or final["params"]["code"] == "cancelled", final
    totals = {h["params"].get("total") for h, _ in got if h["type"] == "progress"}
    assert DEFAULT_STEPS in totals, totals


def test_queue_bytes_are_capped(engine):
    """Many large requests queued behind a running job: the later ones are refused as busy, and the engine's
    memory stays under its budget instead of growing with every message kept."""
    import zmq
    from bridge.protocol import encode_message

    ctx = zmq.Context()
    socks = []
    try:
        big = np.zeros((2048, 2048, 3), np.float32)  # 48 MiB each
        mask = np.zeros((2048, 2048), np.uint8)
        mask[:64, :64] = 255
        long_job = encode_message({"v": 1, "id": "long", "op": "project", "params": {"class": "grass",
                                                                                     "steps": 3000}},
                                  {"image": probe_like_image(64, 64, 3, "uint8")})
        first = ctx.socket(zmq.DEALER)
        first.connect(engine.address)
        first.send_multipart(long_job)
        socks.append(first)
        codes = []
        for i in range(24):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(engine.address)
            s.send_multipart(encode_message({"v": 1, "id": f"q{i}", "op": "swap", "params": swap_params()},
                                            {"image": big, "mask": mask}))
            socks.append(s)
        for s in socks[1:]:
            assert s.poll(60000), "no reply"
            h = json.loads(s.recv_multipart()[0])
            codes.append(h["params"].get("code", h["type"]))
        assert "busy" in codes, codes
        assert engine.peak_rss() < ENGINE_RSS_BUDGET, engine.peak_rss() / 2 ** 20
    finally:
        for s in socks:  # disconnecting cancels the running job and drops the queued ones
            s.close(0)
        ctx.term()
    time.sleep(1.0)
    probe_edit(engine)


# -- the command line ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli(runner):
    """Run a command line in the CLI runner (in process: what escapes ``main`` would be a traceback)."""

    def run(*argv, env_extra=None):
        res = runner(list(argv), env_extra)
        err = res["stderr"] + (res["escaped"] or "")
        return res["code"], res["stdout"], err

    return run


def real_cli(*argv, env_extra=None):
    """The real `python -m engine.cli` in a subprocess."""
    env = child_env()
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "engine.cli", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
    return proc.returncode, proc.stdout, proc.stderr


def one_error_line(code, err, expect=""):
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("neural-collage: error:"), err
    assert expect in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def photo_png(tmp_path_factory):
    p = tmp_path_factory.mktemp("p") / "photo.png"
    cv2.imwrite(str(p), probe_like_image(40, 40, 3, "uint8"))
    return p


def test_png_decompression_bomb_is_refused_with_one_line(tmp_path, cli):
    """A 107 KB PNG announcing 30000 x 30000 px, given to the real command line: one line, exit 2, nothing
    written, and the process's peak memory stays near its baseline (the size is read from the header)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb_header(30000, 30000, color=2, rows=2))
    out = tmp_path / "o.png"
    # VmHWM (this process's own peak, reset by exec), not ru_maxrss: Linux keeps ru_maxrss across fork + exec,
    # so a child of a large pytest process would report the parent's size
    script = ("import sys\n"
              "from engine.cli.parser import main\n"
              "code = main(['project', '--input', sys.argv[1], '--steps', '1', '-q', '-o', sys.argv[2]])\n"
              "print([int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')][0])\n"
              "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(bomb), str(out)], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
    one_error_line(proc.returncode, proc.stderr, "30000x30000")
    assert not out.exists()
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 < 1024 * 2 ** 20, peak_kib
    code, _, err = cli("project", "--input", bomb, "--steps", "1", "-q", "-o", out,
                       env_extra={"NEURAL_COLLAGE_MAX_IMAGE_PIXELS": "100"})
    one_error_line(code, err, "NEURAL_COLLAGE_MAX_IMAGE_PIXELS")
    code, _, err = real_cli("generate", "--class", "²", "-o", tmp_path / "g.png")  # the real entry point too
    one_error_line(code, err, "unknown class")


def test_output_in_a_read_only_folder(tmp_path, photo_png, cli):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        code, _, err = cli("swap", "--input", photo_png, "--region", "5,5,20,20", "--to", "snow", "--steps", "1",
                           "-q", "-o", ro / "o.png")
        one_error_line(code, err, "cannot write")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_output_that_cannot_be_written_as_root_too(tmp_path, photo_png, cli):
    """A path below a regular file cannot be created even by root: refused before the work, one line."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("swap", "--input", photo_png, "--region", "5,5,20,20", "--to", "snow", "--steps", "1",
                       "-q", "-o", blocker / "o.png")
    one_error_line(code, err, "cannot write")


@pytest.mark.parametrize("name", ["out.xyz", "folder"])
def test_output_with_unknown_extension_or_a_folder(tmp_path, photo_png, name, cli):
    out = tmp_path / name
    if name == "folder":
        out.mkdir()
    code, _, err = cli("swap", "--input", photo_png, "--region", "5,5,20,20", "--to", "snow", "--steps", "1",
                       "-q", "-o", out)
    one_error_line(code, err)
    assert set(os.listdir(tmp_path)) == ({name} if name == "folder" else set())
    if name == "folder":
        assert not any(out.iterdir())


def test_unknown_class_superscript_two(tmp_path, cli):
    code, _, err = cli("generate", "--class", "²", "-o", tmp_path / "g.png")
    one_error_line(code, err, "unknown class")
    assert not (tmp_path / "g.png").exists()


def test_long_class_name_is_truncated_in_the_cli_message(tmp_path, cli):
    code, _, err = cli("generate", "--class", "q" * 10_000, "-o", tmp_path / "g.png")
    line = one_error_line(code, err, "unknown class")
    assert len(line) < 400


def test_project_latent_writes_nothing_when_the_latent_cannot_be_written(tmp_path, photo_png, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "recon.png"
    code, _, err = cli("project", "--input", photo_png, "--steps", "1", "--class", "grass", "-q", "-o", out,
                       "--latent", blocker / "z.npz")
    one_error_line(code, err)
    assert not out.exists()


def test_sixteen_bit_photo_to_jpeg_is_refused(tmp_path, cli):
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), probe_like_image(40, 40, 3, "uint16"))
    out = tmp_path / "o.jpg"
    code, _, err = cli("swap", "--input", src, "--region", "5,5,20,20", "--to", "snow", "--steps", "1", "-q",
                       "-o", out)
    one_error_line(code, err, "16-bit")
    assert not out.exists()


# -- files the weights tools read ----------------------------------------------------------------------------------
def test_import_chainer_zip_bomb_is_refused_without_inflating_it(tmp_path, cli):
    src = tmp_path / "src"
    src.mkdir()
    member = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (805306368,), }")
    (src / "ResNetGenerator_1.npz").write_bytes(zip_with({"l1/W.npy": member}, declared={"l1/W.npy": 3 * 2 ** 30}))
    env = {"NEURAL_COLLAGE_WEIGHTS": str(tmp_path / "w")}
    code, _, err = cli("weights", "import-chainer", src, env_extra=env)
    one_error_line(code, err, "ResNetGenerator_1.npz")


def test_import_chainer_huge_npy_header(tmp_path, cli):
    src = tmp_path / "src"
    src.mkdir()
    member = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }" + " " * 200_000, bytes(16))
    (src / "ResNetGenerator_1.npz").write_bytes(zip_with({"l1/W.npy": member}))
    code, _, err = cli("weights", "import-chainer", src, env_extra={"NEURAL_COLLAGE_WEIGHTS": str(tmp_path / "w")})
    one_error_line(code, err, "header")


def test_vm_hwm_reads_this_process():
    assert vm_hwm(os.getpid()) > 0
    assert Path(f"/proc/{os.getpid()}/status").exists()
