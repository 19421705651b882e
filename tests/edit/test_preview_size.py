"""Preview-size edits (issue 14, ``preview_size``) on the shipped default model: the result is at most N px, is the
same edit run on the reduced image (a working-size edit), leaves the outside of the (reduced) selection as it is,
and the reduced crop is projected once: later previews of the same region only render."""
import numpy as np
import pytest

from engine.cli.files import ellipse_mask
from engine.edit.pipeline import BlendSpec, PhotoEditor, SwapSpec
from engine.edit.reduce import reduce_array, reduce_inputs, reduced_size

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def photo():
    from engine.cli.demo import DEMO_DIR
    from engine.cli.files import read_photo

    p = read_photo(str(DEMO_DIR / "pebbles.jpg"))
    big = np.concatenate([p, p[:, ::-1]] * 3, axis=1)
    big = np.concatenate([big, big[::-1]] * 2, axis=0)
    return np.ascontiguousarray(big[:480, :640])


def test_reduced_size_and_arrays():
    assert reduced_size(480, 640, 256) == (192, 256)
    assert reduced_size(100, 80, 256) == (100, 80)
    a = np.arange(480 * 640 * 3, dtype=np.uint16).reshape(480, 640, 3)
    assert reduce_array(a, 0.4).shape == (192, 256, 3) and reduce_array(a, 0.4).dtype == np.uint16
    assert reduce_array(np.ones((480, 640, 1), np.float32), 0.4).shape == (192, 256, 1)
    m = np.zeros((480, 640), np.uint8)
    m[:, 320:] = 255
    r = reduce_array(m, 0.4)
    assert r.shape == (192, 256) and r[:, :127].max() == 0 and r[:, 129:].min() == 255
    small = reduce_inputs(256, a, m, None, BlendSpec(shift=(100, -50)), a, None, (10, 20, 300, 200))
    assert small["blend"].shift == (40, -20) and small["region"] == (4, 8, 120, 80)
    assert reduce_inputs(1024, a, m, None, None, None, None, None) == {}


def test_preview_is_the_edit_of_the_reduced_image(default_bundle, photo):
    ed = PhotoEditor(default_bundle)
    mask = ellipse_mask(480, 640, 330, 240, 150, 110, feather=6)
    kw = dict(swap=SwapSpec(7, 0.8), source_class=1, mode="fast", poisson=True)
    res = ed.edit(photo, mask, preview_size=256, cache_key="k", **kw)
    assert res.image.shape == (192, 256, 3) and res.image.dtype == photo.dtype
    small_img, small_mask = reduce_array(photo, 0.4), reduce_array(mask, 0.4)
    same = PhotoEditor(default_bundle).edit(small_img, small_mask, **kw)
    assert np.array_equal(res.image, same.image)
    outside = small_mask == 0
    assert outside.sum() > 1000
    assert np.array_equal(res.image[outside], small_img[outside])
    inside = small_mask > 0.99
    assert np.abs(res.image[inside].astype(int) - small_img[inside].astype(int)).mean() > 3
    assert res.crop_size <= 256 and res.render_size <= 256


def test_preview_projects_once_then_only_renders(default_bundle, photo):
    ed = PhotoEditor(default_bundle)
    calls = []
    start, calibrate = ed.projector.start, ed.projector.calibrate_tiled
    ed.projector.start = lambda *a, **k: calls.append("start") or start(*a, **k)
    ed.projector.calibrate_tiled = lambda *a, **k: calls.append("calibrate") or calibrate(*a, **k)
    mask = ellipse_mask(480, 640, 330, 240, 150, 110, feather=6)
    first = ed.edit(photo, mask, swap=SwapSpec(7, 1.0), source_class=1, steps=2, cache_key="k", preview_size=128)
    assert calls == ["start", "calibrate"]
    later = [ed.edit(photo, mask, swap=SwapSpec(c, s), source_class=1, steps=2, cache_key="k", preview_size=128,
                     scale=1.0).image for c, s in ((7, 0.5), (3, 1.0))]
    assert calls == ["start", "calibrate"], "a later preview of the same region projected again"
    assert not np.array_equal(later[0], first.image) and not np.array_equal(later[1], first.image)
    assert max(first.image.shape[:2]) <= 128
    # the full-size edit does not take the preview's projection: its own key, its own size
    full = ed.edit(photo, mask, swap=SwapSpec(7, 1.0), source_class=1, steps=2, cache_key="k")
    assert full.image.shape == photo.shape and calls.count("start") == 2


def test_small_image_preview_equals_the_full_edit(default_bundle, photo):
    img = photo[:200, :240]
    mask = ellipse_mask(200, 240, 120, 100, 60, 50, feather=4)
    kw = dict(swap=SwapSpec(5), source_class=1, mode="fast")
    a = PhotoEditor(default_bundle).edit(img, mask, preview_size=256, **kw).image
    b = PhotoEditor(default_bundle).edit(img, mask, **kw).image
    assert np.array_equal(a, b)


def test_handler_sends_the_preview_size_through(default_bundle, photo):
    from engine.serve.handler import Engine

    eng = Engine.from_bundle(default_bundle)

    class Job:
        def progress(self, *a):
            pass

    mask = (ellipse_mask(480, 640, 330, 240, 150, 110, feather=6) * 255).astype(np.uint8)
    params = {"poisson": True, "mode": "fast", "preview_size": 200, "cache_key": "h",
              "swap": {"target": 2, "strength": 1.0, "layers": "all"}, "source_class": 1}
    out_params, arrays = eng.run("edit", params, {"image": photo, "mask": mask}, Job())
    assert max(arrays["image"].shape[:2]) <= 200 and arrays["image"].shape[:2] == (150, 200)
