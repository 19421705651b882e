"""Random texture crops sampled where the model trains: the whole dataset lives on the training device as uint8
tensors (a few hundred MB at most), and crops are cut, flipped and converted to [-1, 1] there, so a GPU never
waits for the CPU.  On the CPU the same code is simply the data loader.

Each source image is kept at scales 1, 0.7 and 0.5 (area-resampled on the CPU once): crops then cover the
materials' structure at several sizes, as v1's ``TextureSet`` did.  An image too small for the largest crop is
up-sampled once so its short side fits.
"""
from __future__ import annotations

import numpy as np
import torch

SCALES = (1.0, 0.7, 0.5)


def _levels(img: np.ndarray, min_side: int, scales=SCALES) -> list[np.ndarray]:
    import cv2

    h, w = img.shape[:2]
    out = []
    for s in scales:
        nh, nw = int(round(h * s)), int(round(w * s))
        if min(nh, nw) < min_side:
            continue
        out.append(img if s == 1.0 else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA))
    if not out:
        s = min_side / min(h, w)
        nh, nw = max(min_side, int(np.ceil(h * s))), max(min_side, int(np.ceil(w * s)))
        out.append(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC))
    return out


class DeviceCrops:
    """Per class: the images (each at up to three scales) as uint8 [3, H, W] tensors on ``device``.

    ``items``: list of (uint8 HxWx3 RGB image, class index); ``max_crop``: the largest crop that will be asked for.
    Classes with no image are allowed (sampling them raises).  Sampling is seeded by a ``torch.Generator`` on
    the CPU (cheap, deterministic, resumable by re-seeding)."""

    def __init__(self, items, n_classes: int, device="cpu", max_crop: int = 128, scales=SCALES):
        self.n_classes = n_classes
        self.device = torch.device(device)
        self.max_crop = max_crop
        self.images: list[list[torch.Tensor]] = [[] for _ in range(n_classes)]
        weights: list[list[float]] = [[] for _ in range(n_classes)]
        for img, k in items:
            for lev in _levels(np.asarray(img), max_crop, scales):
                t = torch.from_numpy(np.ascontiguousarray(lev.transpose(2, 0, 1))).to(self.device)
                self.images[int(k)].append(t)
                weights[int(k)].append(float(np.sqrt(lev.shape[0] * lev.shape[1])))
        self.cdf = [torch.tensor(np.cumsum(w) / np.sum(w), dtype=torch.float64) if w else None for w in weights]
        self.present = [i for i in range(n_classes) if self.images[i]]
        if not self.present:
            raise ValueError("no training images")

    def nbytes(self) -> int:
        return sum(t.numel() for imgs in self.images for t in imgs)

    def sample(self, batch: int, size: int, g: torch.Generator, labels: torch.Tensor | None = None):
        """(float [B, 3, size, size] in [-1, 1] on the device, int64 labels [B] on the device)."""
        if size > self.max_crop:
            raise ValueError(f"crop {size} px is larger than this sampler's max_crop {self.max_crop}")
        if labels is None:
            present = torch.tensor(self.present)
            labels = present[torch.randint(0, len(present), (batch,), generator=g)]
        labels = labels.cpu().long()
        u = torch.rand(batch, 4, generator=g, dtype=torch.float64)
        crops = []
        for b in range(batch):
            k = int(labels[b])
            imgs = self.images[k]
            if not imgs:
                raise ValueError(f"class {k} has no images in this split")
            j = min(int(torch.searchsorted(self.cdf[k], u[b, 0])), len(imgs) - 1)
            a = imgs[j]
            h, w = a.shape[-2:]
            y = int(u[b, 1] * (h - size + 1))
            x = int(u[b, 2] * (w - size + 1))
            c = a[:, y:y + size, x:x + size]
            f = int(u[b, 3] * 4)  # 0: none, 1: horizontal, 2: vertical, 3: both
            if f & 1:
                c = c.flip(-1)
            if f & 2:
                c = c.flip(-2)
            crops.append(c)
        x = torch.stack(crops).float().div_(127.5).sub_(1.0)
        return x, labels.to(self.device)
