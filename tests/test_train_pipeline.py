"""engine/train/pipeline.py and gpu_run.sh: the whole training pipeline (G + D, E, A/B, judge, export) on a tiny
synthetic pack on the CPU, resuming, checkpoint format, export loading through the default model's loader."""
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.train import data as D
from engine.train import pipeline as P
from engine.train.gan import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def tiny_pack(path: Path, classes=("grass", "brick", "snow")) -> Path:
    """Three synthetic 'materials' (noise, stripes, flat) with two train and one held-out image each."""
    rng = np.random.default_rng(0)
    items = []
    for k, name in enumerate(classes):
        for i in range(3):
            if k == 0:
                img = rng.integers(0, 255, (80, 96, 3)).astype(np.uint8)
            elif k == 1:
                img = np.zeros((80, 96, 3), np.uint8)
                img[::8] = 200
            else:
                img = np.full((80, 96, 3), 230, np.uint8)
            items.append((img, k, {"split": "train" if i < 2 else "held_out", "source": f"{name}{i}"}))
    D.write_pack(str(path), list(classes), items)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The tiny run, with --amp: the CUDA path (bf16 autocast, channels_last) on the CPU; gpu_run --smoke --cpu
    below runs the fp32 path."""
    tmp = tmp_path_factory.mktemp("pipe")
    pack = tiny_pack(tmp / "t.pack")
    out = tmp / "run"
    res = subprocess.run([sys.executable, "-m", "engine.train.pipeline", "--device", "cpu", "--preset", "tiny",
                          "--minutes", "0.15", "--out", str(out), "--data", str(pack), "--log-every", "2", "--amp",
                          "--threads", "1"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    return out, pack, res.stdout


def test_pipeline_trains_every_stage_and_exports_loadable_weights(run_dir):
    out, _, stdout = run_dir
    for stage in ("gan", "encoder", "aux", "judge"):
        ck = load_checkpoint(out / f"{stage}.pt")  # torch.load(weights_only=True): tensors, the rest as JSON
        assert ck["it"] >= 1 and ck["spent"] > 0
    assert "it/s" in stdout and (out / "samples.png").is_file()
    from engine.models.default import load_default

    b = load_default("cpu", out / "export")
    assert b.class_names == ["grass", "brick", "snow"]
    assert b.encoder is not None and b.aux is not None and b.info["classifier"] is not None
    z = b.generator.sample_latent(2, resolution=40)  # fully convolutional: any multiple of 8 px
    x = b.generator(z, torch.tensor([0, 2]))
    assert x.shape == (2, 3, 40, 40) and torch.isfinite(x).all()
    cfg = json.loads((out / "export" / "config.json").read_text())
    assert cfg["sngan"]["padding"] == "reflect" and cfg["sngan"]["upsample"] == "bilinear"
    assert cfg["training"]["gan_iterations"] == load_checkpoint(out / "gan.pt")["it"]
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(out / "export" / "generator.safetensors")).values()
               if v.is_floating_point())


def test_pipeline_resumes_and_a_spent_budget_trains_nothing(run_dir):
    out, pack, _ = run_dir
    before = {s: load_checkpoint(out / f"{s}.pt")["it"] for s in ("gan", "encoder", "aux", "judge")}
    res = subprocess.run([sys.executable, "-m", "engine.train.pipeline", "--device", "cpu", "--minutes", "0.15",
                          "--out", str(out), "--data", str(pack), "--threads", "1"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("done already") == 4
    after = {s: load_checkpoint(out / f"{s}.pt")["it"] for s in before}
    assert after == before
    # other classes in the data than the run started with: one clear message
    other = tiny_pack(out.parent / "other.pack", classes=("a", "b", "c"))
    res = subprocess.run([sys.executable, "-m", "engine.train.pipeline", "--device", "cpu", "--minutes", "0.3",
                          "--out", str(out), "--data", str(other)], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert res.returncode != 0 and "use a new --out folder" in res.stderr


def test_warm_start_matches_classes_by_name():
    old = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    m = torch.nn.Module()
    m.gammas = torch.nn.Embedding(3, 2)
    m.w = torch.nn.Linear(2, 2)
    state = {"gammas.weight": old, "w.weight": torch.eye(2), "w.bias": torch.zeros(3)}
    skipped = P.warm_start(m, state, ["a", "b"], ["b", "new", "a"], ("gammas.weight",))
    assert torch.equal(m.gammas.weight.detach(), torch.tensor([[3.0, 3.0], [2.0, 2.0], [1.0, 1.0]]))
    assert torch.equal(m.w.weight.detach(), torch.eye(2)) and skipped == ["w.bias"]  # wrong shape: left fresh


def test_half_moment_checkpoints_resume_in_fp32(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = P.HalfMomentsAdam(net.parameters(), 1e-2)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["exp_avg"].dtype == torch.bfloat16
    torch.save(sd, tmp_path / "o.pt")
    opt2 = P.HalfMomentsAdam(net.parameters(), 1e-2)
    opt2.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
    assert opt2.state[net.weight]["exp_avg"].dtype == torch.float32


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_gpu_run_smoke_on_cpu(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tiny_pack(data / "t.pack")
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(REPO / "engine/train/gpu_run.sh"), str(data), str(out), "--smoke", "--cpu"],
                         capture_output=True, text=True, timeout=170, env={"PATH": "/usr/bin:/bin",
                                                                          "PYTHON": sys.executable})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "it/s" in res.stdout and "torch" in res.stdout
    assert "gan: spectral term x1.0" in res.stdout and " spectral " in res.stdout  # the grid term is on
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files), files
    with tarfile.open(out / "weights.tar") as t:
        names = t.getnames()
    assert "export/generator.safetensors" in names and "export/config.json" in names
    ck = torch.load(out / "gan.pt", weights_only=True)
    assert "opt_g" not in ck and ck["G"]["l1.weight"].dtype == torch.bfloat16  # compacted


def test_gpu_run_needs_a_pack(tmp_path):
    res = subprocess.run(["bash", str(REPO / "engine/train/gpu_run.sh"), str(tmp_path), str(tmp_path / "o"), "--cpu"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no *.pack file" in res.stderr


def test_evaluate_measures_an_export_with_its_judge(run_dir, tmp_path):
    out, pack, _ = run_dir
    res = subprocess.run([sys.executable, "-m", "engine.train.evaluate", "--weights", str(out / "export"), "--data",
                          str(pack), "--swaps", "3", "--per-class", "2", "--out", str(tmp_path / "m.json")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["generated_accuracy"]["per_class"]) == {"grass", "brick", "snow"}
    assert m["label_swap"]["n"] == 3 and m["label_swap"]["mean_abs_change_outside_after_poisson"] == 0.0
    v2 = m["v2"]
    assert set(v2["border_ratio"]) == set(v2["kid"]) == {"grass", "brick", "snow"}
    assert 0.5 < v2["border_ratio_mean"] < 1.5 and v2["peakiness_median_over_classes"] > 0
