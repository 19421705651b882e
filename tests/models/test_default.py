"""The shipped default model: loads through the registry, is recognisable as the model card states, and
works with no network."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models.default import WEIGHTS_DIR
from engine.models.registry import list_models
from engine.train.evaluate import generated_accuracy

REPO = Path(__file__).resolve().parents[2]
MARGIN = 0.10  # accuracy on other seeds may differ from the card's figure by sampling noise (20 per class)


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return default_bundle


@pytest.fixture(scope="module")
def card():
    return json.loads((WEIGHTS_DIR / "metrics.json").read_text())


def test_weights_are_small_and_complete():
    files = {p.name for p in WEIGHTS_DIR.iterdir()}
    for name in ("generator", "discriminator", "encoder", "aux", "classifier"):
        assert f"{name}.safetensors" in files
    assert {"config.json", "MODEL_CARD.md", "metrics.json"} <= files
    assert sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir()) < 25e6


def test_registry_lists_and_loads_default(bundle):
    row = next(r for r in list_models() if r["name"] == "default")
    assert row["present"]
    assert bundle.num_classes == 16 and bundle.resolution == 64
    assert bundle.class_names[:3] == ["grass", "gravel", "rock"]  # v1's 11 first, in v1's order
    assert bundle.class_names[11:] == ["asphalt", "paving", "tiles", "foliage", "forest_floor"]
    assert bundle.discriminator is not None and bundle.encoder is not None and bundle.aux is not None


def test_samples_are_recognised_as_the_card_states(bundle, card):
    stated = card["generated_accuracy"]["mean"]
    again = generated_accuracy(bundle, bundle.info["classifier"], per_class=50, seed=0)["mean"]
    assert abs(again - stated) <= 0.01  # same seeds as the card: the same figure
    other = generated_accuracy(bundle, bundle.info["classifier"], per_class=20, seed=123)["mean"]
    assert other >= stated - MARGIN


def test_model_card_states_the_measured_figures(card):
    text = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    assert f"{card['generated_accuracy']['mean'] * 100:.1f}%" in text
    assert f"{card['label_swap']['success'] * 100:.1f}%" in text


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is needed to cut the network")
def test_generate_works_with_no_network(tmp_path):
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    out = tmp_path / "g.png"
    res = subprocess.run(["unshare", "-n", sys.executable, "-m", "engine.cli", "generate", "--model", "default",
                          "--class", "gravel", "--seed", "2", "-o", str(out)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    assert Image.open(out).size == (64, 64)


def test_projection_step_sizes_follow_the_config(bundle):
    """config.json's projection_lr (written by engine/train/tune_projection.py) reaches the Projector, and the
    card states the step sizes in use; without it, the official ones."""
    from engine.project.projector import OFFICIAL_LR, Projector

    meta = json.loads((WEIGHTS_DIR / "config.json").read_text())
    lr = {**OFFICIAL_LR, **meta.get("projection_lr", {})}
    p = Projector(bundle)
    assert (p.learning_rate("z"), p.learning_rate("zeta")) == (lr["z"], lr["zeta"])
    text = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    if "projection_lr" in meta:
        assert f"z {lr['z']:g}, zeta {lr['zeta']:g}" in text
    else:
        assert "the official 0.075 (z) and 0.015 (zeta)" in text


def test_model_card_states_the_projection_benchmark():
    rows = json.loads((WEIGHTS_DIR / "projection_metrics.json").read_text())
    text = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    assert "official" in {r["step_sizes"] for r in rows} <= {"model", "official"}
    for r in rows:
        assert f"| {r['step_sizes']} | {r['start']} | {r['space']} | {r['lr']:g} | {r['loss']:.4f} |" in text
