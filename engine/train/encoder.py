"""Second stage of the default model (App. B.2): train the encoder E for the trained generator with the
discriminator-feature loss of eq. 4, L(G(E(x)), x) = 1 - Psi(G(E(x))) . Psi(x)  (+ 0.2 x MSE), on real training
crops; on generated samples, whose latent is known, the latent error ||E(G(z)) - z||^2 is added.

Also recalibrates the generator's batch-norm statistics (the EMA generator's running averages are those of
the raw generator), so that test-time generation uses statistics that match its weights.

    python -m engine.train.encoder --gan runs/default --minutes 15
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator, SpatialEncoder
from engine.projection import feature_psi, manifold_projection_loss
from engine.train.gan import save_atomic


def load_gan(run: Path) -> tuple[ResNetGenerator, SNResNetProjectionDiscriminator, SNGANConfig]:
    ck = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False)  # our own training checkpoint
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
        y = torch.randint(0, G.num_classes, (batch,), generator=g)
        G(G.sample_latent(batch, generator=g, resolution=size), y)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.eval()


def encoder_loss(G, D, E, x, y, z_true=None, pixel_weight: float = 0.2) -> torch.Tensor:
    z_hat = E(x)
    gen = G(z_hat, y)
    loss = manifold_projection_loss(feature_psi(D, gen), feature_psi(D, x)).mean()
    loss = loss + pixel_weight * (gen - x).pow(2).mean()
    if z_true is not None:
        loss = loss + (z_hat - z_true).pow(2).mean()
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
    opt = torch.optim.Adam(E.parameters(), 5e-4, betas=(0.5, 0.999))
    ck_path = run / "encoder_ckpt.pt"
    it, spent = 0, 0.0
    if ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        E.load_state_dict(ck["E"])
        opt.load_state_dict(ck["opt"])
        it, spent = ck["it"], ck["spent"]
    data = TextureSet.load(args.data, split="train")
    rng = np.random.default_rng(it)
    g = torch.Generator().manual_seed(it)
    t0, spent0, t_ck = time.time(), spent, time.time()
    E.train()
    while spent < args.minutes * 60:
        x, y = data.sample(args.batch, args.size, rng)
        loss_real = encoder_loss(G, D, E, x, y)
        yf = torch.randint(0, cfg.n_classes, (args.batch,), generator=g)
        zf = G.sample_latent(args.batch, generator=g, resolution=args.size)
        with torch.no_grad():
            xf = G(zf, yf)
        loss_fake = encoder_loss(G, D, E, xf, yf, z_true=zf)
        loss = loss_real + loss_fake
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        spent = spent0 + time.time() - t0
        if it % 20 == 0:
            print(f"it {it} min {spent / 60:.1f} real {loss_real.item():.4f} fake {loss_fake.item():.4f}", flush=True)
        if time.time() - t_ck > 180:
            save_atomic({"E": E.state_dict(), "opt": opt.state_dict(), "it": it, "spent": spent}, ck_path)
            t_ck = time.time()
    save_atomic({"E": E.state_dict(), "opt": opt.state_dict(), "it": it, "spent": spent}, ck_path)
    print(f"done: {it} iterations", flush=True)


if __name__ == "__main__":
    main()
