"""The auxiliary network of App. B.1: A embeds z into a higher-dimensional zeta, B maps zeta back to z.

Names follow the official Chainer ``ResNetAuxABGenerator`` (lA1, lA2, lB1, lB2, preluW, preluMiddleW):
A(z) = prelu(lA2(relu(lA1(z))), preluMiddleW);  B(zeta) = prelu(lB2(relu(lB1(zeta))), preluW).
For a spatial latent [B, C, H, W] the same MLP runs at every position (the latent's channels are its input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.layers import glorot_


class AuxAB(nn.Module):
    def __init__(self, dim_z: int, dim_a: int = 1000, dim_zeta: int = 10000, dim_b: int = 1000):
        super().__init__()
        self.dim_z, self.dim_zeta = dim_z, dim_zeta
        self.lA1 = nn.Linear(dim_z, dim_a)
        self.lA2 = nn.Linear(dim_a, dim_zeta)
        self.lB1 = nn.Linear(dim_zeta, dim_b)
        self.lB2 = nn.Linear(dim_b, dim_z)
        for lin in (self.lA1, self.lA2, self.lB1, self.lB2):
            glorot_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.preluW = nn.Parameter(torch.full((dim_z,), 0.25))
        self.preluMiddleW = nn.Parameter(torch.full((dim_zeta,), 0.25))

    @staticmethod
    def _lastdim(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if x.dim() == 4:
            return x.permute(0, 2, 3, 1), True
        return x, False

    @staticmethod
    def _back(x: torch.Tensor, spatial: bool) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if spatial else x

    def A(self, z: torch.Tensor) -> torch.Tensor:
        h, sp = self._lastdim(z)
        h = F.prelu(self.lA2(F.relu(self.lA1(h))).movedim(-1, 1), self.preluMiddleW).movedim(1, -1)
        return self._back(h, sp)

    def B(self, zeta: torch.Tensor) -> torch.Tensor:
        h, sp = self._lastdim(zeta)
        h = F.prelu(self.lB2(F.relu(self.lB1(h))).movedim(-1, 1), self.preluW).movedim(1, -1)
        return self._back(h, sp)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.B(self.A(z))
