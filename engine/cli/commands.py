"""The `neural-collage` commands that edit or list: models, classes, generate, swap, blend, project, weights
(serve and keys are in engine/cli/serve.py, demo in engine/cli/demo.py).

Every bad input raises CLIError: one clear line on stderr, exit code 2, nothing written."""
from __future__ import annotations

import os
import sys

import numpy as np

from engine.cli.files import CLIError, check_output, read_mask, read_photo, write_photo, write_png


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

    from engine.collage.label import label_swap

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

    from engine.sites.scbn import Region

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
    from engine.generator import parse_layers

    try:
        parse_layers(spec, n, what)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return spec


def cmd_swap(args) -> int:
    from engine.collage.label import label_swap, layer_count

    check_output(args.output)
    b = load_bundle(args.model, args.device)
    layers = _layers_ok(args.layers, layer_count(b.generator), "layer")
    if args.input:
        return _photo_edit(args, b, "swap", layers)
    if args.seed is None or args.class_ is None:
        raise CLIError("give --class and --seed (a generated image) or --input PHOTO")
    c = class_id(b, args.class_)
    z = latent_for(b, args.seed, args.truncation, args.size)
    from engine.collage.label import image_size

    size = image_size(b.generator, z)
    regions = _regions(b, args.mask, args.to, args.strength, size)
    x = label_swap(b.generator, z, c, regions, layers=layers)
    write_png(args.output, x)
    print(f"wrote {args.output}")
    return 0


def cmd_blend(args) -> int:
    from engine.blend.feature import Reference, feature_blend
    from engine.collage.label import image_size

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

    from engine.project.projector import ProjectionResult

    try:
        d = np.load(path)
        z = torch.from_numpy(d["z"]).to(device)
        return ProjectionResult(z=z, class_id=int(d["class_id"]), loss=float(d["loss"]), image=None)
    except (OSError, KeyError, ValueError) as exc:
        raise CLIError(f"cannot read latent {path}: {exc}") from None


def _photo_edit(args, b, kind: str, layers) -> int:
    from engine.edit.pipeline import BlendSpec, EditError, PhotoEditor, SwapSpec

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

    from engine.edit.crops import CropError
    from engine.edit.pipeline import EditError, PhotoEditor, to_model_input

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
