"""Helpers every task shares: the accuracy metric, the cache and data folders, the default
layers left unpruned."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def accuracy(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> float:
    """Top-1 accuracy in [0, 1]; ``model`` may be any callable returning logits."""
    if isinstance(model, nn.Module):
        model.eval()
    correct = 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(inputs)


def cache_dir() -> Path:
    """Per-user cache folder: ``$COMPRESSOR_CACHE``, else ``$XDG_CACHE_HOME/compressor``."""
    root = os.environ.get("COMPRESSOR_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "compressor"


def default_data_root() -> Path:
    """``../shared/data`` beside the project root (where the benchmark data lives)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_ignored_layers(model: nn.Module) -> tuple[str, ...]:
    """The classifier: the last ``nn.Linear`` registered in the model, if any."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return (linears[-1],) if linears else ()
