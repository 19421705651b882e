"""sCBN (eq. 1-2) and feature blending (eq. 3) on a small random-weight SNGAN with distinct class embeddings."""
import pytest
import torch

from engine.sites.blending import shift_features, spatial_feature_blend
from engine.blend.feature import Reference, feature_blend
from engine.collage.label import label_swap, norm_site_strengths
from engine.generator import parse_layers
from engine.models.sngan import ResNetGenerator, SNGANConfig
from engine.sites.scbn import ClassMap, Region


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = SNGANConfig(ch=8, bottom_width=8, n_classes=5, resolution=64, gen_mults=(4, 4, 2, 1),
                      dis_mults=(1, 2, 4, 4), latent="spatial", z_channels=16)
    g = ResNetGenerator(cfg)
    with torch.no_grad():  # make the classes differ, and the running statistics non-trivial
        for m in g.modules():
            if hasattr(m, "gammas"):
                m.gammas.weight.normal_(1.0, 0.5)
                m.betas.weight.normal_(0.0, 0.5)
            if hasattr(m, "avg_var"):
                m.avg_mean.normal_(0, 0.1)
                m.avg_var.uniform_(0.5, 2.0)
    return g.eval()


@pytest.fixture(scope="module")
def z(G):
    return G.sample_latent(2, torch.Generator().manual_seed(1))


def plain(G, z, c):
    with torch.no_grad():
        return G(z, torch.full((z.shape[0],), c))


def box_mask(y0, y1, x0, x1, size=64):
    m = torch.zeros(size, size)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_scbn_base_everywhere_equals_plain(G, z):
    assert (label_swap(G, z, 1, []) - plain(G, z, 1)).abs().max() <= 1e-5
    assert (label_swap(G, z, 1, [Region(1, box_mask(0, 64, 0, 64))]) - plain(G, z, 1)).abs().max() <= 1e-5


def test_scbn_strength_zero_equals_plain(G, z):
    out = label_swap(G, z, 1, [Region(3, box_mask(10, 40, 20, 50), 0.0)])
    assert (out - plain(G, z, 1)).abs().max() <= 1e-5


def test_scbn_full_mask_equals_target_class(G, z):
    out = label_swap(G, z, 1, [Region(3, torch.ones(64, 64), 1.0)])
    assert (out - plain(G, z, 3)).abs().max() <= 1e-5


def test_scbn_region_changes_inside_more_than_outside(G, z):
    out = label_swap(G, z, 1, [Region(3, box_mask(16, 48, 16, 48))])
    d = (out - plain(G, z, 1)).abs().mean(dim=(0, 1))
    inside, outside = d[20:44, 20:44].mean(), torch.cat([d[:6].flatten(), d[-6:].flatten()]).mean()
    assert inside > 0.05
    assert inside > 4 * outside


def test_scbn_intermediate_strength_is_between(G, z):
    a, b = plain(G, z, 1), plain(G, z, 3)
    mid = label_swap(G, z, 1, [Region(3, torch.ones(64, 64), 0.5)])
    assert (mid - a).abs().mean() > 0.01 and (mid - b).abs().mean() > 0.01


def test_classmap_normalises_overlaps():
    base = torch.tensor([0])
    m = torch.ones(8, 8)
    cm = ClassMap.from_regions(base, [Region(1, m, 1.0), Region(2, m, 1.0)], (8, 8))
    assert torch.allclose(cm.weights.sum(1), torch.ones(1, 8, 8))
    assert (cm.weights >= 0).all()
    assert torch.allclose(cm.weights[0, 0], torch.zeros(8, 8))
    assert torch.allclose(cm.weights_at(2, 2).sum(1), torch.ones(1, 2, 2))


def test_classmap_rejects_bad_strength():
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        ClassMap.from_regions(torch.tensor([0]), [Region(1, torch.ones(4, 4), 1.5)], (4, 4))


