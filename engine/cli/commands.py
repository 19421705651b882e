"""The `neural-collage` commands that edit or list: models, classes, generate, swap, blend, project, weights
(serve and keys are in engine/cli/serve.py, demo in engine/cli/demo.py).

Every bad input raises CLIError: one clear line on stderr, exit code 2, nothing written."""
from __future__ import annotations

import os
import sys

import numpy as np

from engine.cli.files import (
    CLIError,
    check_depth,
    check_output,
    max_image_pixels,
    read_mask,
    read_photo,
    write_atomic,
    write_photo,
    write_png,
)


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
    try:
        x = label_swap(b.generator, z, c, regions, layers=layers,
                       layer_strengths=parse_layer_strengths(args.layer_strengths))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
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
    try:
        x = feature_blend(b.generator, z, c, [Reference(zr, rc, m, parse_shift(args.shift))], layers=layers,
                          strength=strength, layer_strengths=parse_layer_strengths(args.layer_strengths))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    write_png(args.output, x)
    print(f"wrote {args.output}")
    return 0


def _load_latent(path: str, bundle):
    """A latent saved by `project --latent`, read through the bounded .npz reader (no pickle, sizes checked
    before inflating) and checked against the model: its layout, finite values, a class the model has."""
    import torch

    from engine.models.chainer_import import ChainerImportError, read_npz
    from engine.project.projector import ProjectionResult

    try:
        d = read_npz(path, max_bytes=64 * 2 ** 20)
    except ChainerImportError as exc:
        raise CLIError(f"cannot read latent {str(exc)[:200]}") from None
    missing = [k for k in ("z", "class_id", "loss") if k not in d]
    if missing:
        raise CLIError(f"cannot read latent {path}: it has no {', '.join(missing)} (write it with `project --latent`)")
    z, cid, loss = d["z"], d["class_id"], d["loss"]
    shape = tuple(bundle.generator.latent_shape())
    fits = (z.dtype.kind == "f" and z.ndim == len(shape) + 1 and z.shape[0] == 1 and z.shape[1] == shape[0]
            and (len(shape) == 1 or (z.ndim == 4 and min(z.shape[2:]) >= 1)))
    if not fits:
        raise CLIError(f"cannot use latent {path}: its z has shape {z.shape} ({z.dtype}); this model's latents are "
                       f"[1, {', '.join(str(v) for v in shape)}]")
    if not np.isfinite(z).all():
        raise CLIError(f"cannot use latent {path}: its z holds NaN or infinite values")
    if cid.size != 1 or cid.dtype.kind not in "iu" or not 0 <= int(cid.reshape(-1)[0]) < len(bundle.class_names):
        raise CLIError(f"cannot use latent {path}: class_id is not a class of this model")
    if loss.size != 1 or loss.dtype.kind not in "fiu":
        raise CLIError(f"cannot use latent {path}: loss is not a number")
    z_t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(bundle.generator.device)
    return ProjectionResult(z=z_t, class_id=int(cid.reshape(-1)[0]), loss=float(loss.reshape(-1)[0]), image=None)


def _budgets():
    """The engine's budgets for a command-line edit: the serve defaults, with the photo size the CLI reads."""
    from engine.edit.budgets import Budgets

    return Budgets(max_image_pixels=max_image_pixels())


def parse_layer_strengths(s: str | None) -> list[float] | None:
    """--layer-strengths "1,1,0.5,0" -> [1.0, 1.0, 0.5, 0.0]; CLIError for anything but numbers in [0, 1]."""
    if s is None:
        return None
    try:
        vals = [float(t) for t in s.split(",")]
    except ValueError:
        raise CLIError(f"bad layer strengths {s!r}: use numbers in [0, 1] separated by commas, e.g. 1,1,0.5,0") \
            from None
    bad = [v for v in vals if not 0.0 <= v <= 1.0]
    if bad:
        raise CLIError(f"bad layer strengths {s!r}: each must be in [0, 1], got {bad[0]:g}")
    return vals


def parse_scale(s) -> float:
    from engine.edit.pipeline import SCALE_RANGE

    try:
        v = float(s)
    except (TypeError, ValueError):
        v = float("nan")
    if not SCALE_RANGE[0] <= v <= SCALE_RANGE[1]:
        raise CLIError(f"bad scale {s!r}: use a number in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] "
                       "(2 = features twice as large)")
    return v


def parse_mode(s: str) -> str:
    from engine.edit.pipeline import MODES

    if s not in MODES:
        raise CLIError(f"bad mode {s!r}: use fast or calibrated")
    return s


