"""FLOPs and parameter counts of the actual (pruned) model.

Convention, used everywhere in compressor: **FLOPs = 2 x MACs** of the convolutions and
matrix multiplications, counted by ``torch.utils.flop_counter.FlopCounterMode`` from the
aten operators the model really runs (so a pruned model is counted by its real shapes).
Elementwise work (BatchNorm, activations, additions, pooling) is not counted; in the CNNs
here it is well under 1 % of the total.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, example_inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs (2 x MACs) of one forward pass on ``example_inputs``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*example_inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights and biases; BatchNorm running stats excluded)."""
    return sum(p.numel() for p in model.parameters())
