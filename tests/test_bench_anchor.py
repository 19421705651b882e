"""bench/photo_edit.py's Resynthesizer anchor (bench/resynth.py): the report parsing, the CPU reading, the
comparison with our edits and the rows without GIMP; one real run in GIMP 3.2 only where
bench/make_resynth_root.sh's root exists (and we are root)."""
import json
import os

import numpy as np
import pytest

from bench import photo_edit, resynth


def test_parse_events_keeps_report_lines_only():
    lines = ["(gimp-console-3.2:12): GLib-CRITICAL **: noise",
             resynth.PREFIX + json.dumps({"event": "start", "gimp": "3.2.6"}),
             resynth.PREFIX + json.dumps({"event": "arguments", "names": ["run-mode", "corpus"]}),
             resynth.PREFIX + json.dumps({"event": "case", "id": "a", "seconds": 1.5, "ok": True, "message": ""}),
             resynth.PREFIX + json.dumps({"event": "case", "id": "b", "ok": False, "message": "boom"}),
             resynth.PREFIX + "{not json",
             resynth.PREFIX + json.dumps({"event": "done"}) + "\n"]
    ev = resynth.parse_events(lines)
    assert ev["gimp"] == "3.2.6" and ev["arguments"] == ["run-mode", "corpus"] and ev["done"]
    assert ev["cases"]["a"]["seconds"] == 1.5 and not ev["cases"]["b"]["ok"]
    assert len(ev["errors"]) == 1 and "unreadable" in ev["errors"][0]
    assert resynth.parse_events([])["cases"] == {}


def test_proc_cpu_seconds_reads_utime_and_stime():
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    stat = "4242 (resyn (th) x) R 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 4 0 100"
    assert resynth.proc_cpu_seconds(stat, 100) == pytest.approx(2.0)
    with open("/proc/self/stat") as f:
        assert resynth.proc_cpu_seconds(f.read(), os.sysconf("SC_CLK_TCK")) >= 0


def test_unavailable_says_why(tmp_path):
    assert "no GIMP 3.2 + Resynthesizer root" in resynth.unavailable(str(tmp_path / "missing"))
    assert "no gimp-console-3.2" in resynth.unavailable(str(tmp_path))
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "gimp-console-3.2").write_text("")
    assert "gimp-plugin-registry is not installed" in resynth.unavailable(str(tmp_path))


def _case(seconds, cpu, sharp, mode=None, tool=None, sel=512):
    r = {"bench": "photo_edit", "photo": "p", "photo_size": 1280, "selection": sel, "target": "gravel",
         "reference": "r", "seconds": seconds, "cpu_seconds": cpu, "sharpness": sharp, "outside_identical": True}
    if mode:
        r.update(op="blend", mode=mode, source="grass", stages={"crop": 0.1, "projection": 1.0}, crop=640,
                 render=640, resampled=False)
    else:
        r.update(anchor=None, tool=tool, ok=True, gimp="3.2.6", message="", source="grass")
    return r


def test_anchor_checks_and_table():
    rows = [_case(2.0, 1.8, 0.2, "fast"), _case(8.0, 7.0, 0.3, "calibrated"),
            _case(10.0, 5.0, 0.5, tool="resynthesizer"),
            _case(30.0, 29.0, 0.1, "calibrated", sel=1024), _case(12.0, None, 0.4, tool="resynthesizer", sel=1024)]
    checks = photo_edit.anchor_checks(rows)
    assert len(checks) == 2
    a, b = checks
    assert a["time_ratio"] == pytest.approx(0.8) and a["cpu_ratio"] == pytest.approx(1.4) and a["faster"]
    assert a["sharpness_share"] == pytest.approx(0.6) and a["sharp_enough"]
    assert b["fast"] is None and not b["faster"] and b["cpu_ratio"] is None
    assert b["sharpness_share"] == pytest.approx(0.25) and not b["sharp_enough"]
    text = photo_edit.format_anchor(rows)
    assert "0.80 ok" in text and "2.50 NO" in text and "0.25 NO" in text and "1/2 cases" in text
    assert "Resynthesizer anchor" in photo_edit.format_rows(rows)


def test_anchor_check_of_a_failed_resynthesizer_run():
    bad = _case(None, None, None, tool="resynthesizer")
    bad.update(ok=False, message="GIMP did not report this case")
    c = photo_edit.anchor_checks([_case(8.0, 7.0, 0.3, "calibrated"), bad])[0]
    assert c["faster"] is None and c["sharp_enough"] is None
    assert "Resynthesizer failed: GIMP did not report" in photo_edit.format_anchor([bad])


