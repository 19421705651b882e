"""Spatial feature blending (paper §3.2, eq. 3) with the shift operator U_i.

All streams (the base image and N references) run in one batched forward pass, laid out stream-major:
rows [0, B) are the base, rows [iB, (i+1)B) reference i.  At every selected blend site the base rows are
replaced by  sum_i M_i * U_i(F_i),  with M_0 = 1 - sum_{i>0} M_i.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def shift_features(f: torch.Tensor, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift operator U: translate a feature map by (dx, dy) pixels (content at p lands at p + (dx, dy)).

    Returns the shifted map (zeros where nothing was shifted in) and a [B, 1, H, W] validity map (1 where the
    shifted map holds real content), so blending never mixes in the zero fill.
    """
    b, _, h, w = f.shape
    out = torch.zeros_like(f)
    valid = f.new_zeros(b, 1, h, w)
    if abs(dx) >= w or abs(dy) >= h:
        return out, valid
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, :, yd, xd] = f[:, :, ys, xs]
    valid[:, :, yd, xd] = 1.0
    return out, valid


def spatial_feature_blend(
    base: torch.Tensor, refs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], shifts: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """Eq. 3:  F~_0 = M_0 * F_0 + sum_{i>0} M_i * U_i(F_i).

    base [B, C, H, W]; refs[i] the same shape; masks[i] [B or 1, 1, H, W] in [0, 1] at this resolution (already
    scaled by the site's strength); shifts[i] = (dx, dy) at this resolution.  Where the reference masks add up to
    more than 1 they are rescaled; M_0 takes the rest, so the weights sum to 1 as eq. 3 requires.
    """
    if not refs:
        return base
    shifted, weights = [], []
    for f, m, (dx, dy) in zip(refs, masks, shifts):
        fs, valid = shift_features(f, int(dx), int(dy))
        shifted.append(fs)
        weights.append(m.clamp(0.0, 1.0) * valid)
    wsum = torch.stack(weights).sum(dim=0)
    scale = torch.where(wsum > 1.0, 1.0 / wsum.clamp_min(1e-12), torch.ones_like(wsum))
    out = (1.0 - wsum * scale) * base
    for fs, m in zip(shifted, weights):
        out = out + (m * scale) * fs
    return out


@dataclass
class BlendPlan:
    """What feature blending does in one batched forward pass.

    ``masks[i]``: image-space mask of reference i ([H, W] or [B, H, W], values in [0, 1]), in the base image's
    coordinates (where the reference's feature should appear).  ``shifts[i]``: image-space (dx, dy) that moves
    reference i's content before blending.  ``site_weights``: blend site index -> strength (sites not listed are
    not blended).  ``batch``: B, the number of base samples.
    """

    masks: list[torch.Tensor]
    shifts: list[tuple[int, int]]
    site_weights: dict[int, float]
    batch: int = 1
    image_size: tuple[int, int] = (0, 0)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_refs(self) -> int:
        return len(self.masks)

    def _mask_at(self, i: int, h: int, w: int, device) -> torch.Tensor:
        key = (i, h, w)
        if key not in self._cache:
            m = self.masks[i].to(device=device, dtype=torch.float32)
            if m.dim() == 2:
                m = m.unsqueeze(0)
            m = m.unsqueeze(1)  # [B|1, 1, H, W]
            if tuple(m.shape[-2:]) != (h, w):
                m = F.interpolate(m, size=(h, w), mode="area")
            self._cache[key] = m
        return self._cache[key]

    def shift_at(self, i: int, h: int, w: int) -> tuple[int, int]:
        """Scale an image-space shift to a site of h x w (rounded to whole feature pixels)."""
        ih, iw = self.image_size
        dx, dy = self.shifts[i]
        return int(round(dx * w / iw)), int(round(dy * h / ih))

    def apply(self, site: int, h_all: torch.Tensor) -> torch.Tensor:
        """Blend at one site: replace the base rows of the stream-major batch by eq. 3."""
        strength = self.site_weights.get(site, 0.0)
        if strength <= 0.0 or not self.masks:
            return h_all
        b = self.batch
        base = h_all[:b]
        hh, ww = h_all.shape[-2:]
        refs = [h_all[(i + 1) * b:(i + 2) * b] for i in range(self.n_refs)]
        masks = [self._mask_at(i, hh, ww, h_all.device) * float(strength) for i in range(self.n_refs)]
        shifts = [self.shift_at(i, hh, ww) for i in range(self.n_refs)]
        blended = spatial_feature_blend(base, refs, masks, shifts)
        return torch.cat([blended, h_all[b:]], dim=0)
