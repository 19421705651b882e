"""The `neural-collage` command line: the argument parser and ``main`` (the console script)."""
from __future__ import annotations

import argparse
import os
import sys

from engine.cli.commands import (
    cmd_blend,
    cmd_classes,
    cmd_generate,
    cmd_models,
    cmd_project,
    cmd_swap,
    cmd_weights,
)
from engine.cli.demo import cmd_demo
from engine.device import PRECISION_HELP, PRECISIONS
from engine.cli.files import CLIError
from engine.cli.serve import add_keys_arguments, add_serve_arguments, cmd_keys, cmd_serve


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neural-collage", description="Neural Collage engine: label swaps (sCBN) and "
                                 "feature blends (the paper's feature blending) with conditional GANs.")
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
        p.add_argument("--steps", type=int, default=None,
                       help="calibration steps (default: 3 at the crop's own size on fully convolutional models, "
                            "200 on fixed-size models)")
        p.add_argument("--mode", default="calibrated",
                       help="fast (the encoder's latent only) or calibrated (plus --steps calibration steps)")
        p.add_argument("--scale", default="1",
                       help="texture scale, 0.25-4: 2 = the material's features twice as large (default 1: the "
                            "model's own texture size; fully convolutional models only)")
        p.add_argument("--no-poisson", action="store_true", help="paste the raw crop instead of Poisson blending")
        p.add_argument("--latent", default=None, help="reuse a projection saved by `project --latent`")
        p.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help=PRECISION_HELP)

    p = sub.add_parser("swap", help="label swap (sCBN) inside a mask")
    common(p)
    p.add_argument("--class", dest="class_", default=None, help="base class (source class for photos)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--mask", action="append", default=[], help="mask PNG (repeat for several regions)")
    p.add_argument("--to", action="append", default=[], help="target class of each --mask")
    p.add_argument("--strength", action="append", type=float, default=[], help="0-1, one or one per --mask")
    p.add_argument("--layers", default="all", help="all, first, rest, or indices like 0,2")
    p.add_argument("--layer-strengths", default=None,
                   help="one strength in [0, 1] per sCBN layer, e.g. 1,1,0.5 (default all 1)")
    p.add_argument("--photo-colours", action="store_true",
                   help="give the new material the photo's colour rendition, fitted around the selection (a grey "
                        "photo stays grey; a class much lighter than the photo's can come out over-bright); "
                        "default: the model's colours")
    photo_opts(p)
    p.set_defaults(fn=cmd_swap)
    p = sub.add_parser("blend", help="feature blend (the paper's feature blending) inside a mask")
    common(p)
    p.add_argument("--class", dest="class_", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ref-seed", type=int, default=None)
    p.add_argument("--ref-class", default=None)
    p.add_argument("--mask", action="append", default=[], help="where the reference's feature goes")
    p.add_argument("--shift", default=None, help="DX,DY: move the reference's content by this many pixels")
    p.add_argument("--strength", action="append", type=float, default=[])
    p.add_argument("--layers", default="all", help="blend sites: all, first, rest, or indices like 0,2")
    p.add_argument("--layer-strengths", default=None,
                   help="one strength in [0, 1] per blend site, e.g. 1,1,0.5,0 (default all 1)")
    p.add_argument("--ref", default=None, help="reference photo")
    p.add_argument("--ref-region", default=None, help="x,y,w,h region of the reference photo")
    p.add_argument("--model-colours", action="store_true",
                   help="keep the model's colours (default: the reference's colours inside the selection, the "
                        "photo's around it)")
    photo_opts(p)
    p.set_defaults(fn=cmd_blend)
    p = sub.add_parser("project", help="project a photo region onto the model (manifold projection)")
    common(p)
    p.add_argument("--input", required=True)
    p.add_argument("--region", default=None)
    p.add_argument("--class", dest="class_", default=None)
    p.add_argument("--steps", type=int, default=None, help="calibration steps (default: the model's)")
    p.add_argument("--latent", default=None, help="save the latent here (.npz) for later edits")
    p.set_defaults(fn=cmd_project)
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
    p = sub.add_parser("demo", help="run a label swap and a feature blend on shipped photos")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None, help="calibration steps (default: the model's)")
    p.set_defaults(fn=cmd_demo)
    return ap


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def main(argv=None) -> int:
    """Run one command.  Bad input or a bad output path: one line on stderr, exit code 2, nothing written.  An
    unexpected failure: one line, exit code 1 (NEURAL_COLLAGE_DEBUG=1 shows its traceback)."""
    from bridge.requests import STEPS

    args = build_parser().parse_args(argv)
    steps = getattr(args, "steps", None)
    if steps is not None and not STEPS.contains(steps):
        print(f"neural-collage: error: --steps must be {STEPS.text()}, got {steps}", file=sys.stderr)
        return 2
    try:
        return int(args.fn(args) or 0)
    except CLIError as exc:
        print(f"neural-collage: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neural-collage: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("neural-collage: error: not enough memory for this input: use a smaller image or region",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"neural-collage: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        if os.environ.get("NEURAL_COLLAGE_DEBUG"):
            raise
        print(f"neural-collage: internal error: {type(exc).__name__}: {_one_line(exc, 200)} (please report it; "
              "NEURAL_COLLAGE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1




if __name__ == "__main__":
    sys.exit(main())
