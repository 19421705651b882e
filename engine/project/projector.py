"""Manifold projection of real images (paper §4 and App. B): find z (or zeta) with G(z) ~ x.

- Initialise from the encoder, z0 = E(x), when the model has one (else random).
- Calibrate with Adam on eq. 4,  L = 1 - Psi(G(z)) . Psi(x)  (Psi: the discriminator's normalised pre-pooling
  feature vector), plus an optional pixel term (official defaults: 0.2 x MSE, 200 steps, lr 0.075 on z,
  0.015 on zeta; a model may carry its own step sizes in ``info["projection_lr"]``).
- zeta-space (App. B.1): optimise zeta, initialised at A(E(x)), and generate from B(zeta).
- Models with no discriminator (BigGAN-deep): a multi-scale pixel + gradient loss, random restarts, and
  truncation (z clipped to [-t, t]).

Progress: ``progress(stage, step, total, loss)`` is called at every step; it may raise to cancel (the server's
job object raises JobCancelled), so cancellation is honoured at every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from engine.generator import CollageContext, ModelBundle
from engine.sites.scbn import ClassMap

Progress = Callable[[str, int, int, float], None]
OFFICIAL_LR = {"z": 0.075, "zeta": 0.015}  # the official implementation's Adam step sizes


def feature_psi(D, x: torch.Tensor) -> torch.Tensor:
    """Psi(x): the discriminator's pre-pooling feature vector, L2-normalised."""
    return F.normalize(D.feature_vector(x), dim=1)


def manifold_projection_loss(psi_gen: torch.Tensor, psi_target: torch.Tensor) -> torch.Tensor:
    """Eq. 4 per sample: 1 - Psi(x1) . Psi(x2)."""
    return 1.0 - (psi_gen * psi_target).sum(dim=1)


