"""Benchmark: the cost of the two collage operations relative to plain generation (all in one run).

    python bench/collage.py            # default model at 64 and 128 px, random-weight BigGAN-deep-128
    python bench/collage.py --quick    # fewer repeats, k = 1, 2 only

For every model, at batch 1 and with torch on one thread:

* sCBN edit / plain forward: ``engine.collage.label.label_swap`` with one circular region on all layers vs the plain
  conditional forward ``G(z, label)`` of the same z (goal <= 1.05);
* k-reference blend / (k + 1) plain forwards: ``engine.blend.feature.feature_blend`` with k references (one batched
  forward of k + 1 streams, a circular mask and a shift each) vs k + 1 separate plain forwards, the way an
  implementation without batching would compute the same streams (goal <= 0.6), for k = 1, 2, 4.

The two sides of a ratio are timed alternately (ABAB..., order flipped every pair) so that load from other
processes hits both alike; the ratio is the median over the pairs of (edit time / plain time).

Models: the shipped default model (``engine/weights/default``; if its files are not there yet, the same
architecture with random weights, which costs the same), rendered at its native 64 px and at 128 px through its
spatial latent, and BigGAN-deep-128 with random weights (timing does not depend on the weights).

``run(quick=False) -> list[dict]`` returns the rows for bench/run_all.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if __package__ in (None, ""):  # run as a script: import the repository's packages, not bench/ siblings
    sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

import torch

SCBN_GOAL = 1.05
BLEND_GOAL = 0.6
KS = (1, 2, 4)


# -- models ------------------------------------------------------------------------------------------------------
def default_weights_info() -> str:
    """What default weights are present: the ``training`` field of engine/weights/default/config.json."""
    from engine.models.default import WEIGHTS_DIR

    cfg = WEIGHTS_DIR / "config.json"
    if not cfg.is_file() or not (WEIGHTS_DIR / "generator.safetensors").is_file():
        return "absent (random weights of the default architecture)"
    try:
        training = json.loads(cfg.read_text()).get("training")
    except (OSError, ValueError) as e:
        return f"unreadable config.json ({e})"
    return "training=" + json.dumps(training, sort_keys=True) if training is not None else "no training field"


def load_default_bundle(device="cpu"):
    """The default model's bundle; when its weights are missing, the same architecture with random weights
    (returns (bundle, note))."""
    from engine.models.registry import MissingWeights, load_model

    try:
        return load_model("default", device), default_weights_info()
    except (MissingWeights, FileNotFoundError) as e:
        from engine.generator import ModelBundle
        from engine.models.default import build_modules
        from engine.train.auxab import AUX_DIMS
        from engine.train.gan import default_config

        names = _texture_class_names()
        cfg = default_config(len(names), names)
        mods = build_modules({"sngan": cfg.to_dict(), "aux": AUX_DIMS})
        g = mods["generator"]
        bundle = ModelBundle(name="default (random weights)", generator=g, discriminator=mods["discriminator"],
                             encoder=mods["encoder"], aux=mods["aux"], class_names=g.class_names())
        bundle.to(device)
        return bundle, f"random weights: {str(e).splitlines()[0]}"


def _texture_class_names() -> list[str]:
    man = Path(ROOT) / ".cache" / "textures" / "manifest.json"
    if man.is_file():
        try:
            return list(json.loads(man.read_text())["class_names"])
        except (OSError, ValueError, KeyError):
            pass
    from engine.train.data import SOURCES

    return list(SOURCES)


def biggan_deep_128_random():
    from engine.models.biggan_deep import BIGGAN_DEEP_128, BigGANDeep

    torch.manual_seed(0)
    return BigGANDeep(BIGGAN_DEEP_128).eval()


# -- masks -------------------------------------------------------------------------------------------------------
def circle_mask(h: int, w: int, cx: float, cy: float, r: float) -> torch.Tensor:
    """[h, w] float mask, 1 inside the circle of radius r (pixels) centred at (cx, cy), 0 outside."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).float()


# -- timing ------------------------------------------------------------------------------------------------------
def interleaved_times(fns, repeats: int, warmup: int = 2) -> list[list[float]]:
    """Time the functions in turn (the order rotated and reversed from round to round, so that load from other
    processes hits all alike); returns one list of seconds per function."""
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    n = len(fns)
    for i in range(repeats):
        order = [(i + j) % n for j in range(n)]
        if (i // n) % 2:
            order.reverse()
        for j in order:
            t0 = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - t0)
    return times


