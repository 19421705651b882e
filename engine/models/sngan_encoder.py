"""The paper's encoder E (App. B, Fig. 15) with the official Chainer names, so its checkpoint imports key by key.

Two official variants (pfnet-research/neural-collage ``enc_models/``):

- ``small`` (``resnetenc_small.py``): the encoder the released 256 px dog+cat configs use
  (``sn_projection_dog_and_cat_256_auxab.yml``, ``..._128_to_256_enc.yml``: ch=64, n_classes=143) on a 128 px
  input (the updater and optimization.py resize the image to ``input_size`` 128).  ``l1`` conv 3 -> ch, five
  down-sampling blocks (ch -> 2ch -> 4ch -> 4ch -> 8ch -> 8ch), reshape of the 4x4 map, ``l7`` linear, PReLU
  ``prelu_out``.  It also registers a BatchNormalization ``b7`` that its forward never uses; the checkpoint holds
  it, so the module keeps it (unused) for a complete import.
- ``256`` (``resnetenc_256.py``): ``block1`` conv 3 -> ch, six down-sampling blocks
  (ch -> 2 -> 4 -> 8 -> 8 -> 16 -> 16), ``l8_enc`` linear, ``prelu_out``; 256 px input.

Blocks (``enc_models/resblocks.py``): hidden channels = input channels; residual = c2(relu(b2(c1(avgpool(relu(
b1(x))))))), shortcut = c_sc(avgpool(x)).  With ``n_classes > 0`` the b1/b2 layers are categorical conditional
batch norms (the encoder is class-conditional: ``E(x, y)``), else plain batch norms.  At inference the official
code runs the encoder with ``train=False``, i.e. with the running statistics.

Input: an image in [-1, 1] (the official preprocessing is ``pixel / 128 - 1``); an image of another size is
resized to ``input_size`` with bilinear, antialiased interpolation first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.generator import CollageContext
from engine.models.layers import BatchNorm, CategoricalConditionalBatchNorm, glorot_

_VARIANTS = {
    # name: (first conv name, block channel multiples (in, out) ..., final linear name, has unused b7, mults[-1])
    "small": ("l1", [(1, 2), (2, 4), (4, 4), (4, 8), (8, 8)], "l7", True),
    "256": ("block1", [(1, 2), (2, 4), (4, 8), (8, 8), (8, 16), (16, 16)], "l8_enc", False),
}


@dataclass
class EncoderConfig:
    variant: str = "small"
    ch: int = 64
    dim_z: int = 128
    n_classes: int = 143
    bottom_width: int = 4
    input_size: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        return cls(**d)


# The encoder released with the 256 px dog+cat model (configs/sn_projection_dog_and_cat_256_auxab.yml).
ENCODER_DOGCAT = EncoderConfig("small", ch=64, dim_z=128, n_classes=143, bottom_width=4, input_size=128)


def _avgpool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


class EncBlock(nn.Module):
    """Chainer enc_models/resblocks.Block with downsample=True (hidden channels = input channels)."""

    def __init__(self, cin: int, cout: int, n_classes: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.c2 = nn.Conv2d(cin, cout, 3, padding=1)
        if n_classes > 0:
            self.b1 = CategoricalConditionalBatchNorm(cin, n_classes)
            self.b2 = CategoricalConditionalBatchNorm(cin, n_classes)
        else:
            self.b1 = BatchNorm(cin)
            self.b2 = BatchNorm(cin)
        self.c_sc = nn.Conv2d(cin, cout, 1)
        for c in (self.c1, self.c2):
            glorot_(c.weight, 2 ** 0.5)
            nn.init.zeros_(c.bias)
        glorot_(self.c_sc.weight)
        nn.init.zeros_(self.c_sc.bias)

    def _bn(self, bn: nn.Module, x: torch.Tensor, ctx: CollageContext | None) -> torch.Tensor:
        return bn(x, ctx) if isinstance(bn, CategoricalConditionalBatchNorm) else bn(x)

    def forward(self, x: torch.Tensor, ctx: CollageContext | None = None) -> torch.Tensor:
        h = self.c1(_avgpool(F.relu(self._bn(self.b1, x, ctx))))
        h = self.c2(F.relu(self._bn(self.b2, h, ctx)))
        return h + self.c_sc(_avgpool(x))


class ResNetEncoder(nn.Module):
    """The official ResNetEncoder: x [B, 3, R, R] in [-1, 1] (and class ids y [B] when class-conditional) -> z."""

    def __init__(self, cfg: EncoderConfig = ENCODER_DOGCAT):
        super().__init__()
        if cfg.variant not in _VARIANTS:
            raise ValueError(f"unknown encoder variant {cfg.variant!r}: use one of {sorted(_VARIANTS)}")
        self.cfg = cfg
        first, blocks, last, has_b7 = _VARIANTS[cfg.variant]
        self._first, self._last = first, last
        self.n_blocks = len(blocks)
        conv = nn.Conv2d(3, cfg.ch, 3, padding=1)
        glorot_(conv.weight)
        nn.init.zeros_(conv.bias)
        setattr(self, first, conv)
        for i, (a, b) in enumerate(blocks):
            setattr(self, f"block{i + 2}", EncBlock(cfg.ch * a, cfg.ch * b, cfg.n_classes))
        flat = cfg.bottom_width ** 2 * cfg.ch * blocks[-1][1]
        if has_b7:
            self.b7 = BatchNorm(flat)  # registered by the official code, unused by its forward
        lin = nn.Linear(flat, cfg.dim_z)
        glorot_(lin.weight)
        nn.init.zeros_(lin.bias)
        setattr(self, last, lin)
        self.prelu_out = nn.PReLU(cfg.dim_z, init=0.1)

    @property
    def conditional(self) -> bool:
        return self.cfg.n_classes > 0

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """engine.generator's Encoder: E(x, y) when class-conditional, else E(x)."""
        return self(x, labels if self.conditional else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and y is None:
            raise ValueError("this encoder is class-conditional: call encoder(x, class_ids)")
        r = self.cfg.input_size
        if tuple(x.shape[-2:]) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        ctx = None
        if self.conditional:
            y = torch.as_tensor(y, device=x.device).long().reshape(-1)
            if y.numel() == 1 and x.shape[0] > 1:
                y = y.expand(x.shape[0])
            ctx = CollageContext.plain(y)
        h = getattr(self, self._first)(x)
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 2}")(h, ctx)
        h = getattr(self, self._last)(h.flatten(1))
        return self.prelu_out(h)
