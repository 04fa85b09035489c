"""FLOPs and parameter counts of the actual (pruned) model.

Convention, used everywhere in compressor: **FLOPs = 2 x MACs** of the convolutions and
matrix multiplications, counted by ``torch.utils.flop_counter.FlopCounterMode`` from the
aten operators the model really runs (so a pruned model is counted by its real shapes).
Elementwise work (BatchNorm, activations, additions, pooling) is not counted; in the CNNs
here it is well under 1 % of the total.

Attention: the two attention matmuls (Q K^T and softmax(.) V) are counted too. Eager
attention runs them as ``matmul`` / ``bmm``, which FlopCounterMode counts; but on CPU,
``scaled_dot_product_attention`` (transformers' default "sdpa" attention) dispatches to
``aten._scaled_dot_product_flash_attention_for_cpu``, which torch's counter has no formula
for and silently counts as 0 (6 % of MiniLM at 64 tokens, more for longer inputs). We
register torch's own SDPA formula (``sdpa_flop_count``, the one it uses for the CUDA
kernels) for that operator, so eager and SDPA models count the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode passes shapes; causal masking is not discounted (as for CUDA SDPA).
    return sdpa_flop_count(query_shape, key_shape, value_shape)


EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(model: nn.Module, example_inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs (2 x MACs) of one forward pass on ``example_inputs``."""
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
        with torch.no_grad(), counter:
            model(*example_inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights and biases; BatchNorm running stats excluded)."""
    return sum(p.numel() for p in model.parameters())