def _job(size=96, sel=48):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (size, size, 3), np.uint8)
    ref = rng.integers(0, 255, (size, size, 3), np.uint8)
    return {"id": "j", "stem": "j", "image": photo, "photo": "p", "photo_size": size, "selection": sel,
            "source": "grass", "target": "gravel", "reference": "r", "reference_img": ref, "corpus": ref[:40, :40],
            "shown": {"fast": photo, "calibrated": photo}}


def test_anchor_rows_measure_what_gimp_returns(monkeypatch, tmp_path):
    job = _job()
    mask = photo_edit.selection(96, 48)

    def fake_run(cases):
        (c,) = cases
        assert c["corpus"].shape == (40, 40, 3) and np.array_equal(c["mask"], mask)
        out = c["photo"].copy()
        inside = c["mask"] > 0
        out[inside] = 128  # flat: no detail at all
        return {"gimp": "3.2.6", "cases": {"j": {"ok": True, "seconds": 1.0, "cpu_seconds": 0.9, "image": out,
                                                 "message": ""}}}

    monkeypatch.setattr(photo_edit, "resynthesizer_anchor", lambda: None)
    monkeypatch.setattr(resynth, "run", fake_run)
    (row,) = photo_edit.anchor_rows([job], str(tmp_path))
    assert row["tool"] == "resynthesizer" and row["ok"] and row["seconds"] == 1.0 and row["cpu_seconds"] == 0.9
    assert row["sharpness"] == pytest.approx(0.0) and row["outside_identical"] and row["corpus"] == [40, 40]
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_anchor_rows_skip_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(photo_edit, "resynthesizer_anchor", lambda: "no GIMP 3.2 + Resynthesizer root at /x")
    assert photo_edit.anchor_rows([_job()], str(tmp_path)) == [
        {"bench": "photo_edit", "anchor": "no GIMP 3.2 + Resynthesizer root at /x"}]
    assert len(list(tmp_path.glob("*.png"))) == 1  # our edits' strips are written all the same

    def broken(cases):
        raise RuntimeError("GIMP 3.2 ran no Resynthesizer case\nlong tail")

    monkeypatch.setattr(photo_edit, "resynthesizer_anchor", lambda: None)
    monkeypatch.setattr(resynth, "run", broken)
    (row,) = photo_edit.anchor_rows([_job()])
    assert row["anchor"] == "Resynthesizer run failed: RuntimeError: GIMP 3.2 ran no Resynthesizer case"
    assert photo_edit.anchor_rows([])[0]["anchor"] == "no feature-blend case in this run"


def test_corpus_is_the_engines_reference_crop(tiny_editor):
    ref = np.arange(160 * 160 * 3, dtype=np.uint32).reshape(160, 160, 3).astype(np.uint8)
    mask = photo_edit.selection(160, 48)
    corpus = photo_edit.corpus_of(tiny_editor, ref, mask)
    x, y, w, h = tiny_editor.crop_for(ref, mask, None, multiple=8).inside
    assert corpus.shape == (h, w, 3) and np.array_equal(corpus, ref[y:y + h, x:x + w])
    assert 48 <= w <= 160


@pytest.fixture(scope="module")
def tiny_editor():
    import torch

    from engine.edit.pipeline import PhotoEditor
    from engine.generator import ModelBundle
    from engine.models.sngan import ResNetGenerator, SNGANConfig

    cfg = SNGANConfig(ch=4, bottom_width=4, n_classes=3, resolution=32, gen_mults=(2, 2, 1), dis_mults=(1, 2, 2),
                      latent="spatial", z_channels=4)
    torch.manual_seed(0)
    return PhotoEditor(ModelBundle(name="tiny", generator=ResNetGenerator(cfg)))


@pytest.mark.skipif(resynth.unavailable() is not None, reason=f"Resynthesizer anchor: {resynth.unavailable()}")
def test_resynthesizer_in_gimp_32():
    rng = np.random.default_rng(1)
    photo = np.full((128, 128, 3), 90, np.uint8)
    corpus = rng.integers(0, 255, (48, 48, 3), np.uint8)
    mask = photo_edit.selection(128, 64)
    out = resynth.run([{"id": "t", "photo": photo, "mask": mask, "corpus": corpus}], timeout=300)
    assert out["gimp"].startswith("3.2") and out["arguments"][:3] == ["run-mode", "image", "drawables"]
    assert "corpus" in out["arguments"]
    got = out["cases"]["t"]
    assert got["ok"], got["message"]
    assert got["seconds"] > 0 and (got["cpu_seconds"] is None or got["cpu_seconds"] >= 0)
    img = got["image"]
    assert np.array_equal(img[mask == 0], photo[mask == 0])  # outside the selection: untouched
    assert img[mask >= 1].std() > 20  # inside: the corpus' noise, not the flat photo
