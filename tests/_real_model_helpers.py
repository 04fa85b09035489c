"""Small shared pieces for the real-model tests (issue 5): data paths and tiny factories.

Module name starts with an underscore so pytest does not collect it; the test files import
it by name (pytest puts tests/ on sys.path), and ``--model _real_model_helpers:tiny_cnn``
works as a factory spec in-process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

SHARED_DATA = Path(
    os.environ.get(
        "COMPRESSOR_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


def require_shared(*relative: str) -> Path:
    """The shared data folder, or a clean skip when it (or a file in it) is absent."""
    for path in relative:
        if not (SHARED_DATA / path).exists():
            pytest.skip(f"needs {SHARED_DATA / path} (benchmark data, not on this machine)")
    return SHARED_DATA


def tiny_cnn(in_channels: int = 3) -> nn.Module:
    """A 2-conv classifier for 3 x 8 x 8 images and 2 classes (random init, seeded)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


def tiny_gray_cnn() -> nn.Module:
    """The same classifier for 1-channel (grayscale) 8 x 8 images."""
    return tiny_cnn(in_channels=1)


def tiny_cnn_with_inputs():
    return tiny_cnn(), torch.zeros(1, 3, 8, 8)


def write_image_folder(root: Path, per_class: int = 12, size: int = 8, gray: bool = False) -> Path:
    """``root/{train,test}/{dark,light}/*.jpg``: two trivially separable classes (with
    ``gray``, single-channel PNGs of mode ``L``)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    shape, suffix = ((size, size), "png") if gray else ((size, size, 3), "jpg")
    for split, count in (("train", per_class), ("test", per_class // 2)):
        for label, base in (("dark", 40), ("light", 210)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                noise = torch.randint(-30, 30, shape, generator=generator)
                pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{index:04d}.{suffix}")
    return root


def raising_factory() -> nn.Module:
    """A factory whose own code fails (e.g. a missing checkpoint it tries to open)."""
    raise FileNotFoundError("checkpoints/encoder.bin")


class HardCodedFlatten(nn.Module):
    """A classifier that flattens with a hard-coded channel count: it traces, but any
    pruning of its last convolution breaks ``view`` (a common pattern in older code)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.view(-1, 8 * 4 * 4))


def hard_coded_flatten() -> nn.Module:
    return HardCodedFlatten()
