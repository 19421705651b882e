"""Class-labelled real-photo texture dataset for the class-conditional GAN.

Sources are Debian packages only (no web): ``ufoai-textures`` (UFO:Alien Invasion,
photo-sourced game textures) and ``extremetuxracer-data`` (photo-based terrain tiles).
Install them with ``scripts/setup_data.sh`` (or ``apt-get install ufoai-textures
extremetuxracer-data``), then run ``python -m engine.train.data`` to assemble
``.cache/textures/{textures.npz,manifest.json}``.

Held-out split: the right-most ``HELDOUT_FRAC`` (25 %) columns of EVERY source image;
train = the remaining left 75 %. The two regions are disjoint by construction.

Data v2 (the packed training set): ``python -m engine.train.data pack --out PATH [--root DIR]`` builds ONE file
(a zip of high-quality JPEGs + ``info.json``) from Debian packages extracted under ``DIR/<package>/``
(``scripts/setup_data_v2.sh``); ``load_packed(PATH)`` reads it back in seconds. Its held-out split is by SOURCE
image (no source image, nor a variant group of one photo, is in both splits). See ``DATA_CARD.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np

UFOAI_PK3 = "/usr/share/games/ufoai/base/0textures.pk3"
PACKAGE_FILES = {  # package -> file that must exist
    "ufoai-textures": UFOAI_PK3,
    "extremetuxracer-data": "/usr/share/games/etr/terrains/terrains.lst",
}
HELDOUT_FRAC = 0.25
FORMAT_VERSION = 1

# class name -> list of (debian package, path, licence).  For ufoai-textures the path is
# the member inside 0textures.pk3 (a zip); licences are taken from
# /usr/share/doc/ufoai-textures/copyright (per-file stanzas; default "Files: *" = GPL-2+).
SOURCES = {
    'grass': [
        ('ufoai-textures', 'textures/tex_nature/grass001.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass003.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass004.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_lush.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_mowed_green_a.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_mowed_green_b.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_mowed_green_c.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_tall_green_a.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_tall_green_b.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/grass_tall_green_c.jpg', 'GPL-2'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/grass01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/grass02.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/grass03.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
    ],
    'gravel': [
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/pebbles01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/pebbles04.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('ufoai-textures', 'textures/tex_nature/railway.png', 'public-domain'),
        ('ufoai-textures', 'textures/tex_mattn/concrete002.jpg', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_ctp1/concrete_g_11.jpg', 'GPL-2'),
    ],
    'rock': [
        ('ufoai-textures', 'textures/tex_nature/rock008.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock009.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock010.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock011.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock014.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock015.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/rock016.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/pjrock1.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/pjrock17.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/pjrock21.png', 'GPL-2'),
    ],
    'sand': [
        ('ufoai-textures', 'textures/tex_nature/desert006.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/desert007.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/desert008.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/desert009.png', 'public-domain'),
        ('ufoai-textures', 'textures/tex_nature/sand.jpg', 'GPL-2'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/sand01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
    ],
    'soil': [
        ('ufoai-textures', 'textures/tex_nature/dirt.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/dirt001.png', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_nature/dirt002.png', 'public-domain'),
        ('ufoai-textures', 'textures/tex_nature/dirt003.png', 'public-domain'),
        ('ufoai-textures', 'textures/tex_nature/drymud.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/soil001.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/soil002.jpg', 'GPL-2'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/dirt01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/mud01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
    ],
    'wood': [
        ('ufoai-textures', 'textures/tex_material/wood002.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood003.png', 'public-domain'),
        ('ufoai-textures', 'textures/tex_material/wood008.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood009.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood010.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood011.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood012.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood013.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood014.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood015.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/wood016.png', 'GPL-2'),
    ],
    'bark': [
        ('ufoai-textures', 'textures/tex_nature/tree002.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/tree_bark_001.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/tree_bark_002.jpg', 'GPL-2'),
    ],
    'brick': [
        ('ufoai-textures', 'textures/tex_ctp1/bricks_r_2.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_ctp1/bricks_r_3.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_ctp1/bricks_r_4.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_ctp1/bricks_r_5.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_ctp1/bricks_r_6.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_ctp1/bricks_t_2.jpg', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/wall_brick01.png', 'CC-BY-SA-3.0'),
        ('ufoai-textures', 'textures/tex_mattn/wall_bricks001.jpg', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_mattn/wall_bricks002.jpg', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_mattn/wall_bricks005.jpg', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_mattn/wall_bricks006.png', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_mattn/brick03a.jpg', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_buildings/streetbricks14.jpg', 'GPL-2'),
    ],
    'snow': [
        ('ufoai-textures', 'textures/tex_nature/snow001.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_nature/snow002.png', 'GPL-2'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/snow.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/snow01.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/snow02.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
        ('extremetuxracer-data', '/usr/share/games/etr/terrains/snow03.png', 'GPL-2+ (Extreme Tux Racer, debian/copyright "Files: *")'),
    ],
    'rusty_metal': [
        ('ufoai-textures', 'textures/tex_material/metall001.png', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_material/metall003.png', 'GPL-2+'),
        ('ufoai-textures', 'textures/tex_material/metall012.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/metall013.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/metall018.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/metall019.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/metall020.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_material/metall023.png', 'GPL-2'),
    ],
    'concrete': [
        ('ufoai-textures', 'textures/tex_buildings/concrete003.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete004.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete005.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete007.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete014.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete017.png', 'GPL-2'),
        ('ufoai-textures', 'textures/tex_buildings/concrete024.png', 'CC-BY-SA-3.0'),
        ('ufoai-textures', 'textures/tex_ctp1/concrete_g_9.jpg', 'GPL-2'),
    ],
}

CLASS_NAMES = list(SOURCES)


def _spec_hash() -> str:
    blob = json.dumps([SOURCES, HELDOUT_FRAC, FORMAT_VERSION], sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def _pkg_version(pkg: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except Exception:
        return None


def check_sources() -> None:
    """Raise a clear error naming the missing Debian package(s)."""
    missing = sorted({pkg for srcs in SOURCES.values() for pkg, _, _ in srcs
                      if not os.path.exists(PACKAGE_FILES[pkg])})
    if missing:
        raise FileNotFoundError(
            "texture source package(s) not installed: %s. Run: apt-get install %s "
            "(or scripts/setup_data.sh)" % (", ".join(missing), " ".join(missing)))


def _load_rgb(pkg: str, path: str, zips: dict) -> np.ndarray:
    from PIL import Image
    if pkg == "ufoai-textures":
        if pkg not in zips:
            zips[pkg] = zipfile.ZipFile(UFOAI_PK3)
        try:
            data = zips[pkg].read(path)
        except KeyError:
            raise FileNotFoundError(f"{path} not found in {UFOAI_PK3} (package {pkg}); "
                                    f"reinstall: apt-get install --reinstall {pkg}") from None
        im = Image.open(io.BytesIO(data))
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} missing; apt-get install {pkg}")
        im = Image.open(path)
    if im.mode in ("P", "PA", "LA", "RGBA"):
        im = im.convert("RGBA")
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def split_columns(width: int) -> int:
    """Column index where the held-out region starts (train = [:, :c], held-out = [:, c:])."""
    return int(round(width * (1.0 - HELDOUT_FRAC)))


def assemble(out_dir: str = ".cache/textures", force: bool = False) -> dict:
    """Build ``out_dir/textures.npz`` + ``out_dir/manifest.json``; returns the manifest.

    Installs nothing. Fast no-op when an up-to-date manifest exists.
    """
    npz_path = os.path.join(out_dir, "textures.npz")
    man_path = os.path.join(out_dir, "manifest.json")
    if not force and os.path.exists(npz_path) and os.path.exists(man_path):
        with open(man_path) as f:
            man = json.load(f)
        if man.get("spec_hash") == _spec_hash():
            return man
    check_sources()
    os.makedirs(out_dir, exist_ok=True)
    zips: dict = {}
    arrays: dict[str, np.ndarray] = {}
    classes = []
    for name in CLASS_NAMES:
        entries = []
        px = {"train": 0, "heldout": 0}
        for i, (pkg, path, lic) in enumerate(SOURCES[name]):
            img = _load_rgb(pkg, path, zips)
            h, w = img.shape[:2]
            c = split_columns(w)
            arrays[f"train/{name}/{i}"] = img[:, :c]
            arrays[f"heldout/{name}/{i}"] = img[:, c:]
            px["train"] += h * c
            px["heldout"] += h * (w - c)
            entries.append({"index": i, "package": pkg, "path": path, "licence": lic,
                            "size_hw": [h, w], "train_cols": [0, c], "heldout_cols": [c, w]})
        classes.append({"name": name, "num_sources": len(entries), "pixels": px,
                        "sources": entries})
    for z in zips.values():
        z.close()
    tmp = npz_path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, npz_path)
    pkgs = sorted({s[0] for v in SOURCES.values() for s in v})
    man = {
        "format_version": FORMAT_VERSION,
        "spec_hash": _spec_hash(),
        "class_names": CLASS_NAMES,
        "num_classes": len(CLASS_NAMES),
        "heldout": f"right {int(HELDOUT_FRAC * 100)}% columns of every source image "
                   "(train = left part); disjoint by construction",
        "packages": {p: _pkg_version(p) for p in pkgs},
        "classes": classes,
    }
    with open(man_path, "w") as f:
        json.dump(man, f, indent=1)
    return man


class TextureSet:
    """In-memory random-crop sampler over one split of the assembled dataset."""

    SCALES = (0.5, 0.7, 1.0)

    def __init__(self, images: dict[str, list[np.ndarray]], class_names: list[str],
                 min_size: int = 64, scales=SCALES):
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.min_size = min_size
        self.scales = tuple(scales)
        # per class: list of (image_levels: list[np.ndarray], weight)
        self._levels: list[list[list[np.ndarray]]] = []
        self._probs: list[np.ndarray] = []
        self._cdf: list[np.ndarray] = []
        for name in self.class_names:
            per_img, weights = [], []
            for img in images[name]:
                per_img.append(self._make_levels(img))
                weights.append(np.sqrt(img.shape[0] * img.shape[1]))
            w = np.asarray(weights, dtype=np.float64)
            self._levels.append(per_img)
            self._probs.append(w / w.sum())
            self._cdf.append(np.cumsum(w / w.sum()))

    def _make_levels(self, img: np.ndarray) -> list[np.ndarray]:
        import cv2
        h, w = img.shape[:2]
        levels = []
        for s in self.scales:
            nh, nw = int(round(h * s)), int(round(w * s))
            if min(nh, nw) < self.min_size:
                continue
            levels.append(img if s == 1.0 else
                          cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA))
        if not levels:  # too small even at native scale: upscale so the short side fits
            s = self.min_size / min(h, w)
            nh, nw = max(self.min_size, int(np.ceil(h * s))), max(self.min_size, int(np.ceil(w * s)))
            levels.append(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC))
        return levels

    @classmethod
    def load(cls, root: str = ".cache/textures", split: str = "train",
             min_size: int = 64, scales=SCALES) -> TextureSet:
        if split not in ("train", "heldout"):
            raise ValueError("split must be 'train' or 'heldout'")
        if os.path.isfile(root):  # a v2 pack file (load_packed); split 'heldout' = its held_out images
            return load_packed(root).texture_set(split, min_size=min_size, scales=scales)
        man_path = os.path.join(root, "manifest.json")
        if not os.path.exists(man_path):
            raise FileNotFoundError(f"{man_path} missing: run `python -m engine.train.data --out {root}`")
        with open(man_path) as f:
            man = json.load(f)
        names = man["class_names"]
        images: dict[str, list[np.ndarray]] = {n: [] for n in names}
        with np.load(os.path.join(root, "textures.npz")) as z:
            for c in man["classes"]:
                for e in c["sources"]:
                    images[c["name"]].append(z[f"{split}/{c['name']}/{e['index']}"])
        ts = cls(images, names, min_size=min_size, scales=scales)
        ts.split = split
        ts.manifest = man
        return ts

    def sample(self, batch: int, size: int, generator: np.random.Generator, labels=None):
        """Random crops -> (float32 tensor [B,3,size,size] in [-1,1], int64 labels [B])."""
        import torch
        g = generator
        if labels is None:
            labels = g.integers(0, self.num_classes, size=batch)
        else:
            labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels,
                                dtype=np.int64).reshape(-1)
            if labels.shape[0] != batch:
                raise ValueError("len(labels) != batch")
        out = np.empty((batch, size, size, 3), dtype=np.uint8)
        u = g.random((batch, 5))  # image, level, y, x, flip
        rots = g.integers(0, 4, size=batch)
        for b, lab in enumerate(labels):
            imgs = self._levels[lab]
            j = min(int(np.searchsorted(self._cdf[lab], u[b, 0], side="right")), len(imgs) - 1)
            levels = imgs[j]
            fit = [a for a in levels if a.shape[0] >= size and a.shape[1] >= size]
            a = fit[int(u[b, 1] * len(fit))] if fit else levels[-1]
            if a.shape[0] < size or a.shape[1] < size:  # only if size > min_size
                import cv2
                s = size / min(a.shape[:2])
                a = cv2.resize(a, (int(np.ceil(a.shape[1] * s)), int(np.ceil(a.shape[0] * s))),
                               interpolation=cv2.INTER_CUBIC)
            y = int(u[b, 2] * (a.shape[0] - size + 1))
            x = int(u[b, 3] * (a.shape[1] - size + 1))
            crop = a[y:y + size, x:x + size]
            if rots[b]:
                crop = np.rot90(crop, int(rots[b]))
            if u[b, 4] < 0.5:
                crop = crop[:, ::-1]
            out[b] = crop
        t = torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(127.5) - np.float32(1.0))
        return t, torch.from_numpy(labels.astype(np.int64))


def contact_sheet(ts: TextureSet, path: str, per_class: int = 8, size: int = 64, seed: int = 0):
    from PIL import Image, ImageDraw
    g = np.random.default_rng(seed)
    lw = 90
    sheet = Image.new("RGB", (lw + per_class * (size + 2), ts.num_classes * (size + 2)), "white")
    d = ImageDraw.Draw(sheet)
    for c, name in enumerate(ts.class_names):
        x, _ = ts.sample(per_class, size, g, labels=[c] * per_class)
        arr = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        d.text((2, c * (size + 2) + size // 2 - 5), name, fill="black")
        for i in range(per_class):
            sheet.paste(Image.fromarray(arr[i]), (lw + i * (size + 2), c * (size + 2)))
    sheet.save(path)


# ---------------------------------------------------------------------------------------------------------------
# Data v2: one packed file (zip of JPEGs + info.json), held-out split by source image
# ---------------------------------------------------------------------------------------------------------------

PACK_FORMAT = "neural-collage-textures"
PACK_VERSION = 2
PKGS_ROOT = "/var/cache/neural-collage/pkgs"
SPLITS = ("train", "held_out")


@dataclasses.dataclass
class PackedTextures:
    """A packed texture set in memory.

    ``classes``: class names (label index = position). ``train`` / ``held_out``: lists of
    ``(uint8 HxWx3 RGB image, class index)``. ``info``: the pack's ``info.json`` (classes, per-image source,
    licence, split group and size in ``info["images"]``, per-class counts in ``info["counts"]``, licences and
    package versions in ``info["packages"]``). ``train_meta`` / ``held_out_meta``: the ``info["images"]``
    entries in the same order as ``train`` / ``held_out``.
    """
    classes: list
    train: list
    held_out: list
    info: dict
    train_meta: list = dataclasses.field(default_factory=list)
    held_out_meta: list = dataclasses.field(default_factory=list)

    def images_by_class(self, split: str = "train") -> dict:
        items = self.split(split)
        out: dict = {c: [] for c in self.classes}
        for img, k in items:
            out[self.classes[k]].append(img)
        return out

    def split(self, split: str) -> list:
        if split in ("heldout", "held_out"):
            return self.held_out
        if split == "train":
            return self.train
        raise ValueError(f"split must be 'train' or 'held_out', not {split!r}")

    def texture_set(self, split: str = "train", min_size: int = 64, scales=None) -> TextureSet:
        """A ``TextureSet`` (random crops, the v1 sampler) over one split of this pack."""
        ts = TextureSet(self.images_by_class(split), self.classes, min_size=min_size,
                        scales=TextureSet.SCALES if scales is None else scales)
        ts.split = "heldout" if split in ("heldout", "held_out") else "train"
        ts.manifest = {"class_names": list(self.classes), "pack_info": self.info}
        return ts


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    from PIL import Image
    im = Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, subsampling=0)
    if buf.tell() < 0.9 * img.shape[0] * img.shape[1]:  # optimized Huffman tables (a few % smaller) need the
        buf = io.BytesIO()  # whole file to fit PIL's w*h-byte buffer (noise at q >= 94 may not)
        im.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def check_split(images_meta: list) -> None:
    """Raise ValueError if a source image or split group appears in both splits."""
    seen: dict = {}
    for m in images_meta:
        for key in ("source", "group"):
            k = (key, m[key])
            if seen.setdefault(k, m["split"]) != m["split"]:
                raise ValueError(f"{key} {m[key]!r} is in both splits (train and held_out)")


def count_images(classes: list, images_meta: list) -> dict:
    """Per class and split: number of images, distinct sources, megapixels."""
    counts = {c: {s: {"images": 0, "sources": 0, "groups": 0, "pixels": 0, "mpx": 0.0} for s in SPLITS}
              for c in classes}
    srcs: dict = {}
    for m in images_meta:
        c = counts[m["class"]][m["split"]]
        c["images"] += 1
        c["pixels"] += m["size_hw"][0] * m["size_hw"][1]
        srcs.setdefault((m["class"], m["split"]), set()).add(m["source"])
        srcs.setdefault((m["class"], m["split"], "g"), set()).add(m.get("group", m["source"]))
    for key, s in srcs.items():
        counts[key[0]][key[1]]["groups" if len(key) == 3 else "sources"] = len(s)
    for c in counts.values():
        for v in c.values():
            v["mpx"] = round(v["pixels"] / 1e6, 3)
    return counts


def _tally(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def write_pack(path: str, classes: list, items: list, info: dict | None = None, quality: int = 94) -> dict:
    """Write a pack file. ``items``: list of ``(uint8 HxWx3 image, class index, meta)`` where ``meta`` has at
    least ``split`` ('train' | 'held_out') and ``source`` (a string naming the source image); optional
    ``group`` (images of one photo: never split; default = source), ``licence``, ``package``, ``path``.
    Returns the info dict written. The split is checked (no source/group in both splits)."""
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError("duplicate class names")
    metas = []
    blobs = []
    for n, (img, k, meta) in enumerate(items):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"item {n}: need a uint8 HxWx3 RGB image, got {img.dtype} {img.shape}")
        if not 0 <= int(k) < len(classes):
            raise ValueError(f"item {n}: class index {k} out of range 0..{len(classes) - 1}")
        if meta.get("split") not in SPLITS:
            raise ValueError(f"item {n}: split must be one of {SPLITS}, got {meta.get('split')!r}")
        if not meta.get("source"):
            raise ValueError(f"item {n}: meta needs a 'source'")
        m = dict(meta)
        m.setdefault("group", m["source"])
        m["class"] = classes[int(k)]
        m["label"] = int(k)
        m["size_hw"] = [int(img.shape[0]), int(img.shape[1])]
        m["file"] = f"{m['split']}/{m['class']}/{n:05d}.jpg"
        metas.append(m)
        blobs.append(_encode_jpeg(np.ascontiguousarray(img), quality))
    check_split(metas)
    info = dict(info or {})
    info.update({
        "format": PACK_FORMAT, "version": PACK_VERSION, "classes": classes, "jpeg_quality": quality,
        "split": info.get("split", "held_out = whole source images (split groups), none of them in train"),
        "counts": count_images(classes, metas),
        "sources": {c: sorted({m["source"] for m in metas if m["class"] == c}) for c in classes},
        "licences": {c: _tally(m.get("licence", "?") for m in metas if m["class"] == c) for c in classes},
        "images": metas,
    })
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:  # fixed dates: same input, same bytes
        z.writestr(zipfile.ZipInfo("info.json", (2020, 1, 1, 0, 0, 0)), json.dumps(info, indent=1))
        for m, b in zip(metas, blobs):
            z.writestr(zipfile.ZipInfo(m["file"], (2020, 1, 1, 0, 0, 0)), b)
    os.replace(tmp, path)
    return info


def load_packed(path: str, threads: int = 4) -> PackedTextures:
    """Read a pack written by ``write_pack`` / ``python -m engine.train.data pack``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"texture pack {path} not found (build it with `python -m engine.train.data pack "
                                f"--out {path}` or copy it here)")
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a texture pack (not a zip file)") from None
    with z:
        try:
            info = json.loads(z.read("info.json"))
        except KeyError:
            raise ValueError(f"{path} is not a texture pack (no info.json)") from None
        if info.get("format") != PACK_FORMAT or info.get("version") != PACK_VERSION:
            raise ValueError(f"{path}: unsupported pack format {info.get('format')!r} version "
                             f"{info.get('version')!r} (need {PACK_FORMAT!r} {PACK_VERSION})")
        metas = info["images"]
        check_split(metas)
        blobs = [z.read(m["file"]) for m in metas]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, threads)) as ex:  # PIL releases the GIL while decoding
        imgs = list(ex.map(_decode_image, blobs))
    classes = list(info["classes"])
    pt = PackedTextures(classes=classes, train=[], held_out=[], info=info)
    for img, m in zip(imgs, metas):
        if list(img.shape[:2]) != list(m["size_hw"]):
            raise ValueError(f"{path}: {m['file']} has size {img.shape[:2]}, info says {m['size_hw']}")
        k = classes.index(m["class"])
        if m["split"] == "train":
            pt.train.append((img, k))
            pt.train_meta.append(m)
        else:
            pt.held_out.append((img, k))
            pt.held_out_meta.append(m)
    return pt


