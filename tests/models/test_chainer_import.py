"""Import of the official Chainer checkpoints: key/shape tables of the real configs (no weights allocated), and
random checkpoints with Chainer names at reduced width imported, loaded through the registry and checked value by
value, plus a numpy restatement of one official CBN layer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.models import chainer_import as ci
from engine.models import registry


# -- the Chainer side, restated from the official code -----------------------------------------------------------
def _conv(p, cout, cin, k, sn=False):
    d = {f"{p}/W": (cout, cin, k, k), f"{p}/b": (cout,)}
    if sn:
        d[f"{p}/u"] = (1, cout)
    return d


def _cbn(p, c, n):
    return {f"{p}/gammas/W": (n, c), f"{p}/betas/W": (n, c), f"{p}/avg_mean": (c,), f"{p}/avg_var": (c,),
            f"{p}/N": ()}


def _bn(p, c):
    return {f"{p}/gamma": (c,), f"{p}/beta": (c,), f"{p}/avg_mean": (c,), f"{p}/avg_var": (c,), f"{p}/N": ()}


def chainer_generator(ch, mults, n=143, dim_z=128, bw=4):
    """gen_models/resnet_256.py (mults 16,16,8,8,4,2,1) / resnet_small.py (8,8,4,4,2,1) + gen_models/resblocks.py."""
    d = {"l1/W": (bw * bw * ch * mults[0], dim_z), "l1/b": (bw * bw * ch * mults[0],)}
    for i in range(len(mults) - 1):
        cin, cout, p = ch * mults[i], ch * mults[i + 1], f"block{i + 2}"
        d |= _conv(p + "/c1", cout, cin, 3) | _conv(p + "/c2", cout, cout, 3) | _conv(p + "/c_sc", cout, cin, 1)
        d |= _cbn(p + "/b1", cin, n) | _cbn(p + "/b2", cout, n)
    k = len(mults) + 1
    return d | _bn(f"b{k}", ch) | _conv(f"l{k}", 3, ch, 3)


def chainer_discriminator(ch, mults, hidden_out, n=143):
    """dis_models/snresnet_256.py (hidden = out) / snresnet_small.py (hidden = in) + dis_models/resblocks.py."""
    d = _conv("block1/c1", ch * mults[0], 3, 3, True) | _conv("block1/c2", ch * mults[0], ch * mults[0], 3, True)
    d |= _conv("block1/c_sc", ch * mults[0], 3, 1, True)
    for i in range(1, len(mults)):
        cin, cout, p = ch * mults[i - 1], ch * mults[i], f"block{i + 1}"
        hid = cout if hidden_out else cin
        d |= _conv(p + "/c1", hid, cin, 3, True) | _conv(p + "/c2", cout, hid, 3, True)
        if cin != cout or i < len(mults) - 1:
            d |= _conv(p + "/c_sc", cout, cin, 1, True)
    c = ch * mults[-1]
    k = len(mults) + 1
    return d | {f"l{k}/W": (1, c), f"l{k}/b": (1,), f"l{k}/u": (1, 1), "l_y/W": (n, c), "l_y/u": (1, n)}


def chainer_encoder_small(ch, n=143, dim_z=128):
    """enc_models/resnetenc_small.py + enc_models/resblocks.py (hidden = in)."""
    d = _conv("l1", ch, 3, 3)
    for i, (a, b) in enumerate([(1, 2), (2, 4), (4, 4), (4, 8), (8, 8)]):
        cin, cout, p = ch * a, ch * b, f"block{i + 2}"
        d |= _conv(p + "/c1", cin, cin, 3) | _conv(p + "/c2", cout, cin, 3) | _conv(p + "/c_sc", cout, cin, 1)
        d |= _cbn(p + "/b1", cin, n) | _cbn(p + "/b2", cin, n)
    flat = 16 * ch * 8
    return d | _bn("b7", flat) | {"l7/W": (dim_z, flat), "l7/b": (dim_z,), "prelu_out/W": (dim_z,)}


def chainer_encoder_256(ch, dim_z=128):
    """enc_models/resnetenc_256.py with n_classes=0 (plain batch norms)."""
    d = _conv("block1", ch, 3, 3)
    for i, (a, b) in enumerate([(1, 2), (2, 4), (4, 8), (8, 8), (8, 16), (16, 16)]):
        cin, cout, p = ch * a, ch * b, f"block{i + 2}"
        d |= _conv(p + "/c1", cin, cin, 3) | _conv(p + "/c2", cout, cin, 3) | _conv(p + "/c_sc", cout, cin, 1)
        d |= _bn(p + "/b1", cin) | _bn(p + "/b2", cin)
    flat = 16 * ch * 16
    return d | {"l8_enc/W": (dim_z, flat), "l8_enc/b": (dim_z,), "prelu_out/W": (dim_z,)}


def chainer_aux(dim_z=128, a=1000, zeta=10000, b=1000, learned_lr=True):
    """gen_models/resnet_256_auxab.py: the A/B links (the generator links come on top)."""
    d = {"lA1/W": (a, dim_z), "lA1/b": (a,), "lA2/W": (zeta, a), "lA2/b": (zeta,), "lB1/W": (b, zeta),
         "lB1/b": (b,), "lB2/W": (dim_z, b), "lB2/b": (dim_z,), "preluW/W": (dim_z,), "preluMiddleW/W": (zeta,)}
    if learned_lr:
        d["_fast_alpha/W"] = (zeta,)
    return d


def _as_torch(table):
    return {ci.chainer_to_torch_key(k): v for k, v in table.items() if not k.endswith("/N")}


# -- real configs, no weights allocated --------------------------------------------------------------------------
def _real_config(res):
    base = ci.CHAINER_DOGCAT_256 if res == 256 else ci.CHAINER_DOGCAT_128
    return {"generator": base.to_dict(), "discriminator": {"hidden": ci.DIS_HIDDEN[res]},
            "encoder": {"variant": "small", "ch": 64, "dim_z": 128, "n_classes": 143, "bottom_width": 4,
                        "input_size": 128},
            "aux": {"dim_z": 128, "dim_a": 1000, "dim_zeta": 10000, "dim_b": 1000}}


@pytest.mark.parametrize("res", [256, 128])
def test_real_config_key_tables(res):
    exp = ci.expected_layouts(_real_config(res))
    if res == 256:
        g, d = chainer_generator(48, (16, 16, 8, 8, 4, 2, 1)), chainer_discriminator(48, (1, 2, 4, 8, 8, 16, 16), True)
    else:
        g, d = chainer_generator(64, (8, 8, 4, 4, 2, 1)), chainer_discriminator(64, (1, 2, 4, 4, 8, 8), False)
    assert exp["generator"] == _as_torch(g)
    assert exp["discriminator"] == _as_torch(d)
    assert exp["encoder"] == _as_torch(chainer_encoder_small(64))
    aux = chainer_aux(learned_lr=False)
    assert exp["aux"] == _as_torch(aux)
    # hand-checked names
    assert ci.chainer_to_torch_key("block2/b1/gammas/W") == "block2.b1.gammas.weight"
    assert ci.chainer_to_torch_key("block3/c_sc/b") == "block3.c_sc.bias"
    assert ci.chainer_to_torch_key("l_y/u") == "l_y.u"
    assert ci.chainer_to_torch_key("b8/avg_var") == "b8.avg_var"
    assert ci.chainer_to_torch_key("preluMiddleW/W") == "preluMiddleW"
    assert ci.chainer_to_torch_key("prelu_out/W") == "prelu_out.weight"
    assert ci.chainer_to_torch_key("block2/b1/N") is None
    if res == 256:
        assert exp["generator"]["block2.b1.gammas.weight"] == (143, 768)
        n = sum(int(np.prod(s)) for s in exp["generator"].values())
        assert round(n * 4 / 2 ** 20) == 86  # float32 MiB of the 256 px generator


# -- random checkpoints at reduced width -------------------------------------------------------------------------
CH = 2
G_MULTS = (16, 16, 8, 8, 4, 2, 1)
D_MULTS = (1, 2, 4, 8, 8, 16, 16)


def _random(table, rng):
    out = {}
    for k, s in table.items():
        if k.endswith("/N"):
            out[k] = np.array(7, dtype=np.int64)
        elif k.endswith("avg_var"):
            out[k] = rng.uniform(0.5, 2.0, size=s).astype(np.float32)
        else:
            out[k] = rng.standard_normal(s).astype(np.float32) * 0.2
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("chainer")
    gen = _random(chainer_generator(CH, G_MULTS), rng)
    dis = _random(chainer_discriminator(CH, D_MULTS, True), rng)
    enc = _random(chainer_encoder_small(CH), rng)
    aux = _random(chainer_aux(a=8, zeta=16, b=8), rng) | gen  # the aux net carries its (frozen) generator
    np.savez(src / "ResNetGenerator_450000.npz", **gen)
    np.savez_compressed(src / "SNResNetProjectionDiscriminator_450000.npz", **dis)
    np.savez(src / "ResNetEncoder_100000.npz", **enc)
    np.savez(src / "ResNetEncoder_50000.npz", **{k: v[:1] for k, v in enc.items() if v.ndim})  # older: ignored
    np.savez(src / "ResNetAuxABGenerator_75000.npz", **aux)
    return src, {"generator": gen, "discriminator": dis, "encoder": enc, "aux": aux}


@pytest.fixture(scope="module")
def imported(checkpoints, tmp_path_factory):
    src, arrays = checkpoints
    weights = tmp_path_factory.mktemp("weights")
    mp = pytest.MonkeyPatch()
    mp.setenv(registry.ENV_VAR, str(weights))
    result = ci.import_chainer_dir(src)
    yield result, arrays, weights
    mp.undo()


def test_import_writes_the_registry_model(imported):
    result, _, weights = imported
    assert result["name"] == "sngan-dogcat-256"
    assert result["path"] == str(weights / "sngan-dogcat-256")
    assert sorted(result["files"]) == ["aux", "discriminator", "encoder", "generator"]
    assert result["files"]["encoder"]["source"] == "ResNetEncoder_100000.npz"
    assert result["warnings"] == []
    cfg = json.loads((weights / "sngan-dogcat-256" / "config.json").read_text())
    assert cfg["generator"]["gen_mults"] == list(G_MULTS) and cfg["generator"]["dis_mults"] == list(D_MULTS)
    assert cfg["generator"]["ch"] == CH and cfg["discriminator"] == {"hidden": "out"}
    assert cfg["encoder"]["variant"] == "small" and cfg["encoder"]["n_classes"] == 143
    assert cfg["aux"] == {"dim_z": 128, "dim_a": 8, "dim_zeta": 16, "dim_b": 8}
    assert cfg["class_ids"] == list(range(151, 294))
    assert cfg["extras"]["keys"] == ["aux.fast_alpha"]


def test_every_tensor_lands_where_expected(imported):
    _, arrays, weights = imported
    os_env = {registry.ENV_VAR: str(weights)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in os_env.items():
            mp.setenv(k, v)
        assert registry.is_present("sngan-dogcat-256")
        b = registry.load_model("sngan-dogcat-256")
    mods = {"generator": b.generator, "discriminator": b.discriminator, "encoder": b.encoder, "aux": b.aux}
    for comp, m in mods.items():
        sd = m.state_dict()
        n = 0
        for key, arr in arrays[comp].items():
            tkey = ci.chainer_to_torch_key(key)
            if tkey is None or (comp == "aux" and (tkey not in sd)):
                continue  # N counters; the aux file's generator part and fast alpha are elsewhere
            assert np.array_equal(sd[tkey].numpy(), arr), (comp, key)
            n += 1
        assert n == len(sd), comp
    assert b.class_names[0] == "Chihuahua" and b.class_names[207 - 151] == "golden retriever"
    assert b.class_names[-1] == "cheetah" and len(b.class_names) == 143
    assert b.generator.class_names() == b.class_names
    assert b.discriminator.l_y.u.shape == (1, 143)
    assert b.info["encoder_conditional"] is True


def test_generator_matches_numpy_cbn_and_linear(imported):
    _, arrays, weights = imported
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.ENV_VAR, str(weights))
        b = registry.load_model("sngan-dogcat-256")
    g = b.generator
    gen = arrays["generator"]
    seen = {}

    def keep(name):
        def hook(module, inp, out):
            seen[name] = (inp[0], out)  # returns None: the output is left alone
        return hook

    g.block2.b1.register_forward_hook(keep("b1"))
    g.block3.b2.register_forward_hook(keep("b3"))
    z = torch.randn(2, 128, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([5, 120])
    with torch.no_grad():
        img = g(z, y)
    assert img.shape == (2, 3, 256, 256) and img.abs().max() <= 1
    x, out = (t.numpy() for t in seen["b1"])
    # l1: Chainer Linear then reshape to (B, -1, 4, 4)
    h = (z.numpy() @ gen["l1/W"].T + gen["l1/b"]).reshape(2, -1, 4, 4)
    assert np.allclose(x, h, atol=1e-5)
    for name, key in (("b1", "block2/b1"), ("b3", "block3/b2")):
        x, out = (t.numpy() for t in seen[name])
        # Chainer CategoricalConditionalBatchNormalization at test time: fixed_batch_normalization with unit
        # gamma / zero beta and eps 2e-5, then gamma_c * . + beta_c (no "1 +")
        xhat = (x - gen[f"{key}/avg_mean"][None, :, None, None]) / np.sqrt(
            gen[f"{key}/avg_var"][None, :, None, None] + 2e-5)
        ref = gen[f"{key}/gammas/W"][y.numpy()][:, :, None, None] * xhat + gen[f"{key}/betas/W"][y.numpy()][:, :, None,
                                                                                                              None]
        assert np.allclose(out, ref, atol=1e-5), name


def test_encoder_and_aux_run(imported):
    _, _, weights = imported
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.ENV_VAR, str(weights))
        b = registry.load_model("sngan-dogcat-256")
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        z = b.encoder(x, torch.tensor([3]))
        assert z.shape == (1, 128)
        assert torch.equal(b.encoder.encode(x, torch.tensor([3])), z)  # the protocol projection calls
        assert b.aux.B(b.aux.A(z)).shape == (1, 128)
    with pytest.raises(ValueError, match="class-conditional"):
        b.encoder(x)


def test_registry_verify_reports_ok_then_tampering(imported):
    _, _, weights = imported
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.ENV_VAR, str(weights))
        rows = registry.verify(["sngan-dogcat-256"])
        assert [r[2] for r in rows] == ["ok"] * 5
        p = weights / "sngan-dogcat-256" / "encoder.safetensors"
        data = bytearray(p.read_bytes())
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
        rows = {r[1]: r[2] for r in registry.verify(["sngan-dogcat-256"])}
        assert rows["encoder.safetensors"].startswith("sha256 mismatch")
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))


def test_unconditional_256_encoder_variant(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "ResNetGenerator_450000.npz", **_random(chainer_generator(CH, G_MULTS), rng))
    enc = _random(chainer_encoder_256(CH), rng)
    np.savez(src / "ResNetEncoder_10.npz", **enc)
    res = ci.import_chainer_dir(src, tmp_path / "out")
    assert res["encoder"] == {"variant": "256", "ch": CH, "dim_z": 128, "n_classes": 0, "bottom_width": 4,
                              "input_size": 256}
    _, mods = ci.load_imported_dir(tmp_path / "out")
    e = mods["encoder"]
    assert np.array_equal(e.l8_enc.weight.detach().numpy(), enc["l8_enc/W"])
    assert np.array_equal(e.block4.b2.avg_var.numpy(), enc["block4/b2/avg_var"])
    with torch.no_grad():
        assert e(torch.zeros(2, 3, 256, 256)).shape == (2, 128)
        assert e(torch.zeros(1, 3, 100, 100)).shape == (1, 128)  # resized to the input size first


# -- failures ----------------------------------------------------------------------------------------------------
def _write(tmp_path, gen):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    np.savez(src / "ResNetGenerator_450000.npz", **gen)
    return src


def test_unmapped_missing_and_misshaped_keys_fail_loudly(tmp_path):
    rng = np.random.default_rng(1)
    gen = _random(chainer_generator(CH, G_MULTS), rng)
    bad = dict(gen)
    bad["block2/extra/W"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ci.ChainerImportError, match=r"unmapped key\(s\): block2/extra/W"):
        ci.import_chainer_dir(_write(tmp_path, bad), tmp_path / "out")
    bad = dict(gen)
    del bad["block4/b2/betas/W"]
    with pytest.raises(ci.ChainerImportError, match=r"missing key\(s\): block4/b2/betas/W"):
        ci.import_chainer_dir(_write(tmp_path, bad), tmp_path / "out")
    bad = dict(gen)
    bad["block3/c2/b"] = np.zeros(5, np.float32)
    with pytest.raises(ci.ChainerImportError, match="block3/c2/b: checkpoint"):
        ci.import_chainer_dir(_write(tmp_path, bad), tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()
    (tmp_path / "src" / "ResNetGenerator_450000.npz").write_bytes(b"truncated download")
    with pytest.raises(ci.ChainerImportError, match="not a readable .npz"):
        ci.import_chainer_dir(tmp_path / "src", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        ci.import_chainer_dir(tmp_path / "nothing-here")


def test_128_variant_with_input_width_discriminator_blocks(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "ResNetGenerator_450000.npz", **_random(chainer_generator(CH, (8, 8, 4, 4, 2, 1)), rng))
    dis = _random(chainer_discriminator(CH, (1, 2, 4, 4, 8, 8), False), rng)
    np.savez(src / "SNResNetProjectionDiscriminator_450000.npz", **dis)
    res = ci.import_chainer_dir(src, tmp_path / "out")
    assert res["name"] == "sngan-dogcat-128" and res["discriminator"] == {"hidden": "in"}
    _, mods = ci.load_imported_dir(tmp_path / "out")
    assert np.array_equal(mods["discriminator"].block3.c1.weight.detach().numpy(), dis["block3/c1/W"])
    with torch.no_grad():
        img = mods["generator"](torch.zeros(1, 128), torch.tensor([0]))
        assert img.shape == (1, 3, 128, 128)
        assert mods["discriminator"](img, torch.tensor([0])).shape == (1,)


def test_aux_only_import_takes_the_generator_from_the_aux_file(tmp_path, checkpoints):
    _, arrays = checkpoints
    src = tmp_path / "src"
    src.mkdir()
    aux = dict(arrays["aux"])
    np.savez(src / "ResNetAuxABGenerator_75000.npz", **aux)
    res = ci.import_chainer_dir(src, tmp_path / "out")
    assert sorted(res["files"]) == ["aux", "generator"]
    _, mods = ci.load_imported_dir(tmp_path / "out")
    assert np.array_equal(mods["generator"].l1.weight.detach().numpy(), aux["l1/W"])
    # and a generator file that disagrees with the aux file's copy is reported
    gen = {k: v.copy() for k, v in arrays["generator"].items()}
    gen["l1/b"] += 1
    np.savez(src / "ResNetGenerator_450000.npz", **gen)
    res = ci.import_chainer_dir(src, tmp_path / "out")
    assert len(res["warnings"]) == 1 and "l1/b" in res["warnings"][0]
