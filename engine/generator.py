"""The generator contract the paper's operations use, and what a loaded model consists of.

A collage-able generator (one adapter per model family in engine/models/) exposes
- its ordered conditional-normalisation sites (sCBN acts there) grouped into *layers* (a ResNet block, or the
  generator's first linear map): ``norm_sites()``;
- its blendable feature sites (App. A: for ResNet generators the first bottom_width x bottom_width map and
  each block's output): ``blend_sites()``;
- ``synthesize(z, ctx)``: one forward pass in which every ConditionalNorm asks ``ctx.class_map(site)`` for its
  class map and every blend site passes its features through ``ctx.blend(site, h)``.

A loaded model is a ``ModelBundle``: that generator and, when the family has them, a ``Discriminator`` (whose
features manifold projection compares, eq. 4, and whose class term ranks the classes of an unlabelled photo),
an ``Encoder`` (the projection's first guess) and an ``AuxNetwork`` (App. B.1's A/B network for zeta-space).

sCBN and blending at a site (engine/sites), the collage operations (engine/collage, engine/blend), projection
(engine/project) and the photo pipeline (engine/edit) use only this module, never a model family.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from engine.sites.blending import BlendPlan
from engine.sites.scbn import ClassMap, ConditionalNorm


@dataclass(frozen=True)
class Site:
    """A place in the generator: ``index`` in forward order, ``layer`` (the block it belongs to), ``name``,
    and ``stride``: output pixels per feature pixel (resolution = output size / stride)."""

    index: int
    layer: int
    name: str
    stride: int


class CollageContext:
    """Per-forward state: the class map of every norm site and the optional blend plan."""

    def __init__(self, class_maps: ClassMap | Sequence[ClassMap], blend: BlendPlan | None = None):
        self._maps = class_maps
        self.blend_plan = blend

    @classmethod
    def plain(cls, labels: torch.Tensor) -> CollageContext:
        return cls(ClassMap.uniform(labels))

    def class_map(self, site: int) -> ClassMap:
        if isinstance(self._maps, ClassMap):
            return self._maps
        return self._maps[site]

    def blend(self, site: int, h: torch.Tensor) -> torch.Tensor:
        if self.blend_plan is None:
            return h
        return self.blend_plan.apply(site, h)


class CollageGenerator(nn.Module):
    """Base class of all model-family adapters.

    Subclasses set ``num_classes``, ``resolution`` (native output size) and implement ``latent_shape``,
    ``norm_sites``, ``blend_sites`` and ``synthesize``.  ``class_names`` defaults to "class N".
    """

    num_classes: int = 0
    resolution: int = 0
    family: str = "generic"

    def latent_shape(self, resolution: int | None = None) -> tuple[int, ...]:
        raise NotImplementedError  # pragma: no cover - abstract

    def norm_sites(self) -> list[Site]:
        raise NotImplementedError  # pragma: no cover - abstract

    def blend_sites(self) -> list[Site]:
        raise NotImplementedError  # pragma: no cover - abstract

    def synthesize(self, z: torch.Tensor, ctx: CollageContext) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def class_names(self) -> list[str]:
        return [f"class {i}" for i in range(self.num_classes)]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sample_latent(
        self, n: int, generator: torch.Generator | None = None, truncation: float | None = None,
        resolution: int | None = None,
    ) -> torch.Tensor:
        """Standard normal latent (truncated to |z| <= truncation when given), drawn on the CPU for determinism."""
        shape = (n, *self.latent_shape(resolution))
        z = torch.randn(shape, generator=generator)
        if truncation is not None and truncation > 0:
            bad = z.abs() > truncation
            while bad.any():
                z[bad] = torch.randn(int(bad.sum()), generator=generator)
                bad = z.abs() > truncation
        return z.to(self.device)

    def latent_bound(self, truncation: float | None) -> float | None:
        """The largest |z| that ``sample_latent(truncation=...)`` produces (projection keeps z within it)."""
        return truncation if truncation and truncation > 0 else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Plain conditional generation (eq. 1 at every site)."""
        return self.synthesize(z, CollageContext.plain(labels.to(z.device)))

    def number_norm_sites(self) -> None:
        """Give every ConditionalNorm its site index, in forward (module registration) order."""
        k = 0
        for m in self.modules():
            if isinstance(m, ConditionalNorm):
                m.site = k
                k += 1


def parse_layers(spec, n_layers: int, what: str = "layer") -> list[int]:
    """Layer selection: "all", "first", "rest" (all but the first), or explicit indices ("0,2,5" or a list)."""
    if spec is None or spec == "all":
        return list(range(n_layers))
    if spec == "first":
        return [0]
    if spec == "rest":
        return list(range(1, n_layers))
    if isinstance(spec, str):
        try:
            idx = [int(s) for s in spec.split(",") if s.strip() != ""]
        except ValueError:
            raise ValueError(f"unknown {what} selection {spec!r}: use all, first, rest or indices like 0,2,5") from None
    else:
        idx = [int(i) for i in spec]
    bad = [i for i in idx if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"unknown {what} index {bad[0]}: this model has {what}s 0-{n_layers - 1}")
    if not idx:
        raise ValueError(f"empty {what} selection")
    return sorted(set(idx))


# -- what a loaded model consists of -----------------------------------------------------------------------------
class Discriminator(Protocol):
    """The discriminator as manifold projection uses it (the projection discriminator of SNGAN)."""

    def feature_vector(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] -> the pre-pooling features [B, F] that eq. 4 compares (Psi before the
        L2 normalisation)."""

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] -> [B, num_classes]: how strongly each class explains x (higher: more plausible),
        used to rank the candidate classes of an unlabelled photo."""


class Encoder(Protocol):
    """The projection's first guess: z0 = E(x), or E(x, y) for a class-conditional encoder."""

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] and class ids [B] (ignored by unconditional encoders) -> z, shaped like
        the generator's latent."""


class AuxNetwork(Protocol):
    """App. B.1: A embeds z into the higher-dimensional zeta, B maps zeta back to z."""

    def A(self, z: torch.Tensor) -> torch.Tensor: ...

    def B(self, zeta: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ModelBundle:
    """A loaded model: the generator (through the collage interface) and, when the family has them, the
    discriminator, the encoder and the auxiliary A/B network (torch modules implementing the protocols above)."""

    name: str
    generator: CollageGenerator
    discriminator: Discriminator | None = None
    encoder: Encoder | None = None
    aux: AuxNetwork | None = None
    class_names: list[str] = field(default_factory=list)
    truncation: float | None = None  # default truncation when sampling latents (BigGAN)
    info: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    def to(self, device) -> ModelBundle:
        for m in (self.generator, self.discriminator, self.encoder, self.aux):
            if m is not None:
                m.to(device).eval()
        return self
