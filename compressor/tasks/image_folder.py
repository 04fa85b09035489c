"""Image classification data in the ImageFolder layout: ``SPLIT/<class>/*.jpg``.

Pillow decodes the files once into a uint8 tensor (N x C x H x W, C = 1 for grayscale or 3
for RGB, as the model takes); a decoded split can be
cached as ``.npz`` so later runs skip the JPEG decoding. Everything downstream (the search's
validation subset, BatchNorm calibration, recovery) works on in-memory tensors: the data
sets involved (CIFAR-10: 60 000 x 32 x 32) fit in memory many times over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from compressor.config import AUGMENTATIONS
from compressor.errors import UserInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The normalisation torchvision's ImageNet models use; the CIFAR ResNet-56 uses it too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Grayscale default: the same statistics averaged over the channels (what a gray image
# converted from ImageNet-normalised RGB would see).
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)
PIL_MODES = {1: "L", 3: "RGB"}


@dataclass
class ImageSplit:
    """One decoded split: uint8 images (N x C x H x W), int64 labels, sorted class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def subset(self, index: torch.Tensor) -> ImageSplit:
        return ImageSplit(self.images[index], self.labels[index], self.classes)


def list_image_folder(split_dir: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """``(file, class index)`` pairs, classes in alphabetical order (torchvision's rule)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise UserInputError(f"image folder {split_dir} does not exist")
    classes = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    if not classes:
        raise UserInputError(
            f"image folder {split_dir} has no class sub-folders "
            "(expected SPLIT/<class>/<image>.jpg)"
        )
    files = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((split_dir / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UserInputError(
            f"image folder {split_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    present = sorted({classes[index] for _, index in files})
    if len(present) < 2:
        raise UserInputError(
            f"image folder {split_dir} has images of one class only ({present[0]}); "
            "classification needs at least two class sub-folders with images"
        )
    return files, classes


def decode_image_folder(
    split_dir: Path, image_size: int | None = None, channels: int = 3, progress: str = "off"
) -> ImageSplit:
    """Decode every image of one split with Pillow (``L`` for 1 channel, ``RGB`` for 3),
    resized to the first image's size (or ``image_size`` square) where sizes differ."""
    from PIL import Image

    from compressor.progress import Steps

    files, classes = list_image_folder(split_dir)
    arrays, size = [], None
    every = max(1, len(files) // 10)
    with Steps(f"decoding {split_dir}", len(files), mode=progress, every=every) as steps:
        for path, _ in files:
            with Image.open(path) as image:
                image = image.convert(PIL_MODES[channels])
                size = size or ((image_size, image_size) if image_size else image.size)
                if image.size != size:
                    image = image.resize(size, Image.BILINEAR)
                arrays.append(np.asarray(image, dtype=np.uint8).reshape(*image.size[::-1], -1))
            steps.advance()
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSplit(images, labels, classes)


def load_image_split(
    split_dir: Path,
    cache_file: Path | None = None,
    image_size: int | None = None,
    channels: int = 3,
    progress: str = "off",
) -> ImageSplit:
    """A decoded split, read from ``cache_file`` when present (and written there otherwise)."""
    from compressor.run_folder import atomic_path

    if cache_file is not None and cache_file.is_file():
        data = np.load(cache_file)
        return ImageSplit(
            torch.from_numpy(data["images"]),
            torch.from_numpy(data["labels"]),
            tuple(str(c) for c in data["classes"]),
        )
    split = decode_image_folder(split_dir, image_size, channels, progress)
    if cache_file is not None:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                images=split.images.numpy(),
                labels=split.labels.numpy(),
                classes=np.array(split.classes),
            )
    return split


def normalise(
    images: torch.Tensor,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> torch.Tensor:
    """uint8 N x C x H x W -> float, scaled to [0, 1] then standardised per channel
    (default: ImageNet's statistics, averaged over the channels for grayscale)."""
    gray = images.shape[1] == 1
    mean = torch.tensor(mean or (GRAY_MEAN if gray else IMAGENET_MEAN)).view(1, -1, 1, 1)
    std = torch.tensor(std or (GRAY_STD if gray else IMAGENET_STD)).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def split_holdout(split: ImageSplit, holdout: int, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """A fixed, seeded random ``holdout``-image subset and the rest (for validation / training)."""
    if not 0 < holdout < len(split.labels):
        raise UserInputError(
            f"validation holdout must be between 1 and {len(split.labels) - 1} "
            f"images; got {holdout}"
        )
    order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))
    return split.subset(order[holdout:]), split.subset(order[:holdout])


class AugmentedBatches:
    """Re-iterable shuffled mini-batches, augmented on tensors (no per-image Python work).

    ``augment`` is one of :data:`AUGMENTATIONS`: ``crop`` takes a random crop after
    ``pad``-pixel zero padding (one offset per batch), ``flip`` flips a random half of the
    images horizontally; ``crop+flip`` is the standard CIFAR recipe. ``True`` / ``False``
    mean ``crop+flip`` / ``none``.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 128,
        augment: str | bool = "crop+flip",
        pad: int = 4,
        seed: int = 0,
    ) -> None:
        if isinstance(augment, bool):
            augment = "crop+flip" if augment else "none"
        if augment not in AUGMENTATIONS:
            raise UserInputError(
                f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {augment!r}"
            )
        self.inputs, self.labels = inputs, labels
        self.batch_size, self.augment, self.pad = batch_size, augment, pad
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.inputs), generator=self._generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self._augment(self.inputs[index]), self.labels[index]

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        if "crop" in self.augment:
            height, width = batch.shape[-2:]
            padded = F.pad(batch, (self.pad,) * 4)
            dy, dx = torch.randint(0, 2 * self.pad + 1, (2,), generator=self._generator).tolist()
            batch = padded[..., dy : dy + height, dx : dx + width]
        if "flip" in self.augment:
            flip = torch.rand(len(batch), generator=self._generator) < 0.5
            batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
        return batch
