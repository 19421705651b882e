"""Weights registry: folders, listing, missing-weights messages, downloads from a local HTTP server (resume after an
interruption, servers that ignore ranges, checksum mismatch), verification, loading, and the CLI helpers."""
from __future__ import annotations

import hashlib
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.models import registry
from engine.models.biggan_deep import BigGANDeep, BigGANDeepConfig

pytestmark = pytest.mark.usefixtures("tmp_weights")

TINY = BigGANDeepConfig(output_dim=16, channel_width=2, num_classes=1000, layers=[(True, 16, 4), (True, 4, 1)],
                        attention_layer_position=1)




# -- the registry ------------------------------------------------------------------------------------------------
def test_list_models_and_missing_messages(tmp_path):
    models = {m["name"]: m for m in registry.list_models()}
    assert {"default", "biggan-deep-128", "biggan-deep-256", "biggan-deep-512", "sngan-dogcat-256",
            "sngan-dogcat-128"} <= set(models)
    m = models["biggan-deep-256"]
    assert m["family"] == "biggan-deep" and m["resolution"] == 256 and m["classes"] == 1000
    assert m["present"] is False and m["path"] == str(tmp_path / "weights" / "biggan-deep-256")
    assert models["sngan-dogcat-256"]["classes"] == 143
    for f in registry.REGISTRY["biggan-deep-512"].files:
        assert f.url.startswith("https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-512-")
    with pytest.raises(registry.MissingWeights) as e:
        registry.load_model("biggan-deep-128")
    msg = str(e.value)
    assert "\n" not in msg and "neural-collage weights download biggan-deep-128" in msg
    assert "biggan-deep-128-pytorch_model.bin" in msg and str(tmp_path / "weights" / "biggan-deep-128") in msg
    with pytest.raises(registry.MissingWeights) as e:
        registry.load_model("sngan-dogcat-256")
    msg = str(e.value)
    assert "\n" not in msg and "neural-collage weights import-chainer" in msg
    assert "ResNetGenerator_450000.npz" in msg and "drive.google.com" in msg
    with pytest.raises(registry.MissingWeights, match="cannot be downloaded automatically"):
        registry.download("sngan-dogcat-256")
    with pytest.raises(ValueError, match="unknown model"):
        registry.load_model("nope")


def test_default_model_is_loaded_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("engine.models.default")
    fake.load_default = lambda device: calls.append(device) or "bundle"
    monkeypatch.setitem(sys.modules, "engine.models.default", fake)
    assert registry.load_model("default", "cpu") == "bundle" and calls == ["cpu"]


def _biggan_files(tmp_path) -> dict[str, bytes]:
    torch.manual_seed(0)
    g = BigGANDeep(TINY).eval()
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(TINY.to_json_string())
    torch.save(g.state_dict(), src / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    return {"config.json": (src / "config.json").read_bytes(),
            "pytorch_model.bin": (src / "pytorch_model.bin").read_bytes()}, g


def test_download_verify_and_load_biggan(server, tmp_path, monkeypatch, capsys):
    files, ref = _biggan_files(tmp_path)
    for name, data in files.items():
        server.files[f"/biggan-deep-128-{name}"] = data
    entry = registry.REGISTRY["biggan-deep-128"]
    shas = {"config.json": hashlib.sha256(files["config.json"]).hexdigest(), "pytorch_model.bin": None}
    patched = replace(entry, resolution=TINY.output_dim, files=tuple(registry.RemoteFile(f.filename, server.url(f"/biggan-deep-128-{f.filename}"),
                                                             shas[f.filename]) for f in entry.files))
    monkeypatch.setitem(registry.REGISTRY, "biggan-deep-128", patched)
    server.truncate_next = 1
    assert registry.cmd_weights_download("biggan-deep-128") == 0
    d = tmp_path / "weights" / "biggan-deep-128"
    assert (d / "pytorch_model.bin").read_bytes() == files["pytorch_model.bin"]
    assert registry.is_present("biggan-deep-128")
    assert registry.verify() == [("biggan-deep-128", "config.json", "ok"), ("biggan-deep-128", "pytorch_model.bin",
                                                                            "ok")]
    assert registry.cmd_weights_verify() == 0
    b = registry.load_model("biggan-deep-128")
    assert b.discriminator is None and b.encoder is None and b.aux is None
    assert b.truncation == registry.BIGGAN_DEFAULT_TRUNCATION == b.generator.truncation
    assert b.class_names[207] == "golden retriever" and b.generator.class_names()[291] == "lion"
    z = b.generator.sample_latent(1, generator=torch.Generator().manual_seed(0))
    ref.truncation = b.truncation
    with torch.no_grad():
        assert torch.allclose(b.generator(z, torch.tensor([3])), ref(z, torch.tensor([3])), atol=1e-6)
    # a checkpoint of the wrong architecture is reported by verify
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    sd.pop("generator.bn.bias")
    torch.save(sd, d / "pytorch_model.bin")
    rows = registry.verify(["biggan-deep-128"])
    assert rows[1][2].startswith("1 missing key(s) e.g. generator.bn.bias")
    assert registry.cmd_weights_verify() == 1
    assert "missing key" in capsys.readouterr().out


def test_cli_helpers(tmp_path, capsys):
    assert registry.cmd_weights_list() == 0
    out = capsys.readouterr().out
    assert "biggan-deep-512" in out and "missing" in out and str(tmp_path / "weights") in out
    assert registry.cmd_weights_verify() == 0
    assert "no downloaded or imported weights" in capsys.readouterr().out
    assert registry.cmd_weights_download("nope") == 1
    assert registry.cmd_weights_download("sngan-dogcat-256") == 1
    assert "import-chainer" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert registry.cmd_weights_import_chainer(empty) == 1
    assert "no ResNetGenerator" in capsys.readouterr().err
    partial = Path(tmp_path / "weights" / "sngan-dogcat-256")
    partial.mkdir(parents=True)
    (partial / "generator.safetensors").write_bytes(b"x")
    rows = registry.verify()
    assert rows == [("sngan-dogcat-256", "config.json", rows[0][2])] and rows[0][2].startswith("missing;")
