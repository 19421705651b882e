"""What a loaded model consists of: the generator (through the collage interface) and, when the family has
them, the discriminator whose features manifold projection compares, the encoder and the auxiliary A/B net."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from engine.interface import CollageGenerator


@dataclass
class ModelBundle:
    name: str
    generator: CollageGenerator
    discriminator: nn.Module | None = None  # has feature_vector(x) -> [B, F]
    encoder: nn.Module | None = None  # x in [-1, 1] -> z
    aux: nn.Module | None = None  # AuxAB: A(z) -> zeta, B(zeta) -> z
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
