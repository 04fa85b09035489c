"""The embedded default task: a small residual CNN on scikit-learn's bundled digits.

The 8x8 digits are upsampled to 32x32 and the network is sized at ~26 M MACs, so that
convolution compute (not per-operator overhead) dominates its latency and pruning has a
measurable effect on speed. Residual blocks with BatchNorm make channel coupling real:
torch-pruning's dependency graph has to prune the convolutions that meet at each addition
together.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from compressor.tasks.base import Task, register_task
from compressor.tasks.common import accuracy, cache_dir

IMAGE_SIZE = 32
NUM_CLASSES = 10
SPLIT_SEED = 0
TRAIN_SEED = 0
TRAIN_EPOCHS = 10
CACHE_VERSION = "digits-resnet14-v1"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """ResNet-14-style network for 1x32x32 inputs: widths 16/32/64, two blocks per stage."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_channels = [], widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(in_channels, width, stride)]
            layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(widths[-1], NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def identity_blocks(model: DigitsResNet) -> tuple[str, ...]:
    """The blocks depth pruning may remove: those with an identity shortcut (the shape-
    changing first block of stages 2 and 3 has a projection)."""
    return tuple(
        f"{stage}.{index}"
        for stage in ("layer1", "layer2", "layer3")
        for index, block in enumerate(model.get_submodule(stage))
        if len(block.shortcut) == 0
    )


def load_splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed stratified 60/20/20 train/validation/test splits of ``load_digits``, as 1x32x32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, test_size=0.4, stratify=labels, random_state=SPLIT_SEED
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=SPLIT_SEED
    )
    return {
        name: (_to_tensor(x), torch.from_numpy(y))
        for name, x, y in (
            ("train", x_train, y_train),
            ("val", x_val, y_val),
            ("test", x_test, y_test),
        )
    }


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images).unsqueeze(1)
    tensor = F.interpolate(
        tensor, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
    )
    return (tensor - 0.5) / 0.5


class TensorBatches:
    """Re-iterable mini-batches over in-memory tensors; shuffles with its own seeded generator."""

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.inputs, self.labels = inputs, labels
        self.batch_size, self.shuffle = batch_size, shuffle
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = (
            torch.randperm(len(self.inputs), generator=self._generator)
            if self.shuffle
            else torch.arange(len(self.inputs))
        )
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.inputs[index], self.labels[index]


def train_digits_model(
    splits, epochs: int = TRAIN_EPOCHS, seed: int = TRAIN_SEED, blocks: int = 2
) -> nn.Module:
    """Train :class:`DigitsResNet` from scratch (deterministic for a given seed).

    ``blocks=3`` is the CIFAR ResNet-20 layout (benchmarks use it as a larger CNN).
    """
    torch.manual_seed(seed)
    model = DigitsResNet(blocks=blocks)
    x_train, y_train = splits["train"]
    batches = TensorBatches(x_train, y_train, batch_size=64, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=epochs * len(batches)
    )
    model.train()
    for _ in range(epochs):
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            scheduler.step()
    return model.eval()


def load_or_train_model(splits, verbose: bool = True, blocks: int = 2) -> nn.Module:
    """The trained default model from the cache; retrained when the cache is missing or corrupt.

    ``blocks=3`` gives the ResNet-20 variant, cached under its own name.
    """
    from safetensors.torch import load_file, save_file

    from compressor.run_folder import atomic_path

    name = CACHE_VERSION if blocks == 2 else f"digits-resnet{6 * blocks + 2}-v1"
    path = cache_dir() / f"{name}.safetensors"
    model = DigitsResNet(blocks=blocks)
    if path.is_file():
        try:
            model.load_state_dict(load_file(str(path)), strict=True)
            return model.eval()
        except Exception as exc:  # a truncated or foreign file: fall through and retrain
            if verbose:
                print(f"cached model {path} is unreadable ({type(exc).__name__}); retraining")
    if verbose:
        print(
            f"training the digits model ({6 * blocks + 2} layers, {TRAIN_EPOCHS} epochs, "
            f"cached in {path}) ...",
            flush=True,
        )
    model = train_digits_model(splits, blocks=blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(model.state_dict(), str(tmp))
    return model


def splits_fingerprint(splits) -> str:
    """Short hash of the split contents, recorded so results name the exact data used."""
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        digest.update(splits[name][1].numpy().tobytes())
    return digest.hexdigest()[:12]


@register_task("digits", model_factory=lambda: DigitsResNet())
def digits_task(verbose: bool = True) -> Task:
    """The embedded default: DigitsResNet trained on scikit-learn's ``load_digits``."""
    return _digits_task("digits", blocks=2, verbose=verbose)


@register_task("digits-resnet20", model_factory=lambda: DigitsResNet(blocks=3))
def digits_resnet20_task(verbose: bool = True) -> Task:
    """The CIFAR ResNet-20 layout (3 blocks per stage, 16/32/64) on the same 32x32 digits."""
    return _digits_task("digits-resnet20", blocks=3, verbose=verbose)


def _digits_task(name: str, blocks: int, verbose: bool) -> Task:
    splits = load_splits()
    model = load_or_train_model(splits, verbose=verbose, blocks=blocks)
    x_val, y_val = splits["val"]
    x_test, y_test = splits["test"]
    return Task(
        name=name,
        model=model,
        example_inputs=(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE),),
        evaluate=lambda m: accuracy(m, x_val, y_val),
        evaluate_test=lambda m: accuracy(m, x_test, y_test),
        train_data=TensorBatches(*splits["train"], batch_size=64, seed=TRAIN_SEED),
        calibration_data=TensorBatches(*splits["train"], batch_size=64, shuffle=False),
        ignored_layers=("fc",),
        depth_units=identity_blocks(model),
        description=f"DigitsResNet ({6 * blocks + 2} layers) on sklearn load_digits 32x32 "
        f"(splits {splits_fingerprint(splits)})",
    )
