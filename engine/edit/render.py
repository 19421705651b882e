"""Rendering an edit at the crop's own resolution (fully convolutional generators with a spatial latent).

What renders: ``EditOp``, the edit of one latent (sCBN regions and/or feature-blend references, with their
layers and per-layer strengths), applied by the collage operations of engine/collage and engine/blend through the
generator contract only.

How it reaches full resolution (issue 17; the measurements behind each choice are in the README, "Edits at the
photo's own resolution", and bench/photo_edit.py):

* the latent is the crop's own: the encoder maps the crop at full resolution (divided by the texture scale), one
  latent cell per ``grid`` output pixels; the generator renders it at the crop's size, so no generated pixel is
  resampled (``render``);
* texture scale ``s``: the encoder sees the crop shrunk by ``s`` (its features at the model's native size) and the
  latent grid is enlarged by ``s`` with nearest-neighbour repetition (``scale_latent``) before rendering, so the
  generator draws its own fine detail on features ``s`` times as large.  Rendering at 1/s and resampling the
  pixels instead doubles the wavelength too but keeps 0.11 of the detail (Laplacian energy), the latent route
  0.44 (measured on 14 generated textures, scale 2);
* large crops render in tiles aligned to the latent grid, each with ``overlap`` pixels of context on every side
  (more than the generator's receptive field, plus the largest blend shift), of which only the centre is kept:
  tiles meet without seams (the same pixels as one pass, up to float rounding).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from engine.blend.feature import Reference, feature_blend
from engine.collage.label import image_size, label_swap
from engine.generator import CollageGenerator
from engine.sites.scbn import Region
from engine.tiles import check_window, grow_box, tile_boxes

DEFAULT_OVERLAP = 32  # px of context per tile side: the default model's receptive field is ~15 px past a tile


def grid_of(G: CollageGenerator) -> int:
    """Output pixels per latent cell (the coarsest site's stride): tiles and crops align to it."""
    return max(s.stride for s in list(G.norm_sites()) + list(G.blend_sites()))


def fully_convolutional(G: CollageGenerator) -> bool:
    """A spatial latent [C, h, w]: the generator renders any multiple of its grid."""
    return len(G.latent_shape()) == 3


@dataclass
class EditOp:
    """One edit of a latent.  Masks are output-sized ([H, W], values in [0, 1]); no regions and no references
    render the plain reconstruction."""

    base_class: int
    regions: list[Region] = field(default_factory=list)
    layers: object = "all"
    layer_strengths: Sequence[float] | None = None
    references: list[Reference] = field(default_factory=list)
    blend_layers: object = "all"
    blend_strength: float = 1.0
    blend_layer_strengths: Sequence[float] | None = None

    def max_shift(self) -> int:
        return max([max(abs(int(r.shift[0])), abs(int(r.shift[1]))) for r in self.references] or [0])

    def crop(self, y0: int, y1: int, x0: int, x1: int, grid: int) -> EditOp:
        """The same edit restricted to the output box [y0, y1) x [x0, x1) (grid-aligned)."""
        gy0, gy1, gx0, gx1 = y0 // grid, y1 // grid, x0 // grid, x1 // grid

        def cut(m: torch.Tensor) -> torch.Tensor:
            return m[..., y0:y1, x0:x1]

        return replace(
            self,
            regions=[Region(r.class_id, cut(r.mask), r.strength) for r in self.regions],
            references=[Reference(r.z[..., gy0:gy1, gx0:gx1], r.class_id, cut(r.mask), r.shift)
                        for r in self.references])

    @torch.no_grad()
    def apply(self, G: CollageGenerator, z: torch.Tensor) -> torch.Tensor:
        """One forward pass: [B, 3, H, W] in [-1, 1]."""
        if self.references:
            return feature_blend(G, z, self.base_class, self.references, layers=self.blend_layers,
                                 strength=self.blend_strength, regions=self.regions, scbn_layers=self.layers,
                                 layer_strengths=self.blend_layer_strengths,
                                 scbn_layer_strengths=self.layer_strengths)
        return label_swap(G, z, self.base_class, self.regions, layers=self.layers,
                          layer_strengths=self.layer_strengths)


def window_of(mask: torch.Tensor, grid: int, pad: int = 8) -> tuple[int, int, int, int] | None:
    """The box (y0, y1, x0, x1) of the pixels of ``mask`` [..., H, W] above 0, grown by ``pad`` px and
    aligned outwards to the grid: the only pixels of an edit that the photo will show (None: empty mask)."""
    H, W = mask.shape[-2:]
    hit = mask.reshape(-1, H, W).amax(0) > 0
    if not bool(hit.any()):
        return None
    ys, xs = torch.nonzero(hit.any(1)).flatten(), torch.nonzero(hit.any(0)).flatten()
    y0, y1 = max(0, int(ys[0]) - pad) // grid * grid, min(H, -(-(int(ys[-1]) + 1 + pad) // grid) * grid)
    x0, x1 = max(0, int(xs[0]) - pad) // grid * grid, min(W, -(-(int(xs[-1]) + 1 + pad) // grid) * grid)
    return y0, y1, x0, x1


def shifted_window(window: tuple[int, int, int, int] | None, shift: tuple[int, int], size: tuple[int, int],
                   grid: int) -> tuple[int, int, int, int] | None:
    """The box of a feature blend's reference that lands in ``window`` (y0, y1, x0, x1) when reference content at
    p lands at p + ``shift`` ((dx, dy) px, as the blend's shift operator): the window moved by -shift, aligned
    outwards to the grid and clipped to ``size`` (H, W); None when ``window`` is None or the moved box leaves the
    crop."""
    if window is None:
        return None
    H, W = size
    (y0, y1, x0, x1), (dx, dy) = window, shift
    y0, y1 = max(0, (y0 - dy) // grid * grid), min(H, -(-(y1 - dy) // grid) * grid)
    x0, x1 = max(0, (x0 - dx) // grid * grid), min(W, -(-(x1 - dx) // grid) * grid)
    return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None


@torch.no_grad()
def render(G: CollageGenerator, z: torch.Tensor, op: EditOp, tile: int | None = None,
           overlap: int = DEFAULT_OVERLAP, progress=None,
           window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """``op`` rendered from the latent ``z`` [1, C, h, w] at the full size (h * grid, w * grid).

    With ``window`` (y0, y1, x0, x1: output px on the grid, e.g. :func:`window_of` the selection), only that box
    is rendered (with the same context a tile gets) and the rest of the output is 0: the same pixels inside the
    box, for the work of the box (an elliptical 512 px selection in its 648 px crop: 0.64 of the pixels).

    With ``tile`` (output px, a multiple of the grid) and a larger output, the render runs tile by tile: each
    tile with ``overlap`` + the largest blend shift px of context on each side (rounded up to the grid), keeping
    only its centre.  ``progress(stage, step, total, loss)`` is called per tile (tiled renders only, so a one-pass
    edit reports its projection's steps last)."""
    H, W = image_size(G, z)
    g = grid_of(G)
    margin = -(-(overlap + op.max_shift()) // g) * g
    if window is not None and tuple(window) != (0, H, 0, W):
        y0, y1, x0, x1 = check_window(window, H, W, g, "render")
        Y0, Y1, X0, X1 = grow_box((y0, y1, x0, x1), margin, H, W)
        part = render(G, z[..., Y0 // g:Y1 // g, X0 // g:X1 // g], op.crop(Y0, Y1, X0, X1, g), tile, overlap,
                      progress)
        out = torch.zeros(z.shape[0], 3, H, W, device=z.device, dtype=part.dtype)
        out[..., y0:y1, x0:x1] = part[..., y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
        return out
    if tile is None or (tile >= H and tile >= W):
        return op.apply(G, z)
    tile = max(g, tile // g * g)
    out = torch.empty(z.shape[0], 3, H, W, device=z.device)
    boxes = tile_boxes(H, W, tile, margin, g)
    for i, ((y, y1, x, x1), (Y0, Y1, X0, X1)) in enumerate(boxes):
        part = op.crop(Y0, Y1, X0, X1, g).apply(G, z[..., Y0 // g:Y1 // g, X0 // g:X1 // g])
        out[..., y:y1, x:x1] = part[..., y - Y0:y1 - Y0, x - X0:x1 - X0]
        if progress:
            progress("render", i + 1, len(boxes), None)
    return out


def scale_latent(z: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """The texture-scale step: a latent of the shrunk crop enlarged to ``cells`` (h, w) by repeating each cell
    (nearest neighbour), so every feature the generator draws from it covers ``scale`` times as many pixels
    while the generator still adds its own detail at full resolution."""
    if tuple(z.shape[-2:]) == tuple(cells):
        return z
    return F.interpolate(z, size=tuple(cells), mode="nearest")
