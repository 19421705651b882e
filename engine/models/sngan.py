"""The paper's SNGAN family: ResNet generator with categorical CBN, projection discriminator with spectral norm.

Module names follow the official Chainer code (pfnet-research/neural-collage ``gen_models/resnet*.py``,
``dis_models/snresnet*.py``): ``l1``, ``block2`` ... ``blockN`` (each ``c1``, ``c2``, ``b1``, ``b2``, ``c_sc``),
``bN+1``/``lN+1`` at the end of the generator; ``block1`` ... ``blockK``, ``lK+1`` and ``l_y`` in the
discriminator.  So the official checkpoints import key by key (engine.models.chainer_import).

Two latent layouts share the same blocks:
- ``latent="vector"`` (the paper's models): z in R^dim_z, ``l1`` is a Linear to a bottom_width^2 map;
- ``latent="spatial"`` (the embedded default model): z is a [z_channels, R/2^n, R/2^n] map and ``l1`` a 3x3
  conv, so the generator is fully convolutional and renders any size that is a multiple of 2^n.

Two generator options exist for the default model v2 (defaults keep the paper's / v1's behaviour):
- ``padding="reflect"``: the generator's 3x3 convolutions pad by reflection instead of zeros, so an image's
  border sees texture, not black (v1's dark frame: outer 4 px ring at 0.855 of the inside's luminance);
- ``upsample="bilinear"``: blocks up-sample bilinearly instead of nearest-neighbour (nearest copies each latent
  cell into a 2x2 / 8x8 block, which shows as a grid / weave at periods of 2-8 px).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from engine.generator import CollageContext, CollageGenerator, Site
from engine.models.layers import (
    BatchNorm,
    CategoricalConditionalBatchNorm,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    glorot_,
    upsample2x,
)


@dataclass
class SNGANConfig:
    ch: int = 64
    dim_z: int = 128
    bottom_width: int = 4
    n_classes: int = 143
    resolution: int = 128
    gen_mults: tuple = (16, 16, 8, 4, 2, 1)  # l1 output = ch*mults[0]; block i maps mults[i] -> mults[i+1]
    dis_mults: tuple = (1, 2, 4, 8, 16, 16)  # block i outputs ch*mults[i]; all but the last down-sample
    dis_hidden: str = "out"  # width of a discriminator block's first conv: its output's ("out", snresnet_256.py)
    #                          or its input's ("in", Chainer resblocks.Block's default: snresnet[_small].py)
    latent: str = "vector"  # or "spatial"
    z_channels: int = 16  # spatial latent only
    class_names: list = field(default_factory=list)
    padding: str = "zeros"  # generator convs: "zeros" (paper, v1) or "reflect" (v2: no dark frame)
    upsample: str = "nearest"  # generator blocks: "nearest" (paper, v1) or "bilinear" (v2)
    enc_ch: int = 0  # SpatialEncoder width (0: ch)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gen_mults"] = list(self.gen_mults)
        d["dis_mults"] = list(self.dis_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SNGANConfig:
        d = dict(d)
        d["gen_mults"] = tuple(d["gen_mults"])
        d["dis_mults"] = tuple(d["dis_mults"])
        if d.get("dis_hidden", "out") not in ("in", "out"):
            raise ValueError(f"dis_hidden must be 'in' or 'out', got {d['dis_hidden']!r}")
        if d.get("padding", "zeros") not in ("zeros", "reflect"):
            raise ValueError(f"padding must be 'zeros' or 'reflect', got {d['padding']!r}")
        if d.get("upsample", "nearest") not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {d['upsample']!r}")
        return cls(**d)


# The paper's released models: configs/sn_projection_dog_and_cat_256.yml (gen_models/resnet_256.py,
# dis_models/snresnet_256.py) and configs/sn_projection_dog_and_cat.yml (gen_models/resnet_small.py,
# dis_models/snresnet_small.py, whose blocks keep the input width in their first conv).
SNGAN_DOGCAT_256 = SNGANConfig(ch=48, dim_z=128, bottom_width=4, n_classes=143, resolution=256,
                               gen_mults=(16, 16, 8, 8, 4, 2, 1), dis_mults=(1, 2, 4, 8, 8, 16, 16))
SNGAN_DOGCAT_128 = SNGANConfig(ch=64, dim_z=128, bottom_width=4, n_classes=143, resolution=128,
                               gen_mults=(8, 8, 4, 4, 2, 1), dis_mults=(1, 2, 4, 4, 8, 8), dis_hidden="in")


def _init_block(block: nn.Module) -> None:
    """Chainer's initialisation of a residual block: glorot (gain sqrt 2) on c1 and c2, glorot on the learnable
    shortcut c_sc, zero biases."""
    for c in (block.c1, block.c2):
        glorot_(c.weight, 2 ** 0.5)
        nn.init.zeros_(c.bias)
    if block.learnable_sc:
        glorot_(block.c_sc.weight)
        nn.init.zeros_(block.c_sc.bias)


def conv2d_reflect1(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int = 1) -> torch.Tensor:
    """``F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, b, stride)`` without the padded copy of ``x``.

    The convolution runs with zero padding (which the backend does in place), then the one output row and column
    on each side whose window reaches the padding are computed again from a thin reflect-padded strip of ``x``.
    The same numbers (float rounding aside) and gradients; the padded copy of a 128-channel 592 px map alone took
    47 ms, and all of them 0.38 s of a 2 s feature blend at 512 px.  [B, C, H, W] with H, W >= 4.  The layers
    use it without autograd only (encoder, rendering): in a calibration step the strips' extra backward work and
    the in-place writes made a 512 px step slower than the copy."""
    k = w.shape[-1]
    H, W = x.shape[-2:]
    y = F.conv2d(x, w, b, stride, 1)
    oh, ow = y.shape[-2:]
    rh, rw = stride * (oh - 1) - 1, stride * (ow - 1) - 1  # first input row / column of the last output's window
    y[..., :1, :] = F.conv2d(F.pad(x[..., :k - 1, :], (1, 1, 1, 0), mode="reflect"), w, b, stride)[..., :1, :]
    y[..., :, :1] = F.conv2d(F.pad(x[..., :, :k - 1], (1, 0, 1, 1), mode="reflect"), w, b, stride)[..., :, :1]
    if rh + k > H:  # the last row's window reaches the bottom padding
        y[..., -1:, :] = F.conv2d(F.pad(x[..., rh:, :], (1, 1, 0, 1), mode="reflect"), w, b, stride)[..., -1:, :]
    if rw + k > W:
        y[..., :, -1:] = F.conv2d(F.pad(x[..., :, rw:], (0, 1, 1, 1), mode="reflect"), w, b, stride)[..., :, -1:]
    return y


class PadConv2d(nn.Conv2d):
    """nn.Conv2d whose non-zero padding falls back to "replicate" on maps too small to reflect (1 px); a 1 px
    reflect padding is computed without a padded copy (:func:`conv2d_reflect1`)."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "zeros":
            return super()._conv_forward(x, weight, bias)
        if (self.padding_mode == "reflect" and self.padding == (1, 1) and self.dilation == (1, 1)
                and self.groups == 1 and self.stride[0] == self.stride[1] and min(x.shape[-2:]) >= 4
                and not torch.is_grad_enabled()):
            return conv2d_reflect1(x, weight, bias, self.stride[0])
        mode = self.padding_mode if min(x.shape[-2:]) > max(self.padding) else "replicate"
        x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def conv_then_avgpool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(conv(x), 2)`` for a 3x3, stride-1, padding-1 ``conv`` (plain, PadConv2d or SNConv2d),
    computed as one 4x4 convolution of stride 2 (the 3x3 kernel spread over the 2x2 pooling window): the same
    numbers (float rounding aside) for 16/36 of the multiply-adds, and the 3x3 map at full resolution is never
    stored.  [B, I, H, W] -> [B, O, H//2, W//2].  Used by the encoder's and the discriminator's down-sampling
    blocks; at a 648 px crop it took the encoder from 2.3 to 1.5 single-thread CPU-s."""
    w = conv.sn_weight() if hasattr(conv, "sn_weight") else conv.weight
    assert w.shape[-2:] == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1), "a 3x3 'same' conv"
    k4 = w.new_zeros(*w.shape[:2], 4, 4)
    for a in (0, 1):
        for b in (0, 1):
            k4[..., a:a + 3, b:b + 3] += w
    k4 = k4 * 0.25
    if conv.padding_mode == "zeros":
        return F.conv2d(x, k4, conv.bias, stride=2, padding=1)
    if conv.padding_mode == "reflect" and min(x.shape[-2:]) >= 4 and not torch.is_grad_enabled():
        return conv2d_reflect1(x, k4, conv.bias, stride=2)
    mode = conv.padding_mode if min(x.shape[-2:]) > 1 else "replicate"
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), k4, conv.bias, stride=2)


def gen_conv(cin: int, cout: int, k: int, padding: str = "zeros") -> nn.Conv2d:
    return PadConv2d(cin, cout, k, padding=k // 2, padding_mode=padding)


def _upsample(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "nearest":
        return upsample2x(x)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class GenBlock(nn.Module):
    """Up-sampling residual block with two CBN layers (Chainer gen_models/resblocks.Block)."""

    def __init__(self, cin: int, cout: int, n_classes: int, upsample: bool = True, padding: str = "zeros",
                 mode: str = "nearest"):
        super().__init__()
        self.upsample = upsample
        self.mode = mode
        self.c1 = gen_conv(cin, cout, 3, padding)
        self.c2 = gen_conv(cout, cout, 3, padding)
        self.b1 = CategoricalConditionalBatchNorm(cin, n_classes)
        self.b2 = CategoricalConditionalBatchNorm(cout, n_classes)
        self.learnable_sc = cin != cout or upsample
        if self.learnable_sc:
            self.c_sc = nn.Conv2d(cin, cout, 1)
        _init_block(self)

    def forward(self, x: torch.Tensor, ctx: CollageContext) -> torch.Tensor:
        h = F.relu(self.b1(x, ctx))
        h = self.c1(_upsample(h, self.mode) if self.upsample else h)
        h = self.c2(F.relu(self.b2(h, ctx)))
        sc = x
        if self.learnable_sc:  # c_sc(up(x)) as up(c_sc(x)): a 1x1 conv commutes with both up-samplings; 1/4 the work
            sc = _upsample(self.c_sc(x), self.mode) if self.upsample else self.c_sc(x)
        return h + sc


class ResNetGenerator(CollageGenerator):
    family = "sngan"

    def __init__(self, cfg: SNGANConfig):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.n_classes
        self.resolution = cfg.resolution
        m = cfg.gen_mults
        self.n_blocks = len(m) - 1
        c0 = cfg.ch * m[0]
        if cfg.latent == "vector":
            self.l1 = nn.Linear(cfg.dim_z, cfg.bottom_width ** 2 * c0)
        elif cfg.latent == "spatial":
            self.l1 = gen_conv(cfg.z_channels, c0, 3, cfg.padding)
        else:
            raise ValueError(f"unknown latent layout {cfg.latent!r}")
        glorot_(self.l1.weight)
        nn.init.zeros_(self.l1.bias)
        for i in range(self.n_blocks):
            setattr(self, f"block{i + 2}", GenBlock(cfg.ch * m[i], cfg.ch * m[i + 1], cfg.n_classes,
                                                    padding=cfg.padding, mode=cfg.upsample))
        k = self.n_blocks + 2
        setattr(self, f"b{k}", BatchNorm(cfg.ch * m[-1]))
        last = gen_conv(cfg.ch * m[-1], 3, 3, cfg.padding)
        glorot_(last.weight)
        nn.init.zeros_(last.bias)
        setattr(self, f"l{k}", last)
        self.number_norm_sites()

    # -- the collage interface -------------------------------------------------------------------------
    def blocks(self) -> list[GenBlock]:
        return [getattr(self, f"block{i + 2}") for i in range(self.n_blocks)]

    def latent_shape(self, resolution: int | None = None) -> tuple[int, ...]:
        if self.cfg.latent == "vector":
            if resolution not in (None, self.resolution):
                raise ValueError(f"this model renders {self.resolution} px only")
            return (self.cfg.dim_z,)
        r = resolution or self.resolution
        f = 2 ** self.n_blocks
        if r % f:
            raise ValueError(f"resolution {r} is not a multiple of {f}")
        return (self.cfg.z_channels, r // f, r // f)

    def norm_sites(self) -> list[Site]:
        sites = []
        for i, blk in enumerate(self.blocks()):
            stride = 2 ** (self.n_blocks - i)
            sites.append(Site(blk.b1.site, i, f"block{i + 2}.b1", stride))
            sites.append(Site(blk.b2.site, i, f"block{i + 2}.b2", stride // 2))
        return sites

    def blend_sites(self) -> list[Site]:
        sites = [Site(0, 0, "l1", 2 ** self.n_blocks)]
        for i in range(self.n_blocks):
            sites.append(Site(i + 1, i + 1, f"block{i + 2}", 2 ** (self.n_blocks - i - 1)))
        return sites

    def class_names(self) -> list[str]:
        names = list(self.cfg.class_names)
        return names if len(names) == self.num_classes else super().class_names()

    def synthesize(self, z: torch.Tensor, ctx: CollageContext) -> torch.Tensor:
        h = self.l1(z)
        if self.cfg.latent == "vector":
            h = h.view(h.shape[0], -1, self.cfg.bottom_width, self.cfg.bottom_width)
        h = ctx.blend(0, h)
        for i, blk in enumerate(self.blocks()):
            h = ctx.blend(i + 1, blk(h, ctx))
        k = self.n_blocks + 2
        h = F.relu(getattr(self, f"b{k}")(h))
        return torch.tanh(getattr(self, f"l{k}")(h))


def _avgpool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


class DisBlock(nn.Module):
    """Discriminator residual block with spectral norm (Chainer dis_models/resblocks.Block)."""

    def __init__(self, cin: int, cout: int, downsample: bool, hidden: int | None = None):
        super().__init__()
        self.downsample = downsample
        hidden = cout if hidden is None else hidden
        self.c1 = SNConv2d(cin, hidden, 3, padding=1)
        self.c2 = SNConv2d(hidden, cout, 3, padding=1)
        self.learnable_sc = cin != cout or downsample
        if self.learnable_sc:
            self.c_sc = SNConv2d(cin, cout, 1)
        _init_block(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """c2(relu(c1(relu(x)))) + c_sc(x), both average-pooled when down-sampling (the pooling folded into c2,
        and moved before the 1x1 shortcut: exact, see conv_then_avgpool)."""
        h = F.relu(self.c1(F.relu(x)))
        h = conv_then_avgpool(self.c2, h) if self.downsample else self.c2(h)
        sc = x
        if self.learnable_sc:
            sc = self.c_sc(_avgpool(x)) if self.downsample else self.c_sc(x)
        return h + sc


class OptimizedDisBlock(nn.Module):
    """First discriminator block (Chainer OptimizedBlock): no leading activation, always down-samples."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.c1 = SNConv2d(cin, cout, 3, padding=1)
        self.c2 = SNConv2d(cout, cout, 3, padding=1)
        self.c_sc = SNConv2d(cin, cout, 1)
        for c in (self.c1, self.c2):
            glorot_(c.weight, 2 ** 0.5)
            nn.init.zeros_(c.bias)
        glorot_(self.c_sc.weight)
        nn.init.zeros_(self.c_sc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = conv_then_avgpool(self.c2, F.relu(self.c1(x)))
        return h + self.c_sc(_avgpool(x))


class SNResNetProjectionDiscriminator(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018) with spectral norm."""

    def __init__(self, cfg: SNGANConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.dis_mults
        self.n_blocks = len(m)
        self.block1 = OptimizedDisBlock(3, cfg.ch * m[0])
        for i in range(1, len(m)):
            cin, cout = cfg.ch * m[i - 1], cfg.ch * m[i]
            setattr(self, f"block{i + 1}", DisBlock(cin, cout, downsample=i < len(m) - 1,
                                                    hidden=cin if cfg.dis_hidden == "in" else cout))
        c = cfg.ch * m[-1]
        last = SNLinear(c, 1)
        glorot_(last.weight)
        nn.init.zeros_(last.bias)
        setattr(self, f"l{len(m) + 1}", last)
        self.l_y = SNEmbedding(cfg.n_classes, c)
        glorot_(self.l_y.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """relu(h) before the global pooling: [B, C, h, w]."""
        h = x
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 1}")(h)
        return F.relu(h)

    def feature_vector(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-pooling feature vector that manifold projection compares (Chainer ``feature_vector``)."""
        return self.features(x).flatten(1)

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The projection term <embed(y), sum h> for every class y: [B, n_classes] (engine.generator's
        Discriminator: ranks the classes of an unlabelled photo)."""
        h = self.features(x).sum(dim=(2, 3))  # [B, C]
        w = self.l_y.sn_weight()  # [n_classes, C]
        return torch.stack([w @ hb for hb in h])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).sum(dim=(2, 3))
        out = getattr(self, f"l{self.n_blocks + 1}")(h)
        if y is not None:
            out = out + (self.l_y(y) * h).sum(dim=1, keepdim=True)
        return out.squeeze(1)


class SpatialEncoder(nn.Module):
    """Encoder for spatial-latent generators: x [B, 3, R, R] -> z [B, z_channels, R/2^n, R/2^n].

    The paper's encoder (Fig. 15) is the discriminator's architecture with a latent output; this one keeps that
    shape (residual down-sampling blocks) but without spectral norm and with a 1x1 conv head per position.
    """

    def __init__(self, cfg: SNGANConfig, ch: int | None = None):
        super().__init__()
        ch = ch or cfg.enc_ch or cfg.ch
        n = len(cfg.gen_mults) - 1
        mults = [1, 2, 4, 4, 8, 8, 8][: n + 1]
        self.block1 = gen_conv(3, ch * mults[0], 3, cfg.padding)
        for i in range(n):
            setattr(self, f"block{i + 2}", EncBlock(ch * mults[i], ch * mults[i + 1], cfg.padding))
        self.n = n
        self.l_out = nn.Conv2d(ch * mults[n], cfg.z_channels, 1)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """engine.generator's Encoder: unconditional, the class ids are not used."""
        return self(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        for i in range(self.n):
            h = getattr(self, f"block{i + 2}")(h)
        return self.l_out(F.relu(h))


class EncBlock(nn.Module):
    def __init__(self, cin: int, cout: int, padding: str = "zeros"):
        super().__init__()
        self.c1 = gen_conv(cin, cout, 3, padding)
        self.c2 = gen_conv(cout, cout, 3, padding)
        self.b1 = nn.BatchNorm2d(cin)
        self.b2 = nn.BatchNorm2d(cout)
        self.c_sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """avgpool(c2(relu(b2(c1(relu(b1(x))))))) + avgpool(c_sc(x)), with the pooling folded into c2 and moved
        before the 1x1 shortcut (both exact: conv_then_avgpool; a 1x1 conv commutes with average pooling)."""
        h = self.c1(F.relu(self.b1(x)))
        return conv_then_avgpool(self.c2, F.relu(self.b2(h))) + self.c_sc(_avgpool(x))
