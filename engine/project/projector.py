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

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from engine.tiles import check_window, grow_box, tile_boxes
from engine.generator import CollageContext, ModelBundle
from engine.sites.scbn import ClassMap

Progress = Callable[[str, int, int, float], None]
OFFICIAL_LR = {"z": 0.075, "zeta": 0.015}  # the official implementation's Adam step sizes


def reduced_precision(device: torch.device, dtype: torch.dtype | None):
    """The autocast context for work done in ``dtype`` (torch.bfloat16) on ``device``; nothing for None (float32).

    Used by the full-resolution path (engine/edit) for the encoder and the calibration's gradient steps only:
    the latent they produce is rendered in float32.  On the default model bf16 steps reach the same float32
    projection loss (within 0.0004 on 10 real-photo crops) in 0.62 of the time on a CPU with native bf16."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    encoded: torch.Tensor | None = None  # E(x), where a calibration from this start begins (Projector.start)


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
        max_steps: int | None = None, z0: torch.Tensor | None = None, render: bool = True,
        step_dtype: torch.dtype | None = None,
    ) -> ProjectionResult:
        """Adam on the projection loss for ``steps`` steps from the initial latent; returns the best latent.

        With ``target``, the run goes on after ``steps`` (up to ``max_steps``) until the loss first reaches
        ``target`` and records that step in ``reached`` (bench/projection.py counts iterations this way); the
        returned latent and loss are still the best of the first ``steps`` steps.  ``z0``: the first latent when
        the caller already has it (else from ``init``); ``render`` False leaves ``image`` None (one forward
        pass less, for callers that render the latent themselves); ``step_dtype`` torch.bfloat16: each step's
        forward pass and loss run under bf16 autocast (:func:`reduced_precision`; the loss is kept in float32)."""
        max_steps = max(steps, max_steps or steps) if target is not None else steps
        if z0 is None:
            z0 = self.initial_latent(x, init, restarts, seed, class_id)
        else:
            z0 = z0.expand(restarts, *z0.shape[1:]).clone()
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
            with reduced_precision(self.G.device, step_dtype):
                z = to_z(var) if to_z is not None else var
                per = self.loss(self.generate(z, class_id), xs, psi).float()
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
            image = self.generate(z, class_id) if render else None
        return ProjectionResult(z=z.detach(), class_id=class_id, loss=best_loss, image=image, history=history,
                                space=space, zeta=best_var if space == "zeta" else None, lr=lr, reached=reached)


    # -- full resolution (fully convolutional models) -----------------------------------------------------
    def start(self, x: torch.Tensor, class_id: int, dtype: torch.dtype | None = None) -> ProjectionResult:
        """The fast mode's latent, no calibration step: B(A(E(x))) when the model has an encoder and an A/B
        network (where zeta-space calibration starts; on 5 real photos at 256 and 512 px it kept a little more of
        the photo's Laplacian energy than E(x) alone, 0.32 vs 0.30, at the same loss), E(x) with an encoder
        only; a random latent without one.  ``loss`` is NaN: nothing was measured.  ``dtype`` torch.bfloat16: the
        encoder runs under bf16 autocast (:func:`reduced_precision`), its latent is returned in float32."""
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError("project one image at a time: x must be [1, 3, H, W]")
        x = x.to(self.G.device)
        with reduced_precision(self.G.device, dtype):
            e = self.initial_latent(x, "encoder", 1, 0, class_id)
        z = e = e.float()
        space, zeta = "z", None
        if self.b.aux is not None and self.b.encoder is not None:
            with torch.no_grad():
                zeta = self.b.aux.A(z)
                z = self.b.aux.B(zeta)
            space = "zeta"
        return ProjectionResult(z=z.detach(), class_id=int(class_id), loss=float("nan"), image=None, space=space,
                                zeta=zeta, encoded=e)

    def calibrate_tiled(
        self, x: torch.Tensor, class_id: int, steps: int, start: ProjectionResult | None = None,
        tile: int | None = None, overlap: int = 32, grid: int = 8, progress: Progress | None = None,
        window: tuple[int, int, int, int] | None = None, step_dtype: torch.dtype | None = None,
    ) -> ProjectionResult:
        """Calibration at the crop's own resolution: ``steps`` Adam steps (zeta-space when the model has an A/B
        network) from ``start`` (default ``self.start(x)``).  A crop larger than ``tile`` px is calibrated tile by
        tile (each tile with ``overlap`` px of context, its own target features, the centre of its latent kept),
        which bounds the memory of the backward pass; the loss reported is the tiles' mean.

        ``window`` (y0, y1, x0, x1, px on the grid): only the latent of that box is calibrated (the box and
        ``overlap`` px of context are what the steps see); the rest keeps ``start``'s latent.  The photo shows
        only the selection's box, so the steps are spent there (0.64 of the work for an elliptical 512 px
        selection in its 648 px crop)."""
        x = x.to(self.G.device)
        start = start or self.start(x, class_id)
        H, W = x.shape[-2:]
        if window is not None and tuple(window) != (0, H, 0, W):
            return self._calibrate_window(x, class_id, steps, start, tile, overlap, grid, progress, window,
                                          step_dtype)
        space = start.space
        z0 = start.encoded if start.encoded is not None else start.z
        if tile is None or (tile >= H and tile >= W):
            return self.calibrate(x, self.target_features(x), class_id, steps, space=space, z0=z0, render=False,
                                  progress=progress, step_dtype=step_dtype)
        tile = max(grid, tile // grid * grid)
        out = torch.empty_like(start.z)
        boxes = tile_boxes(H, W, tile, -(-overlap // grid) * grid, grid)
        losses = []
        for i, ((y, y1, x0, x1), (Y0, Y1, X0, X1)) in enumerate(boxes):
            xt = x[..., Y0:Y1, X0:X1]

            def sub(stage, step, total, loss, _i=i):
                if progress:
                    progress("projection", _i * steps + step, len(boxes) * steps, loss)

            r = self.calibrate(xt, self.target_features(xt), class_id, steps, space=space,
                               z0=z0[..., Y0 // grid:Y1 // grid, X0 // grid:X1 // grid], render=False,
                               progress=sub, step_dtype=step_dtype)
            out[..., y // grid:y1 // grid, x0 // grid:x1 // grid] = \
                r.z[..., (y - Y0) // grid:(y1 - Y0) // grid, (x0 - X0) // grid:(x1 - X0) // grid]
            losses.append(r.loss)
        return ProjectionResult(z=out, class_id=int(class_id), loss=float(sum(losses) / len(losses)), image=None,
                                space=space, history=losses)

    def _calibrate_window(self, x, class_id, steps, start, tile, overlap, grid, progress, window, step_dtype=None):
        H, W = x.shape[-2:]
        y0, y1, x0, x1 = check_window(window, H, W, grid, "calibration")
        Y0, Y1, X0, X1 = grow_box((y0, y1, x0, x1), -(-overlap // grid) * grid, H, W)

        def cells(t, a0, a1, b0, b1):
            return None if t is None else t[..., a0 // grid:a1 // grid, b0 // grid:b1 // grid]

        sub = ProjectionResult(z=cells(start.z, Y0, Y1, X0, X1), class_id=start.class_id, loss=start.loss,
                               image=None, space=start.space, zeta=cells(start.zeta, Y0, Y1, X0, X1),
                               encoded=cells(start.encoded, Y0, Y1, X0, X1))
        r = self.calibrate_tiled(x[..., Y0:Y1, X0:X1], class_id, steps, start=sub, tile=tile, overlap=overlap,
                                 grid=grid, progress=progress, step_dtype=step_dtype)
        z = start.z.clone()
        z[..., y0 // grid:y1 // grid, x0 // grid:x1 // grid] = cells(r.z, y0 - Y0, y1 - Y0, x0 - X0, x1 - X0)
        return ProjectionResult(z=z, class_id=int(class_id), loss=r.loss, image=None, space=r.space,
                                history=r.history)


def project(bundle: ModelBundle, x: torch.Tensor, **kwargs) -> ProjectionResult:
    return Projector(bundle, pixel_weight=kwargs.pop("pixel_weight", 0.2)).project(x, **kwargs)
