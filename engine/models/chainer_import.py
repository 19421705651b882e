"""Import the paper's official Chainer checkpoints (pfnet-research/neural-collage) into safetensors files.

Where to get them (official README, "Pre-trained models", 256x256 ImageNet dog and cat images):
- generator + discriminator (``ResNetGenerator_450000.npz``, ``SNResNetProjectionDiscriminator_450000.npz``):
  https://drive.google.com/drive/u/0/folders/1SFmq9LjEkIXXAKo6p-Wdlfu0BUFSyLJi
- encoder + auxiliary network (``ResNetEncoder_*.npz``, ``ResNetAuxABGenerator_*.npz``):
  https://drive.google.com/drive/folders/1qPP2RxMNnPSbacotnG7_H5dZrQpOmI3D
No 128 px checkpoints are published; snapshots of the official 128 px config (``sn_projection_dog_and_cat.yml``,
``gen_models/resnet_small.py`` + ``dis_models/snresnet_small.py``) import the same way.

A Chainer ``.npz`` (``chainer.serializers.save_npz``) stores every parameter and persistent value of a link by its
path: ``l1/W``, ``block2/b1/gammas/W``, ``block2/b1/avg_mean``, ``block2/b1/N``, ``block2/c1/b``, ``l_y/u`` ...
The torch modules use the same names (engine.models.sngan, engine.models.sngan_encoder, engine.models.auxab), so a
key maps by ``/`` -> ``.``, ``W`` -> ``weight``, ``b`` -> ``bias`` (and ``preluW/W`` -> ``preluW``, the aux net's
``L.Parameter`` links).  Every key must map to a tensor of the same shape and every tensor must be provided; the only
keys skipped are the batch norms' ``N`` counters (fine-tuning bookkeeping).  The architecture (channel width, block
channel multiples, class count, the discriminator's hidden width, the encoder variant, the aux net's sizes) is read
from the checkpoint's shapes, then every key and shape is checked against the torch module built from it.

The aux checkpoint (``ResNetAuxABGenerator``) also holds the generator it was trained with (frozen during its
training): those tensors are compared with the generator checkpoint (a mismatch is reported as a warning, the
generator file wins) or, without a generator checkpoint, used as the generator.  Its learned fast-update step sizes
``_fast_alpha/W`` (present when trained with ``learned_lr``) are kept in ``extras.safetensors`` as ``aux.fast_alpha``.

Output folder (the registry's ``sngan-dogcat-256`` / ``sngan-dogcat-128``): ``generator.safetensors``,
``discriminator.safetensors``, ``encoder.safetensors``, ``aux.safetensors`` (those given), optional
``extras.safetensors`` and ``config.json`` (architecture, class ids, sha256 of every file and of its source).
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import sys
import zipfile
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from engine.models.auxab import AuxAB
from engine.models.sngan import (
    SNGAN_DOGCAT_128,
    SNGAN_DOGCAT_256,
    ResNetGenerator,
    SNGANConfig,
    SNResNetProjectionDiscriminator,
)
from engine.models.store import sha256_file
from engine.models.sngan_encoder import EncoderConfig, ResNetEncoder

FORMAT = "neural-collage-sngan-chainer"
DOGCAT_CLASS_IDS = list(range(151, 294))  # datasets/imagenet_dog_and_cat.py: ImageNet ids 151..293 -> 0..142

CHAINER_DOGCAT_128 = SNGAN_DOGCAT_128  # resnet_small.py + snresnet_small.py (hidden = input channels)
CHAINER_DOGCAT_256 = SNGAN_DOGCAT_256  # resnet_256.py + snresnet_256.py (hidden = output channels)
DIS_HIDDEN = {256: "out", 128: "in"}

COMPONENTS = {
    "generator": "ResNetGenerator",
    "discriminator": "SNResNetProjectionDiscriminator",
    "encoder": "ResNetEncoder",
    "aux": "ResNetAuxABGenerator",
}
AUX_KEYS = ("lA1", "lA2", "lB1", "lB2", "preluW", "preluMiddleW")


class ChainerImportError(ValueError):
    """A checkpoint does not match the architecture (unmapped / missing keys, shape mismatches)."""


# -- key mapping -----------------------------------------------------------------------------------------------
def chainer_to_torch_key(key: str) -> str | None:
    """``block2/b1/gammas/W`` -> ``block2.b1.gammas.weight``; ``.../N`` -> None (skipped)."""
    parts = [p for p in key.split("/") if p]
    if not parts:
        raise ChainerImportError(f"empty key {key!r}")
    last = parts[-1]
    if last == "N":
        return None
    if len(parts) == 2 and parts[0] in ("preluW", "preluMiddleW") and last == "W":
        return parts[0]
    if last == "W":
        parts[-1] = "weight"
    elif last == "b":
        parts[-1] = "bias"
    return ".".join(parts)


def torch_to_chainer_key(key: str) -> str:
    """Inverse of chainer_to_torch_key (for messages and tests)."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in ("preluW", "preluMiddleW"):
        return parts[0] + "/W"
    if parts[-1] == "weight":
        parts[-1] = "W"
    elif parts[-1] == "bias":
        parts[-1] = "b"
    return "/".join(parts)


