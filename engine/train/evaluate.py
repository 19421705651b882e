"""Measure the default model honestly, with the project's own texture classifier as the judge.

- classifier accuracy on held-out real crops (per class);
- generated-sample accuracy per class (seeded samples, 64 px);
- label-swap success in the manner of the paper's Table 2: for seeded random (source, target, region) edits on
  128 px generated images, the share where the classifier calls the edited region the target class, and the
  mean absolute change outside the region;
- a gallery image (samples per class, swaps, blends, projections of held-out real crops).

    python -m engine.train.evaluate --out engine/weights/default/metrics.json --gallery docs/default_model_gallery.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from engine.blend.feature import Reference, feature_blend
from engine.collage.label import label_swap
from engine.sites.scbn import Region


@torch.no_grad()
def generated_accuracy(bundle, clf, per_class: int = 50, size: int = 64, seed: int = 0) -> dict:
    G = bundle.generator
    g = torch.Generator().manual_seed(seed)
    per = []
    for c in range(G.num_classes):
        z = G.sample_latent(per_class, generator=g, resolution=size)
        x = G(z, torch.full((per_class,), c))
        per.append(float((clf(x).argmax(1) == c).float().mean()))
    return {"mean": float(np.mean(per)), "per_class": dict(zip(bundle.class_names, per))}


@torch.no_grad()
def swap_success(bundle, clf, n: int = 200, size: int = 128, seed: int = 0, margin: int = 8) -> dict:
    """n seeded edits: a random square region (48-72 px) of a generated image painted with another class."""
    G = bundle.generator
    K = G.num_classes
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    ok, outside, base_ok = [], [], []
    for _ in range(n):
        s = int(rng.integers(K))
        t = int((s + rng.integers(1, K)) % K)
        side = int(rng.integers(48, 73))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        mask = torch.zeros(size, size)
        mask[y0:y0 + side, x0:x0 + side] = 1.0
        z = G.sample_latent(1, generator=g, resolution=size)
        before = label_swap(G, z, s, [])
        after = label_swap(G, z, s, [Region(t, mask)])
        inner = after[:, :, y0 + margin:y0 + side - margin, x0 + margin:x0 + side - margin]
        ok.append(int(clf(inner).argmax(1)) == t)
        inner_b = before[:, :, y0 + margin:y0 + side - margin, x0 + margin:x0 + side - margin]
        base_ok.append(int(clf(inner_b).argmax(1)) == s)
        out_m = (mask == 0)
        outside.append(float(((after - before).abs() / 2).mean(1)[0][out_m].mean()))
    return {"n": n, "success": float(np.mean(ok)), "source_recognised_before": float(np.mean(base_ok)),
            "mean_abs_change_outside": float(np.mean(outside)), "image_size": size}


def to_u8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def gallery(bundle, path: str, data_root: str = ".cache/textures", seed: int = 0) -> None:
    """Rows: samples per class; label swaps (circle -> each of 4 classes); feature blends; projections."""
    from PIL import Image, ImageDraw

    from engine.cli.files import ellipse_mask
    from engine.project.projector import Projector

    G = bundle.generator
    K = G.num_classes
    g = torch.Generator().manual_seed(seed)
    tile = 64
    rows: list[tuple[str, list[np.ndarray]]] = []
    with torch.no_grad():
        z = G.sample_latent(K, generator=g, resolution=tile)
        rows.append(("samples per class", list(to_u8(G(z, torch.arange(K))))))
        zb = G.sample_latent(1, generator=g, resolution=128)
        circle = torch.from_numpy(ellipse_mask(128, 128, 64, 64, 36, 36, 4))
        swaps = [label_swap(G, zb, 0, [])] + [label_swap(G, zb, 0, [Region(t, circle)]) for t in range(1, min(K, 8))]
        rows.append(("label swap: grass + circle -> each class (128 px)",
                     [np.asarray(Image.fromarray(a).resize((tile, tile))) for a in to_u8(torch.cat(swaps))]))
        zr = G.sample_latent(1, generator=g, resolution=128)
        half = torch.zeros(128, 128)
        half[32:96, 32:96] = 1
        blends = [label_swap(G, zb, 7, []), label_swap(G, zr, 2, []),
                  feature_blend(G, zb, 7, [Reference(zr, 2, half)]),
                  feature_blend(G, zb, 7, [Reference(zr, 2, half, (24, 0))]),
                  feature_blend(G, zb, 7, [Reference(zr, 2, half)], layers="rest"),
                  feature_blend(G, zb, 7, [Reference(zr, 2, half)], layers="first")]
        rows.append(("blend: base, reference, all sites, shift +24, rest, first",
                     [np.asarray(Image.fromarray(a).resize((tile, tile))) for a in to_u8(torch.cat(blends))]))
    try:
        from engine.train.data import TextureSet

        held = TextureSet.load(data_root, split="heldout")
        rng = np.random.default_rng(seed)
        x, y = held.sample(4, 64, rng)
        proj = Projector(bundle)
        tiles = []
        for i in range(4):
            r = proj.project(x[i:i + 1].to(G.device), class_id=int(y[i]), steps=100)
            tiles += [to_u8(x[i:i + 1])[0], to_u8(r.image)[0]]
        rows.append(("projection of held-out real crops: real, reconstruction", tiles))
    except FileNotFoundError:
        pass
    width = max(len(t) for _, t in rows) * (tile + 2)
    label_h = 14
    canvas = Image.new("RGB", (width, len(rows) * (tile + label_h + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    yy = 0
    for title, tiles in rows:
        draw.text((2, yy), title, fill="black")
        for i, t in enumerate(tiles):
            canvas.paste(Image.fromarray(t), (i * (tile + 2), yy + label_h))
        yy += tile + label_h + 4
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv=None) -> None:
    from engine.models.default import load_default
    from engine.train.classifier import accuracy

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="engine/weights/default/metrics.json")
    ap.add_argument("--gallery", default="docs/default_model_gallery.png")
    ap.add_argument("--data", default=".cache/textures")
    ap.add_argument("--swaps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_default("cpu")
    clf = bundle.info["classifier"]
    metrics = {}
    try:
        from engine.train.data import TextureSet

        held = TextureSet.load(args.data, split="heldout")
        acc, per = accuracy(clf, held, 1024, 64, seed=1)
        metrics["classifier_heldout_accuracy"] = {"mean": acc, "per_class": dict(zip(held.class_names, per))}
    except FileNotFoundError as exc:
        print(f"no held-out data ({exc}): classifier accuracy on real crops skipped")
    metrics["generated_accuracy"] = generated_accuracy(bundle, clf)
    metrics["label_swap"] = swap_success(bundle, clf, n=args.swaps)
    Path(args.out).write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))
    if args.gallery:
        gallery(bundle, args.gallery, args.data)
        print(f"gallery: {args.gallery}")


if __name__ == "__main__":
    main()