def _photo_edit(args, b, kind: str, layers) -> int:
    from engine.edit.pipeline import BlendSpec, BudgetError, EditError, PhotoEditor, SwapSpec

    mode, scale = parse_mode(args.mode), parse_scale(args.scale)
    layer_strengths = parse_layer_strengths(args.layer_strengths)

    photo = read_photo(args.input)
    check_depth(args.output, photo.dtype)
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
        swap = SwapSpec(class_id(b, args.to[0]), check_strength(strengths[0]), layers, labels, layer_strengths,
                        bool(getattr(args, "photo_colours", False)))
    else:
        if not args.ref:
            raise CLIError("give --ref PHOTO2: the reference photo whose feature is blended in")
        reference = read_photo(args.ref)
        ref_region = parse_region(args.ref_region)
        if ref_region is None and reference.shape[:2] != (h, w):
            raise CLIError("the reference photo has another size: give --ref-region x,y,w,h")
        blend = BlendSpec(check_strength(args.strength[0] if args.strength else 1.0), layers, parse_shift(args.shift),
                          layer_strengths, not getattr(args, "model_colours", False))
    latent = _load_latent(args.latent, b) if getattr(args, "latent", None) and os.path.isfile(args.latent) \
        else None
    try:
        res = PhotoEditor(b, budgets=_budgets(), precision=getattr(args, "precision", "auto")).edit(
            photo, mask, region=region, swap=swap, blend=blend, reference=reference, reference_region=ref_region,
            source_class=source, steps=args.steps, poisson=not args.no_poisson,
            progress=progress_printer(args.quiet), latent=latent, mode=mode, scale=scale)
    except (EditError, BudgetError) as exc:
        raise CLIError(str(exc)) from None
    except RuntimeError as exc:
        if latent is None:
            raise
        raise CLIError(f"cannot use latent {args.latent} for this region: {str(exc)[:160]}") from None
    write_photo(args.output, res.image)
    loss = "not measured (fast mode)" if res.loss != res.loss else f"{res.loss:.4f}"
    size = (f"rendered at {res.render_size} px, resampled to the {res.crop_size} px crop" if res.resampled
            else f"rendered at the crop's {res.crop_size} px")
    print(f"wrote {args.output} ({w}x{h}, source class {b.class_names[res.source_class]}, {mode}, {size}, "
          f"projection loss {loss})")
    return 0


def cmd_project(args) -> int:
    import torch

    from engine.edit.crops import CropError
    from engine.edit.pipeline import BudgetError, EditError, PhotoEditor, to_model_input

    check_output(args.output)
    if args.latent:
        check_output(args.latent, (".npz",))
    b = load_bundle(args.model, args.device)
    photo = read_photo(args.input)
    region = parse_region(args.region)
    ed = PhotoEditor(b, budgets=_budgets(), precision=getattr(args, "precision", "auto"))
    try:
        ed.check(photo, None, None, None, ed.budgets)
        source = class_id(b, args.class_) if args.class_ is not None else None
        if ed.full_resolution:  # at the crop's own size, as the photo edits do
            from engine.edit.render import EditOp, grid_of, render

            g = grid_of(b.generator)
            crop = ed.crop_for(photo, None, region, multiple=g)
            ed.budgets.check_crop(crop.side)
            size = min(crop.side, ed.max_side // g * g)
            steps = ed.default_steps() if args.steps is None else args.steps
            ed.budgets.check_steps(steps, size)
            x = to_model_input(crop.extract(photo, size), b.generator.device)
            res = ed.full_project(x, source, "calibrated", steps, None, progress_printer(args.quiet))
            res.image = render(b.generator, res.z, EditOp(res.class_id), tile=ed.tile)
        else:
            crop = ed.crop_for(photo, None, region)
            ed.budgets.check_crop(crop.side)
            steps = 200 if args.steps is None else args.steps
            ed.budgets.check_steps(steps, ed.work_size(crop.side))
            x = to_model_input(crop.extract(photo, ed.work_size(crop.side)), b.generator.device)
            res = ed.projector.project(x, class_id=source, steps=steps, progress=progress_printer(args.quiet))
    except (EditError, CropError, BudgetError) as exc:
        raise CLIError(str(exc)) from None
    # both outputs only after everything succeeded: the latent first (into a temporary name), then the image
    if args.latent:
        def write_latent(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, z=res.z.detach().cpu().numpy(), class_id=res.class_id, loss=res.loss,
                         crop=np.array(crop.box))

        write_atomic(args.latent, write_latent)
    try:
        write_png(args.output, res.image)
    except CLIError:
        if args.latent:
            os.remove(args.latent)
        raise
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
        return registry.cmd_weights_import_chainer(args.arg, errors=CLIError)
    return registry.cmd_weights_verify()
