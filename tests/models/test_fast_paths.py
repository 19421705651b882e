"""The exact rewrites that make the default model's encoder and generator cheaper on the CPU give the same
numbers as the plain formulas (engine/models/sngan.py: conv_then_avgpool, the shortcut's 1x1 conv before
up-sampling, reflect padding without a padded copy)."""
import pytest
import torch
import torch.nn.functional as F

from engine.models.sngan import EncBlock, GenBlock, _avgpool, _upsample, conv2d_reflect1, conv_then_avgpool, gen_conv
from engine.generator import CollageContext


def _randomise_bn(*bns):
    for m in bns:
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("hw", [(16, 16), (17, 15), (2, 2), (5, 4), (3, 2)])
def test_encoder_block_equals_conv_then_pool(padding, hw):
    torch.manual_seed(0)
    blk = EncBlock(8, 12, padding).eval()
    _randomise_bn(blk.b1, blk.b2)
    x = torch.randn(2, 8, *hw)
    with torch.no_grad():
        ref = _avgpool(blk.c2(F.relu(blk.b2(blk.c1(F.relu(blk.b1(x))))))) + _avgpool(blk.c_sc(x))
        out = blk(x)
    assert out.shape == ref.shape == (2, 12, hw[0] // 2, hw[1] // 2)
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("k, stride", [(3, 1), (4, 2)])  # the 3x3 convolutions and conv_then_avgpool's 4x4
@pytest.mark.parametrize("hw", [(4, 4), (5, 7), (8, 9), (33, 20)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_reflect_padding_without_a_copy(k, stride, hw, layout):
    """conv2d_reflect1 = F.conv2d(F.pad(x, 1, reflect)) in values and in gradients (float64: to 1e-12), on
    even and odd sizes and in both memory layouts; PadConv2d uses it."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, *hw, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    w = torch.randn(6, 5, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, b, stride)
    got = conv2d_reflect1(x, w, b, stride)
    assert got.shape == ref.shape and (got - ref).abs().max().item() < 1e-12
    g = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad((ref * g).sum(), (x, w, b)), torch.autograd.grad((got * g).sum(), (x, w, b))):
        assert (a - c).abs().max().item() < 1e-12
    conv = gen_conv(5, 6, 3, "reflect").double()
    with torch.no_grad():  # PadConv2d takes this path without autograd (and the padded copy with it)
        plain = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias)
        assert (conv(x) - plain).abs().max().item() < 1e-12
    assert (conv(x) - plain).abs().max().item() < 1e-12


def test_conv_then_avgpool_gradients_match():
    torch.manual_seed(1)
    conv = gen_conv(4, 6, 3, "reflect")
    x = torch.randn(1, 4, 10, 12, requires_grad=True)
    a = conv_then_avgpool(conv, x)
    ga = torch.autograd.grad(a.square().sum(), [x, conv.weight])
    b = _avgpool(conv(x))
    gb = torch.autograd.grad(b.square().sum(), [x, conv.weight])
    assert (a - b).abs().max().item() < 1e-5
    for u, v in zip(ga, gb):
        assert (u - v).abs().max().item() < 1e-4


def test_conv_then_avgpool_refuses_other_convs():
    with pytest.raises(AssertionError):
        conv_then_avgpool(torch.nn.Conv2d(3, 3, 5, padding=2), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_generator_block_shortcut_equals_upsample_then_conv(mode):
    torch.manual_seed(2)
    blk = GenBlock(8, 4, n_classes=3, upsample=True, padding="reflect", mode=mode).eval()
    x = torch.randn(2, 8, 6, 7)
    ctx = CollageContext.plain(torch.tensor([0, 2]))
    with torch.no_grad():
        h = blk.c2(F.relu(blk.b2(blk.c1(_upsample(F.relu(blk.b1(x, ctx)), mode)), ctx)))
        ref = h + blk.c_sc(_upsample(x, mode))
        out = blk(x, ctx)
    assert out.shape == (2, 4, 12, 14)
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("downsample", [True, False])
def test_discriminator_blocks_equal_conv_then_pool(downsample):
    from engine.models.sngan import DisBlock, OptimizedDisBlock

    torch.manual_seed(3)
    blk = DisBlock(6, 10, downsample=downsample).eval()
    x = torch.randn(2, 6, 12, 10)
    with torch.no_grad():
        h = blk.c2(F.relu(blk.c1(F.relu(x))))
        sc = blk.c_sc(x)
        ref = (_avgpool(h) + _avgpool(sc)) if downsample else h + sc
        out = blk(x)
        assert out.shape == ref.shape and (out - ref).abs().max().item() < 1e-5
        first = OptimizedDisBlock(3, 8).eval()
        x3 = torch.randn(2, 3, 16, 16)
        ref = _avgpool(first.c2(F.relu(first.c1(x3)))) + first.c_sc(_avgpool(x3))
        assert (first(x3) - ref).abs().max().item() < 1e-5


def test_scbn_keeps_channels_last_and_the_numbers():
    """sCBN on channels-last features (the default model) builds its per-pixel maps in that layout: the same
    numbers as on contiguous features, and the output stays channels-last for the next convolution."""
    from engine.sites.scbn import spatial_conditional_batch_norm

    torch.manual_seed(4)
    x = torch.randn(2, 16, 12, 10)
    gammas, betas, weights = torch.randn(2, 3, 16), torch.randn(2, 3, 16), torch.rand(2, 3, 12, 10)
    plain = spatial_conditional_batch_norm(x, gammas, betas, weights)
    nhwc = spatial_conditional_batch_norm(x.contiguous(memory_format=torch.channels_last), gammas, betas, weights)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert (nhwc - plain).abs().max().item() < 1e-5
