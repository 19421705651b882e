"""Smoke test of the benchmarks (bench/): every module's functions run on minimal sizes and return rows with the
expected keys and finite numbers.  Tiny random-weight models stand in for the real ones, so this is fast."""
import math

import pytest
import torch

from engine.models.auxab import AuxAB
from engine.models.biggan_deep import BigGANDeep, BigGANDeepConfig
from engine.generator import ModelBundle
from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator, SpatialEncoder


def finite(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def tiny_cfg():
    return SNGANConfig(ch=4, bottom_width=4, n_classes=3, resolution=32, gen_mults=(2, 2, 1), dis_mults=(1, 2, 2),
                       latent="spatial", z_channels=4)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_cfg):
    torch.manual_seed(0)
    g = ResNetGenerator(tiny_cfg)
    return ModelBundle(name="tiny", generator=g, discriminator=SNResNetProjectionDiscriminator(tiny_cfg),
                       encoder=SpatialEncoder(tiny_cfg), aux=AuxAB(4, dim_a=8, dim_zeta=16, dim_b=8)).to("cpu")


def test_collage_bench_model_rows(tiny_bundle):
    from bench import collage

    rows = collage.bench_model(tiny_bundle.generator, "tiny", resolution=32, repeats=2, blend_repeats=1, ks=(1, 2))
    rows += collage.bench_model(tiny_bundle.generator, "tiny 64", resolution=64, repeats=1, blend_repeats=1, ks=(1,))
    assert [r["k"] for r in rows] == [0, 1, 2, 0, 1]
    for r in rows:
        assert {"bench", "model", "measure", "ratio", "goal", "goal_text", "met", "ms_edit", "ms_plain"} <= set(r)
        assert finite(r["ratio"], r["goal"], r["ms_edit"], r["ms_plain"]) and r["ratio"] > 0
        assert isinstance(r["met"], bool)
    assert rows[1]["goal"] == collage.BLEND_GOAL and finite(rows[1]["batched_floor"], rows[1]["ms_batched_plain"])
    assert "tiny" in collage.format_rows(rows)


def test_collage_bench_biggan_family():
    from bench import collage

    torch.manual_seed(0)
    cfg = BigGANDeepConfig(z_dim=8, class_embed_dim=8, channel_width=4, num_classes=5,
                           layers=[(True, 16, 8), (True, 8, 4), (True, 4, 2), (True, 2, 2), (True, 2, 1)],
                           attention_layer_position=4)
    rows = collage.bench_model(BigGANDeep(cfg).eval(), "tiny biggan", repeats=1, blend_repeats=1, ks=(1,))
    assert len(rows) == 2 and all(finite(r["ratio"], r["ms_edit"]) for r in rows)


def test_circle_mask():
    from bench.collage import circle_mask

    m = circle_mask(32, 32, 16, 16, 8)
    assert m.shape == (32, 32) and m[16, 16] == 1 and m[0, 0] == 0
    assert abs(float(m.sum()) - math.pi * 64) < 20


def test_default_weights_info_is_text():
    from bench.collage import default_weights_info

    assert isinstance(default_weights_info(), str)


def _images(n=2, size=32):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.tensor([0, 2][:n])


def test_projection_rows(tiny_bundle):
    from bench import projection

    rows = projection.run(n=2, steps=3, max_steps=5, threads=None, bundle=tiny_bundle, images=_images())
    assert [r["method"] for r in rows][1:] == [m[0] for m in projection.METHODS]
    for r in rows:
        assert r["available"] and {"ratio", "iterations", "final_loss", "psnr", "ms_per_iter", "note", "met"} <= set(r)
        assert finite(r["ratio"], r["final_loss"], r["psnr"], r["ms_per_iter"])
        assert all(0 <= it <= 5 for it in r["iterations"])
    assert rows[-1]["goal"] == projection.GOAL and isinstance(rows[-1]["met"], bool)
    text = projection.format_rows(rows)
    assert "zeta" in text
    last = text.splitlines()[-1].split()  # the per-image counts of the last method
    assert " ".join(last[:2]) == "A(E(x)), zeta-space" and " ".join(last[2:]) == str(rows[-1]["iterations"])


def test_projection_without_encoder_or_aux(tiny_bundle):
    from bench import projection

    b = ModelBundle(name="bare", generator=tiny_bundle.generator, discriminator=tiny_bundle.discriminator)
    rows = projection.run(n=1, steps=2, threads=None, bundle=b, images=_images(1))
    avail = {r["method"]: r["available"] for r in rows}
    assert avail["random z, z-space"] and not avail["E(x), z-space"] and not avail["A(E(x)), zeta-space"]
    assert "no encoder" in rows[2]["note"]
    assert "not measured" in projection.format_rows(rows)


def test_poisson_run_minimal():
    from bench import poisson

    rows = poisson.run(sizes=(48,), repeats=1)
    assert finite(rows[0]["ratio"], rows[0]["ours_s"], rows[0]["cv2_s"], rows[0]["ours_max_err"])


