"""Tiny models and real inputs shared by the deployment tests (export, fuse, quantize)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TinyResNet(nn.Module):
    """Conv-BN-ReLU stem, one residual block, pooling and a classifier: every fusion case."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(out + self.bn2(self.conv2(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def tiny_resnet(seed: int = 0) -> nn.Module:
    """A randomly initialised TinyResNet with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = TinyResNet()
    model.train()
    with torch.no_grad():
        for _ in range(4):  # give BatchNorm real running statistics to fold
            model(image_batch(32, seed=seed + 1))
    return model.eval()


def image_batch(count: int, seed: int = 0) -> torch.Tensor:
    """Smooth 1x16x16 images (not white noise, so activations have a realistic range)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 1, 4, 4, generator=generator)
    return F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)


def labelled_batches(count: int = 128, batch: int = 32) -> list:
    """``(inputs, labels)`` batches like a task's training data."""
    images = image_batch(count, seed=7)
    labels = torch.zeros(count, dtype=torch.long)
    return [(images[i : i + batch], labels[i : i + batch]) for i in range(0, count, batch)]