def image_pyramid_loss(x: torch.Tensor, target: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """Per-sample multi-scale pixel + gradient loss (for models with no discriminator)."""
    total = x.new_zeros(x.shape[0])
    for i in range(levels):
        if i:
            x, target = F.avg_pool2d(x, 2), F.avg_pool2d(target, 2)
        total = total + (x - target).pow(2).mean(dim=(1, 2, 3))
        for dim in (2, 3):
            gx, gt = x.diff(dim=dim), target.diff(dim=dim)
            total = total + 0.5 * (gx - gt).pow(2).mean(dim=(1, 2, 3))
    return total / levels


@dataclass
class ProjectionResult:
    z: torch.Tensor  # the latent to feed G (B(zeta) when optimising in zeta-space)
    class_id: int
    loss: float
    image: torch.Tensor  # G(z) [1, 3, H, W] in [-1, 1]
    history: list[float] = field(default_factory=list)
    space: str = "z"
    zeta: torch.Tensor | None = None
    lr: float | None = None  # Adam's step size used
    reached: int | None = None  # first step whose loss reached calibrate()'s target


class Projector:
    """Projection for one model bundle; the loss is chosen from what the bundle has."""

    def __init__(self, bundle: ModelBundle, pixel_weight: float = 0.2):
        self.b = bundle
        self.G = bundle.generator
        self.D = bundle.discriminator
        self.pixel_weight = pixel_weight
        for m in (self.G, self.D, bundle.encoder, bundle.aux):
            if m is not None:
                for p in m.parameters():
                    p.requires_grad_(False)

    # -- loss ---------------------------------------------------------------------------------------------
    def target_features(self, x: torch.Tensor):
        if self.D is None:
            return None
        with torch.no_grad():
            return feature_psi(self.D, x)

    def loss(self, gen: torch.Tensor, x: torch.Tensor, psi_x) -> torch.Tensor:
        """Per-sample loss: eq. 4 + pixel_weight x MSE with a discriminator, else the pixel pyramid loss."""
        if self.D is None:
            return image_pyramid_loss(gen, x)
        loss = manifold_projection_loss(feature_psi(self.D, gen), psi_x)
        if self.pixel_weight:
            loss = loss + self.pixel_weight * (gen - x).pow(2).mean(dim=(1, 2, 3))
        return loss

    def generate(self, z: torch.Tensor, class_id: int) -> torch.Tensor:
        labels = torch.full((z.shape[0],), int(class_id), dtype=torch.long, device=z.device)
        return self.G.synthesize(z, CollageContext(ClassMap.uniform(labels)))

    # -- initialisation -----------------------------------------------------------------------------------
    def initial_latent(self, x: torch.Tensor, init: str, restarts: int, seed: int, class_id: int = 0) -> torch.Tensor:
        res = x.shape[-1]
        if init == "encoder" and self.b.encoder is not None:
            with torch.no_grad():  # a class-conditional encoder (the official Chainer one) uses the class
                z = self.b.encoder.encode(x, torch.full((x.shape[0],), int(class_id), dtype=torch.long,
                                                        device=x.device))
            return z.expand(restarts, *z.shape[1:]).clone()
        g = torch.Generator().manual_seed(seed)
        return self.G.sample_latent(restarts, generator=g, truncation=self.b.truncation,
                                    resolution=res if len(self.G.latent_shape()) == 3 else None)

    def rank_classes(self, x: torch.Tensor, k: int) -> list[int]:
        """Candidate classes for an unlabelled image, most plausible first (the projection discriminator's
        class term <embed(y), h>); all classes (up to k) when there is no discriminator."""
        if self.D is None:
            return list(range(min(k, self.G.num_classes)))
        with torch.no_grad():
            scores = self.D.class_scores(x)[0]
        return scores.argsort(descending=True)[:k].tolist()

    # -- the optimisation ---------------------------------------------------------------------------------
    def project(
        self, x: torch.Tensor, class_id: int | None = None, steps: int = 200, space: str = "auto",
        init: str = "encoder", lr: float | None = None, candidates: int = 3, candidate_steps: int = 20,
        restarts: int = 1, seed: int = 0, progress: Progress | None = None,
    ) -> ProjectionResult:
        """Project x [1, 3, R, R] in [-1, 1].  ``class_id`` None: try the top ``candidates`` classes for
        ``candidate_steps`` steps each and keep the lowest loss.  ``space``: "z", "zeta" or "auto" (zeta when
        the model has an A/B network and an encoder)."""
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError("project one image at a time: x must be [1, 3, H, W]")
        x = x.to(self.G.device)
        if space == "auto":
            space = "zeta" if (self.b.aux is not None and self.b.encoder is not None and init == "encoder") else "z"
        if space == "zeta" and self.b.aux is None:
            raise ValueError("this model has no auxiliary A/B network: project in z-space")
        psi_x = self.target_features(x)
        if class_id is None:
            candidate_steps = max(1, min(candidate_steps, steps))  # a short projection gets a short search
            ranked = self.rank_classes(x, candidates)
            best = None
            for i, c in enumerate(ranked):
                def sub(stage, step, total, loss, _i=i):
                    if progress:
                        progress("class search", _i * candidate_steps + step, len(ranked) * candidate_steps, loss)
                r = self.calibrate(x, psi_x, c, candidate_steps, space, init, lr, restarts, seed, sub)
                if best is None or r.loss < best.loss:
                    best = r
            class_id = best.class_id
        return self.calibrate(x, psi_x, int(class_id), steps, space, init, lr, restarts, seed, progress)

    def learning_rate(self, space: str) -> float:
        """Adam's step size for ``space``: the model's own (``info["projection_lr"]``, chosen when it was trained)
        or the official defaults, 0.075 on z and 0.015 on zeta."""
        return float(self.b.info.get("projection_lr", {}).get(space, OFFICIAL_LR[space]))

    def calibrate(
        self, x, psi_x, class_id: int, steps: int, space: str = "z", init: str = "encoder", lr: float | None = None,
        restarts: int = 1, seed: int = 0, progress: Progress | None = None, target: float | None = None,
        max_steps: int | None = None,
    ) -> ProjectionResult:
        """Adam on the projection loss for ``steps`` steps from the initial latent; returns the best latent.

        With ``target``, the run goes on after ``steps`` (up to ``max_steps``) until the loss first reaches
        ``target`` and records that step in ``reached`` (bench/projection.py counts iterations this way); the
        returned latent and loss are still the best of the first ``steps`` steps."""
        max_steps = max(steps, max_steps or steps) if target is not None else steps
        z0 = self.initial_latent(x, init, restarts, seed, class_id)
        xs = x.expand(restarts, *x.shape[1:])
        psi = None if psi_x is None else psi_x.expand(restarts, -1)
        aux = self.b.aux
        if space == "zeta":
            with torch.no_grad():
                var = aux.A(z0)
            to_z = aux.B
        else:
            var = z0
            to_z = None
        lr = self.learning_rate(space) if lr is None else lr
        var = var.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=lr)
        trunc = self.G.latent_bound(self.b.truncation)
        history: list[float] = []
        best_loss, best_var = float("inf"), var.detach().clone()
        reached = None
        for step in range(max_steps + 1):
            z = to_z(var) if to_z is not None else var
            gen = self.generate(z, class_id)
            per = self.loss(gen, xs, psi)
            cur = float(per.detach().min())
            history.append(cur)
            if step <= steps and cur < best_loss:
                best_loss = cur
                i = int(per.argmin())
                best_var = var.detach()[i:i + 1].clone()
            if target is not None and reached is None and cur <= target:
                reached = step
            if progress:
                progress("projection", min(step, steps), steps, cur)
            if step >= steps and (target is None or reached is not None or step == max_steps):
                break
            opt.zero_grad()
            per.sum().backward()
            opt.step()
            if trunc and to_z is None:
                with torch.no_grad():
                    var.clamp_(-trunc, trunc)
        with torch.no_grad():
            z = to_z(best_var) if to_z is not None else best_var
            image = self.generate(z, class_id)
        return ProjectionResult(z=z.detach(), class_id=class_id, loss=best_loss, image=image, history=history,
                                space=space, zeta=best_var if space == "zeta" else None, lr=lr, reached=reached)


def project(bundle: ModelBundle, x: torch.Tensor, **kwargs) -> ProjectionResult:
    return Projector(bundle, pixel_weight=kwargs.pop("pixel_weight", 0.2)).project(x, **kwargs)