def layout(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def map_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], what: str) -> dict[str, np.ndarray]:
    """Map Chainer keys onto the torch layout; raise ChainerImportError listing every problem."""
    out: dict[str, np.ndarray] = {}
    unmapped, bad_shape = [], []
    for key, arr in arrays.items():
        tkey = chainer_to_torch_key(key)
        if tkey is None:
            if np.asarray(arr).size != 1:
                unmapped.append(f"{key} (an N counter must be a scalar, got shape {np.shape(arr)})")
            continue
        if tkey not in expected:
            unmapped.append(key)
            continue
        if tuple(np.shape(arr)) != tuple(expected[tkey]):
            bad_shape.append(f"{key}: checkpoint {tuple(np.shape(arr))} != model {tuple(expected[tkey])}")
            continue
        out[tkey] = arr
    missing = [torch_to_chainer_key(k) for k in expected if k not in out]
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} unmapped key(s): {', '.join(sorted(unmapped)[:12])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(sorted(missing)[:12])}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatch(es): {'; '.join(bad_shape[:8])}")
    if problems:
        raise ChainerImportError(f"{what}: " + " | ".join(problems))
    return out


# -- architectures read from a checkpoint ------------------------------------------------------------------------
def _numbered(arrays, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in arrays for m in [rx.match(k)] if m})