def test_layer_selection(G, z):
    r = [Region(3, box_mask(16, 48, 16, 48))]
    first = label_swap(G, z, 1, r, layers="first")
    rest = label_swap(G, z, 1, r, layers="rest")
    allx = label_swap(G, z, 1, r, layers="all")
    assert (first - allx).abs().max() > 1e-3 and (rest - allx).abs().max() > 1e-3
    assert norm_site_strengths(G, "first") == [1, 1, 0, 0, 0, 0]
    assert norm_site_strengths(G, "rest") == [0, 0, 1, 1, 1, 1]
    assert norm_site_strengths(G, [0, 2]) == [1, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="unknown layer index 7: this model has layers 0-2"):
        label_swap(G, z, 1, r, layers="0,7")
    with pytest.raises(ValueError, match="unknown layer selection"):
        parse_layers("middle", 3)


def test_unknown_class_is_rejected(G, z):
    with pytest.raises(ValueError, match="class id 9 is out of range"):
        label_swap(G, z, 1, [Region(9, torch.ones(64, 64))])


def test_blend_zero_masks_equal_base(G, z):
    zr = G.sample_latent(2, torch.Generator().manual_seed(2))
    out = feature_blend(G, z, 1, [Reference(zr, 2, torch.zeros(64, 64))])
    assert (out - plain(G, z, 1)).abs().max() <= 1e-4


def test_blend_full_masks_equal_reference(G, z):
    zr = G.sample_latent(2, torch.Generator().manual_seed(2))
    out = feature_blend(G, z, 1, [Reference(zr, 2, torch.ones(64, 64))])
    assert (out - plain(G, zr, 2)).abs().max() <= 1e-4


def test_blend_two_references_in_one_pass(G, z):
    z1 = G.sample_latent(2, torch.Generator().manual_seed(3))
    z2 = G.sample_latent(2, torch.Generator().manual_seed(4))
    left, right = box_mask(0, 64, 0, 32), box_mask(0, 64, 32, 64)
    out = feature_blend(G, z, 1, [Reference(z1, 2, left), Reference(z2, 4, right)])
    r1, r2 = plain(G, z1, 2), plain(G, z2, 4)
    assert (out[..., 2:30] - r1[..., 2:30]).abs().max() <= 1e-4
    assert (out[..., 34:] - r2[..., 34:]).abs().max() <= 1e-4


def test_shifted_reference_moves_by_the_shift(G, z):
    zr = G.sample_latent(2, torch.Generator().manual_seed(2))
    dx = 16
    out = feature_blend(G, z, 1, [Reference(zr, 2, torch.ones(64, 64), shift=(dx, 0))])
    ref = plain(G, zr, 2)
    # content of the reference at x lands at x + dx (away from the strip with no shifted-in content and the border)
    assert (out[..., dx + 1:63] - ref[..., 1:63 - dx]).abs().max() <= 1e-4
    assert (out[..., dx + 1:63] - ref[..., dx + 1:63]).abs().max() > 0.05


def test_shift_operator():
    f = torch.arange(16.0).reshape(1, 1, 4, 4)
    s, valid = shift_features(f, 1, -1)
    assert s[0, 0, 0, 1] == f[0, 0, 1, 0] and s[0, 0, 2, 3] == f[0, 0, 3, 2]
    assert valid[0, 0, 3].sum() == 0 and valid[0, 0, :, 0].sum() == 0 and valid.sum() == 9


def test_feature_blend_weights_sum_to_one():
    base, r1, r2 = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 2 * torch.ones(1, 1, 2, 2)
    m = torch.ones(1, 1, 2, 2)
    out = spatial_feature_blend(base, [r1, r2], [m, m], [(0, 0), (0, 0)])
    assert torch.allclose(out, torch.full_like(out, 1.5))


def test_same_seed_same_output(G):
    a = G.sample_latent(1, torch.Generator().manual_seed(7))
    b = G.sample_latent(1, torch.Generator().manual_seed(7))
    assert torch.equal(plain(G, a, 0), plain(G, b, 0))


def test_spatial_latent_renders_other_sizes(G):
    zz = G.sample_latent(1, torch.Generator().manual_seed(0), resolution=96)
    assert plain(G, zz, 0).shape == (1, 3, 96, 96)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        G.sample_latent(1, resolution=100)
