"""The `neural-collage` command line.

Every bad input exits non-zero with one clear line on stderr and writes nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# -- image files ---------------------------------------------------------------------------------------------
def read_photo(path: str) -> np.ndarray:
    """A photo as H x W (x C) in its own dtype: 8-bit, 16-bit (PNG/TIFF) or float (TIFF/EXR); RGB(A) order."""
    import cv2

    if not os.path.isfile(path):
        raise CLIError(f"cannot read {path}: no such file")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CLIError(f"cannot read {path}: not an image file this build can decode")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def write_photo(path: str, img: np.ndarray) -> None:
    import cv2

    out = img
    if img.ndim == 3 and img.shape[2] == 3:
        out = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        out = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, out):
        raise CLIError(f"cannot write {path}: unsupported format for a {img.dtype} image (use .png or .tif)")


def read_mask(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG (grayscale, or the alpha channel when it has one) as float32 H x W in [0, 1], resized to
    ``size`` = (H, W) with a warning when it differs."""
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise CLIError(f"cannot read mask {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types
        raise CLIError(f"cannot read mask {path}: {exc}") from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        m = np.asarray(im.convert("RGBA"))[:, :, 3].astype(np.float32) / 255.0
    elif im.mode in ("I;16", "I;16B", "I"):
        m = np.asarray(im).astype(np.float32) / 65535.0
    else:
        m = np.asarray(im.convert("L")).astype(np.float32) / 255.0
    if size is not None and m.shape != tuple(size):
        warnings.warn(f"mask {path} is {m.shape[1]}x{m.shape[0]}, resized to {size[1]}x{size[0]}", stacklevel=2)
        print(f"warning: mask {path} is {m.shape[1]}x{m.shape[0]}, resized to {size[1]}x{size[0]}", file=sys.stderr)
        m = np.asarray(Image.fromarray(m, mode="F").resize((size[1], size[0]), Image.BILINEAR))
    return np.clip(m, 0.0, 1.0)


def write_png(path: str, x) -> None:
    """[1, 3, H, W] in [-1, 1] -> 8-bit PNG."""
    from PIL import Image

    a = ((x[0].detach().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def parse_region(s: str | None):
    if s is None:
        return None
    try:
        v = [int(t) for t in s.split(",")]
        assert len(v) == 4 and v[2] > 0 and v[3] > 0
    except (ValueError, AssertionError):
        raise CLIError(f"bad region {s!r}: use x,y,w,h with a positive width and height") from None
    return tuple(v)


def parse_shift(s: str | None) -> tuple[int, int]:
    if not s:
        return (0, 0)
    try:
        dx, dy = (int(t) for t in s.split(","))
    except ValueError:
        raise CLIError(f"bad shift {s!r}: use DX,DY in pixels, e.g. 8,-4") from None
    return dx, dy


def check_strength(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise CLIError(f"strength must be in [0, 1], got {v}")
    return v


def check_output(path: str) -> str:
    parent = Path(path).resolve().parent
    if not parent.exists():
        raise CLIError(f"cannot write {path}: folder {parent} does not exist")
    return path


# -- model and classes ---------------------------------------------------------------------------------------
def load_bundle(name: str, device: str):
    from engine.device import select_device
    from engine.models.registry import MissingWeights, load_model

    try:
        return load_model(name, select_device(device))
    except MissingWeights as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def class_id(bundle, spec) -> int:
    from engine.classes import ClassLookupError, resolve_class

    try:
        return resolve_class(bundle.class_names or bundle.generator.class_names(), spec)
    except ClassLookupError as exc:
        raise CLIError(str(exc)) from None


def latent_for(bundle, seed: int, truncation, size: int | None):
    from engine.device import torch_generator

    G = bundle.generator
    res = size if (size and len(G.latent_shape()) == 3) else None
    try:
        return G.sample_latent(1, generator=torch_generator(seed), truncation=truncation or bundle.truncation,
                               resolution=res)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def progress_printer(quiet: bool = False):
    if quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def cb(stage, step, total, loss):
        bar = bars.get(stage)
        if bar is None:
            for b in bars.values():
                b.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        bar.n = step
        bar.set_postfix(loss=f"{loss:.4f}" if loss is not None else "-", refresh=False)
        bar.refresh()

    return cb


# -- commands ------------------------------------------------------------------------------------------------
def cmd_models(args) -> int:
    from engine.models.registry import list_models

    rows = list_models()
    for r in rows:
        if r["name"] == "default" and r["present"]:
            try:
                from engine.models.default import read_config

                cfg = read_config()["sngan"]
                r["classes"], r["resolution"] = cfg["n_classes"], cfg["resolution"]
            except Exception:  # noqa: BLE001 - listing must not fail
                pass
    print(f"{'model':18} {'weights':8} {'classes':>7} {'res':>5}  description")
    for r in rows:
        print(f"{r['name']:18} {'present' if r['present'] else 'missing':8} {r['classes'] or '-':>7} "
              f"{r['resolution'] or '-':>5}  {r['description']}")
    return 0


def cmd_classes(args) -> int:
    from engine.classes import search_classes

    if args.model == "default":
        names = load_bundle("default", "cpu").class_names
    else:
        from engine.models.registry import get_entry, imagenet_class_names

        try:
            entry = get_entry(args.model)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        names = imagenet_class_names()
        if entry.family == "sngan":
            names = names[151:294]
    rows = search_classes(names, args.search)
    if not rows:
        raise CLIError(f"no class matches {args.search!r}")
    for r in rows:
        print(f"{r['id']:5d}  {r['name']}")
    return 0


def cmd_generate(args) -> int:
    import torch

    from engine.collage import label_swap

    check_output(args.output)
    b = load_bundle(args.model, args.device)
    c = class_id(b, args.class_)
    z = latent_for(b, args.seed, args.truncation, args.size)
    with torch.no_grad():
        x = label_swap(b.generator, z, c, [])
    write_png(args.output, x)
    print(f"wrote {args.output} ({x.shape[-1]}x{x.shape[-2]}, class {b.class_names[c]}, seed {args.seed})")
    return 0


def _regions(b, masks, tos, strengths, size):
    import torch

    from engine.scbn import Region

    if not masks:
        raise CLIError("give at least one --mask with its --to class")
    if len(tos) != len(masks):
        raise CLIError(f"{len(masks)} --mask but {len(tos)} --to: give one target class per mask")
    strengths = strengths or [1.0]
    if len(strengths) == 1:
        strengths = strengths * len(masks)
    if len(strengths) != len(masks):
        raise CLIError("give one --strength, or one per --mask")
    return [Region(class_id(b, t), torch.from_numpy(read_mask(m, size)), check_strength(s))
            for m, t, s in zip(masks, tos, strengths)]


def _layers_ok(spec, n, what):
    from engine.interface import parse_layers

    try:
        parse_layers(spec, n, what)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return spec


def cmd_swap(args) -> int:
    from engine.collage import label_swap, layer_count

    check_output(args.output)
    b = load_bundle(args.model, args.device)
    layers = _layers_ok(args.layers, layer_count(b.generator), "layer")
    if args.input:
        return _photo_edit(args, b, "swap", layers)
    if args.seed is None or args.class_ is None:
        raise CLIError("give --class and --seed (a generated image) or --input PHOTO")
    c = class_id(b, args.class_)
    z = latent_for(b, args.seed, args.truncation, args.size)
    from engine.collage import image_size

    size = image_size(b.generator, z)
    regions = _regions(b, args.mask, args.to, args.strength, size)
    x = label_swap(b.generator, z, c, regions, layers=layers)
    write_png(args.output, x)
    print(f"wrote {args.output}")
    return 0


def cmd_blend(args) -> int:
    from engine.collage import Reference, feature_blend, image_size

    check_output(args.output)
    b = load_bundle(args.model, args.device)
    layers = _layers_ok(args.layers, len(b.generator.blend_sites()), "blend site")
    strength = check_strength(args.strength[0] if args.strength else 1.0)
    if args.input:
        return _photo_edit(args, b, "blend", layers)
    if args.seed is None or args.class_ is None or args.ref_seed is None:
        raise CLIError("give --class, --seed and --ref-seed (generated images) or --input PHOTO --ref PHOTO2")
    c = class_id(b, args.class_)
    rc = class_id(b, args.ref_class) if args.ref_class is not None else c
    z = latent_for(b, args.seed, args.truncation, args.size)
    zr = latent_for(b, args.ref_seed, args.truncation, args.size)
    if not args.mask:
        raise CLIError("give --mask: where the reference's feature goes")
    import torch

    m = torch.from_numpy(read_mask(args.mask[0], image_size(b.generator, z)))
    x = feature_blend(b.generator, z, c, [Reference(zr, rc, m, parse_shift(args.shift))], layers=layers,
                      strength=strength)
    write_png(args.output, x)
    print(f"wrote {args.output}")
    return 0


def _load_latent(path: str, device):
    import torch

    from engine.projection import ProjectionResult

    try:
        d = np.load(path)
        z = torch.from_numpy(d["z"]).to(device)
        return ProjectionResult(z=z, class_id=int(d["class_id"]), loss=float(d["loss"]), image=None)
    except (OSError, KeyError, ValueError) as exc:
        raise CLIError(f"cannot read latent {path}: {exc}") from None


def _photo_edit(args, b, kind: str, layers) -> int:
    from engine.photo import BlendSpec, EditError, PhotoEditor, SwapSpec

    photo = read_photo(args.input)
    h, w = photo.shape[:2]
    region = parse_region(getattr(args, "region", None))
    masks = getattr(args, "mask", None) or []
    if masks:
        mask = read_mask(masks[0], (h, w))
    elif region is not None:
        mask = np.zeros((h, w), np.float32)
        x, y, rw, rh = region
        mask[max(y, 0):y + rh, max(x, 0):x + rw] = 1.0
    else:
        raise CLIError("give --mask MASK.png (or --region x,y,w,h) to say where to edit")
    source = class_id(b, args.class_) if getattr(args, "class_", None) is not None else None
    swap = blend = None
    reference = None
    ref_region = None
    if kind == "swap":
        if not args.to:
            raise CLIError("give --to CLASS: the class to paint inside the mask")
        strengths = args.strength or [1.0]
        labels = []
        for extra_mask, to, s in zip(masks[1:], args.to[1:], (strengths * len(args.to))[1:]):
            labels.append((class_id(b, to), read_mask(extra_mask, (h, w)), check_strength(s)))
        swap = SwapSpec(class_id(b, args.to[0]), check_strength(strengths[0]), layers, labels)
    else:
        if not args.ref:
            raise CLIError("give --ref PHOTO2: the reference photo whose feature is transplanted")
        reference = read_photo(args.ref)
        ref_region = parse_region(args.ref_region)
        if ref_region is None and reference.shape[:2] != (h, w):
            raise CLIError("the reference photo has another size: give --ref-region x,y,w,h")
        blend = BlendSpec(check_strength(args.strength[0] if args.strength else 1.0), layers, parse_shift(args.shift))
    latent = _load_latent(args.latent, b.generator.device) if getattr(args, "latent", None) and \
        os.path.isfile(args.latent) else None
    try:
        res = PhotoEditor(b).edit(photo, mask, region=region, swap=swap, blend=blend, reference=reference,
                                  reference_region=ref_region, source_class=source, steps=args.steps,
                                  poisson=not args.no_poisson, progress=progress_printer(args.quiet),
                                  latent=latent)
    except EditError as exc:
        raise CLIError(str(exc)) from None
    write_photo(args.output, res.image)
    print(f"wrote {args.output} ({w}x{h}, source class {b.class_names[res.source_class]}, "
          f"projection loss {res.loss:.4f})")
    return 0


def cmd_project(args) -> int:
    import torch

    from engine.crops import CropError
    from engine.photo import EditError, PhotoEditor, to_model_input

    check_output(args.output)
    b = load_bundle(args.model, args.device)
    photo = read_photo(args.input)
    region = parse_region(args.region)
    ed = PhotoEditor(b)
    try:
        crop = ed.crop_for(photo, None, region)
        x = to_model_input(crop.extract(photo, ed.work_size(crop.side)), b.generator.device)
        source = class_id(b, args.class_) if args.class_ is not None else None
        res = ed.projector.project(x, class_id=source, steps=args.steps, progress=progress_printer(args.quiet))
    except (EditError, CropError) as exc:
        raise CLIError(str(exc)) from None
    write_png(args.output, res.image)
    if args.latent:
        np.savez(args.latent, z=res.z.detach().cpu().numpy(), class_id=res.class_id, loss=res.loss,
                 crop=np.array(crop.box))
    with torch.no_grad():
        mse = float(((res.image - x) ** 2).mean())
    psnr = 10 * np.log10(4.0 / max(mse, 1e-12))
    print(f"wrote {args.output}: class {b.class_names[res.class_id]}, loss {res.loss:.4f}, PSNR {psnr:.2f} dB"
          + (f"; latent {args.latent}" if args.latent else ""))
    return 0


def cmd_serve(args) -> int:
    from engine.serve.server import serve_main

    def factory(a):
        from engine.serve.handler import Engine

        return Engine(a.model, a.device)

    return serve_main(args, factory)


def cmd_keys(args) -> int:
    from engine.serve.server import keys_main

    return keys_main(args)


def cmd_weights(args) -> int:
    from engine.models import registry

    if args.action == "list":
        return registry.cmd_weights_list()
    if args.action == "download":
        if not args.arg:
            raise CLIError("give the model name: neural-collage weights download NAME")
        return registry.cmd_weights_download(args.arg)
    if args.action == "import-chainer":
        if not args.arg:
            raise CLIError("give the folder: neural-collage weights import-chainer DIR")
        return registry.cmd_weights_import_chainer(args.arg)
    return registry.cmd_weights_verify()


def cmd_demo(args) -> int:
    from engine.demo import run_demo

    return run_demo(args.out, device=args.device, steps=args.steps)


# -- parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neural-collage", description="Neural Collage engine: label swaps (sCBN) and "
                                 "feature transplants (feature blending) with conditional GANs.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p, output=True):
        p.add_argument("--model", default="default", help="model name (see `neural-collage models`)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        if output:
            p.add_argument("-o", "--output", required=True, help="output image")
        p.add_argument("--truncation", type=float, default=None, help="latent truncation (BigGAN)")
        p.add_argument("--size", type=int, default=None, help="output size for fully convolutional models")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("models", help="list models and whether their weights are present")
    p.set_defaults(fn=cmd_models)
    p = sub.add_parser("classes", help="list a model's classes")
    p.add_argument("--model", default="default")
    p.add_argument("--search", default=None)
    p.set_defaults(fn=cmd_classes)
    p = sub.add_parser("generate", help="generate an image of a class")
    common(p)
    p.add_argument("--class", dest="class_", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_generate)

    def photo_opts(p):
        p.add_argument("--input", default=None, help="edit this photo instead of a generated image")
        p.add_argument("--region", default=None, help="x,y,w,h region of the photo (default: the mask's bounds)")
        p.add_argument("--steps", type=int, default=200, help="projection steps")
        p.add_argument("--no-poisson", action="store_true", help="paste the raw crop instead of Poisson blending")
        p.add_argument("--latent", default=None, help="reuse a projection saved by `project --latent`")

    p = sub.add_parser("swap", help="label swap (sCBN) inside a mask")
    common(p)
    p.add_argument("--class", dest="class_", default=None, help="base class (source class for photos)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--mask", action="append", default=[], help="mask PNG (repeat for several regions)")
    p.add_argument("--to", action="append", default=[], help="target class of each --mask")
    p.add_argument("--strength", action="append", type=float, default=[], help="0-1, one or one per --mask")
    p.add_argument("--layers", default="all", help="all, first, rest, or indices like 0,2")
    photo_opts(p)
    p.set_defaults(fn=cmd_swap)
    p = sub.add_parser("blend", help="feature transplant (feature blending) inside a mask")
    common(p)
    p.add_argument("--class", dest="class_", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ref-seed", type=int, default=None)
    p.add_argument("--ref-class", default=None)
    p.add_argument("--mask", action="append", default=[], help="where the reference's feature goes")
    p.add_argument("--shift", default=None, help="DX,DY: move the reference's content by this many pixels")
    p.add_argument("--strength", action="append", type=float, default=[])
    p.add_argument("--layers", default="all", help="blend sites: all, first, rest, or indices like 0,2")
    p.add_argument("--ref", default=None, help="reference photo")
    p.add_argument("--ref-region", default=None, help="x,y,w,h region of the reference photo")
    photo_opts(p)
    p.set_defaults(fn=cmd_blend)
    p = sub.add_parser("project", help="project a photo region onto the model (manifold projection)")
    common(p)
    p.add_argument("--input", required=True)
    p.add_argument("--region", default=None)
    p.add_argument("--class", dest="class_", default=None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--latent", default=None, help="save the latent here (.npz) for later edits")
    p.set_defaults(fn=cmd_project)
    from engine.serve.server import add_keys_arguments, add_serve_arguments

    p = sub.add_parser("serve", help="run the engine server for the GIMP plug-in")
    add_serve_arguments(p)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("keys", help="write a CURVE key pair for a non-loopback engine")
    add_keys_arguments(p)
    p.set_defaults(fn=cmd_keys)
    p = sub.add_parser("weights", help="list, download, import or verify model weights")
    p.add_argument("action", choices=["list", "download", "import-chainer", "verify"])
    p.add_argument("arg", nargs="?", default=None)
    p.set_defaults(fn=cmd_weights)
    p = sub.add_parser("demo", help="run a label swap and a feature transplant on shipped photos")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=200)
    p.set_defaults(fn=cmd_demo)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) is not None and getattr(args, "steps", 1) < 0:
        print("neural-collage: error: steps must not be negative", file=sys.stderr)
        return 2
    try:
        return int(args.fn(args) or 0)
    except CLIError as exc:
        print(f"neural-collage: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neural-collage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
