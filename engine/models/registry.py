"""Weights registry: which models exist, where their files live, how to fetch, import, verify and load them.  The
only module that imports the model families; the weights folder, downloads and checks are engine/models/store.py.

Models:
- ``default``: shipped in the repository (engine.models.default.load_default);
- ``biggan-deep-128/256/512``: DeepMind's BigGAN-deep (TF Hub, Apache-2.0) as converted by Hugging Face's
  pytorch-pretrained-biggan, downloaded from that package's S3 URLs (``config.json`` + ``pytorch_model.bin``);
- ``sngan-dogcat-256`` / ``sngan-dogcat-128``: the paper's SNGAN (+ discriminator, encoder, auxiliary net),
  imported from the official Chainer checkpoints (Google Drive, so fetched by hand) by ``import-chainer``.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` or safetensors, and strict state_dicts.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine.models.store import (
    ENV_VAR,
    DownloadError,
    MissingWeights,
    Progress,
    class_names_for_ids,
    download_file,
    imagenet_class_names,
    layout_diff,
    sha256_file,
    weights_dir,
)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"

BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan"
CHAINER_GD_FOLDER = "https://drive.google.com/drive/u/0/folders/1SFmq9LjEkIXXAKo6p-Wdlfu0BUFSyLJi"
CHAINER_ENC_AUX_FOLDER = "https://drive.google.com/drive/folders/1qPP2RxMNnPSbacotnG7_H5dZrQpOmI3D"
BIGGAN_DEFAULT_TRUNCATION = 0.4  # the package README's example value


@dataclass(frozen=True)
class RemoteFile:
    filename: str  # name inside the model folder
    url: str
    sha256: str | None = None  # None: not published by the source (size/structure checked instead)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    resolution: int
    num_classes: int
    description: str
    source: str  # "shipped", "download" or "import-chainer"
    files: tuple[RemoteFile, ...] = ()
    required: tuple[str, ...] = ()  # files that must be present to load
    license: str = ""
    extra: dict = field(default_factory=dict)


def _biggan(res: int) -> ModelEntry:
    name = f"biggan-deep-{res}"
    # The package publishes no checksums for these files (its cached_path only uses S3 ETags), so sha256 is None
    # and verify() checks the state_dict's keys and shapes instead.
    return ModelEntry(
        name=name, family="biggan-deep", resolution=res, num_classes=1000,
        description=f"BigGAN-deep {res}x{res}, 1000 ImageNet classes (DeepMind, converted by Hugging Face's "
                    "pytorch-pretrained-biggan); generator only: no discriminator or encoder",
        source="download",
        files=(RemoteFile("config.json", f"{BIGGAN_S3}/{name}-config.json"),
               RemoteFile("pytorch_model.bin", f"{BIGGAN_S3}/{name}-pytorch_model.bin")),
        required=("config.json", "pytorch_model.bin"),
        license="Apache-2.0 (DeepMind BigGAN-deep TF Hub modules)",
    )


def _sngan(res: int) -> ModelEntry:
    if res == 256:
        desc = ("the paper's SNGAN, 256x256, 143 ImageNet dog and cat classes, with projection discriminator, "
                "encoder and auxiliary A/B net (official Chainer checkpoints, imported)")
    else:
        desc = ("SNGAN 128x128, 143 ImageNet dog and cat classes (official Chainer architecture; no checkpoint is "
                "published: import your own snapshots of configs/sn_projection_dog_and_cat.yml)")
    return ModelEntry(
        name=f"sngan-dogcat-{res}", family="sngan", resolution=res, num_classes=143, description=desc,
        source="import-chainer", required=("config.json", "generator.safetensors"),
        license="MIT (pfnet-research/neural-collage)",
        extra={"chainer_files": ["ResNetGenerator_450000.npz", "SNResNetProjectionDiscriminator_450000.npz",
                                 "ResNetEncoder_*.npz", "ResNetAuxABGenerator_*.npz"]},
    )


REGISTRY: dict[str, ModelEntry] = {
    "default": ModelEntry("default", "sngan", 0, 0, "the model shipped with the plug-in (texture classes)",
                          "shipped", license="see the repository"),
    **{f"biggan-deep-{r}": _biggan(r) for r in (128, 256, 512)},
    **{f"sngan-dogcat-{r}": _sngan(r) for r in (256, 128)},
}


# -- paths and data ----------------------------------------------------------------------------------------------
def model_dir(name: str) -> Path:
    entry = get_entry(name)
    return SHIPPED_DIR if entry.source == "shipped" else weights_dir() / name


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: known models are {', '.join(REGISTRY)}") from None


def is_present(name: str) -> bool:
    entry = get_entry(name)
    if entry.source == "shipped":
        return SHIPPED_DIR.is_dir() and any(SHIPPED_DIR.iterdir())
    d = model_dir(name)
    return all((d / f).is_file() for f in entry.required)


def _how_to_get(entry: ModelEntry) -> str:
    d = weights_dir() / entry.name
    if entry.source == "download":
        urls = " and ".join(f"{f.url} as {f.filename}" for f in entry.files)
        return (f"run `neural-collage weights download {entry.name}` (or fetch {urls} into {d})")
    if entry.source == "import-chainer":
        if entry.resolution == 256:
            return (f"download ResNetGenerator_450000.npz and SNResNetProjectionDiscriminator_450000.npz from "
                    f"{CHAINER_GD_FOLDER} (encoder and aux net, optional: ResNetEncoder_*.npz and "
                    f"ResNetAuxABGenerator_*.npz from {CHAINER_ENC_AUX_FOLDER}) into a folder DIR, then run "
                    f"`neural-collage weights import-chainer DIR` (writes {d})")
        return (f"no 128 px checkpoint is published: train configs/sn_projection_dog_and_cat.yml with the "
                f"official code, then run `neural-collage weights import-chainer DIR` on its snapshot folder "
                f"(writes {d})")
    return "reinstall the plug-in: the shipped weights are missing"


def missing_message(name: str) -> str:
    entry = get_entry(name)
    d = model_dir(name)
    if entry.source == "shipped":
        absent = "the shipped default weights"
    else:
        absent = ", ".join(f for f in entry.required if not (d / f).is_file()) or "files"
    return f"model {name}: missing {absent} in {d}; {_how_to_get(entry)}"


# -- listing and loading ----------------------------------------------------------------------------------------
def list_models() -> list[dict]:
    out = []
    for name, e in REGISTRY.items():
        out.append({"name": name, "family": e.family, "resolution": e.resolution, "classes": e.num_classes,
                    "present": is_present(name), "path": str(model_dir(name)), "description": e.description,
                    "source": e.source, "license": e.license})
    return out


def load_model(name: str, device="cpu"):
    """The ModelBundle of a registered model; MissingWeights when its files are not there."""
    entry = get_entry(name)
    if entry.source == "shipped":
        from engine.models.default import load_default

        return load_default(device)
    if not is_present(name):
        raise MissingWeights(missing_message(name))
    from engine.generator import ModelBundle

    d = model_dir(name)
    if entry.family == "biggan-deep":
        from engine.models.biggan_deep import BigGANDeep

        g = BigGANDeep.from_pretrained_dir(d, device=device, truncation=BIGGAN_DEFAULT_TRUNCATION)
        names = imagenet_class_names() if g.num_classes == 1000 else g.class_names()
        g.set_class_names(names)
        return ModelBundle(name=name, generator=g, class_names=names, truncation=BIGGAN_DEFAULT_TRUNCATION,
                           info={"family": entry.family, "path": str(d), "license": entry.license,
                                 "config": g.config.to_dict()})
    from engine.models.chainer_import import load_imported_dir

    config, mods = load_imported_dir(d, device=device)
    g = mods["generator"]
    ids = config.get("class_ids")
    names = class_names_for_ids(ids) if ids and len(ids) == g.num_classes else g.class_names()
    g.cfg.class_names = list(names)
    return ModelBundle(name=name, generator=g, discriminator=mods.get("discriminator"),
                       encoder=mods.get("encoder"), aux=mods.get("aux"), class_names=names, truncation=None,
                       info={"family": entry.family, "path": str(d), "license": entry.license,
                             "class_ids": ids, "encoder_conditional": bool(config.get("encoder")
                                                                          and config["encoder"]["n_classes"] > 0),
                             "warnings": config.get("warnings", [])})


# -- download ----------------------------------------------------------------------------------------------------
def download(name: str, progress: Progress | None = None) -> Path:
    """Download every file of a model (resuming partial files); returns the model folder."""
    entry = get_entry(name)
    if entry.source == "shipped":
        return SHIPPED_DIR
    if entry.source != "download":
        raise MissingWeights(f"model {name} cannot be downloaded automatically; {_how_to_get(entry)}")
    d = weights_dir() / name
    for f in entry.files:
        download_file(f.url, d / f.filename, f.sha256, progress)
    return d


# -- verification ------------------------------------------------------------------------------------------------
def _verify_biggan(entry: ModelEntry, d: Path) -> list[tuple[str, str, str]]:
    import torch

    from engine.models.biggan_deep import BigGANDeep, BigGANDeepConfig

    rows = []
    try:
        cfg = BigGANDeepConfig.from_json_file(d / "config.json")
        ok = "ok" if cfg.output_dim == entry.resolution else f"config is for {cfg.output_dim} px"
    except (OSError, ValueError, TypeError) as e:
        return [(entry.name, "config.json", f"unreadable: {e}")]
    rows.append((entry.name, "config.json", ok))
    p = d / "pytorch_model.bin"
    sha = {f.filename: f.sha256 for f in entry.files}.get("pytorch_model.bin")
    try:
        if sha is not None and sha256_file(p) != sha:
            rows.append((entry.name, p.name, "sha256 mismatch"))
            return rows
        sd = torch.load(p, map_location="cpu", weights_only=True)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in BigGANDeep(cfg).state_dict().items()}
        rows.append((entry.name, p.name, layout_diff({k: tuple(v.shape) for k, v in sd.items()}, expected)))
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported, not raised
        rows.append((entry.name, p.name, f"unreadable: {type(e).__name__}: {e}"))
    return rows


def _verify_imported(entry: ModelEntry, d: Path) -> list[tuple[str, str, str]]:
    from safetensors import safe_open

    from engine.models.chainer_import import FORMAT, expected_layouts

    try:
        with open(d / "config.json", encoding="utf-8") as f:
            config = json.load(f)
        if config.get("format") != FORMAT:
            raise ValueError("not a neural-collage Chainer import")
        expected = expected_layouts(config)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [(entry.name, "config.json", f"unreadable: {e}")]
    rows = [(entry.name, "config.json", "ok")]
    for comp, info in config["files"].items():
        p = d / info["file"]
        if not p.is_file():
            rows.append((entry.name, info["file"], "missing"))
            continue
        if sha256_file(p) != info["sha256"]:
            rows.append((entry.name, info["file"], "sha256 mismatch (re-run import-chainer)"))
            continue
        try:
            with safe_open(str(p), framework="pt") as f:
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            rows.append((entry.name, info["file"], layout_diff(found, expected[comp])))
        except Exception as e:  # noqa: BLE001
            rows.append((entry.name, info["file"], f"unreadable: {type(e).__name__}: {e}"))
    return rows


def verify(names=None) -> list[tuple[str, str, str]]:
    """(model, file, "ok" or what is wrong) for every file of every model that has any file present."""
    rows: list[tuple[str, str, str]] = []
    for name in names or REGISTRY:
        entry = get_entry(name)
        if entry.source == "shipped":
            continue
        d = model_dir(name)
        if not d.is_dir() or not any(d.iterdir()):
            continue
        missing = [f for f in entry.required if not (d / f).is_file()]
        if missing:
            rows.extend((name, f, f"missing; {_how_to_get(entry)}") for f in missing)
            continue
        rows.extend(_verify_biggan(entry, d) if entry.family == "biggan-deep" else _verify_imported(entry, d))
    return rows


# -- command-line helpers (wired into engine/cli/commands.py) ----------------------------------------------------------
def cmd_weights_list() -> int:
    print(f"weights folder: {weights_dir()}  (set {ENV_VAR} to change it)")
    for m in list_models():
        state = "present" if m["present"] else "missing"
        res = f"{m['resolution']}px" if m["resolution"] else "any"
        classes = m["classes"] or "-"
        print(f"  {m['name']:<18} {state:<8} {m['family']:<12} {res:<6} {classes!s:>5} classes  {m['path']}")
        print(f"  {'':<18} {m['description']}")
    return 0


def _print_progress(fname: str, done: int, total: int | None) -> None:
    if total:
        sys.stderr.write(f"\r  {fname}: {done / 2**20:8.1f} / {total / 2**20:.1f} MiB ({100 * done / total:5.1f}%)")
    else:
        sys.stderr.write(f"\r  {fname}: {done / 2**20:8.1f} MiB")
    sys.stderr.flush()


def cmd_weights_download(name: str) -> int:
    try:
        entry = get_entry(name)
        if entry.source == "shipped":
            print(f"{name}: shipped with the plug-in, nothing to download")
            return 0
        d = download(name, progress=_print_progress)
        sys.stderr.write("\n")
        bad = [r for r in verify([name]) if r[2] != "ok"]
        if bad:
            for r in bad:
                print(f"{r[0]} {r[1]}: {r[2]}", file=sys.stderr)
            return 1
        print(f"{name}: downloaded to {d}")
        return 0
    except (ValueError, MissingWeights, DownloadError) as e:
        sys.stderr.write("\n")
        print(f"error: {e}", file=sys.stderr)
        return 1


def cmd_weights_import_chainer(src_dir) -> int:
    from engine.models.chainer_import import ChainerImportError, import_chainer_dir

    try:
        result = import_chainer_dir(src_dir, log=lambda m: print(f"  {m}"))
    except (ChainerImportError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parts = ", ".join(result["files"])
    print(f"{result['name']}: imported {parts} into {result['path']}")
    if result["name"] not in REGISTRY:
        print(f"note: {result['name']} is not a registered model name; load it from {result['path']}")
    return 0


def cmd_weights_verify() -> int:
    rows = verify()
    if not rows:
        print(f"no downloaded or imported weights in {weights_dir()}")
        return 0
    for name, fname, status in rows:
        print(f"  {name:<18} {fname:<28} {status}")
    return 0 if all(r[2] == "ok" for r in rows) else 1
