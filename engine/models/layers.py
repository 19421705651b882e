"""Layers shared by the SNGAN-family models, named like the official Chainer links so checkpoints map 1:1.

Chainer key -> PyTorch key: ``W`` -> ``weight``, ``b`` -> ``bias``, ``u`` -> ``u`` (spectral norm's power
iteration vector, shape (1, out)), ``gamma``/``beta``/``avg_mean``/``avg_var`` keep their names, and
``gammas/W``/``betas/W`` (categorical CBN) -> ``gammas.weight``/``betas.weight``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.sites.scbn import ConditionalNorm


def _l2n(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / (x.norm() + eps)


class _SpectralNorm:
    """Mixin: weight / sigma(weight), sigma by one power iteration per training forward (as Chainer's SN links)."""

    def _init_sn(self, out_features: int) -> None:
        self.register_buffer("u", F.normalize(torch.randn(1, out_features), dim=1))

    def sn_weight(self) -> torch.Tensor:
        w = self.weight
        w_mat = w.reshape(w.shape[0], -1)
        with torch.no_grad():
            u = self.u
            v = _l2n(u @ w_mat)
            u_new = _l2n(v @ w_mat.t())
            if self.training:
                self.u.copy_(u_new)
        sigma = (u_new @ w_mat @ v.t()).squeeze()
        return w / sigma


class SNConv2d(nn.Conv2d, _SpectralNorm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sn(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.sn_weight(), self.bias)


class SNLinear(nn.Linear, _SpectralNorm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sn(self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNEmbedding(nn.Embedding, _SpectralNorm):
    """Chainer's SNEmbedID: the embedding matrix (n_classes, dim) is spectrally normalised as a whole."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_sn(self.num_embeddings)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.sn_weight())


class BatchNorm(nn.Module):
    """Unconditional batch norm with Chainer's parameter names (gamma, beta, avg_mean, avg_var)."""

    def __init__(self, size: int, eps: float = 2e-5, momentum: float = 0.1):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(size))
        self.beta = nn.Parameter(torch.zeros(size))
        self.register_buffer("avg_mean", torch.zeros(size))
        self.register_buffer("avg_var", torch.ones(size))
        self.eps, self.momentum = eps, momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.avg_mean, self.avg_var, self.gamma, self.beta, self.training, self.momentum,
                            self.eps)


class CategoricalConditionalBatchNorm(ConditionalNorm):
    """Chainer's CategoricalConditionalBatchNormalization: gamma(c), beta(c) from embeddings, scaled directly
    (no 1 + gamma), eps 2e-5, running statistics at test time.  Supports sCBN through ConditionalNorm."""

    def __init__(self, size: int, n_classes: int, eps: float = 2e-5, momentum: float = 0.1):
        super().__init__()
        self.gammas = nn.Embedding(n_classes, size)
        self.betas = nn.Embedding(n_classes, size)
        nn.init.ones_(self.gammas.weight)
        nn.init.zeros_(self.betas.weight)
        self.register_buffer("avg_mean", torch.zeros(size))
        self.register_buffer("avg_var", torch.ones(size))
        self.eps, self.momentum = eps, momentum

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.avg_mean, self.avg_var, None, None, self.training, self.momentum, self.eps)

    def class_affine(self, classes: torch.Tensor, cond=None):
        return self.gammas(classes), self.betas(classes)


def glorot_(w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Chainer's GlorotUniform(scale=gain) initialiser."""
    fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
    fan_in = w.shape[1] * (w[0, 0].numel() if w.dim() > 2 else 1)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-a, a)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Chainer's unpooling_2d(x, 2): nearest-neighbour up-sampling."""
    return F.interpolate(x, scale_factor=2, mode="nearest")
