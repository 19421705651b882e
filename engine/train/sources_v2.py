"""Data v2: which files of which Debian packages make the packed texture set, and how the pack is built.

Every source is ``Src(class, package, path, licence, group, crop, scale)``: ``path`` is relative to the
package's root (``ROOT/<package>/``, i.e. ``dpkg-deb -x`` output; ``ufoai-textures`` and
``extremetuxracer-data`` may instead be installed at ``/``); ``a.pk3!member`` reads ``member`` from the zip
``a.pk3``. ``group`` names one photograph when several files are variants of it (crops, recolours): a group is
never split between train and held-out. ``crop`` (x0, y0, x1, y1) keeps only a texture region; ``scale``
resizes (INTER_AREA) before the side cap. Licences are read from each package's ``usr/share/doc/*/copyright``
(see ``engine/train/DATA_CARD.md``).
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import zipfile
from typing import NamedTuple

import numpy as np

MAX_SIDE = 1024  # larger sources are resized (INTER_AREA) so their long side is this
MIN_SIDE = 256  # smaller sources are not used
HELD_OUT_TARGET = (0.15, 0.30)  # per class: held-out share of pixels, at least / at most (whole groups)


class Src(NamedTuple):
    cls: str
    pkg: str
    path: str
    licence: str
    group: str | None = None
    crop: tuple | None = None
    scale: float | None = None


UFO = "usr/share/games/ufoai/base/0textures.pk3!textures/"
ETR = "usr/share/games/etr/terrains/"
ETR_LIC = "GPL-2+"


def _ufo(cls, rel, lic="GPL-2", **kw):
    return Src(cls, "ufoai-textures", UFO + rel, lic, **kw)


def _etr(cls, name, **kw):
    return Src(cls, "extremetuxracer-data", ETR + name, ETR_LIC, **kw)


# v1 sources (ufoai-textures, extremetuxracer-data), licences as in engine/train/data.py SOURCES
V1 = [
    *[_ufo("grass", "tex_nature/" + n) for n in ("grass001.jpg", "grass003.jpg", "grass004.jpg", "grass_lush.png")],
    *[_ufo("grass", f"tex_nature/grass_{k}_green_{v}.jpg", group=f"ufoai:grass_{k}_green")
      for k in ("mowed", "tall") for v in "abc"],
    *[_etr("grass", f"grass0{i}.png") for i in (1, 2, 3)],
    _etr("gravel", "pebbles01.png"), _etr("gravel", "pebbles04.png"),
    _ufo("gravel", "tex_nature/railway.png", "public-domain"),
    _ufo("gravel", "tex_mattn/concrete002.jpg", "GPL-2+"),
    _ufo("gravel", "tex_ctp1/concrete_g_11.jpg"),
    *[_ufo("rock", f"tex_nature/{n}.png") for n in ("rock008", "rock009", "rock010", "rock011", "rock014",
                                                    "rock015", "rock016", "pjrock1", "pjrock17", "pjrock21")],
    *[_ufo("sand", f"tex_nature/desert00{i}.png") for i in (6, 7, 8)],
    _ufo("sand", "tex_nature/desert009.png", "public-domain"), _ufo("sand", "tex_nature/sand.jpg"),
    _etr("sand", "sand01.png"),
    _ufo("soil", "tex_nature/dirt.png"), _ufo("soil", "tex_nature/dirt001.png", "GPL-2+"),
    _ufo("soil", "tex_nature/dirt002.png", "public-domain"), _ufo("soil", "tex_nature/dirt003.png", "public-domain"),
    _ufo("soil", "tex_nature/drymud.jpg"), _ufo("soil", "tex_nature/soil001.jpg"),
    _ufo("soil", "tex_nature/soil002.jpg"), _etr("soil", "dirt01.png"), _etr("soil", "mud01.png"),
    _ufo("wood", "tex_material/wood002.png"), _ufo("wood", "tex_material/wood003.png", "public-domain"),
    *[_ufo("wood", f"tex_material/wood0{i:02d}.png") for i in range(8, 17)],
    _ufo("bark", "tex_nature/tree002.png"), _ufo("bark", "tex_nature/tree_bark_001.jpg"),
    _ufo("bark", "tex_nature/tree_bark_002.jpg"),
    *[_ufo("brick", f"tex_ctp1/bricks_{n}.jpg") for n in ("r_2", "r_3", "r_4", "r_5", "r_6", "t_2")],
    _ufo("brick", "tex_buildings/wall_brick01.png", "CC-BY-SA-3.0"),
    *[_ufo("brick", "tex_mattn/" + n, "GPL-2+") for n in ("wall_bricks001.jpg", "wall_bricks002.jpg",
                                                          "wall_bricks005.jpg", "wall_bricks006.png",
                                                          "brick03a.jpg")],
    _ufo("brick", "tex_buildings/streetbricks14.jpg"),
    _ufo("snow", "tex_nature/snow001.png"), _ufo("snow", "tex_nature/snow002.png"),
    *[_etr("snow", n) for n in ("snow.png", "snow01.png", "snow02.png", "snow03.png")],
    _ufo("rusty_metal", "tex_material/metall001.png", "GPL-2+"),
    _ufo("rusty_metal", "tex_material/metall003.png", "GPL-2+"),
    *[_ufo("rusty_metal", f"tex_material/metall0{i}.png") for i in (12, 13, 18, 19, 20, 23)],
    *[_ufo("concrete", f"tex_buildings/concrete0{i:02d}.png") for i in (3, 4, 5, 7, 14, 17)],
    _ufo("concrete", "tex_buildings/concrete024.png", "CC-BY-SA-3.0"),
    _ufo("concrete", "tex_ctp1/concrete_g_9.jpg"),
]

SOURCES: list = [*V1]
CLASSES = ["grass", "gravel", "rock", "sand", "soil", "wood", "bark", "brick", "snow", "rusty_metal", "concrete"]


def package_root(root: str, pkg: str) -> str:
    d = os.path.join(root, pkg)
    if os.path.isdir(d):
        return d
    if pkg in ("ufoai-textures", "extremetuxracer-data") and os.path.isdir(f"/usr/share/doc/{pkg}"):
        return "/"  # the v1 sources, installed with apt
    raise FileNotFoundError(f"package {pkg} not found under {root}/{pkg}: run scripts/setup_data_v2.sh "
                            f"(or dpkg-deb -x {pkg}_*.deb {root}/{pkg})")


def package_version(root: str, pkg: str) -> str | None:
    d = package_root(root, pkg)
    if d == "/":
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                                 timeout=10)
            return out.stdout.strip() or None
        except Exception:
            return None
    ch = os.path.join(d, "usr/share/doc", pkg, "changelog.Debian.gz")
    if os.path.exists(ch):
        import gzip
        with gzip.open(ch, "rt", errors="replace") as f:
            first = f.readline()
        if "(" in first:
            return first.split("(", 1)[1].split(")", 1)[0]
    return None


class _Reader:
    def __init__(self, root: str):
        self.root = root
        self.zips: dict = {}

    def read(self, pkg: str, path: str) -> bytes:
        base = package_root(self.root, pkg)
        if "!" in path:
            arc, member = path.split("!", 1)
            full = os.path.join(base, arc)
            if full not in self.zips:
                self.zips[full] = zipfile.ZipFile(full)
            return self.zips[full].read(member)
        with open(os.path.join(base, path), "rb") as f:
            return f.read()

    def close(self):
        for z in self.zips.values():
            z.close()


def load_source(reader: _Reader, s: Src) -> np.ndarray:
    import cv2
    from PIL import Image
    with Image.open(io.BytesIO(reader.read(s.pkg, s.path))) as im:
        if im.mode in ("P", "PA", "LA", "RGBA", "I;16"):
            im = im.convert("RGBA")
        img = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    if s.crop:
        x0, y0, x1, y1 = s.crop
        img = np.ascontiguousarray(img[y0:y1, x0:x1])
    if s.scale:
        h, w = img.shape[:2]
        img = cv2.resize(img, (round(w * s.scale), round(h * s.scale)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    if max(h, w) > MAX_SIDE:
        f = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return img


def repeats_inside(img: np.ndarray, tol: float = 2.0) -> bool:
    """True if the image is a 2x1 or 1x2 tiling of one half (a tiled copy, not more photo)."""
    h, w = img.shape[:2]
    a = img.astype(np.int16)
    if w % 2 == 0 and np.abs(a[:, : w // 2] - a[:, w // 2:]).mean() < tol:
        return True
    return h % 2 == 0 and bool(np.abs(a[: h // 2] - a[h // 2:]).mean() < tol)


def source_id(s: Src) -> str:
    return f"{s.pkg}:{s.path}"


def assign_split(groups: dict) -> set:
    """groups: name -> pixels (one class). Held-out groups: in sha1 order, add a group while the held-out share
    stays <= HELD_OUT_TARGET[1], until it reaches HELD_OUT_TARGET[0]; at least one group if the class has two
    or more; deterministic."""
    if len(groups) < 2:
        return set()
    total = sum(groups.values())
    lo, hi = HELD_OUT_TARGET
    held: set = set()
    px = 0
    for g in sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest()):
        if px >= lo * total:
            break
        if px + groups[g] <= hi * total and len(held) < len(groups) - 1:
            held.add(g)
            px += groups[g]
    if not held:
        held.add(min(groups, key=groups.get))
    return held


def build_pack(out: str, root: str, quality: int = 94, sources: list | None = None,
               classes: list | None = None) -> dict:
    from engine.train.data import write_pack
    sources = SOURCES if sources is None else sources
    classes = CLASSES if classes is None else classes
    reader = _Reader(root)
    loaded = []
    rejected = []
    for s in sources:
        if s.cls not in classes:
            raise ValueError(f"source {source_id(s)}: class {s.cls!r} not in CLASSES")
        img = load_source(reader, s)
        if min(img.shape[:2]) < MIN_SIDE:
            rejected.append({"source": source_id(s), "why": f"smaller than {MIN_SIDE} px: {img.shape[:2]}"})
            continue
        if repeats_inside(img):
            rejected.append({"source": source_id(s), "why": "a tiled copy of itself (repeats inside)"})
            continue
        loaded.append((s, img))
    reader.close()
    held_groups: set = set()
    for c in classes:
        groups: dict = {}
        for s, img in loaded:
            if s.cls == c:
                g = s.group or source_id(s)
                groups[g] = groups.get(g, 0) + img.shape[0] * img.shape[1]
        held_groups |= assign_split(groups)
    items = []
    for s, img in loaded:
        g = s.group or source_id(s)
        items.append((img, classes.index(s.cls), {
            "split": "held_out" if g in held_groups else "train", "source": source_id(s), "group": g,
            "package": s.pkg, "path": s.path, "licence": s.licence,
            **({"crop": list(s.crop)} if s.crop else {}), **({"scale": s.scale} if s.scale else {})}))
    pkgs = sorted({s.pkg for s, _ in loaded})
    info = {
        "packages": {p: {"version": package_version(root, p),
                         "licences": sorted({s.licence for s, _ in loaded if s.pkg == p})} for p in pkgs},
        "split": "held_out = whole source images: per class, split groups (one photo and its variants) in sha1 "
                 f"order until >= {HELD_OUT_TARGET[0]:.0%} of the class's pixels (at most "
                 f"{HELD_OUT_TARGET[1]:.0%}); no source or group is in both splits",
        "preprocessing": f"RGB; optional crop/scale per source; long side capped at {MAX_SIDE} px (INTER_AREA); "
                         f"sources under {MIN_SIDE} px or tiled copies of themselves dropped; JPEG q{quality} 4:4:4",
        "rejected_at_build": rejected,
    }
    return write_pack(out, classes, items, info=info, quality=quality)