def test_bridge_run_minimal(monkeypatch):
    from bench import bridge

    monkeypatch.setattr(bridge, "SIZE", 32)
    rows = bridge.run(repeat=1, file_repeat=1)
    assert rows and all(finite(r["ratio_vs_raw_pyzmq"], r["png_vs_this"], r["ms"]) for r in rows)


def test_run_all_isolates_failures(tmp_path, monkeypatch, capsys):
    from bench import run_all

    def ok(quick, threads):
        return [], [("fake", "case", "measure", "0.500", "<= 1", "yes", "a | b")], "detail"

    def broken(quick, threads):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_all, "RUNNERS", {"collage": broken, "projection": ok, "poisson": ok, "bridge": ok})
    out = tmp_path / "R.md"
    assert run_all.main(["--quick", "--only", "collage", "projection", "--out", str(out)]) == 1
    text = out.read_text()
    assert "RuntimeError: boom" in text and "| fake | case | measure | 0.500 |" in text and "a \\| b" in text
    assert "torch" in text and "cores" in text
    assert "boom" in capsys.readouterr().out


def test_projection_step_size_settings(tiny_bundle):
    import copy

    from bench import projection

    b = copy.copy(tiny_bundle)
    b.info = {"projection_lr": {"z": 0.2, "zeta": 0.05}}
    own = projection.run(n=1, steps=2, threads=None, bundle=b, images=_images(1), step_sizes="model")
    off = projection.run(n=1, steps=2, threads=None, bundle=b, images=_images(1), step_sizes="official")
    assert [r["lr"] for r in own] == [0.2, 0.2, 0.2, 0.05] and [r["lr"] for r in off] == [0.075, 0.075, 0.075, 0.015]
    assert all(r["step_sizes"] == "model" for r in own)
    with pytest.raises(ValueError, match="step_sizes must be"):
        projection.run(n=1, steps=1, threads=None, bundle=b, images=_images(1), step_sizes="best")


def test_photo_edit_bench_rows(tiny_bundle, tmp_path):
    from bench import photo_edit

    rows = photo_edit.run(quick=True, bundle=tiny_bundle, sizes=(48, 96), big=False, photo_size=160,
                          save_png=str(tmp_path), anchor=False)
    cases = [r for r in rows if "mode" in r]
    assert len(cases) == 2 * 2 * 2 * 2  # 2 selections x 2 targets x swap/blend x fast/calibrated
    for r in cases:
        assert finite(r["seconds"], r["sharpness"]) and r["outside_identical"] and not r["resampled"]
        assert set(r["stages"]) == {"crop", "projection", "render", "compose"}
    assert {r["mode"] for r in cases} == {"fast", "calibrated"} and {r["op"] for r in cases} == {"swap", "blend"}
    blends = [r for r in cases if r["op"] == "blend"]
    assert all(r["reference"] and finite(r["sharpness_ref"]) for r in blends)
    assert {(r["source"], r["target"]) for r in blends} == {("grass", "gravel"), ("gravel", "rock")}
    assert rows[-1] == {"bench": "photo_edit", "anchor": "not run (anchor=False)"}
    assert "sharp" in photo_edit.format_rows(rows) and len(list(tmp_path.glob("*.png"))) == 8
    assert all(r["device"] == "cpu" and r["precision"] in ("float32", "bfloat16") for r in cases)


def test_photo_edit_bench_big_photo_and_linearity(tiny_bundle):
    """The 4096 px part's path (label swaps of the first photo at growing selections on a larger photo) and the
    time-per-pixel summary, at toy sizes (a 256 px "big" photo)."""
    from bench import photo_edit

    rows = photo_edit.run(quick=True, bundle=tiny_bundle, sizes=(48,), big=True, photo_size=160,
                          ops=("swap",), anchor=False, big_sizes=(64, 128), big_photo=256)
    big = [r for r in rows if r.get("photo_size") == 256]
    assert [(r["selection"], r["mode"]) for r in big] == [(64, "fast"), (64, "calibrated"), (128, "fast"),
                                                          (128, "calibrated")]
    assert all(r["outside_identical"] for r in big) and all(r["photo"] == big[0]["photo"] for r in big)
    summ = photo_edit.summary(rows)
    assert [(s["mode"], s["photo_size"], s["from"], s["to"]) for s in summ] == [("fast", 256, 64, 128),
                                                                                  ("calibrated", 256, 64, 128)]
    assert all(finite(s["ratio"], s["cpu_ratio"]) for s in summ)
    assert "time per selected pixel" in photo_edit.format_rows(rows)


def test_run_all_skips_projection_without_textures(monkeypatch, tmp_path):
    import bench.run_all as ra

    monkeypatch.setattr(ra, "ROOT", str(tmp_path))
    from engine.train import data

    def missing(*a, **k):
        raise FileNotFoundError("texture source package(s) not installed: ufoai-textures")

    monkeypatch.setattr(data, "assemble", missing)
    raw, rows, detail = ra.bench_projection(True, 1)
    assert raw == [] and rows[0][2] == "skipped" and "manifest.json missing" in rows[0][-1]