def infer_generator_config(arrays: dict[str, np.ndarray]) -> SNGANConfig:
    blocks = _numbered(arrays, r"^block(\d+)/c1/W$")
    if not blocks or blocks != list(range(2, blocks[-1] + 1)) or "l1/W" not in arrays:
        raise ChainerImportError("generator: not a ResNetGenerator checkpoint (no l1/W, block2/c1/W, ...)")
    k = blocks[-1] + 1
    if f"l{k}/W" not in arrays:
        raise ChainerImportError(f"generator: final convolution l{k}/W not found")
    ch = int(arrays[f"l{k}/W"].shape[1])
    mults = [arrays["block2/c1/W"].shape[1] / ch] + [arrays[f"block{b}/c1/W"].shape[0] / ch for b in blocks]
    if any(m != int(m) for m in mults):
        raise ChainerImportError(f"generator: channel counts are not multiples of ch={ch}")
    mults = tuple(int(m) for m in mults)
    dim_z = int(arrays["l1/W"].shape[1])
    bw = math.isqrt(int(arrays["l1/W"].shape[0]) // (ch * mults[0]))
    gam = arrays.get("block2/b1/gammas/W")
    if gam is None:
        raise ChainerImportError("generator: no categorical conditional batch norm (block2/b1/gammas/W)")
    n_classes = int(gam.shape[0])
    res = bw * 2 ** len(blocks)
    base = CHAINER_DOGCAT_256 if res == 256 else CHAINER_DOGCAT_128
    return replace(base, ch=ch, dim_z=dim_z, bottom_width=bw, n_classes=n_classes, resolution=res, gen_mults=mults,
                   class_names=[])


def infer_discriminator(arrays: dict[str, np.ndarray], ch: int) -> tuple[tuple[int, ...], str]:
    """(dis_mults, hidden) where hidden is "out" (snresnet_256) or "in" (snresnet / snresnet_small)."""
    blocks = _numbered(arrays, r"^block(\d+)/c1/W$")
    if not blocks or blocks != list(range(1, blocks[-1] + 1)):
        raise ChainerImportError("discriminator: not an SNResNetProjectionDiscriminator checkpoint")
    ch_d = int(arrays["block1/c1/W"].shape[0])
    if ch_d != ch:
        raise ChainerImportError(f"discriminator: channel width {ch_d} differs from the generator's {ch}")
    mults = tuple(int(arrays[f"block{b}/c2/W"].shape[0]) // ch for b in blocks)
    hidden = "out"
    for b in blocks[1:]:
        c1 = arrays[f"block{b}/c1/W"].shape
        if c1[0] != arrays[f"block{b}/c2/W"].shape[0]:
            hidden = "in"
    return mults, hidden


def infer_encoder_config(arrays: dict[str, np.ndarray]) -> EncoderConfig:
    if "l1/W" in arrays and "l7/W" in arrays:
        variant, first, last, size = "small", "l1/W", "l7/W", 128
    elif "block1/W" in arrays and "l8_enc/W" in arrays:
        variant, first, last, size = "256", "block1/W", "l8_enc/W", 256
    else:
        raise ChainerImportError("encoder: neither resnetenc_small (l1, l7) nor resnetenc_256 (block1, l8_enc)")
    gam = arrays.get("block2/b1/gammas/W")
    return EncoderConfig(variant, ch=int(arrays[first].shape[0]), dim_z=int(arrays[last].shape[0]),
                         n_classes=0 if gam is None else int(gam.shape[0]), bottom_width=4, input_size=size)


def infer_aux_dims(arrays: dict[str, np.ndarray]) -> dict:
    for k in ("lA1/W", "lA2/W", "lB1/W"):
        if k not in arrays:
            raise ChainerImportError(f"aux: {k} not found (not a ResNetAuxABGenerator checkpoint)")
    return {"dim_z": int(arrays["lA1/W"].shape[1]), "dim_a": int(arrays["lA1/W"].shape[0]),
            "dim_zeta": int(arrays["lA2/W"].shape[0]), "dim_b": int(arrays["lB1/W"].shape[0])}


# -- module construction (shared with the registry's loader) ----------------------------------------------------
def build_generator(cfg: SNGANConfig) -> ResNetGenerator:
    return ResNetGenerator(cfg)


def build_discriminator(cfg: SNGANConfig, hidden: str = "out") -> SNResNetProjectionDiscriminator:
    """engine.models.sngan's discriminator with the checkpoint's block width (``SNGANConfig.dis_hidden``)."""
    if hidden not in ("in", "out"):
        raise ValueError(f"hidden must be 'in' or 'out', got {hidden!r}")
    return SNResNetProjectionDiscriminator(replace(cfg, dis_hidden=hidden))


def build_modules(config: dict) -> dict[str, nn.Module]:
    """The torch modules described by an import's config.json (on the current default device)."""
    gcfg = SNGANConfig.from_dict(config["generator"])
    mods: dict[str, nn.Module] = {"generator": build_generator(gcfg)}
    if config.get("discriminator"):
        mods["discriminator"] = build_discriminator(gcfg, config["discriminator"]["hidden"])
    if config.get("encoder"):
        mods["encoder"] = ResNetEncoder(EncoderConfig.from_dict(config["encoder"]))
    if config.get("aux"):
        a = config["aux"]
        mods["aux"] = AuxAB(a["dim_z"], a["dim_a"], a["dim_zeta"], a["dim_b"])
    return mods


def expected_layouts(config: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """key -> shape of every component, without allocating weights."""
    with torch.device("meta"):
        return {name: layout(m) for name, m in build_modules(config).items()}


def load_imported_dir(path, device="cpu") -> tuple[dict, dict[str, nn.Module]]:
    """(config, modules) of an imported folder; strict loads from safetensors, modules in eval mode."""
    from safetensors.torch import load_file

    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}/config.json is not a neural-collage Chainer import")
    # built on the CPU (about a second for the 256 px set): initialising modules on the meta device would import
    # torch._dynamo (F.normalize / normal_ have no meta kernels), which costs more
    mods = build_modules(config)
    for name, m in mods.items():
        state = load_file(os.path.join(path, config["files"][name]["file"]), device="cpu")
        m.load_state_dict(state, strict=True)
        mods[name] = m.to(device).eval()
    gen = mods["generator"]
    gen.number_norm_sites()
    return config, mods


# -- files -------------------------------------------------------------------------------------------------------
def find_checkpoint(src_dir, component: str) -> str | None:
    """``<Class>_<iteration>.npz`` in src_dir (the highest iteration when there are several)."""
    prefix = COMPONENTS[component]
    found = []
    for p in glob.glob(os.path.join(glob.escape(os.fspath(src_dir)), f"{prefix}_*.npz")):
        m = re.fullmatch(re.escape(prefix) + r"_(\d+)\.npz", os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def read_npz(path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise ChainerImportError(f"{path}: not a readable .npz file (not a zip archive: incomplete download?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays (uninitialised Chainer parameters) need pickle: refuse
        raise ChainerImportError(f"{path}: {e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise ChainerImportError(f"{path}: not a readable .npz file ({e})") from None


def _save(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], path: str, meta: dict) -> str:
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in expected}
    tmp = path + ".part"
    save_file(tensors, tmp, metadata={k: str(v) for k, v in meta.items()})
    os.replace(tmp, path)
    return sha256_file(path)


def default_name(cfg: SNGANConfig) -> str:
    if cfg.n_classes == 143 and cfg.resolution in (128, 256):
        return f"sngan-dogcat-{cfg.resolution}"
    return f"sngan-chainer-{cfg.resolution}"


def import_chainer_dir(src_dir, dst_dir=None, log=None) -> dict:
    """Convert the official checkpoints found in ``src_dir`` and write them to ``dst_dir`` (default: the weights
    cache folder of the model, e.g. ``<weights>/sngan-dogcat-256``).  Returns the written config (with
    ``path`` and ``warnings``).  Raises ChainerImportError / FileNotFoundError with a one-line reason."""
    say = log or (lambda msg: None)
    src_dir = os.fspath(src_dir)
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"{src_dir} is not a folder")
    paths = {c: find_checkpoint(src_dir, c) for c in COMPONENTS}
    if paths["generator"] is None and paths["aux"] is None:
        raise FileNotFoundError(f"no ResNetGenerator_*.npz (or ResNetAuxABGenerator_*.npz) in {src_dir}")
    warnings: list[str] = []
    data = {c: read_npz(p) for c, p in paths.items() if p is not None}

    # the aux checkpoint: A/B net + the (frozen) generator it was trained with + learned step sizes
    aux_arrays, aux_gen, extras = None, None, {}
    if "aux" in data:
        aux_arrays, aux_gen = {}, {}
        for k, v in data["aux"].items():
            top = k.split("/", 1)[0]
            if top in AUX_KEYS:
                aux_arrays[k] = v
            elif top == "_fast_alpha" and k == "_fast_alpha/W":
                extras["aux.fast_alpha"] = v
            else:
                aux_gen[k] = v

    gen_arrays = data.get("generator", aux_gen)
    gcfg = infer_generator_config(gen_arrays)
    name = default_name(gcfg)
    config: dict = {"format": FORMAT, "version": 1, "name": name, "family": "sngan",
                    "resolution": gcfg.resolution, "generator": gcfg.to_dict(), "discriminator": None,
                    "encoder": None, "aux": None, "class_ids": DOGCAT_CLASS_IDS if gcfg.n_classes == 143 else None,
                    "files": {}}
    if "discriminator" in data:
        mults, hidden = infer_discriminator(data["discriminator"], gcfg.ch)
        gcfg = replace(gcfg, dis_mults=mults)
        config["generator"] = gcfg.to_dict()
        config["discriminator"] = {"hidden": hidden}
    if "encoder" in data:
        config["encoder"] = infer_encoder_config(data["encoder"]).to_dict()
    if aux_arrays is not None:
        config["aux"] = infer_aux_dims(aux_arrays)
        if config["aux"]["dim_z"] != gcfg.dim_z:
            raise ChainerImportError(f"aux: dim_z {config['aux']['dim_z']} != generator dim_z {gcfg.dim_z}")
    expected = expected_layouts(config)

    mapped = {"generator": map_arrays(gen_arrays, expected["generator"],
                                      "generator" if "generator" in data else "aux (generator part)")}
    if "generator" in data and aux_gen:
        from_aux = map_arrays(aux_gen, expected["generator"], "aux (generator part)")
        diff = [k for k in from_aux if not np.array_equal(from_aux[k], mapped["generator"][k])]
        if diff:
            warnings.append(f"the aux checkpoint's generator differs from {os.path.basename(paths['generator'])} "
                            f"in {len(diff)} tensor(s) (e.g. {torch_to_chainer_key(diff[0])}); using the latter")
    if "discriminator" in data:
        mapped["discriminator"] = map_arrays(data["discriminator"], expected["discriminator"], "discriminator")
    if "encoder" in data:
        mapped["encoder"] = map_arrays(data["encoder"], expected["encoder"], "encoder")
    if aux_arrays is not None:
        mapped["aux"] = map_arrays(aux_arrays, expected["aux"], "aux")

    if dst_dir is None:
        from engine.models.store import weights_dir

        dst_dir = os.path.join(weights_dir(), name)
    dst_dir = os.fspath(dst_dir)
    os.makedirs(dst_dir, exist_ok=True)
    cfg_path = os.path.join(dst_dir, "config.json")
    if os.path.exists(cfg_path):
        os.remove(cfg_path)  # an import is complete only once config.json is written again
    for comp, arrays in mapped.items():
        src = paths[comp] if comp in data and paths[comp] else paths["aux"]
        say(f"{comp}: {os.path.basename(src)} -> {comp}.safetensors")
        src_sha = sha256_file(src)
        sha = _save(arrays, expected[comp], os.path.join(dst_dir, f"{comp}.safetensors"),
                    {"source": os.path.basename(src), "source_sha256": src_sha, "format": FORMAT})
        config["files"][comp] = {"file": f"{comp}.safetensors", "sha256": sha, "source": os.path.basename(src),
                                 "source_sha256": src_sha}
    if extras:
        from safetensors.numpy import save_file

        p = os.path.join(dst_dir, "extras.safetensors")
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in extras.items()}, p)
        config["extras"] = {"file": "extras.safetensors", "sha256": sha256_file(p), "keys": sorted(extras)}
    for comp in COMPONENTS:
        if comp not in mapped:
            old = os.path.join(dst_dir, f"{comp}.safetensors")
            if os.path.exists(old):
                os.remove(old)
    config["warnings"] = warnings
    with open(cfg_path + ".part", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    os.replace(cfg_path + ".part", cfg_path)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return {**config, "path": dst_dir}
