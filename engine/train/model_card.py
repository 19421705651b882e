"""Write engine/weights/default/MODEL_CARD.md from the measured metrics (metrics.json) and the training record
(config.json), so the card always states the figures the tests check.

    python -m engine.train.model_card
"""
from __future__ import annotations

import json

from engine.models.default import WEIGHTS_DIR


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def made_v1(names, tr, lr_text) -> str:
    """Data and training of v1 (engine/train/pipeline.sh: gan.py, encoder.py, auxab.py on the v1 set)."""
    return f"""## Data
11 material classes ({', '.join(names)}), random crops of photographic game textures from the Debian packages
`ufoai-textures` 2.5-2 and `extremetuxracer-data` 0.8.2-1 (GPL-2 / GPL-2+, a few public domain, two
CC-BY-SA-3.0 files), assembled by `engine/train/data.py`; sources, counts and the held-out split (the right
25 % of every source image) are in `engine/train/DATA_CARD.md`. The weights are a derivative of GPL-2 data;
treat them as GPL-2.

## Training
`engine/train/pipeline.sh`: hinge loss, Adam(2e-4, 0.0, 0.9), batch 24, 48 px crops, EMA generator (0.999),
{tr.get('gan_iterations', '?')} iterations ({tr.get('gan_minutes', '?')} min on 2 CPU cores), then the generator's
batch-norm statistics recalibrated; encoder trained with eq. 4 (+ 0.2 x MSE) on real crops and generated samples
({tr.get('encoder_iterations', '?')} iterations, {tr.get('encoder_minutes', '?')} min; the first 219 also with a
latent regression term ||E(G(z)) - z||^2 on the generated samples, dropped since: it pulled E(x) towards the mean
latent and made projection from E(x) slower than from a random z); A/B network with eq. 6 (N_iter = 2,
w = (20, 2, 1), lambda = 100, inner AdaGrad steps, gradient clip 100, weight decay 1e-4;
{tr.get('aux_iterations', '?')} iterations, {tr.get('aux_minutes', '?')} min). Both ran 115 and 88 min at their
first step sizes (Adam 5e-4 and 1e-4), then 40 min more each, side by side on one core each, at smaller steps
(2e-4 and 5e-5) keeping an exponential moving average of the weights (decay 0.99), which is what ships; the A/B
network followed the encoder's average (`--follow-encoder`). Continuing at the first step sizes instead made
projection worse on held-out crops (iterates wander), the averaged fine-tuning made it better: chosen on crops
of seed 1 (zeta-space projection there: 0.43 of the reference's iterations, 0.63 before), so that seed 0 below
stays a test. Checkpoints every 3 minutes to `runs/` (git-ignored), resumable.
Projection's Adam step sizes: {lr_text}.

"""


LIMITS_V1 = """## Known limits
- Low texture quality: visible grid and checkerboard artifacts from the short CPU training, a dark frame at the
  image border (zero padding), little diversity within a class. Classes differ mostly by colour and coarse
  structure; look-alike pairs (soil/sand, concrete/rock, rusty_metal/wood) are confused.
- 64 px native: photo regions are processed at their own size up to 128 px and resampled, so large selections
  come back softer than the photo; Poisson blending hides the seam, not the blur.
- What would reach the remaining goals: a few more hours of training (the loss curves were still moving), a larger
  generator at 64 px crops, and reflect padding; on a GPU the same code trains the same model in minutes.
"""


def made_v2(names, tr, meta) -> str:
    """Data and training of a model from the v2 pipeline (engine/train/pipeline.py on the v2 pack)."""
    p = meta.get("pipeline", {})
    return f"""## Data
{len(names)} material classes ({', '.join(names)}): the v2 pack, 396 photographic game textures from 6 Debian
packages (0ad-data, ufoai-textures, redeclipse-data, supertuxkart-data, megaglest-data, extremetuxracer-data;
CC-BY-SA-3.0, CC-BY-3.0, GPL-2/2+/3+, CC0 and public domain, per file), held-out = whole source photos never
trained on; sources, licences, counts and the split are in `engine/train/DATA_CARD.md`. Some sources are
share-alike and some GPL: treat the weights as a derivative of GPL-2 and CC-BY-SA-3.0 data.

## Training
`python -m engine.train.pipeline --device cpu --preset {p.get('preset', 'cpu')}` (engine/train/README.md has every
call): started from v1's weights (`--init`: classes matched by name, the 5 new ones at the mean embedding), v1's
shapes with reflect padding and bilinear up-sampling; hinge loss, Adam(2e-4, 0.0, 0.9), multi-scale crops (48 px
x 16, 64 x 12, 96 x 6, 128 x 4 in turn), EMA generator (0.999), batch-norm statistics recalibrated;
{tr.get('gan_iterations', '?')} GAN iterations in {tr.get('gan_minutes', '?')} min on 2 CPU cores (one torch thread
on a shared machine). From iteration 3,128 on, G's loss had the spectral term (`engine/train/spectral.py`,
`--spectral 1`, periods < 32 px): the batch's mean power spectrum may not rise above that of real crops of the
same classes; it took the 4 px grid the run had learnt (peakiness 1,100) down to 61. Then the encoder, eq. 4 (+ 0.2 x
MSE) on real and generated crops ({tr.get('encoder_iterations', '?')} iterations, {tr.get('encoder_minutes', '?')}
min), the A/B network, eq. 6 ({tr.get('aux_iterations', '?')} iterations, {tr.get('aux_minutes', '?')} min), and
the judge ({tr.get('judge_iterations', '?')} iterations, {tr.get('judge_minutes', '?')} min). Weights stored as
float16. Projection's Adam step sizes: the official 0.075 (z) and 0.015 (zeta).
"""


