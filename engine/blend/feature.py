"""Feature collage (spatial feature blending, paper §3.2, eq. 3) on any CollageGenerator: the base stream and N
reference streams in one batched forward pass, each reference's feature moved by its shift U into its mask; sCBN
regions (engine/collage/label.py) may act on the base stream in the same pass."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.collage.label import check_class, image_size, scbn_class_maps
from engine.generator import CollageContext, CollageGenerator, parse_layers
from engine.sites.blending import BlendPlan
from engine.sites.scbn import ClassMap, Region


@dataclass
class Reference:
    """One reference stream of feature blending: its latent, its class, where its feature goes (``mask`` in the
    base image's coordinates, values in [0, 1]) and the image-space shift U that moves it there."""

    z: torch.Tensor
    class_id: int
    mask: torch.Tensor
    shift: tuple[int, int] = (0, 0)


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
