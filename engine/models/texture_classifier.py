"""The default model's texture classifier: the judge of how recognisable generated classes and label swaps are
(the stand-in for the paper's inception-v3 judge), shipped with the default weights and trained by
engine/train/classifier.py.  Fully convolutional with global average pooling: classifies crops of any size >= 24 px.
"""
from __future__ import annotations

import torch
from torch import nn


class TextureClassifier(nn.Module):
    def __init__(self, n_classes: int, ch: int = 32):
        super().__init__()
        chans = [3, ch, ch * 2, ch * 4, ch * 4]
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, stride=2 if i < 3 else 1),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in [-1, 1], [B, 3, H, W] -> logits [B, n_classes]."""
        return self.head(self.features(x).mean(dim=(2, 3)))
