"""Second stage of the default model (App. B.2): train the encoder E for the trained generator with the
discriminator-feature loss of eq. 4, L(G(E(x)), x) = 1 - Psi(G(E(x))) . Psi(x)  (+ 0.2 x MSE), on real training
crops and on generated samples (which lie on the generator's manifold).  ``--latent-weight`` adds the latent error
||E(G(z)) - z||^2 on the generated samples; it is 0 by default: a texture's fine detail hardly determines its z,
so that term pulls E towards the posterior mean (latents of std ~0.26 instead of 1 after 219 iterations of
weight 1) and projection from E(x) then converged slower than from a random z (bench/projection.py).

Also recalibrates the generator's batch-norm statistics (the EMA generator's running averages are those of
the raw generator), so that test-time generation uses statistics that match its weights.

    python -m engine.train.encoder --gan runs/default --minutes 15
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator, SpatialEncoder
from engine.project.projector import feature_psi, manifold_projection_loss
from engine.train.budget import resume, set_step_size, train_for
from engine.train.gan import load_checkpoint


def load_gan(run: Path) -> tuple[ResNetGenerator, SNResNetProjectionDiscriminator, SNGANConfig]:
    ck = load_checkpoint(run / "ckpt.pt")
    cfg = SNGANConfig.from_dict(ck["config"])
    G, D = ResNetGenerator(cfg), SNResNetProjectionDiscriminator(cfg)
    G.load_state_dict(ck["G_ema"])
    D.load_state_dict(ck["D"])
    return G.eval(), D.eval(), cfg


@torch.no_grad()
def recalibrate_batchnorm(G: ResNetGenerator, batches: int = 200, batch: int = 32, size: int = 64, seed: int = 0):
    """Standing statistics: the cumulative average of the batch statistics over many random batches."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in G.modules() if hasattr(m, "avg_mean")]
    for m in bns:
        m.avg_mean.zero_()
        m.avg_var.fill_(1.0)
    saved = [m.momentum for m in bns]
    G.train()
    for i in range(batches):
        for m in bns:
            m.momentum = 1.0 / (i + 1)  # cumulative moving average
        y = torch.randint(0, G.num_classes, (batch,), generator=g).to(G.device)
        G(G.sample_latent(batch, generator=g, resolution=size), y)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.eval()


def encoder_loss(G, D, E, x, y, z_true=None, pixel_weight: float = 0.2, latent_weight: float = 0.0) -> torch.Tensor:
    z_hat = E(x)
    gen = G(z_hat, y)
    loss = manifold_projection_loss(feature_psi(D, gen), feature_psi(D, x)).mean()
    loss = loss + pixel_weight * (gen - x).pow(2).mean()
    if z_true is not None and latent_weight:
        loss = loss + latent_weight * (z_hat - z_true).pow(2).mean()
    return loss


def main(argv=None) -> None:
    from engine.train.data import TextureSet

    ap = argparse.ArgumentParser()
    ap.add_argument("--gan", default="runs/default")
    ap.add_argument("--data", default=".cache/textures")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-batches", type=int, default=100)
    ap.add_argument("--latent-weight", type=float, default=0.0, help="weight of ||E(G(z)) - z||^2 (default 0)")
    ap.add_argument("--lr", type=float, default=5e-4, help="Adam step size (also after a resume; default 5e-4)")
    ap.add_argument("--ema", type=float, default=0.0, help="keep an exponential moving average of E's weights "
                    "with this decay (e.g. 0.99), exported instead of E (default 0: none)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = Path(args.gan)
    G, D, cfg = load_gan(run)
    if not (run / "G_calibrated.pt").exists():
        recalibrate_batchnorm(G, batches=args.calib_batches)
        torch.save(G.state_dict(), run / "G_calibrated.pt")
    else:
        G.load_state_dict(torch.load(run / "G_calibrated.pt", weights_only=True))
    for p in list(G.parameters()) + list(D.parameters()):
        p.requires_grad_(False)
    E = SpatialEncoder(cfg)
    opt = torch.optim.Adam(E.parameters(), args.lr, betas=(0.5, 0.999))
    ck_path = run / "encoder_ckpt.pt"
    parts = {"E": E, "opt": opt}
    it, spent = resume(ck_path, parts)
    ema = set_step_size(ck_path, parts, "E", opt, args.lr, args.ema)
    data = TextureSet.load(args.data, split="train")
    rng = np.random.default_rng(it)
    g = torch.Generator().manual_seed(it)
    E.train()

    def step(it: int) -> str:
        x, y = data.sample(args.batch, args.size, rng)
        loss_real = encoder_loss(G, D, E, x, y)
        yf = torch.randint(0, cfg.n_classes, (args.batch,), generator=g)
        zf = G.sample_latent(args.batch, generator=g, resolution=args.size)
        with torch.no_grad():
            xf = G(zf, yf)
        loss_fake = encoder_loss(G, D, E, xf, yf, z_true=zf, latent_weight=args.latent_weight)
        loss = loss_real + loss_fake
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(E)
        return f"real {loss_real.item():.4f} fake {loss_fake.item():.4f}"

    train_for(args.minutes, ck_path, parts, step, it, spent)

if __name__ == "__main__":
    main()
