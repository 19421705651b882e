"""Architecture of engine.models.sngan (the paper's SNGAN family) at reduced channel width: output and feature
shapes of the 128/256 px configs, collage sites, the spatial-latent layout, and the Chainer semantics of its layers."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.blend.feature import Reference, feature_blend
from engine.collage.label import label_swap
from engine.models.chainer_import import CHAINER_DOGCAT_128
from engine.models.sngan import (
    SNGAN_DOGCAT_128,
    SNGAN_DOGCAT_256,
    SNGANConfig,
    ResNetGenerator,
    SNResNetProjectionDiscriminator,
)
from engine.sites.scbn import Region


def _small(cfg, ch=2, n_classes=5):
    return replace(cfg, ch=ch, n_classes=n_classes)


def _randomize_stats(m):
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if name.endswith("avg_mean"):
                t.normal_(0, 0.1)
            elif name.endswith("avg_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith(("gammas.weight", "betas.weight")):
                t.add_(torch.randn_like(t) * 0.3)
    return m.eval()


@pytest.mark.parametrize("cfg, n_blocks", [(SNGAN_DOGCAT_256, 6), (SNGAN_DOGCAT_128, 5), (CHAINER_DOGCAT_128, 5)])
def test_generator_shapes_and_sites(cfg, n_blocks):
    torch.manual_seed(0)
    g = _randomize_stats(ResNetGenerator(_small(cfg)))
    r = cfg.resolution
    assert g.n_blocks == n_blocks and g.latent_shape() == (128,)
    with torch.no_grad():
        out = g(torch.randn(2, 128), torch.tensor([0, 4]))
    assert out.shape == (2, 3, r, r) and out.abs().max() <= 1
    ns, bs = g.norm_sites(), g.blend_sites()
    assert [s.index for s in ns] == list(range(2 * n_blocks))
    assert [s.layer for s in ns] == [i // 2 for i in range(2 * n_blocks)]
    assert ns[0].stride == r // 4 and ns[1].stride == r // 8 and ns[-1].stride == 1
    assert [s.stride for s in bs] == [r // 4 // 2 ** i for i in range(n_blocks + 1)]
    assert bs[0].name == "l1" and bs[-1].name == f"block{n_blocks + 1}"
    # block channel widths follow the config's multiples
    for i, blk in enumerate(g.blocks()):
        assert blk.c1.in_channels == 2 * cfg.gen_mults[i] and blk.c2.out_channels == 2 * cfg.gen_mults[i + 1]
    with pytest.raises(ValueError):
        g.latent_shape(r * 2)


@pytest.mark.parametrize("cfg", [SNGAN_DOGCAT_256, SNGAN_DOGCAT_128])
def test_discriminator_shapes(cfg):
    torch.manual_seed(0)
    d = SNResNetProjectionDiscriminator(_small(cfg)).eval()
    r = cfg.resolution
    x = torch.rand(2, 3, r, r) * 2 - 1
    with torch.no_grad():
        f = d.features(x)
        assert f.shape == (2, 2 * cfg.dis_mults[-1], r // 2 ** (len(cfg.dis_mults) - 1), r // 2 ** (len(cfg.dis_mults)
                                                                                                      - 1))
        assert f.min() >= 0  # relu'd, as Chainer's feature_vector
        assert d.feature_vector(x).shape == (2, f[0].numel())
        out_y = d(x, torch.tensor([1, 3]))
        out = d(x)
    assert out_y.shape == (2,) and out.shape == (2,)
    # projection term: <embed(y), sum_hw h>
    h = f.sum(dim=(2, 3))
    assert torch.allclose(out_y - out, (d.l_y.sn_weight()[torch.tensor([1, 3])] * h).sum(1), atol=1e-4)
    # class_scores (what projection ranks classes by) is that term for every class
    with torch.no_grad():
        scores = d.class_scores(x)
    assert scores.shape == (2, d.cfg.n_classes)
    assert torch.allclose(scores[torch.arange(2), torch.tensor([1, 3])], out_y - out, atol=1e-4)
    # the last block keeps the resolution and, with equal widths, has no shortcut conv
    last = getattr(d, f"block{d.n_blocks}")
    assert not last.downsample and not hasattr(last, "c_sc")


def test_spatial_latent_renders_any_multiple_of_the_stride():
    cfg = replace(SNGAN_DOGCAT_128, ch=2, n_classes=3, latent="spatial", z_channels=4, gen_mults=(4, 2, 1, 1))
    g = ResNetGenerator(cfg).eval()
    assert g.latent_shape(64) == (4, 8, 8)
    with torch.no_grad():
        assert g(torch.randn(1, 4, 8, 8), torch.tensor([1])).shape == (1, 3, 64, 64)
        assert g(torch.randn(1, 4, 5, 7), torch.tensor([1])).shape == (1, 3, 40, 56)
    with pytest.raises(ValueError):
        g.latent_shape(60)


def test_cbn_is_chainers_formula_and_upsampling_is_nearest():
    torch.manual_seed(1)
    g = _randomize_stats(ResNetGenerator(_small(SNGAN_DOGCAT_256)))
    blk, bn = g.block2, g.block2.b1
    seen = {}
    bn.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o) and None)
    labels = torch.tensor([2, 3])
    with torch.no_grad():
        g(torch.randn(2, 128), labels)
    x = seen["x"]
    ref = bn.gammas.weight[labels][:, :, None, None] * (x - bn.avg_mean[None, :, None, None]) / torch.sqrt(
        bn.avg_var[None, :, None, None] + 2e-5) + bn.betas.weight[labels][:, :, None, None]
    assert torch.allclose(seen["y"], ref, atol=1e-5)
    assert blk.upsample and blk.learnable_sc
    t = torch.arange(4.0).view(1, 1, 2, 2)
    from engine.models.layers import upsample2x

    assert torch.equal(upsample2x(t), t.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_spectral_norm_power_iteration_only_in_training():
    torch.manual_seed(2)
    d = SNResNetProjectionDiscriminator(_small(SNGAN_DOGCAT_128))
    conv = d.block2.c1
    u0 = conv.u.clone()
    d.eval()
    with torch.no_grad():
        d(torch.randn(1, 3, 128, 128))
    assert torch.equal(conv.u, u0)
    d.train()
    for _ in range(30):
        with torch.no_grad():
            conv.sn_weight()
    assert not torch.equal(conv.u, u0)
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    sigma = torch.linalg.matrix_norm(w, ord=2)
    assert torch.allclose(torch.linalg.matrix_norm(conv.sn_weight().reshape(w.shape), ord=2), torch.tensor(1.0),
                          atol=1e-3), sigma


def test_collage_identities_on_the_256_layout():
    torch.manual_seed(3)
    g = _randomize_stats(ResNetGenerator(_small(SNGAN_DOGCAT_256)))
    z = torch.randn(1, 128)
    z2 = torch.randn(1, 128)
    with torch.no_grad():
        a, b = g(z, torch.tensor([1])), g(z, torch.tensor([4]))
        ref = g(z2, torch.tensor([4]))
    half = torch.zeros(256, 256)
    half[:, 128:] = 1
    assert (label_swap(g, z, 1, [Region(1, half)]) - a).abs().max() <= 1e-5
    assert (label_swap(g, z, 1, [Region(4, torch.ones(256, 256))]) - b).abs().max() <= 1e-5
    # blending runs base and reference as one batch of 2: convolution round-off differs from batch 1
    assert (feature_blend(g, z, 1, [Reference(z2, 4, torch.zeros(256, 256))]) - a).abs().max() <= 1e-4
    assert (feature_blend(g, z, 1, [Reference(z2, 4, torch.ones(256, 256))]) - ref).abs().max() <= 1e-4


def test_sngan_dogcat_128_is_the_official_128_architecture():
    """configs/sn_projection_dog_and_cat.yml: resnet_small.py (ch 64, 8-8-4-4-2-1) and snresnet_small.py, whose
    blocks' first conv keeps the input width (block3/c1: 128 -> 128, block3/c2: 128 -> 256)."""
    assert SNGAN_DOGCAT_128 is CHAINER_DOGCAT_128
    assert SNGAN_DOGCAT_128.gen_mults == (8, 8, 4, 4, 2, 1) and SNGAN_DOGCAT_128.dis_mults == (1, 2, 4, 4, 8, 8)
    d = SNResNetProjectionDiscriminator(replace(SNGAN_DOGCAT_128, n_classes=3))
    assert tuple(d.block3.c1.weight.shape[:2]) == (128, 128) and tuple(d.block3.c2.weight.shape[:2]) == (256, 128)
    d256 = SNResNetProjectionDiscriminator(replace(SNGAN_DOGCAT_256, n_classes=3))
    assert tuple(d256.block3.c1.weight.shape[:2]) == (192, 96)  # snresnet_256: hidden = output width


def test_dis_hidden_round_trips_and_is_checked():
    cfg = SNGANConfig.from_dict(SNGAN_DOGCAT_128.to_dict())
    assert cfg.dis_hidden == "in"
    old = SNGAN_DOGCAT_256.to_dict()
    del old["dis_hidden"]  # configs written before the field existed
    assert SNGANConfig.from_dict(old).dis_hidden == "out"
    with pytest.raises(ValueError, match="dis_hidden must be 'in' or 'out'"):
        SNGANConfig.from_dict({**old, "dis_hidden": "mid"})
