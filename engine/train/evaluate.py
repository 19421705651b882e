"""Measure the default model honestly, with the project's own texture classifier as the judge.

- classifier accuracy on held-out real crops (per class);
- generated-sample accuracy per class (seeded samples, 64 px);
- label-swap success in the manner of the paper's Table 2: for seeded random (source, target, region) edits on
  128 px generated images, the share where the classifier calls the edited region the target class, and the
  mean absolute change outside the region (raw, and after Poisson blending the edit into the unedited image);
- per class KID between generated and held-out real crops on the judge's penultimate (pooled) features, beside
  the real-vs-real floor of two disjoint halves of the held-out images;
- border darkening: mean luminance of the outer 4 px ring of generated 256 px samples over the inner part's;
- peakiness: per 256 px sample the largest power-spectrum peak at periods under 8 px over the median of its
  frequency annulus (Hann-windowed luminance), median per class, beside held-out real crops of that class;
- a gallery image (samples per class, swaps, blends, projections of held-out real crops).

    python -m engine.train.evaluate --out engine/weights/default/metrics.json --gallery docs/default_model_gallery.png
    python -m engine.train.evaluate --weights runs/v2/export --judge runs/v2/export --data PACK --out m.json
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
from engine.train.gan import load_checkpoint


def generated_accuracy(bundle, clf, per_class: int = 50, size: int = 64, seed: int = 0) -> dict:
    """Share of seeded samples per class that the model's own judge (same classes) recognises."""
    cmap = {i: i for i in range(bundle.generator.num_classes)}
    return generated_accuracy_mapped(bundle, clf, cmap, per_class=per_class, size=size, seed=seed)


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


def load_judge(path: Path):
    """(classifier, class names) from a weights folder holding classifier.safetensors and config.json, or from a
    pipeline run folder (judge.pt and run.json)."""
    from safetensors.torch import load_file

    from engine.models.texture_classifier import TextureClassifier

    if (path / "judge.pt").is_file():
        run = json.loads((path / "run.json").read_text())
        clf = TextureClassifier(len(run["classes"]), ch=run["settings"]["judge_ch"])
        clf.load_state_dict(load_checkpoint(path / "judge.pt")["clf"])
        return clf.eval(), list(run["classes"])
    meta = json.loads((path / "config.json").read_text())
    names = list(meta["sngan"]["class_names"])
    clf = TextureClassifier(len(names), **meta.get("classifier", {}))
    clf.load_state_dict({k: v.float() for k, v in load_file(str(path / "classifier.safetensors")).items()})
    return clf.eval(), names


def main(argv=None) -> None:
    from engine.models.default import WEIGHTS_DIR, load_default

    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(WEIGHTS_DIR), help="model folder (default: the shipped one)")
    ap.add_argument("--judge", default=None, help="folder whose classifier judges (default: the model's own)")
    ap.add_argument("--out", default=None, help="metrics JSON (default WEIGHTS/metrics.json)")
    ap.add_argument("--gallery", default=None, help="also write the gallery PNG here")
    ap.add_argument("--data", default=None, help="held-out data: a v2 pack file or v1 folder (default: the v2 pack "
                    "if present, else .cache/textures)")
    ap.add_argument("--swaps", type=int, default=200)
    ap.add_argument("--per-class", type=int, default=16, help="256 px samples per class for border/peakiness")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from engine.train.pipeline import DEFAULT_PACK, judge_accuracy, load_data

    weights = Path(args.weights)
    bundle = load_default("cpu", weights)
    clf, judge_names = load_judge(Path(args.judge) if args.judge else weights)
    data = args.data or (DEFAULT_PACK if Path(DEFAULT_PACK).is_file() else ".cache/textures")
    classes, _, held = load_data(data)
    held_j = [(img, judge_names.index(classes[k])) for img, k in held if classes[k] in judge_names]
    metrics = {"weights": str(weights), "judge": str(args.judge or weights), "data": str(data)}
    acc = judge_accuracy(clf, held_j, len(judge_names), "cpu")
    if acc is not None:
        metrics["classifier_heldout_accuracy"] = {
            "mean": acc["mean"], "per_class": {judge_names[k]: v for k, v in acc["per_class"].items()}}
    cmap = _class_map(bundle.class_names, judge_names)
    # with the model's own judge (same classes) these are generated_accuracy / swap_success's figures exactly
    metrics["generated_accuracy"] = generated_accuracy_mapped(bundle, clf, cmap)
    print(json.dumps({"generated_accuracy": metrics["generated_accuracy"]}), flush=True)
    metrics["v2"] = v2_measures(bundle, clf, judge_names, held_j, per_class=args.per_class)
    print(f"border {metrics['v2']['border_ratio_mean']:.3f}, peakiness median "
          f"{metrics['v2']['peakiness_median_over_classes']:.0f}", flush=True)
    metrics["label_swap"] = swap_success_mapped(bundle, clf, cmap, n=args.swaps)
    out = Path(args.out) if args.out else weights / "metrics.json"
    out.write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if k != "v2"}, indent=1))
    print(json.dumps(metrics["v2"], indent=1))
    if args.gallery:
        gallery(bundle, args.gallery, data if Path(data).is_dir() else ".cache/textures")
        print(f"gallery: {args.gallery}")


