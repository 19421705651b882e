"""Train the embedded default model's GAN: SNGAN ResNet generator with categorical CBN and a spatial latent,
projection discriminator with spectral norm, hinge loss, Adam(2e-4, 0.0, 0.9).

Runs in the background on the CPU, checkpoints every few minutes (atomically) to a git-ignored folder and
resumes from there:

    nohup python -m engine.train.gan --out runs/default --minutes 100 > runs/gan.log 2>&1 &
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator


def default_config(n_classes: int, class_names: list[str]) -> SNGANConfig:
    """The default model: 64 px native, fully convolutional (spatial 16-channel latent at 1/8 resolution)."""
    return SNGANConfig(ch=32, dim_z=0, bottom_width=8, n_classes=n_classes, resolution=64,
                       gen_mults=(4, 4, 2, 1), dis_mults=(1, 2, 4, 4), latent="spatial", z_channels=16,
                       class_names=list(class_names))


#: The checkpoint key holding, as one JSON string, every top-level value that is not a state dict (iteration
#: count, minutes spent, the config): torch.load(weights_only=True) then reads the whole file without unpickling
#: arbitrary objects.
META_KEY = "meta_json"


def _holds_tensors(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_holds_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensors(v) for v in value)
    return False


def save_atomic(obj: dict, path: Path) -> None:
    """Write a training checkpoint atomically: state dicts (modules, optimisers) as tensors, everything else at
    the top level as JSON under META_KEY (see :func:`load_checkpoint`)."""
    meta = {k: v for k, v in obj.items() if not _holds_tensors(v)}
    out = {k: v for k, v in obj.items() if k not in meta}
    out[META_KEY] = json.dumps(meta)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(out, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_atomic` (or an older one holding only tensors and plain Python
    values), read with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    meta = ck.pop(META_KEY, None)
    if meta is not None:
        ck.update(json.loads(meta))
    return ck


def d_hinge_loss(D, real: torch.Tensor, y_real: torch.Tensor, fake: torch.Tensor, y_fake: torch.Tensor):
    """The discriminator's hinge loss (SNGAN): mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return F.relu(1.0 - D(real, y_real)).mean() + F.relu(1.0 + D(fake, y_fake)).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for the parameters; the buffers (batch-norm statistics) copied."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def save_grid(G: ResNetGenerator, path: Path, n_classes: int, size: int = 64, per_class: int = 6, seed: int = 0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    G.eval()
    with torch.no_grad():
        y = torch.arange(n_classes).repeat_interleave(per_class)
        z = G.sample_latent(len(y), generator=g, resolution=size)
        x = G(z, y)
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    rows = [np.concatenate(list(x[i * per_class:(i + 1) * per_class]), axis=1) for i in range(n_classes)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv=None) -> None:
    from engine.train.data import TextureSet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".cache/textures")
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--minutes", type=float, default=100.0, help="total training wall time (across resumes)")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--size", type=int, default=48, help="training crop size (the generator is fully convolutional)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = TextureSet.load(args.data, split="train")
    cfg = default_config(data.num_classes, data.class_names)
    G, D = ResNetGenerator(cfg), SNResNetProjectionDiscriminator(cfg)
    G_ema = copy.deepcopy(G)
    opt_g = torch.optim.Adam(G.parameters(), args.lr, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), args.lr, betas=(0.0, 0.9))
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    it, spent = 0, 0.0
    ckpt_path = out / "ckpt.pt"
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        G.load_state_dict(ck["G"])
        D.load_state_dict(ck["D"])
        G_ema.load_state_dict(ck["G_ema"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        it, spent = ck["it"], ck["spent"]
        rng = np.random.default_rng(args.seed + it)
        torch.manual_seed(args.seed + it)
        print(f"resumed at iteration {it}, {spent / 60:.1f} min spent", flush=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def checkpoint():
        save_atomic({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                     "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "it": it, "spent": spent,
                     "config": cfg.to_dict()}, ckpt_path)
        save_grid(G_ema, out / "samples.png", cfg.n_classes)
        G_ema.train()

    budget = args.minutes * 60
    t_last_ckpt = time.time()
    t0 = time.time()
    spent0 = spent
    log = open(out / "log.txt", "a")  # noqa: SIM115 - open for the whole run
    G.train()
    D.train()
    G_ema.train()
    while spent < budget:
        x, y = data.sample(args.batch, args.size, rng)
        # discriminator step (hinge)
        z = G.sample_latent(args.batch, resolution=args.size)
        yf = torch.from_numpy(rng.integers(0, cfg.n_classes, args.batch))
        with torch.no_grad():
            fake = G(z, yf)
        loss_d = d_hinge_loss(D, x, y, fake, yf)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator step
        z = G.sample_latent(args.batch, resolution=args.size)
        yf = torch.from_numpy(rng.integers(0, cfg.n_classes, args.batch))
        loss_g = -D(G(z, yf), yf).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(G_ema, G, 0.999 if it > 500 else 0.9)
        it += 1
        spent = spent0 + (time.time() - t0)
        if it % 25 == 0:
            line = f"it {it} min {spent / 60:.1f} loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
        if time.time() - t_last_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            t_last_ckpt = time.time()
    checkpoint()
    (out / "DONE").write_text(f"{it} iterations, {spent / 60:.1f} minutes\n")
    print(f"done: {it} iterations", flush=True)


if __name__ == "__main__":
    main()