def test_run_all_photo_edit_rows(tiny_bundle, monkeypatch):
    import bench.run_all as ra
    from bench import photo_edit

    real = photo_edit.run
    monkeypatch.setattr(photo_edit, "run", lambda quick: real(quick=True, bundle=tiny_bundle, sizes=(48, 96),
                                                              big=False, photo_size=160, ops=("swap",),
                                                              anchor=False))
    raw, table, detail = ra.bench_photo_edit(True, 1)
    assert len(table) == 2 * 8 + 2 + 1  # time and sharpness per case, time per pixel 48 -> 96 px (fast,
    # calibrated), the anchor's row
    assert all(len(r) == len(ra.COLUMNS) for r in table)
    assert any(r[2].startswith("fast: seconds") for r in table) and any("sharpness" in r[2] for r in table)
    (anchor,) = [r for r in table if r[2] == "anchor"]
    assert anchor[-1] == "skipped: not run (anchor=False)"
    assert [r[2] for r in table[-2:]] == ["fast: time per selected pixel / at 48 px",
                                          "calibrated: time per selected pixel / at 48 px"]
    assert "Resynthesizer" in detail


def test_run_all_adds_a_gpu_table_when_cuda_is_present(tiny_bundle, monkeypatch):
    """On a machine with CUDA, run_all's photo_edit part runs the same cases again on the GPU (absolute times, no
    anchor), labelled "photo_edit (cuda)" (faked here: the run itself is the CPU's)."""
    import torch

    import bench.run_all as ra
    from bench import photo_edit

    real = photo_edit.run
    calls = []

    def fake(quick, device="cpu", anchor=True):
        calls.append((device, anchor))
        return real(quick=True, bundle=tiny_bundle, sizes=(48,), big=False, photo_size=160, ops=("swap",),
                    anchor=False)

    monkeypatch.setattr(photo_edit, "run", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    raw, table, detail = ra.bench_photo_edit(True, 1)
    assert calls == [("cpu", True), ("cuda", False)]
    names = [r[0] for r in table]
    assert names.count("photo_edit") == names.count("photo_edit (cuda)") > 0
    assert "On Fake GPU:" in detail and len(raw) == 2 * (2 * 2 + 1)  # per run: 2 targets x 2 modes, the anchor row


def test_preview_latency_quick(tiny_bundle):
    """bench/preview_latency.py through the real bridge client and EngineServer, on the tiny model: a first preview
    and the changes after it come back at preview size, with finite times, and run_all's table has its row."""
    import bench.run_all as ra
    from bench import preview_latency as pl

    rows = pl.run(sizes=(48,), n_changes=3, preview_size=32, bundle=tiny_bundle, mode="fast")
    assert len(rows) == 1 and rows[0]["crop"] == 72 and max(rows[0]["preview"]) <= 32
    assert finite(rows[0]["first_s"], rows[0]["change_median_s"], rows[0]["change_max_s"])
    assert "48 px" in pl.format_rows(rows)
    _raw, table, _detail = ra.bench_preview_latency(True, 1, bundle=tiny_bundle)
    assert len(table) == 1 and all(len(r) == len(ra.COLUMNS) for r in table)
    assert table[0][0] == "preview_latency" and "256 px selection" in table[0][1]


def test_run_all_photo_edit_anchor_rows(monkeypatch):
    """The anchor's comparison rows in run_all's table (synthetic rows: no engine, no GIMP)."""
    import bench.run_all as ra
    from bench import photo_edit

    base = {"bench": "photo_edit", "photo": "p", "photo_size": 1280, "selection": 512, "target": "gravel",
            "reference": "r", "source": "grass", "outside_identical": True}
    ours = {**base, "op": "blend", "stages": {"crop": 0.1, "projection": 5.0, "render": 1.0, "compose": 0.2},
            "crop": 640, "render": 640, "resampled": False}
    rows = [{**ours, "mode": "fast", "seconds": 2.0, "cpu_seconds": 1.9, "sharpness": 0.2},
            {**ours, "mode": "calibrated", "seconds": 6.0, "cpu_seconds": 5.5, "sharpness": 0.4},
            {**base, "anchor": None, "tool": "resynthesizer", "gimp": "3.2.6", "op": "blend", "ok": True,
             "message": "", "seconds": 4.0, "cpu_seconds": 3.0, "sharpness": 0.5}]
    monkeypatch.setattr(photo_edit, "run", lambda quick: rows)
    _raw, table, detail = ra.bench_photo_edit(True, 1)
    anchor = [r for r in table if "Resynthesizer" in r[1]]
    assert [(r[2], r[3], r[4], r[5]) for r in anchor] == [
        ("calibrated seconds / Resynthesizer's", "1.50", "<= 1", "NO"),
        ("calibrated sharpness / Resynthesizer's", "0.80", ">= 0.5", "yes")]
    assert "3.2.6" in anchor[0][-1] and "blend" in anchor[0][1]
    assert "Resynthesizer anchor" in detail
