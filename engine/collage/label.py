"""Label collage (sCBN, paper §3.1, eq. 2) on any CollageGenerator: class maps for every norm site from painted
regions, on the chosen layers, and the edit itself (``label_swap``).  Feature collage is engine/blend/feature.py."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.generator import CollageContext, CollageGenerator, parse_layers
from engine.sites.scbn import ClassMap, Region


def layer_count(G: CollageGenerator) -> int:
    return max(s.layer for s in G.norm_sites()) + 1


def norm_site_strengths(
    G: CollageGenerator, layers="all", layer_strengths: Sequence[float] | None = None
) -> list[float]:
    """Per norm site factor in [0, 1]: 1 on the selected layers (times an optional per-layer strength), else 0."""
    n = layer_count(G)
    chosen = set(parse_layers(layers, n, "layer"))
    if layer_strengths is not None and len(layer_strengths) != n:
        raise ValueError(f"layer strengths: expected {n} values, got {len(layer_strengths)}")
    out = []
    for s in sorted(G.norm_sites(), key=lambda s: s.index):
        f = 1.0 if s.layer in chosen else 0.0
        if layer_strengths is not None:
            f *= float(layer_strengths[s.layer])
        out.append(f)
    return out


def scbn_class_maps(
    G: CollageGenerator, base: torch.Tensor, regions: Sequence[Region], size: tuple[int, int], layers="all",
    layer_strengths: Sequence[float] | None = None,
) -> list[ClassMap]:
    """The class map of every norm site for a label collage: regions painted on the selected layers only."""
    cmap = ClassMap.from_regions(base.to(G.device), [Region(r.class_id, r.mask.to(G.device), r.strength)
                                                      for r in regions], size)
    return [cmap.with_strength(f) for f in norm_site_strengths(G, layers, layer_strengths)]


def check_class(G: CollageGenerator, class_id: int) -> int:
    if not 0 <= int(class_id) < G.num_classes:
        raise ValueError(f"class id {class_id} is out of range: this model has classes 0-{G.num_classes - 1}")
    return int(class_id)


@torch.no_grad()
def label_swap(
    G: CollageGenerator, z: torch.Tensor, base_class: int, regions: Sequence[Region], layers="all",
    layer_strengths: Sequence[float] | None = None,
) -> torch.Tensor:
    """sCBN label collage: generate from ``z`` with ``base_class`` everywhere and each region's class inside it."""
    for r in regions:
        check_class(G, r.class_id)
    b = z.shape[0]
    size = image_size(G, z)
    base = torch.full((b,), check_class(G, base_class), dtype=torch.long, device=G.device)
    maps = scbn_class_maps(G, base, regions, size, layers, layer_strengths)
    return G.synthesize(z, CollageContext(maps))


def image_size(G: CollageGenerator, z: torch.Tensor) -> tuple[int, int]:
    """Output size for a latent: native resolution for vector latents, scaled map size for spatial ones."""
    if z.dim() == 4:
        f = G.norm_sites()[0].stride
        return z.shape[-2] * f, z.shape[-1] * f
    return G.resolution, G.resolution
