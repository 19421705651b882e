"""Run every benchmark and print one table of ratios; write it as Markdown to bench/RESULTS.md.

    python bench/run_all.py            # everything (2-3 hours on 2 shared cores, nearly all bench.photo_edit:
                                       # 1280 px swaps + blends at 256-1024 px, the 4096 px photo, the anchor)
    python bench/run_all.py --quick    # a fast smoke run (small sizes, few repeats; writes no RESULTS.md)
    python bench/run_all.py --only collage projection

Benchmarks: bench.collage (sCBN and feature-blend cost), bench.projection (encoder / zeta-space projection
speed-up), bench.poisson (Poisson blending vs OpenCV), bench.bridge (GIMP <-> engine image transfer),
bench.photo_edit (edits at the photo's own resolution: time, stage shares, sharpness, the Resynthesizer anchor in
GIMP 3.2 where bench/make_resynth_root.sh's root exists; the longest part on 2 cores), bench.preview_latency
(the dialog's live preview: a change -> preview pixels, through the bridge, cached projection).  A benchmark whose data
is missing and cannot be built here is listed as skipped, with the reason.  Each runs
in its own try block: a failing one prints its error and the others still run.  All ratios in the table are
measured within this one run, on the machine stated above the table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# bench/bridge.py is named like the `bridge` package: keep the repository root first and drop bench/ itself.
sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, ROOT)]

RESULTS = os.path.join(HERE, "RESULTS.md")
BENCHES = ("collage", "projection", "poisson", "bridge", "photo_edit", "preview_latency")
COLUMNS = ("benchmark", "case", "measure", "ratio", "goal", "met?", "details")


# -- the machine -------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine(threads: int | None) -> dict:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except (AttributeError, OSError):
        load = "n/a"
    try:
        import cv2

        cv_threads = str(cv2.getNumThreads())
    except Exception:  # noqa: BLE001 - informative only
        cv_threads = "n/a"
    from bench.collage import default_weights_info
    from engine.device import work_dtype

    precision = "bfloat16 (native on this CPU)" if work_dtype("cpu") is not None else "float32"
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": str(threads or torch.get_num_threads()),
        "OpenCV threads": cv_threads,
        "load average at start": load,
        "default weights": default_weights_info(),
        "encoder and calibration steps of photo edits": precision + "; rendering float32",
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    }


# -- one benchmark each ------------------------------------------------------------------------------------------
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _met(m) -> str:
    return "-" if m is None else ("yes" if m else "NO")


def bench_collage(quick: bool, threads: int | None):
    from bench import collage

    rows = collage.run(quick=quick, threads=threads)
    table = []
    for r in rows:
        details = f"{r['ms_edit']:.1f} ms vs {r['ms_plain']:.1f} ms, {r['size']}, median of {r['repeats']}"
        if "batched_floor" in r:
            details += f"; batching alone: {r['batched_floor']:.3f}"
        table.append(("collage", r["model"], r["measure"], _fmt(r["ratio"]), r["goal_text"], _met(r["met"]),
                      details))
    return rows, table, collage.format_rows(rows)


def bench_projection(quick: bool, threads: int | None):
    """The official step sizes and, when the model carries its own (what the engine then uses), those too, each
    with its own reference run, so that the encoder / zeta-space speed-up is never credited with the step size's.
    An image that has not reached L* after 200 steps goes on up to 400 so that its iterations are counted, not
    bounded (its loss and PSNR are still those after 200 steps)."""
    from bench import projection

    from bench.collage import load_default_bundle

    why = texture_cache()
    if why:
        return [], [("projection", "-", "skipped", "-", "-", "-", why)], why
    bundle, _ = load_default_bundle()
    rows, rows_out, texts = [], [], []
    for which in projection.step_size_settings(bundle):
        part = (projection.run(n=2, steps=20, step_sizes=which, bundle=bundle) if quick
                else projection.run(n=8, steps=200, max_steps=400, step_sizes=which, bundle=bundle))
        rows += part
        texts.append(f"{which} step sizes:\n" + projection.format_rows(part))
        for r in part:
            case = f"{r['method']} ({which} lr {r['lr']:g})"
            measure = f"iterations to L* / {r['steps']} (mean of {r['n']})"
            goal = "-" if r["goal"] is None else f"<= {r['goal']:g}"
            if not r["available"]:
                rows_out.append(("projection", case, measure, "-", goal, "-", f"not measured: {r['note']}"))
                continue
            details = (f"loss@{r['steps']} {r['final_loss']:.4f}, PSNR {r['psnr']:.2f} dB, "
                       f"{r['ms_per_iter']:.1f} ms/iter")
            if r["note"]:
                details += f"; {r['note']}"
            rows_out.append(("projection", case, measure, _fmt(r["ratio"]), goal, _met(r["met"]), details))
    return rows, rows_out, "\n\n".join(texts)


def texture_cache() -> str | None:
    """The held-out texture crops bench/projection.py reads (.cache/textures): built here from the Debian texture
    packages when they are installed (engine/train/data.py); else the reason the benchmark is skipped."""
    root = os.path.join(ROOT, ".cache", "textures")
    if os.path.exists(os.path.join(root, "manifest.json")):
        return None
    from engine.train import data

    try:
        print(f"building {root} from the texture packages (engine/train/data.py) ...", flush=True)
        data.assemble(root)
    except (FileNotFoundError, OSError) as exc:
        return f"skipped: {root}/manifest.json missing and not buildable here ({exc})"
    return None


def bench_photo_edit(quick: bool, threads: int | None):
    """Photo edits at the photo's own resolution (bench/photo_edit.py), on all cores like the engine (torch's
    default threads), not the single thread of the other benchmarks; on a machine with CUDA the same cases again
    on the GPU (absolute times; no anchor)."""
    import torch

    from bench import photo_edit

    torch.set_num_threads(os.cpu_count() or 1)
    rows = photo_edit.run(quick=quick)
    table = photo_edit_table(rows, "photo_edit")
    text = photo_edit.format_rows(rows)
    if torch.cuda.is_available():
        gpu = photo_edit.run(quick=quick, device="cuda", anchor=False)
        table += photo_edit_table(gpu, "photo_edit (cuda)")
        text += f"\n\nOn {torch.cuda.get_device_name()}:\n" + photo_edit.format_rows(gpu)
        rows += gpu
    return rows, table, text


def photo_edit_table(rows: list[dict], name: str) -> list[tuple]:
    """The table rows of one bench/photo_edit.py run, labelled ``name``."""
    from bench import photo_edit

    table = []
    for r in rows:
        if "mode" not in r:
            if r.get("anchor"):
                table.append((name, "Resynthesizer in GIMP 3.2", "anchor", "-", "-", "-",
                              f"skipped: {r['anchor']}"))
            continue
        op = r.get("op", "swap")
        what = (f"{r['photo']} -> {r['target']}" if op == "swap"
                else f"{r['photo']} <- {r['reference']} ({r['target']}) blend")
        case = f"{r['photo_size']} px photo, {r['selection']} px sel., {what}"
        st = r["stages"]
        tot = max(sum(st.values()), 1e-9)
        share = ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in st.items())
        size = (f"crop {r['crop']} px rendered at {r['render']} px (resampled)" if r["resampled"]
                else f"crop {r['crop']} px rendered at its size")
        goal_s = photo_edit.FAST_GOAL_S if r["mode"] == "fast" else photo_edit.CALIBRATED_GOAL_S
        timed = r["selection"] == 512
        table.append((name, case, f"{r['mode']}: seconds to the result", f"{r['seconds']:.2f}",
                      f"<= {goal_s:g}" if timed else "-", _met(r["seconds"] <= goal_s) if timed else "-",
                      f"{r['cpu_seconds']:.1f} CPU s; {share}; {size}; outside the selection "
                      f"{'byte-identical' if r['outside_identical'] else 'CHANGED'}"))
        table.append((name, case, f"{r['mode']}: sharpness edit / photo", f"{r['sharpness']:.2f}",
                      f">= {photo_edit.SHARPNESS_GOAL:g}", _met(r["sharpness"] >= photo_edit.SHARPNESS_GOAL),
                      "variance of the Laplacian of luminance inside the edit / inside the photo's region"))
    for c in photo_edit.anchor_checks(rows):
        k, a = c["case"], c["anchor"]
        case = (f"{k['photo_size']} px photo, {k['selection']} px sel., {k['photo']} <- {c['reference']} "
                f"({k['target']}) blend vs Resynthesizer")
        if c["time_ratio"] is None:
            table.append((name, case, "anchor", "-", "-", "-",
                          f"Resynthesizer failed: {a.get('message')}" if not a.get("ok") else "no calibrated row"))
            continue
        cal = c["calibrated"]
        cpu = "-" if c["cpu_ratio"] is None else f"{c['cpu_ratio']:.2f}"
        table.append((name, case, "calibrated seconds / Resynthesizer's", f"{c['time_ratio']:.2f}", "<= 1",
                      _met(c["faster"]), f"{cal['seconds']:.1f} s vs {a['seconds']:.1f} s in GIMP {a['gimp']}; "
                      f"CPU seconds {cal['cpu_seconds']:.1f} vs "
                      f"{'-' if a.get('cpu_seconds') is None else '%.1f' % a['cpu_seconds']} (ratio {cpu})"))
        table.append((name, case, "calibrated sharpness / Resynthesizer's", f"{c['sharpness_share']:.2f}",
                      f">= {photo_edit.ANCHOR_SHARPNESS_SHARE:g}", _met(c["sharp_enough"]),
                      f"{cal['sharpness']:.2f} vs {a['sharpness']:.2f} (edit / photo region); Resynthesizer's "
                      f"outside the selection {'byte-identical' if a['outside_identical'] else 'CHANGED'}"))
    for s in photo_edit.summary(rows):
        table.append((name, f"{s['photo_size']} px photo, {s['from']} -> {s['to']} px sel.",
                      f"{s['mode']}: time per selected pixel / at {s['from']} px", f"{s['ratio']:.2f}", "<= 1",
                      _met(s["ratio"] <= 1), f"{s['seconds'][0]:.1f} s -> {s['seconds'][1]:.1f} s; by CPU seconds "
                      f"{s['cpu_ratio']:.2f} ({s['cpu_seconds'][0]:.1f} -> {s['cpu_seconds'][1]:.1f})"
                      + ("; the largest crop was resampled (above the CPU's 2048 px)" if s["resampled"] else "")))
    return table


def bench_poisson(quick: bool, threads: int | None):
    from bench import poisson

    rows = poisson.run(sizes=(512,), repeats=1) if quick else poisson.run()
    table = []
    for r in rows:
        case = f"{r['size']} px, mask {r['mask_fraction']:.2f}"
        table.append(("poisson", case, "time ours / cv2.seamlessClone", _fmt(r["ratio"]), "<= 1", _met(r["ratio"] <= 1),
                      f"{r['ours_s']:.3f} s vs {r['cv2_s']:.3f} s"))
        if "ours_max_err" in r:
            table.append(("poisson", case, "max error vs exact solve (8-bit levels)", str(r["ours_max_err"]), "<= 1",
                          _met(r["ours_max_err"] <= 1),
                          f"cv2: max {r['cv2_max_err']}, mean {r['cv2_mean_err']:.1f}; exact {r['exact_s']:.2f} s"))
    return rows, table, poisson.format_rows(rows) if hasattr(poisson, "format_rows") else ""


def bench_bridge(quick: bool, threads: int | None):
    from bench import bridge

    rows = bridge.run(repeat=2, file_repeat=1) if quick else bridge.run()
    table = []
    for r in rows:
        case = f"{r['dtype']}, {r['method']}"
        protocol = r["method"].startswith("protocol")
        table.append(("bridge", case, "round trip time / raw pyzmq", _fmt(r["ratio_vs_raw_pyzmq"], 2),
                      "<= 2" if protocol else "-", _met(r["ratio_vs_raw_pyzmq"] <= 2) if protocol else "-",
                      f"{r['ms']:.1f} ms (median {r['ms_median']:.1f}), {r['megabytes']} MiB"))
        if protocol:
            table.append(("bridge", case, "PNG-file round trip time / this", _fmt(r["png_vs_this"], 1), ">= 40",
                          _met(r["png_vs_this"] >= 40), ""))
    return rows, table, ""


def bench_preview_latency(quick: bool, threads: int | None, bundle=None):
    """The live preview's latency (bench/preview_latency.py), on all cores like the engine."""
    import torch

    from bench import preview_latency as pl

    torch.set_num_threads(os.cpu_count() or 1)
    rows = pl.run(sizes=(256,), n_changes=2, bundle=bundle) if quick else pl.run(bundle=bundle)
    table = []
    for r in rows:
        case = f"{r['selection']} px selection ({r['crop']} px crop), preview {r['preview'][1]}x{r['preview'][0]}"
        timed = r["selection"] == pl.GOAL_SIZE
        table.append(("preview_latency", case, f"{r['mode']}: seconds from a change to the preview",
                      f"{r['change_median_s']:.2f}", f"<= {pl.GOAL_S:g}" if timed else "-",
                      _met(r["change_median_s"] <= pl.GOAL_S) if timed else "-",
                      f"median of {r['changes']} changes (max {r['change_max_s']:.2f} s); the first preview, which "
                      f"projects the reduced crop, {r['first_s']:.2f} s"))
    return rows, table, pl.format_rows(rows)


