"""A spectral term for the generator: the batch's mean power spectrum at short periods follows the real crops'.

Why: the v2 run (runs/v2, 2,961 iterations) learnt a grid at a period of exactly 4 px along the axes (the pitch
of the generator's 1/4-resolution feature maps), v1 a diagonal weave at 5.4 px. The projection discriminator
pools early and let both through: a peak 1,000x above its frequency ring (``evaluate.peakiness``) where real
crops have 15-35. This term compares the log of the mean windowed power spectrum of the generated batch with that
of real crops of the same classes, at periods under ``max_period`` px only (coarser structure is the
discriminator's business), in the manner of Durall et al. 2020 ("Watch your up-convolution"), but on the 2-D
spectrum: a grid is a few isolated bins, which a radial average would dilute.
"""
from __future__ import annotations

import torch

_LUMA = (0.299, 0.587, 0.114)


def mean_power(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> the batch's mean power spectrum of the Hann-windowed, mean-free luminance,
    [H, W // 2 + 1] (rfft2 bins; float32 whatever the input's dtype)."""
    assert x.dim() == 4 and x.shape[1] == 3, f"expected [B, 3, H, W], got {tuple(x.shape)}"
    x = x.float()
    w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    y = (x * w).sum(1)  # [B, H, W]
    y = y - y.mean(dim=(1, 2), keepdim=True)
    h, wd = y.shape[-2:]
    win = torch.outer(torch.hann_window(h, periodic=False, device=x.device),
                      torch.hann_window(wd, periodic=False, device=x.device))
    return torch.fft.rfft2(y * win).abs().square().mean(0)


def short_period_mask(h: int, w: int, max_period: float, device=None) -> torch.Tensor:
    """bool [h, w // 2 + 1]: the rfft2 bins whose period is under ``max_period`` px."""
    fy = torch.fft.fftfreq(h, device=device)
    fx = torch.fft.rfftfreq(w, device=device)
    return (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() > 1.0 / max_period


def _smooth(p: torch.Tensor) -> torch.Tensor:
    """3x3 mean over rfft2 bins [..., H, W//2+1] (vertical frequencies put in order first, so neighbours are
    neighbours)."""
    lead = p.shape[:-2]
    q = torch.fft.fftshift(p, dim=-2).reshape(-1, 1, *p.shape[-2:])
    q = torch.nn.functional.avg_pool2d(q, 3, stride=1, padding=1, count_include_pad=False)
    return torch.fft.ifftshift(q.reshape(*lead, *p.shape[-2:]), dim=-2)


def log_gap(p_fake: torch.Tensor, p_real: torch.Tensor, max_period: float, tolerance: float,
            top: float = 0.01, eps: float = 1e-4) -> torch.Tensor:
    """How far the generated spectrum rises above the real one at periods under ``max_period`` px: per bin the
    excess e = relu(log p_fake - log p_real - tolerance), and the mean of e^2 over the ``top`` share of bins
    with the largest excess (at least 8).  A grid is a few bins far above the real level: averaged over all
    bins it would vanish (v2's grid, clear at 256 px, is 0.2 % of a 64 px crop's bins), so the worst bins are
    what counts.  Only excess power is penalised: a too-smooth result is the discriminator's business, and a
    spectrum estimated from a few crops dips far more often than it peaks.  Both are per-pixel power spectra
    [H, W//2+1] of an H x W crop."""
    h = p_fake.shape[-2]
    w = (p_fake.shape[-1] - 1) * 2
    m = short_period_mask(h, w, max_period, device=p_fake.device)
    e = torch.relu((p_fake[..., m] + eps).log() - (p_real[..., m] + eps).log() - tolerance)
    k = min(e.numel(), max(8, int(round(top * e.numel()))))
    return e.square().topk(k).values.mean()


def spectral_loss(fake: torch.Tensor, real: torch.Tensor, max_period: float = 8.0,
                  tolerance: float = 1.0) -> torch.Tensor:
    """log_gap between the mean power spectra of a generated and a real batch (the real one smoothed over 3x3
    bins).  ~0 for batches with the same spectrum (the tolerance, e^1 = 2.7x, absorbs the estimate's noise); a
    grid in ``fake`` gives about the square of the log of its peak over the real level.  Differentiable in
    ``fake``; ``real`` is a target (no gradient)."""
    if fake.shape[-2:] != real.shape[-2:]:
        raise ValueError(f"fake and real crops differ in size: {tuple(fake.shape[-2:])} vs {tuple(real.shape[-2:])}")
    n = fake.shape[-2] * fake.shape[-1]  # per-pixel power: the same loss for any crop size
    with torch.no_grad():
        pr = _smooth(mean_power(real) / n)
    return log_gap(mean_power(fake) / n, pr, max_period, tolerance)


class SpectralTarget:
    """Per class and crop size, the mean power spectrum of many real crops, measured once (a batch of 4 real
    crops is too noisy a target: two such batches of bark differ by more than v2's grid does).

    ``sample(batch, size, generator, labels)`` is the training sampler (DeviceCrops.sample)."""

    def __init__(self, sample, n_classes: int, sizes, crops_per_class: int = 64, seed: int = 12345,
                 max_period: float = 8.0, tolerance: float = 1.0, present=None):
        g = torch.Generator().manual_seed(seed)
        self.max_period, self.tolerance = max_period, tolerance
        self.spectra: dict[int, torch.Tensor] = {}
        classes = list(range(n_classes)) if present is None else list(present)
        for size in sorted(set(int(s) for s in sizes)):
            rows = []
            for k in range(n_classes):
                if k not in classes:
                    rows.append(None)
                    continue
                acc = 0.0
                for i in range(0, crops_per_class, 16):
                    b = min(16, crops_per_class - i)
                    x, _ = sample(b, size, g, torch.full((b,), k, dtype=torch.long))
                    acc = acc + mean_power(x) * b
                rows.append(_smooth(acc / crops_per_class / (size * size)))
            fill = torch.stack([r for r in rows if r is not None]).mean(0)
            self.spectra[size] = torch.stack([fill if r is None else r for r in rows])  # [K, size, size//2+1]

    def loss(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log_gap between the generated batch's mean spectrum and the mean of its classes' real spectra."""
        size = fake.shape[-1]
        if fake.shape[-2] != size or size not in self.spectra:
            raise ValueError(f"no real spectrum for {tuple(fake.shape[-2:])} crops (have {sorted(self.spectra)})")
        target = self.spectra[size].to(fake.device)[labels.to(fake.device)].mean(0)
        return log_gap(mean_power(fake) / (size * size), target, self.max_period, self.tolerance)