@torch.no_grad()
def generated_accuracy_mapped(bundle, clf, cmap: dict[int, int], per_class: int = 50, size: int = 64,
                              seed: int = 0) -> dict:
    """Share of seeded samples per class that a judge recognises: model class i counts as recognised when the
    judge says cmap[i]; classes the judge does not know are skipped (their latents are still drawn, so the
    samples of the others do not depend on the map)."""
    G = bundle.generator
    g = torch.Generator().manual_seed(seed)
    per = {}
    for c in range(G.num_classes):
        z = G.sample_latent(per_class, generator=g, resolution=size)
        if c not in cmap:
            continue
        x = G(z, torch.full((per_class,), c))
        per[bundle.class_names[c]] = float((clf(x).argmax(1) == cmap[c]).float().mean())
    return {"mean": float(np.mean(list(per.values()))), "per_class": per}


@torch.no_grad()
def swap_success_mapped(bundle, clf, cmap: dict[int, int], n: int = 200, size: int = 128, seed: int = 0,
                        margin: int = 8) -> dict:
    """n seeded label swaps in the manner of the paper's Table 2: a random square region (48-72 px) of a
    generated image painted with another class (source and target drawn among the classes the judge knows),
    judged on the region's inside; plus the mean change outside the region, raw and after Poisson-blending each
    edit into its unedited image (engine.compose.poisson)."""
    from engine.compose.poisson import poisson_blend

    G = bundle.generator
    known = sorted(cmap)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    ok, outside, base_ok, outside_poisson = [], [], [], []
    for _ in range(n):
        si = int(rng.integers(len(known)))
        s, t = known[si], known[int((si + rng.integers(1, len(known))) % len(known))]
        side = int(rng.integers(48, 73))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        mask = torch.zeros(size, size)
        mask[y0:y0 + side, x0:x0 + side] = 1.0
        z = G.sample_latent(1, generator=g, resolution=size)
        before = label_swap(G, z, s, [])
        after = label_swap(G, z, s, [Region(t, mask)])
        inner = after[:, :, y0 + margin:y0 + side - margin, x0 + margin:x0 + side - margin]
        ok.append(int(clf(inner).argmax(1)) == cmap[t])
        inner_b = before[:, :, y0 + margin:y0 + side - margin, x0 + margin:x0 + side - margin]
        base_ok.append(int(clf(inner_b).argmax(1)) == cmap[s])
        outside.append(float(((after - before).abs() / 2).mean(1)[0][mask == 0].mean()))
        b8, a8 = to_u8(before)[0], to_u8(after)[0]
        blended = poisson_blend(b8, a8, mask.numpy() > 0)
        out_m = mask.numpy() == 0
        outside_poisson.append(float(np.abs(blended.astype(np.float64) - b8)[out_m].mean() / 255.0))
    return {"n": n, "success": float(np.mean(ok)), "source_recognised_before": float(np.mean(base_ok)),
            "mean_abs_change_outside": float(np.mean(outside)),
            "mean_abs_change_outside_after_poisson": float(np.mean(outside_poisson)), "image_size": size}




# -- v2 measures ---------------------------------------------------------------------------------------------------
def luminance(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W] luminance in [0, 1] (Rec. 601 weights)."""
    x = (x.float().clamp(-1, 1) + 1) / 2
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def border_ratio(y: torch.Tensor, ring: int = 4) -> torch.Tensor:
    """Per image: mean luminance of the outer ``ring`` px over the mean of the inner part."""
    inner = y[:, ring:-ring, ring:-ring]
    total = y.sum(dim=(1, 2))
    inner_sum = inner.sum(dim=(1, 2))
    n_ring = y[0].numel() - inner[0].numel()
    return ((total - inner_sum) / n_ring) / (inner_sum / inner[0].numel()).clamp_min(1e-6)


def peakiness(y: np.ndarray, max_period: float = 8.0) -> float:
    """Largest power-spectrum value at periods < max_period px over the median of its frequency annulus
    (1-bin-wide rings of the radius), on the Hann-windowed, mean-free luminance of one image."""
    y = np.asarray(y, dtype=np.float64)
    h, w = y.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    p = np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean()) * win))) ** 2
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # cycles per pixel
    ring = np.round(f * min(h, w)).astype(int)
    sel = f > 1.0 / max_period
    best = 0.0
    for r in np.unique(ring[sel]):
        m = ring == r
        if r > min(h, w) // 2:  # the corners beyond the inscribed circle: incomplete rings
            continue
        med = np.median(p[m])
        if med <= 0:
            continue
        best = max(best, float(p[m & sel].max() / med))
    return best


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Kernel inception distance (unbiased MMD^2, cubic polynomial kernel) between feature sets [n, d]."""
    d = a.shape[1]

    def k(x, y):
        return (x @ y.T / d + 1.0) ** 3

    m, n = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2 * kab.mean())