RUNNERS = {"collage": bench_collage, "projection": bench_projection, "poisson": bench_poisson,
           "bridge": bench_bridge, "photo_edit": bench_photo_edit, "preview_latency": bench_preview_latency}


# -- output ------------------------------------------------------------------------------------------------------
def text_table(rows: list[tuple]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(COLUMNS, *rows)]
    widths[-1] = min(widths[-1], 80)
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*COLUMNS), line.format(*("-" * w for w in widths))]
    out += [line.format(*(str(c) for c in r)) for r in rows]
    return "\n".join(s.rstrip() for s in out)


def markdown_table(rows: list[tuple]) -> str:
    def cell(c) -> str:
        return str(c).replace("|", "\\|")

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(info: dict, rows: list[tuple], errors: dict, quick: bool, seconds: float, stamp: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run_all.py{' --quick' if quick else ''}` on {stamp} "
        f"(run time {seconds / 60:.1f} min){'; quick smoke run, not representative' if quick else ''}.",
        "All ratios were measured within this one run.",
        "",
        "Machine:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", markdown_table(rows), ""]
    if errors:
        lines += ["Benchmarks that failed:", ""]
        lines += [f"- {name}: `{msg}`" for name, msg in errors.items()]
        lines.append("")
    lines += [
        "Notes:",
        "",
        "- collage: batch 1, torch on the stated threads; edit and plain forwards timed alternately, ratio = median "
        "over the pairs.  \"batching alone\" is one batched plain forward of the same k + 1 streams / k + 1 plain "
        "forwards: the best a batched blend can do on this machine.  BigGAN-deep-128 has random weights (timing "
        "does not depend on them).",
        "- projection: real held-out texture crops at the default model's native size, class given; L* = lowest "
        "loss of a 200-step z-space Adam run from a random z; each method's iterations until its loss first "
        "reaches L* (0: the initial latent already does; a run that has not reached it after 200 steps goes on "
        "up to 400 to count its iterations; loss and PSNR are after 200 steps).  Run with the official Adam step "
        "sizes (0.075 on z, 0.015 on zeta) and, when the model carries its own (engine/train/tune_projection.py), "
        "with those too; each setting has its own reference.",
        "- poisson and bridge: see bench/poisson.py and bench/bridge.py.",
        "- photo_edit: label swaps and feature blends of elliptical selections on real texture photos mirrored to "
        "1280 and 4096 px, through PhotoEditor.edit in fast and calibrated mode on all cores (bench/photo_edit.py); "
        "timing goals are stated at 512 px; stage shares are of the engine's time (crop, projection, render, "
        "compose = Poisson); I/O to GIMP is the bridge rows'.  The anchor: each feature blend's case through "
        "Resynthesizer in GIMP 3.2.6 (bench/resynth.py, root from bench/make_resynth_root.sh), measured in "
        "the same run.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (small sizes, few repeats)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES), help="run only these")
    ap.add_argument("--save-projection", metavar="JSON", default=None,
                    help="also write the projection rows for the model card (e.g. "
                         "engine/weights/default/projection_metrics.json)")
    ap.add_argument("--out", default=None,
                    help="Markdown output (default bench/RESULTS.md; with --quick: none unless given)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = machine(args.threads)
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), flush=True)

    table: list[tuple] = []
    errors: dict[str, str] = {}
    for name in args.only:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            raw, rows, detail = RUNNERS[name](args.quick, args.threads)
            if name == "projection" and args.save_projection:
                from bench.projection import save_card_rows

                save_card_rows(raw, args.save_projection)
            torch.set_num_threads(args.threads)  # in case a benchmark changed it
            if detail:
                print(detail)
            table += rows
            print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            errors[name] = msg
            table.append((name, "-", "failed", "-", "-", "-", msg))
            print(f"({name} failed after {time.perf_counter() - t0:.0f} s: {msg})", flush=True)

    seconds = time.perf_counter() - t_start
    print("\n== all benchmarks ==")
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()))
    print(text_table(table))
    print(f"total run time {seconds / 60:.1f} min")
    out = args.out or (None if args.quick else RESULTS)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(markdown(info, table, errors, args.quick, seconds, stamp))
        print(f"wrote {out}")
    else:
        print("quick run: bench/RESULTS.md left as it is (pass --out FILE to write the table)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
