"""The spectral term (engine/train/spectral.py): ~0 for real-like batches, large for a 4 px grid, and its
gradient removes the grid."""
import math

import pytest
import torch

from engine.train.spectral import SpectralTarget, mean_power, short_period_mask, spectral_loss


def _texture(n, size, g, scale=1.0):
    """Smooth random textures with a 1/f-like spectrum: noise blurred at a few scales, in [-1, 1]-ish."""
    x = torch.randn(n, 3, size, size, generator=g)
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
    y = x.clone()
    for _ in range(2):
        x = torch.nn.functional.conv2d(x, k2, padding=1, groups=3)
        y = y + x
    return scale * 0.1 * y


def _grid(x, period=4, amp=0.3):
    cols = torch.arange(x.shape[-1], dtype=torch.float32)
    return x + amp * torch.cos(2 * math.pi * cols / period)


class _Sampler:
    """Stands in for DeviceCrops.sample: class k draws textures of contrast 1 + k."""

    def __call__(self, batch, size, g, labels):
        out = torch.cat([_texture(1, size, g, 1.0 + int(k)) for k in labels])
        return out, labels


def test_mask_keeps_short_periods_only():
    m = short_period_mask(64, 64, 8.0)
    assert m.shape == (64, 33)
    assert not m[0, 0] and not m[0, 8] and m[0, 9] and m[16, 0] and m[32, 32]


def test_mean_power_of_a_grid_peaks_at_its_frequency():
    p = mean_power(_grid(torch.zeros(2, 3, 64, 64), amp=0.5))
    assert p.shape == (64, 33)
    assert tuple((p == p.max()).nonzero()[0].tolist()) == (0, 16)  # 64 / 4 px


def test_only_excess_power_counts():
    g = torch.Generator().manual_seed(3)
    real = _texture(16, 64, g)
    assert spectral_loss(0.2 * real, real).item() == 0.0  # far too smooth: not this term's business
    assert spectral_loss(5.0 * real, real).item() > 1.0


def test_grid_raises_the_loss_and_real_batches_do_not():
    g = torch.Generator().manual_seed(0)
    real = _texture(16, 64, g)
    same = _texture(16, 64, g)
    assert spectral_loss(same, real).item() < 0.05
    assert spectral_loss(_grid(same), real).item() > 10 * max(spectral_loss(same, real).item(), 1e-3)


def test_target_per_class_and_size():
    g = torch.Generator().manual_seed(1)
    st = SpectralTarget(_Sampler(), n_classes=3, sizes=[32, 64, 64], crops_per_class=16)
    assert sorted(st.spectra) == [32, 64] and st.spectra[64].shape == (3, 64, 33)
    labels = torch.tensor([0, 2, 2, 1] * 4)
    real, _ = _Sampler()(16, 64, g, labels)
    plain = st.loss(real, labels).item()
    assert plain < 0.02
    assert st.loss(_grid(real), labels).item() > 10 * max(plain, 1e-3)
    # the right class matters: class 2's contrast judged against class 0's spectrum is far above it
    assert st.loss(real[1:2], torch.tensor([0])).item() > st.loss(real[1:2], torch.tensor([2])).item() + 0.5
    with pytest.raises(ValueError, match="no real spectrum"):
        st.loss(real[..., :48, :48], labels)


def test_gradient_removes_the_grid():
    g = torch.Generator().manual_seed(2)
    real = _texture(8, 32, g)
    base = _texture(8, 32, g)
    amp = torch.tensor(0.3, requires_grad=True)
    opt = torch.optim.Adam([amp], lr=0.02)
    cols = torch.arange(32, dtype=torch.float32)
    for _ in range(60):
        fake = base + amp * torch.cos(2 * math.pi * cols / 4)
        loss = spectral_loss(fake, real)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(amp.item()) < 0.1


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        spectral_loss(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 64, 64))