def judge_features(clf, x: torch.Tensor) -> np.ndarray:
    """The judge's penultimate features: its pooled last feature map."""
    return clf.features(x).mean(dim=(2, 3)).float().cpu().numpy()


def _class_map(model_names: list[str], judge_names: list[str]) -> dict[int, int]:
    """model class id -> judge class id, for the classes both know (by name)."""
    return {i: judge_names.index(n) for i, n in enumerate(model_names) if n in judge_names}


def _halves(items):
    """Split held-out images of one class into two disjoint halves: by image when there are >= 2 (alternating),
    else the left and right halves of the one image."""
    if len(items) >= 2:
        return items[0::2], items[1::2]
    img = items[0]
    w = img.shape[1] // 2
    return [img[:, :w]], [img[:, w:]]


def _crops(images, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """n seeded random crops (up-sampled when an image is smaller than ``size``), [-1, 1]."""
    import cv2

    out = []
    areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
    pick = rng.choice(len(images), size=n, p=areas / areas.sum())
    for j in pick:
        im = images[j]
        if min(im.shape[:2]) < size:
            s = size / min(im.shape[:2])
            im = cv2.resize(im, (max(size, int(np.ceil(im.shape[1] * s))), max(size, int(np.ceil(im.shape[0] * s)))),
                            interpolation=cv2.INTER_CUBIC)
        y = int(rng.integers(0, im.shape[0] - size + 1))
        x = int(rng.integers(0, im.shape[1] - size + 1))
        out.append(im[y:y + size, x:x + size])
    a = np.stack(out).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def v2_measures(bundle, clf, judge_names: list[str], held: list, seed: int = 0, per_class: int = 16,
                kid_n: int = 100, kid_size: int = 64, sample_size: int = 256, log=print) -> dict:
    """Border darkening, peakiness and KID per class (see the module docstring).  ``held``: (image, judge class)
    held-out pairs; classes the judge does not know are skipped."""
    G = bundle.generator
    cmap = _class_map(bundle.class_names, judge_names)
    by_class: dict[int, list] = {}
    for img, k in held:
        by_class.setdefault(int(k), []).append(np.asarray(img))
    out = {"border_ratio": {}, "peakiness": {}, "peakiness_real": {}, "kid": {}, "kid_floor": {}}
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for mc, jc in cmap.items():
        name = bundle.class_names[mc]
        z = G.sample_latent(per_class, generator=g, resolution=sample_size)
        xs = torch.cat([G(z[i:i + 4], torch.full((len(z[i:i + 4]),), mc, device=G.device))
                        for i in range(0, per_class, 4)])
        y = luminance(xs)
        r = border_ratio(y).cpu().numpy()
        ratios += r.tolist()
        out["border_ratio"][name] = float(r.mean())
        out["peakiness"][name] = float(np.median([peakiness(v) for v in y.cpu().numpy()]))
        imgs = by_class.get(jc, [])
        if not imgs:
            continue
        rng = np.random.default_rng(seed + jc)
        real = _crops(imgs, per_class, min(sample_size, max(min(im.shape[:2]) for im in imgs)), rng)
        out["peakiness_real"][name] = float(np.median([peakiness(v) for v in luminance(real).numpy()]))
        a, b = _halves(imgs)
        fa = judge_features(clf, _crops(a, kid_n, kid_size, rng).to(G.device))
        fb = judge_features(clf, _crops(b, kid_n, kid_size, rng).to(G.device))
        zg = G.sample_latent(kid_n, generator=g, resolution=kid_size)
        fg = np.concatenate([judge_features(clf, G(zg[i:i + 25], torch.full((len(zg[i:i + 25]),), mc,
                                                                                device=G.device)))
                             for i in range(0, kid_n, 25)])
        out["kid"][name] = kid(fg, fb)
        out["kid_floor"][name] = kid(fa, fb)
        log(f"{name}: border {out['border_ratio'][name]:.3f} peak {out['peakiness'][name]:.0f} "
            f"(real {out['peakiness_real'][name]:.0f}) KID {out['kid'][name]:.4f} (floor {out['kid_floor'][name]:.4f})")
    out["border_ratio_mean"] = float(np.mean(ratios))
    out["peakiness_median_over_classes"] = float(np.median(list(out["peakiness"].values())))
    if out["peakiness_real"]:
        out["peakiness_real_median_over_classes"] = float(np.median(list(out["peakiness_real"].values())))
    return out


if __name__ == "__main__":
    main()
