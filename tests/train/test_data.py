import os

import numpy as np
import pytest

from engine.train import data as D

ROOT = os.environ.get("TEXTURES_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", ".cache", "textures"))
HAVE = os.path.exists(os.path.join(ROOT, "manifest.json")) and os.path.exists(os.path.join(ROOT, "textures.npz"))
needs_data = pytest.mark.skipif(not HAVE, reason=f"texture dataset not assembled at {ROOT}: "
                                "run scripts/setup_data.sh or `python -m engine.train.data`")


def test_spec_has_enough_classes():
    assert len(D.CLASS_NAMES) >= 8
    for name, srcs in D.SOURCES.items():
        assert srcs, name
        for pkg, path, lic in srcs:
            assert pkg in D.PACKAGE_FILES and path and lic


def test_split_columns_disjoint_by_construction():
    for w in (128, 256, 255, 512, 1024):
        c = D.split_columns(w)
        assert 0 < c < w  # train = [0, c), held-out = [c, w): disjoint, cover the image


@pytest.fixture(scope="module")
def train_set():
    return D.TextureSet.load(ROOT, "train")


@needs_data
def test_sample_shapes_ranges_labels(train_set):
    g = np.random.default_rng(0)
    x, y = train_set.sample(32, 64, g)
    assert tuple(x.shape) == (32, 3, 64, 64) and str(x.dtype) == "torch.float32"
    assert str(y.dtype) == "torch.int64" and y.shape == (32,)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert int(y.min()) >= 0 and int(y.max()) < train_set.num_classes
    lab = np.arange(32) % train_set.num_classes
    _, y2 = train_set.sample(32, 64, g, labels=lab)
    assert (y2.numpy() == lab).all()
    # determinism for a given generator seed
    a, _ = train_set.sample(4, 64, np.random.default_rng(5))
    b, _ = train_set.sample(4, 64, np.random.default_rng(5))
    assert (a == b).all()


@needs_data
def test_class_count_and_manifest(train_set):
    assert train_set.num_classes >= 8
    assert train_set.class_names == train_set.manifest["class_names"]
    for c in train_set.manifest["classes"]:
        assert c["num_sources"] >= 1 and c["pixels"]["train"] > 0 and c["pixels"]["heldout"] > 0


@needs_data
def test_heldout_and_train_regions_disjoint():
    import json
    with open(os.path.join(ROOT, "manifest.json")) as f:
        man = json.load(f)
    with np.load(os.path.join(ROOT, "textures.npz")) as z:
        for c in man["classes"]:
            for e in c["sources"]:
                h, w = e["size_hw"]
                t0, t1 = e["train_cols"]
                h0, h1 = e["heldout_cols"]
                assert t0 == 0 and t1 == h0 and h1 == w  # disjoint column ranges covering the image
                tr = z[f"train/{c['name']}/{e['index']}"]
                ho = z[f"heldout/{c['name']}/{e['index']}"]
                assert tr.shape == (h, t1, 3) and ho.shape == (h, w - h0, 3)
                assert tr.dtype == np.uint8 and ho.dtype == np.uint8


@needs_data
def test_heldout_split_samples():
    ho = D.TextureSet.load(ROOT, "heldout")
    x, y = ho.sample(8, 64, np.random.default_rng(0))
    assert tuple(x.shape) == (8, 3, 64, 64)


@needs_data
def test_sample_speed(train_set):
    import time
    g = np.random.default_rng(0)
    train_set.sample(32, 64, g)
    t = time.perf_counter()
    for _ in range(10):
        train_set.sample(32, 64, g)
    assert (time.perf_counter() - t) / 10 < 0.1  # target < 20 ms; loose for busy CI