def overview_sheet(pt: PackedTextures, path: str, train: int = 6, held_out: int = 2, crop: int = 128,
                   show: int = 80, seed: int = 0) -> None:
    """One row per class: ``train`` random ``crop`` px training crops, then ``held_out`` held-out crops (after a
    gap), each shown at ``show`` px; label with the class's image/group counts and megapixels. Saved as a
    palette PNG (small enough for docs/)."""
    from PIL import Image, ImageDraw
    g = np.random.default_rng(seed)
    lw, gap = 150, 10
    n = train + held_out
    sheet = Image.new("RGB", (lw + n * (show + 2) + gap, len(pt.classes) * (show + 2) + 14), "white")
    d = ImageDraw.Draw(sheet)
    d.text((lw, 1), f"training crops ({crop} px, shown at {show})", fill="black")
    d.text((lw + train * (show + 2) + gap, 1), "held-out", fill="black")
    for k, c in enumerate(pt.classes):
        y = 14 + k * (show + 2)
        cnt = pt.info["counts"][c]
        d.text((2, y + show // 2 - 12), c, fill="black")
        d.text((2, y + show // 2), f"{cnt['train']['mpx']:.1f}+{cnt['held_out']['mpx']:.1f} Mpx, "
                                   f"{cnt['train']['groups']}+{cnt['held_out']['groups']} photos", fill="gray")
        for col, split, num in ((0, pt.train, train), (train, pt.held_out, held_out)):
            imgs = [img for img, kk in split if kk == k]
            if not imgs:
                continue
            w = np.array([im.shape[0] * im.shape[1] for im in imgs], dtype=np.float64)
            for i in range(num):
                im = imgs[int(g.choice(len(imgs), p=w / w.sum()))]
                yy = int(g.integers(0, im.shape[0] - crop + 1))
                xx = int(g.integers(0, im.shape[1] - crop + 1))
                tile = Image.fromarray(im[yy:yy + crop, xx:xx + crop]).resize((show, show), Image.LANCZOS)
                sheet.paste(tile, (lw + (col + i) * (show + 2) + (gap if col else 0), y))
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def build_pack(out: str, root: str = PKGS_ROOT, quality: int = 93, **kw) -> dict:
    """Build the v2 pack ``out`` from Debian packages extracted under ``root/<package>/``; returns its info.
    ``kw``: ``sources``, ``classes``, ``cap_mpx`` for ``sources_v2.collect``."""
    from engine.train import sources_v2
    classes, items, info = sources_v2.collect(root, quality=quality, **kw)
    return write_pack(out, classes, items, info=info, quality=quality)


def pack_main(argv=None):
    """``python -m engine.train.data pack --out PATH``: build the v2 pack from extracted Debian packages."""
    ap = argparse.ArgumentParser(prog="python -m engine.train.data pack",
                                 description="build the packed v2 texture set (one file) from Debian packages "
                                             "extracted under ROOT/<package>/ (scripts/setup_data_v2.sh)")
    ap.add_argument("--out", required=True, help="pack file to write (e.g. textures-v2.pack)")
    ap.add_argument("--root", default=PKGS_ROOT, help="folder with one extracted package per subfolder "
                                                      "(default %(default)s)")
    ap.add_argument("--quality", type=int, default=93, help="JPEG quality (default %(default)s)")
    ap.add_argument("--sheet", default=None, help="also write an overview PNG of the pack here (random crops per "
                                                  "class, train and held-out)")
    args = ap.parse_args(argv)
    t0 = time.time()
    info = build_pack(args.out, root=args.root, quality=args.quality)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {size / 2**20:.1f} MiB in {time.time() - t0:.0f}s")
    print_counts(info)
    t0 = time.time()
    pt = load_packed(args.out)
    print(f"load_packed: {time.time() - t0:.1f}s, {len(pt.train)} train + {len(pt.held_out)} held-out images")
    if args.sheet:
        overview_sheet(pt, args.sheet)
        print("wrote", args.sheet)
    return 0


def print_counts(info: dict) -> None:
    print(f"{'class':<12} {'train img/photos/Mpx':>22} {'held-out img/photos/Mpx':>25}")
    for c in info["classes"]:
        t, h = info["counts"][c]["train"], info["counts"][c]["held_out"]
        print(f"{c:<12} {t['images']:>8} {t['groups']:>5} {t['mpx']:>7.2f} "
              f"{h['images']:>10} {h['groups']:>5} {h['mpx']:>7.2f}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "pack":
        return pack_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="`python -m engine.train.data pack --help`: the packed v2 set")
    ap.add_argument("--out", default=".cache/textures")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--sheet", default=None, help="also write a contact sheet PNG here")
    args = ap.parse_args(argv)
    t0 = time.time()
    man = assemble(args.out, force=args.force)
    print(f"assembled {args.out} in {time.time() - t0:.1f}s; packages: {man['packages']}")
    print(f"{'class':<12} {'srcs':>4} {'train px':>10} {'heldout px':>10}")
    for c in man["classes"]:
        print(f"{c['name']:<12} {c['num_sources']:>4} {c['pixels']['train']:>10} {c['pixels']['heldout']:>10}")
    ts = TextureSet.load(args.out, "train")
    g = np.random.default_rng(0)
    ts.sample(32, 64, g)
    t0 = time.perf_counter()
    for _ in range(20):
        ts.sample(32, 64, g)
    print(f"sample(32, 64): {(time.perf_counter() - t0) / 20 * 1000:.2f} ms")
    if args.sheet:
        contact_sheet(ts, args.sheet)
        print("wrote", args.sheet)


if __name__ == "__main__":
    sys.exit(main())