LIMITS_V2 = """## Known limits
- Recognition is far from the goals: 64 % of samples recognised by this judge (goal 95 %), tiles 0 %; gravel and
  rock keep a fine knit in places, and 10 of 16 classes are still above 2x their real crops' peakiness.
- The judge itself is weak (46 % on held-out photos): the figures measure closeness to its training photos as
  much as realism. v1's judge recognises v1 better (see the side-by-side tables), having been trained on v1's
  own photos.
- Projection: from A(E(x)) in zeta-space it needs 0.73 of plain z-space Adam's iterations (goal <= 0.5; v1 0.45).
  The encoder and A/B network had 33 and 26 minutes; v1's had 155 and 128, ending with 40 minutes each of
  averaged fine-tuning at smaller steps. Those crops are v1's held-out set (the right quarter of each v1 source
  image), and v2's split is by whole photo, so some of them may have been in v2s's training photos.
- The generator now draws a stochastic fine grain that no latent reproduces pixel for pixel. Projecting one of its
  own grass samples gives 18 dB PSNR, against 16 dB for an unrelated grass sample; v1 gave 25-26 dB. The layout is
  found: on 4 x 4 px means the projection scores 27 dB and the other sample 22 dB
  (`tests/edit/test_pipeline.py`).
- 64 px native, trained on crops up to 128 px: structure larger than ~128 px (brick courses over a wall, tile
  grids) is not modelled.
- What would reach the goals: the GPU run `engine/train/gpu_run.sh` is ready for (the wider gpu preset, 128 px
  crops, batches of 64-128, the spectral term; 9 minutes of an H200 is about 100x this run's iterations).
"""


