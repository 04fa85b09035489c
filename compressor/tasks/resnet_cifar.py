"""ResNet-56 on CIFAR-10: the CNN benchmark of AMC, DepGraph and most pruning papers.

The classic CIFAR ResNet (He et al. 2016, "option A"): 3 stages of 9 BasicBlocks at
16/32/64 channels, and a parameter-free shortcut that subsamples ``x[:, :, ::2, ::2]`` and
zero-pads the new channels when a stage changes width.

**How the pruning groups are formed.** torch-pruning's dependency graph cannot see the
coupling through the zero-pad shortcut: the padded channels of the shortcut are added to
``conv2``'s output, so removing a ``conv2`` output channel would silently misalign the
residual sum. Pruning the residual stream would also have to shrink all 9 blocks of a stage
together. We therefore prune only the *inner* channels of each block — ``conv1``'s outputs
(with ``bn1`` and ``conv2``'s inputs) — which is what AMC and most papers do on ResNet-56.
Every other convolution (the stem and every ``conv2``) and the classifier are passed to
torch-pruning as ignored layers, which leaves exactly 27 groups, one per block.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from compressor.errors import UserInputError
from compressor.tasks.base import Task, register_task
from compressor.tasks.common import accuracy, cache_dir, default_data_root
from compressor.tasks.image_folder import (
    AugmentedBatches,
    ImageSplit,
    load_image_split,
    normalise,
    split_holdout,
)

WEIGHTS = Path("resnet-cifar10/resnet56.safetensors")
IMAGES = Path("cifar10-jpeg/cifar10-jpeg.tar.gz")
VALIDATION_IMAGES = 2000  # held out of train/, never fine-tuned on: the search's metric
CACHE_NAME = "cifar10-jpeg"


class OptionAShortcut(nn.Module):
    """Identity, or subsample by 2 and zero-pad the channels when the block changes shape."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class CifarBasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = OptionAShortcut(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 3x32x32 inputs; ``blocks=9`` is ResNet-56."""

    def __init__(
        self, blocks: int = 9, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_channels, stages = widths[0], []
        for index, width in enumerate(widths):
            layers = []
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(CifarBasicBlock(in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet56() -> CifarResNet:
    return CifarResNet(blocks=9)


# Why the outer layers stay whole, as `compress inspect` states it.
OUTER_LAYERS_REASON = (
    "residual stream: coupled through the zero-pad shortcut, which torch-pruning cannot follow"
)


def outer_layers(model: nn.Module) -> tuple[str, ...]:
    """Layers whose output channels stay whole: everything but each block's ``conv1``.

    See the module docstring: the residual stream (stem, every ``conv2``) is coupled through
    the zero-pad shortcut, which torch-pruning cannot follow; the classifier is the output.
    """
    return tuple(
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
        and not (isinstance(module, nn.Conv2d) and name.endswith(".conv1"))
    )


def residual_blocks(model: CifarResNet) -> tuple[str, ...]:
    """The blocks depth pruning may remove: all but each stage's first from stage 2 on,
    which change the shape (stride 2, zero-padded channels)."""
    return tuple(
        f"{stage}.{index}"
        for stage in ("layer1", "layer2", "layer3")
        for index, block in enumerate(model.get_submodule(stage))
        if block.shortcut.stride == 1 and block.shortcut.extra == 0
    )


def load_resnet56(path: Path) -> CifarResNet:
    """ResNet-56 with the checkpoint's weights; every key must match (BatchNorm's
    ``num_batches_tracked`` counters, which the file does not carry, excepted)."""
    from safetensors.torch import load_file

    model = resnet56()
    state = load_file(str(path))
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UserInputError(
            f"{path} is not a CIFAR ResNet-56 checkpoint: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.load_state_dict(state, strict=False)  # only the counters are left at their init
    return model.eval()


def check_data(data_root: Path) -> None:
    """One clear error when the checkpoint or the images are missing."""
    missing = [str(data_root / p) for p in (WEIGHTS, IMAGES) if not (data_root / p).is_file()]
    if missing:
        raise UserInputError(
            f"ResNet-56/CIFAR-10 data not found: {', '.join(missing)}; pass "
            "--data DIR (the folder holding resnet-cifar10/ and cifar10-jpeg/)"
        )


def cifar_splits(data_root: Path) -> dict[str, ImageSplit]:
    """``train`` and ``test`` decoded, unpacking the tarball into the cache on first use."""
    folder = cache_dir() / CACHE_NAME
    if not (folder / "test").is_dir() or not (folder / "train").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data_root / IMAGES) as archive:
            archive.extractall(folder, filter="data")
        root = next((p for p in [folder, *folder.iterdir()] if (p / "test").is_dir()), None)
        if root is not None and root != folder:  # the tarball had a top-level folder
            for split in ("train", "test"):
                (root / split).rename(folder / split)
    return {
        split: load_image_split(folder / split, folder / f"{split}.npz")
        for split in ("train", "test")
    }


@register_task("resnet56-cifar10", model_factory=resnet56)
def resnet56_task(
    data: str | Path | None = None,
    verbose: bool = True,
    batch_size: int = 128,
    augment: str | None = None,
) -> Task:
    """Pretrained ResNet-56; search on 2 000 held-out train images, test on the 10 000 test.
    Recovery batches get the CIFAR augmentation (``crop+flip``) unless ``augment`` says."""
    data_root = Path(data) if data is not None else default_data_root()
    check_data(data_root)
    if verbose:
        print(
            f"loading CIFAR-10 JPEGs from {data_root} (decoded once into {cache_dir()}) ...",
            flush=True,
        )
    splits = cifar_splits(data_root)
    train, val = split_holdout(splits["train"], VALIDATION_IMAGES)
    x_val, x_test = normalise(val.images), normalise(splits["test"].images)
    model = load_resnet56(data_root / WEIGHTS)
    return Task(
        name="resnet56-cifar10",
        model=model,
        example_inputs=(torch.zeros(1, 3, 32, 32),),
        evaluate=lambda m: accuracy(m, x_val, val.labels),
        evaluate_test=lambda m: accuracy(m, x_test, splits["test"].labels),
        train_data=AugmentedBatches(
            normalise(train.images), train.labels, batch_size, augment or "crop+flip"
        ),
        ignored_layers=outer_layers(model),
        ignored_reason=OUTER_LAYERS_REASON,
        depth_units=residual_blocks(model),
        description=f"ResNet-56 (option A) on CIFAR-10 JPEGs from {data_root}; "
        f"val = {VALIDATION_IMAGES} held-out train images, test = test/",
    )
