"""The two collage operations on any CollageGenerator: label collage (sCBN, eq. 2) and feature collage
(spatial feature blending, eq. 3), alone or together in one batched forward pass."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.blending import BlendPlan
from engine.generator import CollageContext, CollageGenerator, parse_layers
from engine.scbn import ClassMap, Region


@dataclass
class Reference:
    """One reference stream of feature blending: its latent, its class, where its feature goes (``mask`` in the
    base image's coordinates, values in [0, 1]) and the image-space shift U that moves it there."""

    z: torch.Tensor
    class_id: int
    mask: torch.Tensor
    shift: tuple[int, int] = (0, 0)


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


def blend_site_weights(G: CollageGenerator, layers="all", strength: float = 1.0) -> dict[int, float]:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    sites = G.blend_sites()
    chosen = parse_layers(layers, len(sites), "blend site")
    return {sites[i].index: float(strength) for i in chosen}


@torch.no_grad()
def feature_blend(
    G: CollageGenerator, z: torch.Tensor, base_class: int, references: Sequence[Reference], layers="all",
    strength: float = 1.0, regions: Sequence[Region] = (), scbn_layers="all", return_all: bool = False,
) -> torch.Tensor:
    """Feature collage (eq. 3): base stream + N reference streams in one batched forward pass.

    ``regions`` optionally applies sCBN to the base stream in the same pass.  Returns the blended base images
    [B, 3, H, W] (with ``return_all`` every stream, stream-major).
    """
    b = z.shape[0]
    size = image_size(G, z)
    base = torch.full((b,), check_class(G, base_class), dtype=torch.long, device=G.device)
    base_maps = scbn_class_maps(G, base, regions, size, scbn_layers)
    ref_maps = [ClassMap.uniform(torch.full((b,), check_class(G, r.class_id), dtype=torch.long, device=G.device))
                for r in references]
    maps = [ClassMap.cat([m] + ref_maps) for m in base_maps]
    z_all = torch.cat([z] + [r.z.to(z.device).expand_as(z) for r in references], dim=0)
    plan = BlendPlan(masks=[r.mask for r in references], shifts=[tuple(r.shift) for r in references],
                     site_weights=blend_site_weights(G, layers, strength), batch=b, image_size=size)
    out = G.synthesize(z_all, CollageContext(maps, plan))
    return out if return_all else out[:b]