def render(meta: dict, m: dict, projection: list[dict] | None = None) -> str:
    cfg, tr = meta["sngan"], meta.get("training", {})
    gen = m["generated_accuracy"]
    sw = m["label_swap"]
    held = m.get("classifier_heldout_accuracy", {})
    names = cfg["class_names"]
    rows = "\n".join(
        f"| {n} | {pct(held.get('per_class', {}).get(n, float('nan')))} | {pct(gen['per_class'][n])} |" for n in names)
    lr = meta.get("projection_lr")
    search = meta.get("projection_lr_search", {})
    lr_text = (f"{', '.join(f'{k} {v:g}' for k, v in lr.items())}, the best of a grid on 4 held-out crops "
               "(`engine/train/tune_projection.py`, as the paper's App. B.3 picks them)" if lr
               else "the official 0.075 (z) and 0.015 (zeta)")
    if not lr and search.get("chosen_then_dropped"):
        picked = ", ".join(f"{k} {v:g}" for k, v in search["chosen_then_dropped"].items())
        lr_text += (f". `engine/train/tune_projection.py` picked {picked} on its 4 crops, but {search['why_dropped']}; "
                    "so the model ships without step sizes of its own")
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors")) / 1e6
    v2 = "pipeline" in meta
    made = made_v2(names, tr, meta) if v2 else made_v1(names, tr, lr_text)
    limits = LIMITS_V2 if v2 else LIMITS_V1
    proj = ("\nProjection of held-out real crops (final loss and PSNR after 200 steps from random z, from E(x), and "
            "from A(E(x)) in zeta-space, and the iterations each needs to reach plain z-space Adam's final loss): "
            "`python bench/projection.py --max-steps 400 --save engine/weights/default/projection_metrics.json`, "
            "then this script.\n")
    if projection:
        head = ("| Adam step sizes | start | space | lr | final loss (200 steps) | PSNR | iterations to the "
                "reference's final loss / 200 |")

        def missed(r):
            return f" ({r['not_reached']} not reached)" if r["not_reached"] else ""

        body = [f"| {r['step_sizes']} | {r['start']} | {r['space']} | {r['lr']:g} | {r['loss']:.4f} | "
                f"{r['psnr']:.1f} dB | {r['ratio']:.2f}{missed(r)} |" for r in projection]
        proj = ("\nProjection of " + str(projection[0]["n"]) + " held-out real crops, class given "
                "(`python bench/projection.py --max-steps 400 --save engine/weights/default/projection_metrics.json`"
                " or `bench/run_all.py --save-projection ...`; a crop that does not reach the reference's loss in 200 "
                "steps goes on up to 400 to count its iterations; final loss and PSNR are after 200 steps). "
                "\"model\" step sizes are the ones "
                "the engine uses (chosen by `engine/train/tune_projection.py` on other crops), \"official\" are the "
                "paper code's 0.075 (z) / 0.015 (zeta); each setting has its own reference run.\n\n"
                + "\n".join([head, "|---|---|---|---|---|---|---|", *body]) + "\n")
    return f"""# Model card: `default` (Neural Collage texture GAN)

The model the plug-in and the CLI use when no other is installed: it ships with the repository, runs offline on
a CPU, and exists so that every feature of the paper (sCBN, feature blending, manifold projection with encoder
and zeta-space, Poisson blending) works and is tested without downloads. It is a small model trained for
{tr.get('gan_minutes', '?')} minutes on 2 CPU cores: it renders recognisable materials, not photo-real texture.

## Architecture
- Generator: the paper's SNGAN ResNet generator with categorical conditional batch norm (Chainer-style CBN:
  gamma used directly, eps 2e-5), with a *spatial* latent (16 channels at 1/8 resolution) and a 3x3 conv as
  `l1`, so it is fully convolutional: 64 px native, any multiple of 8 px at test time. Channels
  {cfg['ch']} x {list(cfg['gen_mults'])}, three up-sampling blocks (6 sCBN sites in 3 layers, 4 blend sites).
- Discriminator: SNGAN projection discriminator with spectral norm, channels {cfg['ch']} x
  {list(cfg['dis_mults'])}; its pre-pooling feature vector is Psi in the projection loss (eq. 4).
- Encoder: residual down-sampling network, image -> spatial latent; A/B network (App. B.1) applied per latent
  position, widths {meta['aux']}.
- Judge: a small texture classifier (4 conv layers) trained on the real training crops, used only to measure.
- {size:.1f} MB of {'float16' if v2 else 'float32'} safetensors in total.

{made}
## Measured (by `python -m engine.train.evaluate`, the shipped classifier as judge)
- Classifier accuracy on held-out real crops: **{pct(held.get('mean', float('nan')))}**.
- Generated samples recognised as their class (50 seeded 64 px samples per class): **{pct(gen['mean'])}**
  (goal 95 %, every class 85 %).
- Label swap, in the manner of the paper's Table 2: {sw['n']} seeded random (source, target, square region of
  48-72 px) edits on {sw['image_size']} px images; the classifier calls the edited region (inner part, 8 px
  margin) the target class in **{pct(sw['success'])}** of them (goal 95 %); the region was recognised as its
  source class before the edit in {pct(sw['source_recognised_before'])}; mean absolute change outside the region
  {sw['mean_abs_change_outside']:.4f} (0-1 scale).

| class | classifier on held-out real crops | generated samples recognised |
|---|---|---|
{rows}
{proj}

{limits}"""


def main() -> None:
    meta = json.loads((WEIGHTS_DIR / "config.json").read_text())
    m = json.loads((WEIGHTS_DIR / "metrics.json").read_text())
    proj_file = WEIGHTS_DIR / "projection_metrics.json"
    proj = json.loads(proj_file.read_text()) if proj_file.exists() else None
    text = render(meta, m, proj)
    cmp_file = WEIGHTS_DIR / "comparison.json"
    if cmp_file.exists():
        text += side_by_side(json.loads(cmp_file.read_text()))
    (WEIGHTS_DIR / "MODEL_CARD.md").write_text(text)
    print(f"wrote {WEIGHTS_DIR / 'MODEL_CARD.md'}")




def side_by_side(cmp: dict) -> str:
    """The card's section comparing models, one table per judge (comparison.json: {"note": text, "models":
    {name: metrics.json dict}} for one judge, or {"note": text, "comparisons": [{"title", "note", "models"}, ...]}
    for several; within a table every model was measured with the same judge on the same held-out set)."""
    parts = cmp.get("comparisons")
    if parts is None:
        return "\n## v1 and v2 side by side\n" + cmp.get("note", "") + "\n\n" + comparison(cmp["models"])
    text = "\n## v1 and v2 side by side\n" + cmp.get("note", "") + "\n"
    for part in parts:
        text += f"\n### {part['title']}\n" + part.get("note", "") + "\n\n" + comparison(part["models"])
    return text


# -- v1 vs v2 ----------------------------------------------------------------------------------------------------
GOALS = {"recognised": 0.95, "worst_class": 0.85, "swap": 0.95, "outside": 1 / 255, "border": 0.03, "peak_x": 2.0}


