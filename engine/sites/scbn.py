"""Spatial conditional batch normalisation, sCBN (paper §3.1, eq. 1-2).

CBN (eq. 1) normalises a feature map and applies a class-specific affine map gamma_k(c), beta_k(c).
sCBN (eq. 2) replaces gamma_k(c) by a per-pixel mixture  sum_c W_{h,w}(c) gamma_k(c)  (likewise beta) with a
class map W that is non-negative and sums to 1 at every pixel.

Model families provide the per-class affine parameters (``ConditionalNorm.class_affine``); the mixing here
never depends on a model family.  A class map is stored compactly: for each sample the J classes it uses and
J weight planes, so a 1000-class model costs no more than a 2-class one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Region:
    """One region of a class map: ``mask`` (H x W, values in [0, 1]) painted with ``class_id`` at ``strength``."""

    class_id: int
    mask: torch.Tensor
    strength: float = 1.0


class ClassMap:
    """The class map W of eq. 2 for a batch: ``classes`` [B, J] and ``weights`` [B, J, H, W] (or None).

    ``weights`` None means spatially uniform with all weight on column 0 (J must then be 1): the plain CBN of
    eq. 1.  Column 0 always holds the base class.
    """

    def __init__(self, classes: torch.Tensor, weights: torch.Tensor | None = None):
        if classes.dim() != 2:
            raise ValueError("classes must have shape [batch, J]")
        if weights is None and classes.shape[1] != 1:
            raise ValueError("a uniform class map holds exactly one class per sample")
        if weights is not None and weights.shape[:2] != classes.shape:
            raise ValueError(f"weights {tuple(weights.shape)} do not match classes {tuple(classes.shape)}")
        self.classes = classes
        self.weights = weights
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def batch(self) -> int:
        return self.classes.shape[0]

    @classmethod
    def uniform(cls, labels: torch.Tensor) -> ClassMap:
        """Plain conditional generation: one class per sample everywhere."""
        return cls(labels.long().reshape(-1, 1))

    @classmethod
    def from_regions(cls, base: torch.Tensor, regions: Sequence[Region], size: tuple[int, int]) -> ClassMap:
        """Base class everywhere, then each region adds ``strength * mask`` of its class.

        Where the regions' weights add up to more than 1 they are rescaled to sum to 1; the base class takes
        what is left, so W stays non-negative and sums to 1 at every pixel (eq. 2's constraint).
        """
        base = base.long().reshape(-1)
        if not regions:
            return cls.uniform(base)
        b = base.shape[0]
        h, w = size
        planes = []
        for r in regions:
            if not 0.0 <= float(r.strength) <= 1.0:
                raise ValueError(f"strength must be in [0, 1], got {r.strength}")
            m = r.mask.to(torch.float32)
            if m.dim() == 2:
                m = m.unsqueeze(0).expand(b, -1, -1)
            if tuple(m.shape[-2:]) != (h, w):
                m = F.interpolate(m.unsqueeze(1), size=(h, w), mode="area").squeeze(1)
            planes.append(m.clamp(0.0, 1.0) * float(r.strength))
        reg = torch.stack(planes, dim=1).to(base.device)  # [B, R, H, W]
        total = reg.sum(dim=1, keepdim=True)
        reg = torch.where(total > 1.0, reg / total.clamp_min(1e-12), reg)
        weights = torch.cat([1.0 - reg.sum(dim=1, keepdim=True), reg], dim=1).clamp_min(0.0)
        classes = torch.stack([base] + [torch.full_like(base, int(r.class_id)) for r in regions], dim=1)
        return cls(classes, weights)

    def with_strength(self, factor: float) -> ClassMap:
        """Scale every region's weight by ``factor`` (per-layer strength); the base class takes the rest."""
        if self.weights is None or factor == 1.0:
            return self
        if factor == 0.0:
            return ClassMap(self.classes[:, :1])
        reg = self.weights[:, 1:] * float(factor)
        return ClassMap(self.classes, torch.cat([1.0 - reg.sum(dim=1, keepdim=True), reg], dim=1))

    def weights_at(self, h: int, w: int) -> torch.Tensor | None:
        """W resized to a site's resolution by area averaging (so each pixel still sums to 1)."""
        if self.weights is None:
            return None
        key = (h, w)
        if key not in self._cache:
            wt = self.weights
            if tuple(wt.shape[-2:]) != (h, w):
                wt = F.interpolate(wt, size=(h, w), mode="area")
            self._cache[key] = wt
        return self._cache[key]

    def to(self, device: torch.device) -> ClassMap:
        return ClassMap(self.classes.to(device), None if self.weights is None else self.weights.to(device))

    @staticmethod
    def cat(maps: Sequence[ClassMap]) -> ClassMap:
        """Stack the class maps of several streams along the batch (padding J with zero-weight columns)."""
        if all(m.weights is None for m in maps):
            return ClassMap(torch.cat([m.classes for m in maps], dim=0))
        j = max(m.classes.shape[1] for m in maps)
        sizes = [tuple(m.weights.shape[-2:]) for m in maps if m.weights is not None]
        h, w = sizes[0]
        classes, weights = [], []
        for m in maps:
            c = m.classes
            if m.weights is None:
                wt = torch.ones(c.shape[0], 1, h, w, device=c.device)
            else:
                wt = m.weights
                if tuple(wt.shape[-2:]) != (h, w):
                    wt = F.interpolate(wt, size=(h, w), mode="area")
            pad = j - c.shape[1]
            if pad:
                c = torch.cat([c, c[:, :1].expand(-1, pad)], dim=1)
                wt = torch.cat([wt, wt.new_zeros(wt.shape[0], pad, h, w)], dim=1)
            classes.append(c)
            weights.append(wt)
        return ClassMap(torch.cat(classes), torch.cat(weights))


def spatial_conditional_batch_norm(
    x_hat: torch.Tensor, gammas: torch.Tensor, betas: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Eq. 1-2: apply the per-pixel mixture of class affine maps to normalised features.

    x_hat [B, C, H, W] normalised features; gammas, betas [B, J, C] the affine parameters of the J classes of
    each sample; weights [B, J, H, W] the class map at this resolution, or None for plain CBN (J == 1).
    """
    if weights is None:
        return torch.addcmul(betas[:, 0, :, None, None], gammas[:, 0, :, None, None], x_hat)
    b, j, h, w = weights.shape
    wflat = weights.reshape(b, j, h * w)
    if x_hat.dim() == 4 and not x_hat.is_contiguous() and x_hat.is_contiguous(memory_format=torch.channels_last):
        # channels-last features (the default model): the maps made in that layout, [B, HW, J] @ [B, J, C], so
        # the multiply-add and the next convolution need no layout conversion (the same numbers)
        wt = wflat.transpose(1, 2)
        gamma = torch.bmm(wt, gammas).view(b, h, w, -1).permute(0, 3, 1, 2)
        beta = torch.bmm(wt, betas).view(b, h, w, -1).permute(0, 3, 1, 2)
        return torch.addcmul(beta, gamma, x_hat)
    # [B, C, J] @ [B, J, HW]: the per-pixel mixture of eq. 2, then one fused multiply-add
    gamma = torch.bmm(gammas.transpose(1, 2), wflat).view(b, -1, h, w)
    beta = torch.bmm(betas.transpose(1, 2), wflat).view(b, -1, h, w)
    return torch.addcmul(beta, gamma, x_hat)


class ConditionalNorm(nn.Module):
    """Base of every conditional normalisation layer that supports sCBN.

    A model family implements ``normalize(x)`` (eq. 1's standardisation, with its own statistics) and
    ``class_affine(classes, cond)`` returning (gammas, betas) of shape [B, J, C] for class ids [B, J]
    (``cond`` carries whatever else the family conditions on, e.g. BigGAN's z chunk).  The layer's ``site``
    index is set by the generator; the collage context decides the class map at that site.
    """

    site: int = -1

    def normalize(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_affine(self, classes: torch.Tensor, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, x: torch.Tensor, ctx, cond=None) -> torch.Tensor:
        cmap: ClassMap = ctx.class_map(self.site)
        gammas, betas = self.class_affine(cmap.classes, cond)
        return spatial_conditional_batch_norm(self.normalize(x), gammas, betas, cmap.weights_at(*x.shape[-2:]))