def paired_times(fa, fb, repeats: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Time fa and fb alternately (order flipped every pair); returns the two lists of seconds."""
    ta, tb = interleaved_times([fa, fb], repeats, warmup)
    return ta, tb


def median_ratio(ta: list[float], tb: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(ta, tb))


def _row(model: str, measure: str, ta: list[float], tb: list[float], goal: float, **extra) -> dict:
    ratio = median_ratio(ta, tb)
    return {"bench": "collage", "model": model, "measure": measure, "ratio": ratio, "goal": goal,
            "goal_text": f"<= {goal:g}", "met": bool(ratio <= goal), "ms_edit": 1000 * statistics.median(ta),
            "ms_plain": 1000 * statistics.median(tb), "repeats": len(ta), **extra}


@torch.no_grad()
def bench_model(G, model: str, resolution: int | None = None, repeats: int = 21, blend_repeats: int = 9,
                ks=KS, seed: int = 0) -> list[dict]:
    """sCBN and k-reference blend ratios for one generator at one output size (batch 1)."""
    from engine.blend.feature import Reference, feature_blend
    from engine.collage.label import image_size, label_swap
    from engine.sites.scbn import Region

    G.eval()
    gen = torch.Generator().manual_seed(seed)
    spatial = len(G.latent_shape()) == 3
    res = resolution if spatial else None
    z = G.sample_latent(1, generator=gen, resolution=res)
    h, w = image_size(G, z)
    nc = G.num_classes
    base, other = 0, min(1, nc - 1)
    label = torch.tensor([base], device=G.device)
    region = Region(other, circle_mask(h, w, 0.45 * w, 0.55 * h, 0.3 * min(h, w)))

    def plain_forward():
        return G(z, label)

    def scbn_edit():
        return label_swap(G, z, base, [region], layers="all")

    out = scbn_edit()
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"{model}: the sCBN edit produced non-finite pixels")
    ta, tb = paired_times(scbn_edit, plain_forward, repeats)
    rows = [_row(model, "sCBN edit / plain forward", ta, tb, SCBN_GOAL, size=f"{h}x{w}", k=0)]

    for k in ks:
        refs = []
        for i in range(k):
            ang = 2 * math.pi * i / max(k, 1)
            cx, cy = w * (0.5 + 0.25 * math.cos(ang)), h * (0.5 + 0.25 * math.sin(ang))
            refs.append(Reference(z=G.sample_latent(1, generator=gen, resolution=res), class_id=(i + 1) % nc,
                                  mask=circle_mask(h, w, cx, cy, 0.2 * min(h, w)),
                                  shift=(round(0.1 * w), -round(0.1 * h))))
        labels = [label] + [torch.tensor([r.class_id], device=G.device) for r in refs]
        zs = [z] + [r.z for r in refs]

        def blend(refs=refs):
            return feature_blend(G, z, base, refs, layers="all")

        def sequential(zs=zs, labels=labels):
            return [G(zi, yi) for zi, yi in zip(zs, labels)]

        z_all, y_all = torch.cat(zs), torch.cat(labels)

        def batched_plain(z_all=z_all, y_all=y_all):
            return G(z_all, y_all)

        ta, tb, tc = interleaved_times([blend, sequential, batched_plain], blend_repeats)
        # floor: what batching alone gives on this machine (the same k + 1 streams, one plain batched forward)
        rows.append(_row(model, f"{k}-reference blend / {k + 1} plain forwards", ta, tb, BLEND_GOAL,
                         size=f"{h}x{w}", k=k, ms_batched_plain=1000 * statistics.median(tc),
                         batched_floor=median_ratio(tc, tb)))
    return rows


def run(quick: bool = False, threads: int | None = 1, include_biggan: bool = True) -> list[dict]:
    """Every model and measure; one dict per (model, measure).  ``threads``: torch threads (None: unchanged)."""
    if threads:
        torch.set_num_threads(threads)
    reps = dict(repeats=7, blend_repeats=3, ks=(1, 2)) if quick else dict(repeats=31, blend_repeats=11, ks=KS)
    big_reps = dict(repeats=3, blend_repeats=2, ks=(1, 2)) if quick else dict(repeats=11, blend_repeats=5, ks=KS)
    bundle, weights = load_default_bundle()
    G = bundle.generator
    rows = []
    for r in (64, 128):
        rows += bench_model(G, f"default {r}px", resolution=r, **reps)
    for row in rows:
        row["weights"] = weights
    if include_biggan:
        big = biggan_deep_128_random()
        for row in bench_model(big, "BigGAN-deep-128", **big_reps):
            row["weights"] = "random"
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<18} {'measure':<38} {'edit ms':>9} {'plain ms':>9} {'ratio':>7} {'goal':>8} {'met?':>5} "
            f"{'batching floor':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        floor = f"{r['batched_floor']:.3f}" if "batched_floor" in r else "-"
        lines.append(f"{r['model']:<18} {r['measure']:<38} {r['ms_edit']:>9.1f} {r['ms_plain']:>9.1f} "
                     f"{r['ratio']:>7.3f} {r['goal_text']:>8} {'yes' if r['met'] else 'NO':>5} {floor:>14}")
    lines.append("batching floor: one batched plain forward of the same k + 1 streams / k + 1 plain forwards "
                 "(what batching alone gives here)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, k = 1, 2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--no-biggan", action="store_true", help="skip BigGAN-deep-128")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(quick=args.quick, threads=args.threads, include_biggan=not args.no_biggan)
    print(f"batch 1, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"default weights: {rows[0]['weights']}")
    print(format_rows(rows))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