def _f(x, fmt="{:.3f}"):
    return "—" if x is None else fmt.format(x)


def summary(m: dict) -> dict:
    """The headline numbers of one metrics.json (engine.train.evaluate)."""
    v2 = m.get("v2", {})
    gen = m["generated_accuracy"]["per_class"]
    peak, real = v2.get("peakiness", {}), v2.get("peakiness_real", {})
    within = [n for n in peak if n in real and peak[n] <= GOALS["peak_x"] * real[n]]
    kid, floor = v2.get("kid", {}), v2.get("kid_floor", {})
    return {
        "recognised": m["generated_accuracy"]["mean"], "worst_class": min(gen.values()),
        "worst_name": min(gen, key=gen.get), "swap": m["label_swap"]["success"],
        "outside_raw": m["label_swap"]["mean_abs_change_outside"],
        "outside": m["label_swap"].get("mean_abs_change_outside_after_poisson"),
        "border": v2.get("border_ratio_mean"), "peak": v2.get("peakiness_median_over_classes"),
        "peak_real": v2.get("peakiness_real_median_over_classes"),
        "peak_within": f"{len(within)}/{len([n for n in peak if n in real])}",
        "kid": float(sum(kid.values()) / len(kid)) if kid else None,
        "kid_floor": float(sum(floor[n] for n in kid) / len(kid)) if kid else None,
        "classes": len(gen),
    }


def comparison(models: dict[str, dict]) -> str:
    """Markdown: headline table (one column per model) and per-class table, from metrics.json dicts measured with
    the same judge and held-out data."""
    s = {k: summary(m) for k, m in models.items()}
    names = list(models)
    head = "| measure | goal | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names)
    rows = [
        ("classes measured", "", lambda x: str(x["classes"])),
        ("generated 64 px samples recognised by the judge", ">= 95 %", lambda x: pct(x["recognised"])),
        ("worst class", ">= 85 %", lambda x: f"{pct(x['worst_class'])} ({x['worst_name']})"),
        ("label-swap success (200 edits, Table 2 style)", ">= 95 %", lambda x: pct(x["swap"])),
        ("mean change outside the region, raw sCBN (0-1)", "", lambda x: _f(x["outside_raw"], "{:.4f}")),
        ("mean change outside the region after Poisson (0-1)", "<= 0.0039", lambda x: _f(x["outside"], "{:.5f}")),
        ("border ring / inner luminance, 256 px samples", "0.97-1.03", lambda x: _f(x["border"])),
        ("peakiness, median over classes (real crops)", "each class <= 2x real",
         lambda x: f"{_f(x['peak'], '{:.0f}')} ({_f(x['peak_real'], '{:.0f}')})"),
        ("classes with peakiness <= 2x their real crops", "all", lambda x: x["peak_within"]),
        ("KID on judge features, mean over classes (real-vs-real floor)", "near the floor",
         lambda x: f"{_f(x['kid'], '{:.4f}')} ({_f(x['kid_floor'], '{:.4f}')})"),
    ]
    lines = [head] + [f"| {label} | {goal} | " + " | ".join(fn(s[n]) for n in names) + " |"
                      for label, goal, fn in rows]
    classes = []
    for m in models.values():
        classes += [c for c in m["generated_accuracy"]["per_class"] if c not in classes]
    judge = next(iter(models.values())).get("classifier_heldout_accuracy", {}).get("per_class", {})

    def cell(m, key, c, fmt):
        v2 = m.get("v2", {})
        d = m["generated_accuracy"]["per_class"] if key == "gen" else v2.get(key, {})
        return fmt(d[c]) if c in d else "—"

    ph = ("| class | judge on held-out real | " + " | ".join(f"{n} recognised" for n in names) + " | "
          + " | ".join(f"{n} KID" for n in names) + " | KID floor | "
          + " | ".join(f"{n} peakiness" for n in names) + " | real peakiness |")
    sep = "|---|---|" + "---|" * (3 * len(names) + 2)
    last = list(models.values())[-1]
    per = [f"| {c} | {pct(judge[c]) if c in judge else '—'} | "
           + " | ".join(cell(m, "gen", c, pct) for m in models.values()) + " | "
           + " | ".join(cell(m, "kid", c, lambda v: f"{v:.4f}") for m in models.values()) + " | "
           + cell(last, "kid_floor", c, lambda v: f"{v:.4f}") + " | "
           + " | ".join(cell(m, "peakiness", c, lambda v: f"{v:.0f}") for m in models.values()) + " | "
           + cell(last, "peakiness_real", c, lambda v: f"{v:.0f}") + " |" for c in classes]
    return "\n".join(lines) + "\n\n" + "\n".join([ph, sep, *per]) + "\n"


if __name__ == "__main__":
    main()
