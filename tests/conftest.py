"""Shared fixtures: the trained default task (trained once, cached) and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The digits model is trained once (~15 s) and cached; tests share the project-local cache.
os.environ.setdefault(
    "COMPRESSOR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "compressor")
)
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits_task():
    from compressor.tasks import get_task

    return get_task("digits", verbose=False)


@pytest.fixture
def random_digits_net():
    from compressor.tasks.digits import DigitsResNet

    torch.manual_seed(0)
    return DigitsResNet().eval()
