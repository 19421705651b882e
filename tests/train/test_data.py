import io
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


# ---- data v2: the packed set (tiny pack made here; no big packages needed) ----

def _tiny_items(rng):
    items = []
    classes = ["grass", "rock", "water"]
    for k in range(3):
        for j in range(4):
            split = "held_out" if j == 3 else "train"
            img = rng.integers(0, 256, size=(32 + 8 * j, 40, 3), dtype=np.uint8)
            img[..., k] = 255  # a class-coloured channel survives JPEG exactly enough to check
            items.append((img, k, {"split": split, "source": f"pkg:{classes[k]}/{j}.png", "licence": "GPL-2+",
                                   "package": "pkg"}))
    return classes, items


def test_pack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    classes, items = _tiny_items(rng)
    path = str(tmp_path / "tiny.pack")
    D.write_pack(path, classes, items, info={"note": "test"})
    pt = D.load_packed(path)
    assert pt.classes == classes == pt.info["classes"]
    assert len(pt.train) == 9 and len(pt.held_out) == 3
    want = [(img, k) for img, k, m in items if m["split"] == "train"]
    for (a, ka), (b, kb) in zip(pt.train, want):
        assert ka == kb and a.dtype == np.uint8 and a.shape == b.shape
        assert a[..., ka].mean() > 240  # the class channel is still saturated after JPEG
        assert np.abs(a.astype(int) - b).mean() < 40  # noise is the worst case for JPEG; still close
    assert [k for _, k in pt.held_out] == [0, 1, 2]
    assert pt.info["note"] == "test"
    c = pt.info["counts"]
    assert c["rock"]["train"]["images"] == 3 and c["rock"]["held_out"]["sources"] == 1
    assert c["grass"]["held_out"]["pixels"] == 56 * 40 and c["grass"]["train"]["pixels"] == (32 + 40 + 48) * 40
    assert {m["class"] for m in pt.held_out_meta} == set(classes)
    assert pt.info["sources"]["water"] == [f"pkg:water/{j}.png" for j in range(4)]
    assert pt.info["licences"]["rock"] == {"GPL-2+": 4}


def test_pack_split_has_no_shared_source(tmp_path):
    rng = np.random.default_rng(1)
    classes, items = _tiny_items(rng)
    pt_path = str(tmp_path / "a.pack")
    D.write_pack(pt_path, classes, items)
    pt = D.load_packed(pt_path)
    tr = {m["source"] for m in pt.train_meta} | {m["group"] for m in pt.train_meta}
    ho = {m["source"] for m in pt.held_out_meta} | {m["group"] for m in pt.held_out_meta}
    assert tr and ho and not tr & ho
    # a source in both splits, or two sources of one group split apart, is refused with a clear message
    bad = items + [(items[0][0], 0, {"split": "held_out", "source": items[0][2]["source"]})]
    with pytest.raises(ValueError, match="in both splits"):
        D.write_pack(str(tmp_path / "b.pack"), classes, bad)
    grouped = [(img, k, dict(m, group="one-photo")) for img, k, m in items[:4]]
    with pytest.raises(ValueError, match="group 'one-photo' is in both splits"):
        D.write_pack(str(tmp_path / "c.pack"), classes, grouped)


def test_pack_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="texture pack"):
        D.load_packed(str(tmp_path / "missing.pack"))
    p = tmp_path / "junk.pack"
    p.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a texture pack"):
        D.load_packed(str(p))
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="class index 2 out of range"):
        D.write_pack(str(tmp_path / "x.pack"), ["a", "b"], [(img, 2, {"split": "train", "source": "s"})])
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        D.write_pack(str(tmp_path / "x.pack"), ["a"], [(img[..., 0], 0, {"split": "train", "source": "s"})])


def test_pack_texture_set_samples(tmp_path):
    rng = np.random.default_rng(2)
    classes, items = _tiny_items(rng)
    path = str(tmp_path / "t.pack")
    D.write_pack(path, classes, items)
    ts = D.TextureSet.load(path, "heldout", min_size=16)
    assert ts.class_names == classes
    x, y = ts.sample(6, 16, np.random.default_rng(0), labels=[0, 1, 2, 0, 1, 2])
    assert tuple(x.shape) == (6, 3, 16, 16)
    # the class-coloured channel identifies the class of every crop
    assert (x.mean(dim=(2, 3)).argmax(1).numpy() == y.numpy()).all()


