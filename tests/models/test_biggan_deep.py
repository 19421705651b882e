"""BigGAN-deep: state_dict layout of the real pytorch-pretrained-biggan models, strict loading of a checkpoint in the
package's format, numerical parity with the package's forward, and the collage operations.

The key/shape fixture ``fixtures/biggan_deep_128_keys.json`` was produced by ``package_state_dict_layout`` below,
which restates, independently of engine.models.biggan_deep, how ``pytorch_pretrained_biggan/model.py`` builds its
state_dict (module names, spectral_norm's weight_orig/weight_u/weight_v, the attention layer inserted before
GenBlock ``attention_layer_position``, per-truncation batch-norm statistics).  Regenerate it with
``python3 tests/models/test_biggan_deep.py``.  As a cross-check, the totals it implies match the package README:
50.4M parameters and a 201 MB float32 dump for biggan-deep-128.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from engine.blend.feature import Reference, feature_blend
from engine.collage.label import label_swap
from engine.models.biggan_deep import (
    BIGGAN_DEEP_128,
    BIGGAN_DEEP_256,
    BIGGAN_DEEP_512,
    BigGANDeep,
    BigGANDeepConfig,
)
from engine.sites.scbn import Region

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "biggan_deep_128_keys.json")

# a small config with every feature of the real ones (halving and non-halving blocks, up-sampling and not,
# attention) at 32 px: 4 -> 8 -> 8 -> 16 -> 32
SMALL = BigGANDeepConfig(output_dim=32, channel_width=4, num_classes=7,
                         layers=[(True, 16, 8), (False, 8, 4), (True, 4, 2), (True, 2, 1)],
                         attention_layer_position=2)


def package_state_dict_layout(cfg: dict) -> OrderedDict[str, list[int]]:
    """key -> shape of ``pytorch_pretrained_biggan.BigGAN(config).state_dict()``, in the package's order."""
    ch, zd, ns, nc = cfg["channel_width"], cfg["z_dim"], cfg["n_stats"], cfg["num_classes"]
    cond = 2 * zd
    out: OrderedDict[str, list[int]] = OrderedDict()

    def sn(prefix, shape, bias):  # nn.utils.spectral_norm(nn.Linear / nn.Conv2d)
        if bias:
            out[prefix + ".bias"] = [shape[0]]
        out[prefix + ".weight_orig"] = list(shape)
        out[prefix + ".weight_u"] = [shape[0]]
        out[prefix + ".weight_v"] = [math.prod(shape[1:])]

    def cbn(prefix, n):  # BigGANBatchNorm(conditional=True): buffers, then scale/offset SN linears (no bias)
        out[prefix + ".running_means"] = [ns, n]
        out[prefix + ".running_vars"] = [ns, n]
        sn(prefix + ".scale", [n, cond], False)
        sn(prefix + ".offset", [n, cond], False)

    out["embeddings.weight"] = [zd, nc]
    sn("generator.gen_z", [4 * 4 * 16 * ch, cond], True)
    idx = 0
    for i, (_up, a, b) in enumerate(cfg["layers"]):
        if i == cfg["attention_layer_position"]:
            c = ch * a
            p = f"generator.layers.{idx}"
            out[p + ".gamma"] = [1]
            sn(p + ".snconv1x1_theta", [c // 8, c, 1, 1], False)
            sn(p + ".snconv1x1_phi", [c // 8, c, 1, 1], False)
            sn(p + ".snconv1x1_g", [c // 2, c, 1, 1], False)
            sn(p + ".snconv1x1_o_conv", [c, c // 2, 1, 1], False)
            idx += 1
        p = f"generator.layers.{idx}"
        cin, cout = ch * a, ch * b
        mid = cin // 4
        cbn(p + ".bn_0", cin)
        sn(p + ".conv_0", [mid, cin, 1, 1], True)
        cbn(p + ".bn_1", mid)
        sn(p + ".conv_1", [mid, mid, 3, 3], True)
        cbn(p + ".bn_2", mid)
        sn(p + ".conv_2", [mid, mid, 3, 3], True)
        cbn(p + ".bn_3", mid)
        sn(p + ".conv_3", [cout, mid, 1, 1], True)
        idx += 1
    out["generator.bn.weight"] = [ch]
    out["generator.bn.bias"] = [ch]
    out["generator.bn.running_means"] = [ns, ch]
    out["generator.bn.running_vars"] = [ns, ch]
    sn("generator.conv_to_rgb", [ch, ch, 3, 3], True)
    return out


def _layout(model) -> dict:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _meta(cfg):
    with torch.device("meta"):
        return BigGANDeep(cfg)


# -- the real architectures ------------------------------------------------------------------------------------
def test_biggan_deep_128_state_dict_matches_the_package_fixture():
    with open(FIXTURE) as f:
        fx = json.load(f)
    assert fx["config"] == BIGGAN_DEEP_128.to_dict()
    assert package_state_dict_layout(fx["config"]) == fx["keys"]  # the fixture is what the derivation gives
    assert _layout(_meta(BIGGAN_DEEP_128)) == fx["keys"]
    n_params = sum(math.prod(s) for k, s in fx["keys"].items()
                   if not k.endswith(("weight_u", "weight_v", "running_means", "running_vars")))
    n_all = sum(math.prod(s) for s in fx["keys"].values())
    assert round(n_params / 1e6, 1) == 50.4  # README: "a 50.4M parameters model"
    assert round(n_all * 4 / 2 ** 20) == 201  # README: "the model dump weights 201 MB"


@pytest.mark.parametrize("cfg, params, mb", [(BIGGAN_DEEP_256, 55.9, 224), (BIGGAN_DEEP_512, 56.2, 225)])
def test_biggan_deep_256_512_layout(cfg, params, mb):
    m = _meta(cfg)
    assert _layout(m) == dict(package_state_dict_layout(cfg.to_dict()))
    assert round(sum(p.numel() for p in m.parameters()) / 1e6, 1) == params
    # README: "the model dump weights 224/225 MB" (float32 tensors; the README rounds up)
    assert abs(sum(t.numel() for t in m.state_dict().values()) * 4 / 2 ** 20 - mb) < 1.0


def test_sites_of_the_real_128_model():
    m = _meta(BIGGAN_DEEP_128)
    ns, bs = m.norm_sites(), m.blend_sites()
    assert len(ns) == 1 + 4 * 10 and len(bs) == 1 + 10
    assert [s.index for s in ns] == list(range(len(ns)))
    assert ns[0].name == "generator.gen_z" and ns[0].layer == 0
    assert {s.layer for s in ns} == set(range(11))
    assert bs[0].stride == 32 and bs[-1].stride == 1
    assert bs[9].name == "generator.layers.9"  # GenBlock 8 sits after the attention layer
    assert m.latent_shape() == (128,)


# -- checkpoint in the package's format -------------------------------------------------------------------------
def _random_model(cfg=SMALL, seed=0) -> BigGANDeep:
    torch.manual_seed(seed)
    m = BigGANDeep(cfg)
    with torch.no_grad():  # non-trivial statistics and embeddings, like a trained model
        for name, t in m.state_dict().items():
            if name.endswith("running_means"):
                t.normal_(0, 0.1)
            elif name.endswith("running_vars"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("gamma"):
                t.fill_(0.3)
        m.embeddings.weight.normal_()
    return m.eval()


def _save_package_format(model: BigGANDeep, folder, legacy: bool = True) -> None:
    """What convert_tf_to_pytorch.py writes: config.json + torch.save(model.state_dict()) (PyTorch 1.0: the
    legacy, non-zip serialisation, with spectral_norm's version metadata)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(model.config.to_json_string())
    sd = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    sd._metadata = OrderedDict([("generator.gen_z", {"version": 1, "spectral_norm": {"weight.version": 1}})])
    torch.save(sd, os.path.join(folder, "pytorch_model.bin"), _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [True, False])
def test_strict_load_of_package_checkpoint(tmp_path, legacy):
    src = _random_model()
    _save_package_format(src, tmp_path / "m", legacy=legacy)
    m = BigGANDeep.from_pretrained_dir(tmp_path / "m")
    assert not m.training
    for k, v in src.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    z = src.sample_latent(2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 5])
    with torch.no_grad():
        assert torch.allclose(m(z, y), src(z, y), atol=1e-6)


def test_strict_load_rejects_a_missing_key(tmp_path):
    src = _random_model()
    _save_package_format(src, tmp_path / "m", legacy=False)
    sd = torch.load(tmp_path / "m" / "pytorch_model.bin", weights_only=True)
    del sd["generator.conv_to_rgb.weight_v"]
    torch.save(sd, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(RuntimeError, match="weight_v"):
        BigGANDeep.from_pretrained_dir(tmp_path / "m")


def package_forward(sd, cfg: BigGANDeepConfig, z, class_vector, truncation):
    """The package's BigGAN.forward restated functionally from its source (one-hot matmul, SN in eval mode with
    the stored u and v, per-truncation statistics with the package's interpolation)."""
    ns = cfg.n_stats
    eps = cfg.eps

    def w(p):
        wo = sd[p + ".weight_orig"]
        sigma = torch.dot(sd[p + ".weight_u"], torch.mv(wo.reshape(wo.shape[0], -1), sd[p + ".weight_v"]))
        return wo / sigma

    def stats(p):
        coef, i = math.modf(truncation / (1.0 / (ns - 1)))
        i = int(i)
        m, v = sd[p + ".running_means"], sd[p + ".running_vars"]
        if coef != 0.0:
            return m[i] * coef + m[i + 1] * (1 - coef), v[i] * coef + v[i + 1] * (1 - coef)
        return m[i], v[i]

    def cbn(p, x, cond):
        m, v = stats(p)
        weight = 1 + F.linear(cond, w(p + ".scale"))
        bias = F.linear(cond, w(p + ".offset"))
        return (x - m[None, :, None, None]) / torch.sqrt(v[None, :, None, None] + eps) * weight[:, :, None, None] \
            + bias[:, :, None, None]

    def conv(p, x, pad=0):
        return F.conv2d(x, w(p), sd.get(p + ".bias"), padding=pad)

    embed = F.linear(class_vector, sd["embeddings.weight"])
    cond = torch.cat([z, embed], dim=1)
    ch = cfg.channel_width
    h = F.linear(cond, w("generator.gen_z"), sd["generator.gen_z.bias"])
    h = h.view(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)
    idx = 0
    for i, (up, a, b) in enumerate(cfg.layers):
        if i == cfg.attention_layer_position:
            p = f"generator.layers.{idx}"
            _, c, hh, ww = h.shape
            theta = conv(p + ".snconv1x1_theta", h).view(-1, c // 8, hh * ww)
            phi = F.max_pool2d(conv(p + ".snconv1x1_phi", h), 2).view(-1, c // 8, hh * ww // 4)
            attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
            g = F.max_pool2d(conv(p + ".snconv1x1_g", h), 2).view(-1, c // 2, hh * ww // 4)
            o = conv(p + ".snconv1x1_o_conv", torch.bmm(g, attn.permute(0, 2, 1)).view(-1, c // 2, hh, ww))
            h = h + sd[p + ".gamma"] * o
            idx += 1
        p = f"generator.layers.{idx}"
        x0 = h
        x = conv(p + ".conv_0", torch.relu(cbn(p + ".bn_0", h, cond)))
        x = torch.relu(cbn(p + ".bn_1", x, cond))
        if up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = conv(p + ".conv_1", x, 1)
        x = conv(p + ".conv_2", torch.relu(cbn(p + ".bn_2", x, cond)), 1)
        x = conv(p + ".conv_3", torch.relu(cbn(p + ".bn_3", x, cond)))
        if a != b:
            x0 = x0[:, :x0.shape[1] // 2]
        if up:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        h = x + x0
        idx += 1
    m, v = stats("generator.bn")
    h = F.batch_norm(h, m, v, sd["generator.bn.weight"], sd["generator.bn.bias"], False, 0.0, eps)
    h = conv("generator.conv_to_rgb", torch.relu(h), 1)
    return torch.tanh(h[:, :3])


@pytest.mark.parametrize("truncation", [1.0, 0.4, 0.33])
def test_forward_matches_the_package_semantics(truncation):
    m = _random_model()
    m.truncation = truncation
    sd = m.state_dict()
    z = m.sample_latent(3, generator=torch.Generator().manual_seed(2), truncation=truncation)
    y = torch.tensor([0, 3, 6])
    with torch.no_grad():
        ours = m(z, y)
        ref = package_forward(sd, SMALL, z, F.one_hot(y, SMALL.num_classes).float(), truncation)
    assert ours.shape == (3, 3, 32, 32)
    assert (ours - ref).abs().max() <= 1e-5


def test_truncation_selects_statistics_and_latents():
    m = _random_model()
    z = m.sample_latent(2, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1, 2])
    with torch.no_grad():
        a = m(z, y)
        m.truncation = 0.5
        b = m(z, y)
    assert (a - b).abs().max() > 1e-4
    assert m.generator.layers[0].bn_2.truncation == 0.5 and m.generator.bn.truncation == 0.5
    zt = m.sample_latent(500, generator=torch.Generator().manual_seed(0))
    assert zt.abs().max() <= 2 * 0.5 + 1e-6 and zt.abs().max() > 0.9
    with pytest.raises(ValueError):
        m.truncation = 0.0


def test_spectral_norm_training_mode_updates_u_and_v_like_torch():
    m = _random_model()
    lin = m.generator.gen_z
    u0 = lin.weight_u.clone()
    lin.eval()
    lin.sn_weight()
    assert torch.equal(lin.weight_u, u0)  # eval: no power iteration
    lin.train()
    with torch.no_grad():
        lin.weight_u.copy_(F.normalize(torch.randn_like(u0), dim=0))
        wm = lin.weight_orig.reshape(lin.weight_orig.shape[0], -1)
        v = F.normalize(torch.mv(wm.t(), lin.weight_u), dim=0, eps=lin.eps)
        u = F.normalize(torch.mv(wm, v), dim=0, eps=lin.eps)
        w = lin.sn_weight()
    assert torch.allclose(lin.weight_u, u) and torch.allclose(lin.weight_v, v)
    assert torch.allclose(w, lin.weight_orig / torch.dot(u, torch.mv(wm, v)))


# -- collage ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def G():
    return _random_model(seed=4)


@pytest.fixture(scope="module")
def zz(G):
    return G.sample_latent(2, generator=torch.Generator().manual_seed(5))


def _half_mask():
    m = torch.zeros(32, 32)
    m[:, 16:] = 1.0
    return m


def test_scbn_with_the_base_class_everywhere_is_the_plain_forward(G, zz):
    with torch.no_grad():
        plain = G(zz, torch.tensor([2, 2]))
    out = label_swap(G, zz, 2, [Region(2, _half_mask())])
    assert (out - plain).abs().max() <= 1e-5


def test_scbn_full_mask_of_class_b_is_the_plain_forward_of_b(G, zz):
    with torch.no_grad():
        plain_b = G(zz, torch.tensor([5, 5]))
    out = label_swap(G, zz, 2, [Region(5, torch.ones(32, 32))])
    assert (out - plain_b).abs().max() <= 1e-5


def test_scbn_half_mask_changes_only_plausibly(G, zz):
    with torch.no_grad():
        a, b = G(zz, torch.tensor([2, 2])), G(zz, torch.tensor([5, 5]))
    out = label_swap(G, zz, 2, [Region(5, _half_mask())])
    assert (out - a).abs().max() > 1e-3 and (out - b).abs().max() > 1e-3
    # the right half is closer to class 5, the left half to class 2
    assert (out[..., 16:] - b[..., 16:]).abs().mean() < (out[..., 16:] - a[..., 16:]).abs().mean()
    assert (out[..., :16] - a[..., :16]).abs().mean() < (out[..., :16] - b[..., :16]).abs().mean()
    # layer selection "rest" leaves gen_z (layer 0) at the base class
    rest = label_swap(G, zz, 2, [Region(5, torch.ones(32, 32))], layers="rest")
    assert (rest - b).abs().max() > 1e-4


def test_feature_blend_zero_masks_is_the_base(G, zz):
    z2 = G.sample_latent(1, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        base = G(zz, torch.tensor([1, 1]))
    out = feature_blend(G, zz, 1, [Reference(z2, 4, torch.zeros(32, 32))])
    assert (out - base).abs().max() <= 1e-5


def test_feature_blend_full_masks_at_every_site_is_the_reference(G, zz):
    z2 = G.sample_latent(1, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = G(z2.expand_as(zz), torch.tensor([4, 4]))
    out = feature_blend(G, zz, 1, [Reference(z2, 4, torch.ones(32, 32))], layers="all")
    assert (out - ref).abs().max() <= 1e-5


def write_fixture() -> None:  # pragma: no cover - run by hand
    cfg = BIGGAN_DEEP_128.to_dict()
    data = {
        "about": "key -> shape of pytorch_pretrained_biggan.BigGAN(biggan-deep-128 config).state_dict(), derived by "
                 "package_state_dict_layout() in tests/models/test_biggan_deep.py from the package's model.py",
        "config": cfg,
        "keys": package_state_dict_layout(cfg),
    }
    text = json.dumps(data, indent=1)
    # one "key": [shape] per line
    text = re.sub(r"\[\s+([^\[\]]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    with open(FIXTURE, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":  # pragma: no cover
    write_fixture()


def test_latent_bound_covers_sampled_latents():
    """Projection clips z to latent_bound(t): BigGAN samples t x N(0,1) truncated to [-2, 2], so 2t."""
    from engine.models.biggan_deep import BIGGAN_DEEP_128, BigGANDeep
    import torch

    with torch.device("meta"):
        g = BigGANDeep(BIGGAN_DEEP_128)
    assert g.latent_bound(0.4) == pytest.approx(0.8)
