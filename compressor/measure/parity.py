"""Parity: how closely an exported artifact reproduces the PyTorch model on real inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn


@torch.no_grad()
def measure_parity(
    reference: nn.Module,
    artifact: Callable[..., torch.Tensor],
    inputs: Iterable[Sequence[torch.Tensor]],
) -> dict[str, float]:
    """Compare outputs batch by batch.

    Returns ``max_abs_diff`` (largest elementwise difference), ``cosine`` (mean per-sample
    cosine similarity of the flattened outputs), ``top1_agreement`` (share of samples whose
    arg-max over the last dimension agrees; for classifiers, the share of equal predictions)
    and ``samples``.
    """
    reference = reference.eval()
    max_diff, cosines, agree, samples = 0.0, [], 0, 0
    for batch in inputs:
        expected = reference(*batch).float()
        actual = artifact(*batch).float()
        max_diff = max(max_diff, float((expected - actual).abs().max()))
        flat_e, flat_a = expected.flatten(1), actual.flatten(1)
        cosines.append(torch.nn.functional.cosine_similarity(flat_e, flat_a, dim=1))
        # A sample agrees when every position's arg-max does (one position for a classifier).
        same = expected.argmax(-1) == actual.argmax(-1)
        agree += int(same.reshape(same.shape[0], -1).all(dim=1).sum())
        samples += expected.shape[0]
    if not samples:
        raise ValueError("parity needs at least one input batch")
    return {
        "max_abs_diff": max_diff,
        "cosine": float(torch.cat(cosines).mean()),
        "top1_agreement": agree / samples,
        "samples": samples,
    }