def test_pack_cli_dispatch_keeps_v1(monkeypatch):
    called = {}
    monkeypatch.setattr(D, "pack_main", lambda argv: called.setdefault("argv", argv) and 0)
    D.main(["pack", "--out", "x.pack"])
    assert called["argv"] == ["--out", "x.pack"]


# ---- data v2: building a pack from extracted packages (a fake package made here) ----

def _fake_package(root, rng):
    import gzip
    import zipfile
    from PIL import Image
    pkg = root / "fakepkg"
    doc = pkg / "usr/share/doc/fakepkg"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: data/cc/*\nCopyright: someone else\nLicense: CC-BY-SA-3.0\n\n"
        "Files: data/nonfree/*\nCopyright: a shop\nLicense: custom-no-redistribution\n")
    with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
        f.write("fakepkg (1.2-3) unstable; urgency=low\n")
    data = pkg / "data"
    for d in ("cc", "nonfree"):
        (data / d).mkdir(parents=True)

    def tex(seed, n=320):
        g = np.random.default_rng(seed)
        a = g.random((n // 8, n // 8, 3))
        return np.kron(a, np.ones((8, 8, 1)))[:n, :n] * 200 + g.random((n, n, 3)) * 55

    paths = {}
    for k, cls in enumerate(("grass", "rock")):
        for j in range(3):
            img = tex(10 * k + j).astype(np.uint8)
            p = f"data/{'cc/' if j == 0 else ''}{cls}{j}.png"
            Image.fromarray(img).save(pkg / p)
            paths[(cls, j)] = p
    # a recolour of grass1 (one photo: must share its split group), a non-free file, a small one, a tiled copy
    g1 = np.asarray(Image.open(pkg / paths[("grass", 1)]))
    Image.fromarray(np.ascontiguousarray(g1[..., ::-1])).save(pkg / "data/grass1_red.png")
    Image.fromarray(tex(7).astype(np.uint8)).save(pkg / "data/nonfree/grass9.png")
    Image.fromarray(tex(8, 128).astype(np.uint8)).save(pkg / "data/small.png")
    half = tex(9, 320)[:, :160].astype(np.uint8)
    Image.fromarray(np.concatenate([half, half], 1)).save(pkg / "data/tiled.png")  # tile 320x160: refused
    tile = tex(13, 288).astype(np.uint8)
    Image.fromarray(np.concatenate([tile, tile], 0)).save(pkg / "data/tiled_big.png")  # tile 288x288: kept
    buf = io.BytesIO()
    Image.fromarray(tex(99).astype(np.uint8)).save(buf, format="PNG")
    with zipfile.ZipFile(pkg / "data/more.zip", "w") as z:
        z.writestr("tex/rock9.png", buf.getvalue())
    return paths


def test_build_pack_from_packages(tmp_path):
    from engine.train import sources_v2 as V
    root = tmp_path / "pkgs"
    paths = _fake_package(root, np.random.default_rng(0))
    S = V.Src
    srcs = [S(c, "fakepkg", paths[(c, j)], None) for c in ("grass", "rock") for j in range(3)]
    srcs += [S("grass", "fakepkg", "data/grass1_red.png", None), S("grass", "fakepkg", "data/nonfree/grass9.png", None),
             S("rock", "fakepkg", "data/small.png", None), S("rock", "fakepkg", "data/tiled.png", None),
             S("rock", "fakepkg", "data/tiled_big.png", None),
             S("rock", "fakepkg", "data/more.zip!tex/rock9.png", None),
             S("rock", "fakepkg", "data/grass1_red.png", None)]  # the same photo under a second label
    out = str(tmp_path / "p.pack")
    info = D.build_pack(out, str(root), sources=srcs, classes=["grass", "rock"], cap_mpx=0.4)
    why = {r["source"].split(":", 1)[1]: r["why"] for r in info["rejected_at_build"]}
    assert "licence not known free: 'custom-no-redistribution'" in why["data/nonfree/grass9.png"]
    assert "smaller than 256" in why["data/small.png"]
    assert "tiled copy of itself; its tile [320, 160] is under 256 px" in why["data/tiled.png"]
    assert "same photo as fakepkg:data/grass1.png in class grass" in why["data/grass1_red.png"]
    pt = D.load_packed(out)
    assert pt.classes == ["grass", "rock"] == pt.info["classes"]
    metas = pt.train_meta + pt.held_out_meta
    by_path = {m["path"]: m for m in metas if m["class"] == "grass"}
    assert by_path["data/grass1_red.png"]["group"] == by_path[paths[("grass", 1)]]["group"]  # recolour: one group
    assert by_path[paths[("grass", 0)]]["licence"] == "CC-BY-SA-3.0" and by_path[paths[("grass", 1)]]["licence"] == "GPL-2+"
    assert any(m["path"] == "data/more.zip!tex/rock9.png" for m in metas)
    big = [m for m in metas if m["path"] == "data/tiled_big.png"]
    assert big and big[0]["untiled"] and max(big[0]["size_hw"]) <= 288  # one tile (maybe centre-cropped by the cap)
    assert info["packages"]["fakepkg"]["version"] == "1.2-3"
    for c in pt.classes:  # every class has both splits, no group in both, class cap respected (0.4 Mpx)
        tr = {m["group"] for m in pt.train_meta if m["class"] == c}
        ho = {m["group"] for m in pt.held_out_meta if m["class"] == c}
        assert tr and ho and not tr & ho
        px = sum(m["size_hw"][0] * m["size_hw"][1] for m in metas if m["class"] == c)
        assert px <= 0.4e6 * 1.02


def test_name_stem_groups_variants():
    from engine.train.sources_v2 import Src, name_stem
    a = [name_stem(Src("x", "p", f"d/{n}", None)) for n in ("rust1a.jpg", "rust1b.jpg", "rust1.jpg")]
    assert len(set(a)) == 1
    assert name_stem(Src("x", "p", "d/sand_01_wet.png.cached.dds", None)) == name_stem(Src("x", "p", "d/sand_01.png", None))
    assert name_stem(Src("x", "p", "d/dirt_brown_c.dds", None)) == name_stem(Src("x", "p", "d/dirt_brown_a.dds", None))
    assert name_stem(Src("x", "p", "d/grass1.png", None)) != name_stem(Src("x", "p", "d/grass2.png", None))


def test_v2_source_list_is_consistent():
    from engine.train import sources_v2 as V
    assert len(V.CLASSES) == len(set(V.CLASSES)) and V.CLASSES[:11] == D.CLASS_NAMES
    ids = [V.source_id(s) + s.cls for s in V.SOURCES]
    assert len(ids) == len(set(ids))
    for c in V.CLASSES:
        assert sum(s.cls == c for s in V.SOURCES) >= 4, c
    assert {s.cls for s in V.SOURCES} == set(V.CLASSES)


def test_pack_bytes_are_reproducible(tmp_path):
    classes, items = _tiny_items(np.random.default_rng(3))
    a, b = str(tmp_path / "a.pack"), str(tmp_path / "b.pack")
    D.write_pack(a, classes, items)
    D.write_pack(b, classes, items)
    import pathlib
    assert pathlib.Path(a).read_bytes() == pathlib.Path(b).read_bytes()


PACK_V2 = os.environ.get("TEXTURES_V2_PACK", "/work/data/textures-v2/textures-v2.pack")


@pytest.mark.skipif(not os.path.isfile(PACK_V2), reason=f"no v2 pack at {PACK_V2} (python -m engine.train.data pack)")
def test_built_v2_pack_matches_its_spec():
    from engine.train import sources_v2 as V
    pt = D.load_packed(PACK_V2)
    assert pt.classes == pt.info["classes"] == V.CLASSES
    for k, c in enumerate(pt.classes):
        cnt = pt.info["counts"][c]
        assert cnt["train"]["images"] == sum(kk == k for _, kk in pt.train)
        assert cnt["held_out"]["images"] == sum(kk == k for _, kk in pt.held_out) >= 1
        assert cnt["train"]["groups"] + cnt["held_out"]["groups"] >= 4
        assert cnt["train"]["mpx"] >= 1.5
    tr = {m["group"] for m in pt.train_meta} | {m["source"] for m in pt.train_meta}
    ho = {m["group"] for m in pt.held_out_meta} | {m["source"] for m in pt.held_out_meta}
    assert not tr & ho
    assert all(min(img.shape[:2]) >= 256 and img.dtype == np.uint8 for img, _ in pt.train + pt.held_out)
    assert all(V.is_free(m["licence"]) for m in pt.train_meta + pt.held_out_meta)
    assert os.path.getsize(PACK_V2) <= 40 * 2**20
