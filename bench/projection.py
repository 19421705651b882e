"""Benchmark: projecting real photos onto the default model (paper §4, App. B) - how much the encoder and the
zeta-space of the auxiliary network speed it up.

    python bench/projection.py              # 8 held-out crops, 200 steps
    python bench/projection.py --n 2 --steps 50

For each of N real held-out crops (``TextureSet.load(".cache/textures", split="heldout")``, the model's native
size, class given = the crop's true label, so no class search is timed):

1. reference: ``steps`` steps of z-space Adam from a random z (seed 0) give the reference loss L* (the lowest
   loss of the run, which is what ``Projector.project`` returns);
2. then, each run for ``steps`` steps (and, with ``max_steps`` > steps, continued up to max_steps while L* is
   not reached, only to count iterations):
   - random z (another seed), z-space;
   - E(x), z-space;
   - A(E(x)), zeta-space (generating from B(zeta)),
   the number of iterations until the loss first reaches L* (0 = the initial latent already does), the loss and
   the PSNR of the best latent after ``steps`` steps, and the wall time per iteration.

The ratio reported is the mean over the images of (iterations to reach L*) / ``steps``; an image that does not
reach L* within ``max_steps`` counts as max_steps / steps (so the mean is then a lower bound, and the row says
how many did not).  Goal: <= 1/2 for E(x) + zeta-space.

Every run is the engine's own ``Projector.calibrate``, with the official Adam step sizes (0.075 on z, 0.015 on
zeta) and, when the model carries step sizes of its own (``Projector.learning_rate``), with those too, each
setting against its own reference; the table states the step sizes used.

``run(n=8, steps=200) -> list[dict]`` returns the rows for bench/run_all.py.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if __package__ in (None, ""):  # run as a script: import the repository's packages, not bench/ siblings
    sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

import numpy as np
import torch

GOAL = 0.5
METHODS = (
    ("random z, z-space", "z", "random"),
    ("E(x), z-space", "z", "encoder"),
    ("A(E(x)), zeta-space", "zeta", "encoder"),
)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak = the full range)."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def held_out_crops(n: int, size: int, seed: int = 0, root: str | None = None):
    """N real held-out crops [N, 3, size, size] in [-1, 1] and their labels."""
    from engine.train.data import TextureSet

    ts = TextureSet.load(root or os.path.join(ROOT, ".cache", "textures"), split="heldout")
    return ts.sample(n, size, np.random.default_rng(seed))


def optimise(proj, x, psi_x, class_id: int, space: str, init: str, steps: int, max_steps: int, target: float,
             seed: int = 0, lr: float | None = None) -> dict:
    """``Projector.calibrate`` (restarts = 1, step size ``lr``, default the model's) for ``steps`` steps, continued
    up to ``max_steps`` while the loss has not reached ``target``; returns the per-step losses and the measures."""
    clock: dict[str, float] = {}

    def tick(stage, step, total, loss):
        if step == 0:
            clock["t0"] = time.perf_counter()
        if step == total and "t" not in clock:
            clock["t"] = time.perf_counter() - clock["t0"]

    r = proj.calibrate(x, psi_x, class_id, steps, space=space, init=init, lr=lr, seed=seed, progress=tick,
                       target=None if math.isinf(target) else target, max_steps=max_steps)
    return {"history": r.history, "loss": r.loss, "psnr": psnr(r.image, x), "reached": r.reached, "lr": r.lr,
            "s_per_iter": clock.get("t", 0.0) / max(steps, 1)}


def run(n: int = 8, steps: int = 200, max_steps: int | None = None, threads: int | None = 1, bundle=None,
        images=None, seed: int = 0, step_sizes: str = "model") -> list[dict]:
    """All methods on N held-out crops; one dict per method (plus the reference run).

    ``step_sizes``: "model" (``Projector.learning_rate``: the model's own, else the official ones) or "official"
    (0.075 on z, 0.015 on zeta) for every run, the reference included.
    ``bundle``/``images`` (x [N, 3, R, R], labels [N]) replace the default model / the held-out crops (tests)."""
    from engine.project.projector import OFFICIAL_LR, Projector

    if threads:
        torch.set_num_threads(threads)
    max_steps = max(max_steps or steps, steps)
    weights = "given"
    if bundle is None:
        from bench.collage import load_default_bundle

        bundle, weights = load_default_bundle()
    G = bundle.generator
    if images is None:
        images = held_out_crops(n, G.resolution, seed)
    xs, labels = images
    xs, labels = xs[:n].to(G.device), labels[:n]
    n = xs.shape[0]
    proj = Projector(bundle)
    if step_sizes not in ("model", "official"):
        raise ValueError(f"step_sizes must be 'model' or 'official', got {step_sizes!r}")
    lr = dict(OFFICIAL_LR) if step_sizes == "official" else {s: proj.learning_rate(s) for s in OFFICIAL_LR}
    missing = {"encoder": "the model has no encoder" if bundle.encoder is None else None,
               "zeta": "the model has no auxiliary A/B network" if bundle.aux is None else None}

    per_method: dict[str, list[dict]] = {"reference": []}
    for name, _, _ in METHODS:
        per_method[name] = []
    for i in range(n):
        x = xs[i:i + 1]
        c = int(labels[i])
        psi_x = proj.target_features(x)
        ref = optimise(proj, x, psi_x, c, "z", "random", steps, steps, -math.inf, seed=seed, lr=lr["z"])
        target = ref["loss"]
        ref["reached"] = int(np.argmin(ref["history"]))
        per_method["reference"].append(ref)
        for name, space, init in METHODS:
            if (init == "encoder" and missing["encoder"]) or (space == "zeta" and missing["zeta"]):
                continue
            per_method[name].append(optimise(proj, x, psi_x, c, space, init, steps, max_steps, target,
                                             seed=seed + 1, lr=lr[space]))

    rows = []
    for name, space, init in (("reference", "z", "random"), *METHODS):
        rs = per_method[name]
        row = {"bench": "projection", "method": name if name != "reference" else "reference: random z, z-space",
               "space": space, "init": init, "n": n, "steps": steps, "max_steps": max_steps, "weights": weights,
               "step_sizes": step_sizes, "lr": lr[space],
               "goal": GOAL if name == METHODS[2][0] else None}
        why = missing["encoder"] if init == "encoder" else None
        why = why or (missing["zeta"] if space == "zeta" else None)
        if why:
            row.update(available=False, note=why, ratio=None, met=None)
            rows.append(row)
            continue
        its = [r["reached"] if r["reached"] is not None else max_steps for r in rs]
        not_reached = sum(r["reached"] is None for r in rs)
        ratio = statistics.fmean(it / steps for it in its)
        row.update(
            available=True,
            ratio=ratio,
            iterations_mean=statistics.fmean(its),
            iterations=its,
            not_reached=not_reached,
            final_loss=statistics.fmean(r["loss"] for r in rs),
            psnr=statistics.fmean(r["psnr"] for r in rs),
            ms_per_iter=1000 * statistics.median(r["s_per_iter"] for r in rs),
            met=None if row["goal"] is None else bool(ratio <= GOAL and not_reached == 0),
            note=(f"{not_reached} of {n} did not reach L* in {max_steps} steps (counted as {max_steps}: "
                  "lower bound)") if not_reached else "",
        )
        if name == "reference":
            row["note"] = ("defines L* per image; iterations = the step of its lowest loss "
                           f"(mean L* {row['final_loss']:.4f})")
        rows.append(row)
    return rows


def step_size_settings(bundle, which: str = "both") -> tuple[str, ...]:
    """The step-size settings to run: "both" is ("model", "official") when the model carries step sizes of its
    own, else just ("official",) (the two would be the same run)."""
    if which != "both":
        return (which,)
    return ("model", "official") if bundle.info.get("projection_lr") else ("official",)


def save_card_rows(rows: list[dict], path: str) -> None:
    """Write the measured rows as the model card reads them (engine/train/model_card.py)."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump([card_row(r) for r in rows if r["available"]], f, indent=1)


def card_row(r: dict) -> dict:
    """One measured row as the model card shows it (engine/train/model_card.py)."""
    start = {"random": "random z", "encoder": "E(x)" if r["space"] == "z" else "A(E(x))"}[r["init"]]
    return {"start": start + (" (reference)" if r["method"].startswith("reference") else ""), "space": r["space"],
            "step_sizes": r["step_sizes"], "lr": r["lr"], "n": r["n"], "steps": r["steps"],
            "loss": round(r["final_loss"], 5), "psnr": round(r["psnr"], 2), "ratio": round(r["ratio"], 3),
            "not_reached": r["not_reached"]}


def format_rows(rows: list[dict]) -> str:
    steps = rows[0]["steps"] if rows else 0
    head = (f"{'method':<30} {'its to L*':>9} {'ratio':>7} {'goal':>7} {'met?':>5} {'loss@' + str(steps):>9} "
            f"{'PSNR dB':>8} {'ms/iter':>8}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        goal = f"<= {r['goal']:g}" if r["goal"] is not None else "-"
        if not r["available"]:
            lines.append(f"{r['method']:<30} {'-':>9} {'-':>7} {goal:>7} {'-':>5} {'-':>9} {'-':>8} {'-':>8}  "
                         f"not measured: {r['note']}")
            continue
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['method']:<30} {r['iterations_mean']:>9.1f} {r['ratio']:>7.3f} {goal:>7} {met:>5} "
                     f"{r['final_loss']:>9.4f} {r['psnr']:>8.2f} {r['ms_per_iter']:>8.1f}  {r['note']}")
    lines.append("iterations to L* per image (reference: the step of its lowest loss):")
    for r in rows:
        if r["available"]:
            lines.append(f"  {r['method']:<30} {r['iterations']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="number of held-out crops (default 8)")
    ap.add_argument("--steps", type=int, default=200, help="projection steps (default 200)")
    ap.add_argument("--max-steps", type=int, default=None, help="continue up to this many steps to count "
                                                                  "iterations to L* (default: steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--step-sizes", choices=("model", "official", "both"), default="both",
                    help="Adam step sizes: the model's own, the official 0.075 (z) / 0.015 (zeta), or both runs "
                         "(default; only the official run when the model has no step sizes of its own)")
    ap.add_argument("--save", metavar="JSON", help="also write the rows for the model card, e.g. "
                                                   "engine/weights/default/projection_metrics.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from bench.collage import load_default_bundle

    bundle, weights = load_default_bundle()
    saved = []
    for which in step_size_settings(bundle, args.step_sizes):
        rows = run(n=args.n, steps=args.steps, max_steps=args.max_steps, threads=args.threads, step_sizes=which,
                   bundle=bundle)
        print(f"{args.n} held-out crops, class given, torch {torch.__version__}, {torch.get_num_threads()} "
              f"thread(s); default weights: {weights}; {which} step sizes "
              f"(z {rows[0]['lr']:g}, zeta {rows[-1]['lr']:g})")
        print(format_rows(rows))
        saved += rows
    if args.save:
        save_card_rows(saved, args.save)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
