"""The bridge against the real engine: an in-process ``EngineServer`` serving ``engine.serve.handler.Engine("default",
"cpu")`` on a free loopback port, driven through ``EngineClient`` with both transports (pyzmq and the
pure-Python ZMTP client).

Only behaviour is checked (the default model may be an interim, poorly trained one): shapes and dtypes of the
answers, pixels outside the mask byte-identical, pixels inside changed, error codes and message texts,
``status``, and ``cancel`` of a long projection. Every projection runs a few steps with an explicit source class
(no class search) so the module stays well under a minute.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from bridge.client import Cancelled, EngineClient, EngineError  # noqa: E402
from engine.cli.demo import DEMO_DIR  # noqa: E402
from engine.cli.files import ellipse_mask  # noqa: E402
from engine.serve.server import EngineServer  # noqa: E402

TRANSPORTS = ("pyzmq", "zmtp")
STEPS = 5
SIZE = 96
SOURCE = "grass"
TARGET = "snow"
LABEL = "rock"
REFERENCE_CLASS = "brick"


class RecordingEngine:
    """``engine.serve.handler.Engine`` unchanged, remembering the jobs it ran (to see where a cancel stopped one)."""

    def __init__(self, engine):
        self.engine = engine
        self.jobs = []

    def hello(self):
        return self.engine.hello()

    def classes(self, params):
        return self.engine.classes(params)

    def run(self, op, params, arrays, job):
        self.jobs.append(job)
        return self.engine.run(op, params, arrays, job)


@pytest.fixture(scope="module")
def server():
    from engine.serve.handler import Engine
    from engine.models.registry import is_present

    if not is_present("default"):
        pytest.skip("the default model's weights are not installed (engine/weights/default)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    handler = RecordingEngine(Engine("default", "cpu"))
    srv = EngineServer(handler=handler, bind="tcp://127.0.0.1:*")  # a free port, chosen by the OS
    srv.start()
    srv.recorder = handler
    try:
        yield srv
    finally:
        srv.stop()
        torch.set_num_threads(threads)


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def client(server, transport):
    c = EngineClient(server.address, timeout=30.0, transport=transport)
    yield c
    c.close()


def read_rgb(name: str) -> np.ndarray:
    bgr = cv2.imread(str(DEMO_DIR / name), cv2.IMREAD_COLOR)
    assert bgr is not None, name
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photo():
    """A 96 x 96 crop of the demo meadow photo, RGB uint8."""
    return np.ascontiguousarray(read_rgb("meadow.jpg")[40:40 + SIZE, 60:60 + SIZE])


@pytest.fixture(scope="module")
def reference():
    return np.ascontiguousarray(read_rgb("brickwall.jpg")[30:30 + SIZE, 30:30 + SIZE])


@pytest.fixture(scope="module")
def mask():
    """A feathered elliptical selection as GIMP sends it: uint8, 255 inside, a soft ramp, 0 outside."""
    m = ellipse_mask(SIZE, SIZE, 48, 46, 30, 26, feather=6)
    return np.rint(m * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def label_map():
    """A second class map: a smaller ellipse in the left half of the selection."""
    m = ellipse_mask(SIZE, SIZE, 36, 46, 14, 14, feather=3)
    return np.rint(m * 255).astype(np.uint8)


def swap_params(**kw):
    p = {"target": TARGET, "strength": 1.0, "layers": "all", "poisson": True, "source_class": SOURCE,
         "steps": STEPS}
    p.update(kw)
    return p


def check_edited(out, image, mask):
    """Same shape and dtype; outside the mask byte for byte the input; inside changed."""
    assert out.shape == image.shape and out.dtype == image.dtype
    outside, inside = mask == 0, mask == 255
    assert outside.sum() > 1000 and inside.sum() > 1000
    assert np.array_equal(out[outside], image[outside]), "pixels outside the mask changed"
    diff = np.abs(out[inside].astype(np.int32) - image[inside].astype(np.int32))
    assert diff.mean() > 1.0, f"pixels inside the mask hardly changed (mean |diff| {diff.mean():.3f})"


def error_of(client, op, params, arrays):
    with pytest.raises(EngineError) as info:
        client.call(op, params, arrays)
    return info.value


# ---------------------------------------------------------------------------------------------------------
# cheap ops
# ---------------------------------------------------------------------------------------------------------

def test_hello(client, transport):
    assert client.transport == transport
    info = client.hello()
    assert info["protocol_version"] == 1 and info["state"] == "ready"
    assert info["model"] == "default" and info["default_model"] == "default"
    assert info["device"] == "cpu"
    assert isinstance(info["resolution"], int) and info["resolution"] >= 16
    assert info["num_classes"] >= 3
    assert any(m["name"] == "default" and m["present"] for m in info["models"])


def test_classes(client):
    every = client.classes()["classes"]
    assert [c["id"] for c in every] == list(range(len(every)))
    names = [c["name"] for c in every]
    for name in (SOURCE, TARGET, LABEL):
        assert name in names
    found = client.classes(search="GRA")["classes"]
    assert found and all("gra" in c["name"].lower() for c in found)
    assert {"id": names.index(SOURCE), "name": SOURCE} in found
    assert client.classes(search="zebra-unicorn")["classes"] == []


def test_status_idle(client):
    st = client.status()
    assert st["state"] == "ready" and st["running"] is None
    assert st["queue_length"] == 0 and st["queue"] == []


# ---------------------------------------------------------------------------------------------------------
# image jobs
# ---------------------------------------------------------------------------------------------------------

def test_project(client, photo):
    region = [36, 34, 24, 24]
    seen = []
    reply = client.call("project", {"class": SOURCE, "steps": STEPS, "region": region}, {"image": photo},
                        on_progress=lambda *a: seen.append(a))
    recon = reply.arrays["recon"]
    assert recon.shape == photo.shape and recon.dtype == "uint8"
    rec = np.frombuffer(recon.data, np.uint8).reshape(photo.shape)
    x, y, w, h = region
    # the crop box is the region grown by 25 % per side: well outside it nothing changes
    far = np.ones(photo.shape[:2], bool)
    far[y - h:y + 2 * h, x - w:x + 2 * w] = False
    assert np.array_equal(rec[far], photo[far])
    assert np.abs(rec[y:y + h, x:x + w].astype(int) - photo[y:y + h, x:x + w]).mean() > 1.0
    p = reply.params
    assert p["class_name"] == SOURCE and isinstance(p["class_id"], int)
    assert isinstance(p["loss"], float) and np.isfinite(p["loss"])
    assert seen and seen[-1][1:3] == (STEPS, STEPS)
    assert {s[0] for s in seen} == {"projection"}


def test_swap(client, photo, mask):
    reply = client.call("swap", swap_params(), {"image": photo, "mask": mask})
    out = reply.arrays["image"]
    assert tuple(out.shape) == photo.shape and out.dtype == "uint8"
    check_edited(np.frombuffer(out.data, np.uint8).reshape(photo.shape), photo, mask)
    assert reply.params["target_class"] == TARGET and reply.params["source_class"] == SOURCE


def test_swap_16bit_and_float_keep_dtype(client, photo, mask):
    for dtype, scale in (("uint16", 257), ("float32", 1 / 255)):
        img = (photo.astype(np.float64) * scale).astype(dtype)
        out = client.call("swap", swap_params(poisson=False), {"image": img, "mask": mask}).arrays["image"]
        assert out.dtype == dtype and tuple(out.shape) == img.shape
        a = np.frombuffer(out.data, dtype).reshape(img.shape)
        assert np.array_equal(a[mask == 0], img[mask == 0])
        assert not np.array_equal(a[mask == 255], img[mask == 255])


def test_blend(client, photo, mask, reference):
    params = {"strength": 1.0, "layers": "all", "shift": [4, -3], "poisson": True, "source_class": SOURCE,
              "reference_class": REFERENCE_CLASS, "steps": STEPS}
    reply = client.call("blend", params, {"image": photo, "mask": mask, "reference": reference})
    out = np.frombuffer(reply.arrays["image"].data, np.uint8).reshape(photo.shape)
    check_edited(out, photo, mask)
    assert reply.params["reference_class"] == REFERENCE_CLASS


def test_edit_with_labels(client, photo, mask, label_map, transport):
    key = f"real-engine-test:{transport}:{time.monotonic()}"
    plain = client.call("edit", {"poisson": True, "steps": STEPS, "source_class": SOURCE, "cache_key": key,
                                 "swap": {"target": TARGET, "strength": 1.0, "layers": "all"}, "blend": None},
                        {"image": photo, "mask": mask})
    params = {"poisson": True, "steps": STEPS, "source_class": SOURCE, "cache_key": key, "return_recon": True,
              "swap": {"target": TARGET, "strength": 1.0, "layers": "all",
                       "labels": [{"class": LABEL, "strength": 1.0, "mask": "label0"}]},
              "blend": None}
    reply = client.call("edit", params, {"image": photo, "mask": mask, "label0": label_map})
    assert set(reply.arrays) == {"image", "recon"}
    out = np.frombuffer(reply.arrays["image"].data, np.uint8).reshape(photo.shape)
    check_edited(out, photo, mask)
    recon = reply.arrays["recon"]
    assert tuple(recon.shape) == photo.shape and recon.dtype == "uint8"
    assert reply.params["target_class"] == TARGET
    # same cached projection, so the label map alone makes the difference, where it marks the class
    before = np.frombuffer(plain.arrays["image"].data, np.uint8).reshape(photo.shape)
    where = (label_map == 255) & (mask == 255)
    assert np.abs(out[where].astype(int) - before[where]).mean() > 1.0
    assert np.array_equal(out[mask == 0], before[mask == 0])


# ---------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------

def test_unknown_class(client, photo, mask):
    err = error_of(client, "swap", swap_params(target="zebra-unicorn"), {"image": photo, "mask": mask})
    assert err.code == "bad_input"
    assert "unknown class 'zebra-unicorn'" in err.message and "target class" in err.message


def test_empty_mask(client, photo):
    err = error_of(client, "swap", swap_params(), {"image": photo, "mask": np.zeros(photo.shape[:2], np.uint8)})
    assert err.code == "bad_input" and "empty" in err.message and "select" in err.message


def test_region_too_small(client, photo):
    tiny = np.zeros(photo.shape[:2], np.uint8)
    tiny[40:43, 40:43] = 255
    err = error_of(client, "swap", swap_params(), {"image": photo, "mask": tiny})
    assert err.code == "bad_input"
    assert "3x3 px" in err.message and "at least 16 px" in err.message


def test_strength_out_of_range(client, photo, mask):
    err = error_of(client, "swap", swap_params(strength=1.5), {"image": photo, "mask": mask})
    assert err.code == "bad_request"
    assert "'strength'" in err.message and "between 0 and 1" in err.message and "1.5" in err.message


def test_unknown_layer_index(client, photo, mask):
    err = error_of(client, "swap", swap_params(layers=[0, 99]), {"image": photo, "mask": mask})
    assert err.code == "bad_input"
    assert "unknown layer index 99" in err.message and "this model has layers 0-" in err.message


# ---------------------------------------------------------------------------------------------------------
# cancel
# ---------------------------------------------------------------------------------------------------------

def test_cancel_running_projection(client, server, transport, photo, mask):
    status_seen = []

    def on_progress(stage, step, total, loss):
        if stage == "projection" and step >= 3:
            with EngineClient(server.address, timeout=10.0, transport=transport) as other:
                status_seen.append(other.status())
            return False
        return True

    t0 = time.monotonic()
    with pytest.raises(Cancelled) as info:
        client.call("project", {"class": SOURCE, "steps": 500}, {"image": photo}, on_progress=on_progress)
    took = time.monotonic() - t0
    m = re.fullmatch(r"cancelled at step (\d+) of 500", info.value.message)
    assert m, info.value.message
    job = server.recorder.jobs[-1]
    assert job.op == "project" and job.cancelled
    assert job.cancel_step is not None and job.cancel_step >= 3
    assert job.step <= job.cancel_step + 1, "the projection ran on after the cancel"
    assert int(m.group(1)) == job.step < 500
    running = status_seen[0]["running"]
    assert running["op"] == "project" and running["total"] == 500 and "id" not in running
    # the engine stays usable
    assert client.hello()["state"] == "ready"
    out = client.call("swap", swap_params(), {"image": photo, "mask": mask}).arrays["image"]
    check_edited(np.frombuffer(out.data, np.uint8).reshape(photo.shape), photo, mask)
    assert client.status()["running"] is None
    print(f"cancel ({transport}) after {took:.2f} s at step {job.step}")


def test_project_with_a_mask_pastes_inside_it(client):
    """The protocol's `project` takes an optional mask: the reconstruction lands inside it only."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 1] = 120
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    reply = client.call("project", {"class": "grass", "steps": 2}, {"image": img, "mask": m})
    rec = np.frombuffer(reply.arrays["recon"].data, np.uint8).reshape(img.shape)
    assert np.array_equal(rec[m == 0], img[m == 0])
    assert not np.array_equal(rec[m > 0], img[m > 0])
