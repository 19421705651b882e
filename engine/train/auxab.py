"""Third stage of the default model (App. B.1-B.2): train the auxiliary network A/B with the generator and the
encoder fixed.

Eq. 5: zeta_{j+1} = zeta_j - alpha_j grad L(G(B(zeta_j)), x),  zeta_0 = A(E(x)),  with AdaGrad-scaled steps
(Adam is unstable under double back-propagation, App. B.2).
Eq. 6: L_AB = sum_{j=0}^{N_iter} w_j L(G(B(zeta_j)), x) + lambda ||B(A(z)) - z||^2,  N_iter = 2,
w = (20, 2, 1), lambda = 100; gradient clipping at 100 and weight decay 1e-4 as in the paper.

    python -m engine.train.auxab --gan runs/default --minutes 10
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from engine.models.auxab import AuxAB
from engine.models.sngan import SpatialEncoder
from engine.project.projector import feature_psi, manifold_projection_loss
from engine.train.encoder import load_gan
from engine.train.budget import FollowCheckpoint, resume, set_step_size, train_for

AUX_DIMS = {"dim_a": 128, "dim_zeta": 512, "dim_b": 128}


def auxiliary_network_loss(
    G, D, aux: AuxAB, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor, z_rand: torch.Tensor,
    n_iter: int = 2, weights=(20.0, 2.0, 1.0), lam: float = 100.0, alpha: float = 0.05, pixel_weight: float = 0.2,
) -> tuple[torch.Tensor, list[float]]:
    """Eq. 6 with the inner AdaGrad calibration steps of eq. 5 (double back-propagation through G and B)."""
    psi_x = feature_psi(D, x).detach()
    zeta = aux.A(z0)
    r = torch.full_like(zeta, 1e-8)
    total = x.new_zeros(())
    per_round = []
    for j in range(n_iter + 1):
        gen = G(aux.B(zeta), y)
        loss_j = manifold_projection_loss(feature_psi(D, gen), psi_x)
        loss_j = loss_j + pixel_weight * (gen - x).pow(2).mean(dim=(1, 2, 3))
        total = total + weights[j] * loss_j.mean()
        per_round.append(float(loss_j.detach().mean()))
        if j < n_iter:
            (grad,) = torch.autograd.grad(loss_j.sum(), zeta, create_graph=True)
            r = r + grad * grad
            zeta = zeta - alpha * grad / r.sqrt()
    rec = (aux.B(aux.A(z_rand)) - z_rand).pow(2).mean()
    return total + lam * rec, per_round + [float(rec.detach())]


def main(argv=None) -> None:
    from engine.train.data import TextureSet

    ap = argparse.ArgumentParser()
    ap.add_argument("--gan", default="runs/default")
    ap.add_argument("--data", default=".cache/textures")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam step size (also after a resume; default 1e-4)")
    ap.add_argument("--ema", type=float, default=0.0, help="keep an exponential moving average of the weights with "
                    "this decay, exported instead (default 0: none)")
    ap.add_argument("--follow-encoder", action="store_true",
                    help="reload the encoder whenever its checkpoint changes (when the encoder trains alongside)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = Path(args.gan)
    G, D, cfg = load_gan(run)
    G.load_state_dict(torch.load(run / "G_calibrated.pt", weights_only=True))
    E = SpatialEncoder(cfg)
    encoder = FollowCheckpoint(run / "encoder_ckpt.pt", E, "E")  # loads it (its average if kept)
    E.eval()
    for m in (G, D, E):
        for p in m.parameters():
            p.requires_grad_(False)
    aux = AuxAB(cfg.z_channels, **AUX_DIMS)
    opt = torch.optim.Adam(aux.parameters(), args.lr, weight_decay=1e-4)
    ck_path = run / "aux_ckpt.pt"
    parts = {"aux": aux, "opt": opt}
    it, spent = resume(ck_path, parts)
    ema = set_step_size(ck_path, parts, "aux", opt, args.lr, args.ema)
    data = TextureSet.load(args.data, split="train")
    rng = np.random.default_rng(1000 + it)
    g = torch.Generator().manual_seed(1000 + it)
    # warm start: B(A(z)) ~ z before the meta-learning loss (otherwise B(zeta) starts far from the manifold)
    if it == 0:
        warm = torch.optim.Adam(aux.parameters(), 1e-3)
        for _ in range(300):
            z = torch.randn(64, cfg.z_channels)
            loss = (aux.B(aux.A(z)) - z).pow(2).mean()
            warm.zero_grad()
            loss.backward()
            warm.step()
        print(f"warm start: reconstruction {loss.item():.5f}", flush=True)

    def step(it: int) -> str:
        if args.follow_encoder and it % 50 == 0 and encoder.poll():
            print(f"it {it}: reloaded the encoder", flush=True)
        x, y = data.sample(args.batch, args.size, rng)
        with torch.no_grad():
            z0 = E(x)
        z_rand = G.sample_latent(args.batch, generator=g, resolution=args.size)
        loss, parts_ = auxiliary_network_loss(G, D, aux, x, y, z0, z_rand)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(aux.parameters(), 100.0)
        opt.step()
        if ema is not None:
            ema.update(aux)
        return f"L_AB {loss.item():.4f} rounds {[round(p, 4) for p in parts_]}"

    train_for(args.minutes, ck_path, parts, step, it, spent, log_every=10)

if __name__ == "__main__":
    main()
