"""The deployable artifact of one candidate: export -> (fuse) -> (quantize), as ONNX.

Each step is its own action (:mod:`.export`, :mod:`.fuse`, :mod:`.quantize`); this module
only chains them as a :class:`DeploySpec` says and reports what came out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compressor.actions.export import export_onnx, input_names, nodes_of_modules
from compressor.actions.fuse import fuse_onnx, fused_counts, op_counts
from compressor.actions.quantize import QuantizeSpec, quantize_onnx

# Operators whose presence shows a graph is really INT8 (QDQ or integer kernels).
INT8_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
)


@dataclass(frozen=True)
class DeploySpec:
    """What the search chose for a candidate's artifact."""

    quantization: str = "none"
    fusion: bool = False
    # Issue 14, per-layer precision: the first and last weighted layers (stem, classifier:
    # the usual most quantization-sensitive ones) stay fp32; searched per trial, measured.
    keep_ends: bool = False
    # ... and the N layers a sensitivity pass measured to lose the most to INT8
    # (compressor.measure.precision); the search picks N.
    keep_sensitive: int = 0


@dataclass(frozen=True)
class Artifact:
    """An ONNX file and what it holds."""

    path: Path
    spec: DeploySpec
    size_bytes: int
    int8_ops: dict[str, int]
    fused_ops: dict[str, int]
    fp32_nodes: tuple[str, ...]
    sensitive_fp32: tuple[str, ...] = ()  # the measured most sensitive modules kept fp32

    def describe(self) -> dict:
        """Plain data for trials and ``result.json``."""
        return {
            "quantization": self.spec.quantization,
            "fusion": self.spec.fusion,
            "keep_ends": self.spec.keep_ends,
            "size_bytes": self.size_bytes,
            "int8_ops": self.int8_ops,
            "fused_ops": self.fused_ops,
            "fp32_nodes": list(self.fp32_nodes),
            "keep_sensitive": self.spec.keep_sensitive,
            "sensitive_fp32": list(self.sensitive_fp32),
        }


def build_artifact(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    spec: DeploySpec,
    path: str | Path,
    *,
    calibration: Sequence[dict[str, np.ndarray]] = (),
    keep_fp32: Sequence[str] = (),
    sensitive: Sequence[str] = (),
) -> Artifact:
    """Write ``model``'s artifact for ``spec`` to ``path``.

    Args:
        model: the (pruned) PyTorch model.
        example_inputs: positional inputs of one forward pass (deployment shape).
        spec: fusion on/off and the quantization mode.
        path: the final ``.onnx`` file; intermediate graphs go beside it and are removed.
        calibration: input feeds for static quantization (see :func:`calibration_feeds`).
        keep_fp32: module names whose nodes stay in floating point.
        sensitive: module names, most quantization-sensitive first; the first
            ``spec.keep_sensitive`` of those still in ``model`` stay in floating point too
            (a pruned candidate keeps its modules' names; a removed block has none).
    """
    path = Path(path)
    stage = export_onnx(model, example_inputs, path.with_suffix(".export.onnx"))
    if spec.fusion:
        stage = _replace(stage, fuse_onnx(stage, path.with_suffix(".fused.onnx")))
    quantized = spec.quantization != "none"
    present = set(dict(model.named_modules()))
    kept_sensitive = tuple(m for m in sensitive if m in present)[: spec.keep_sensitive]
    kept_sensitive = kept_sensitive if quantized else ()
    keep = tuple(keep_fp32) + (end_layers(model) if spec.keep_ends else ()) + kept_sensitive
    fp32_nodes = tuple(nodes_of_modules(stage, keep)) if quantized else ()
    quantize_onnx(stage, path, QuantizeSpec(spec.quantization, tuple(calibration), fp32_nodes))
    stage.unlink(missing_ok=True)
    counts = op_counts(path)
    return Artifact(
        path=path,
        spec=spec,
        size_bytes=path.stat().st_size,
        int8_ops={op: n for op, n in counts.items() if op in INT8_OPS},
        fused_ops=fused_counts(path),
        fp32_nodes=fp32_nodes,
        sensitive_fp32=kept_sensitive,
    )


def end_layers(model: nn.Module) -> tuple[str, ...]:
    """The first and last convolution / linear layer (by module order): what
    ``DeploySpec.keep_ends`` keeps in floating point."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    ]
    return tuple(dict.fromkeys(names[:1] + names[-1:]))


def calibration_feeds(
    batches: Sequence, num_samples: int, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """ONNX input feeds of about ``num_samples`` real inputs from ``(inputs, labels)`` batches."""
    feeds, seen = [], 0
    for inputs in model_inputs(batches, num_samples):
        for start in range(0, inputs[0].shape[0], batch_size):
            chunk = [tensor[start : start + batch_size].numpy() for tensor in inputs]
            feeds.append(dict(zip(input_names(len(chunk)), chunk, strict=True)))
            seen += chunk[0].shape[0]
            if seen >= num_samples:
                return feeds
    return feeds


def model_inputs(batches: Sequence, num_samples: int) -> list[tuple[torch.Tensor, ...]]:
    """The positional model inputs of the first batches covering ``num_samples``."""
    taken, seen = [], 0
    for inputs, _ in batches:
        inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        taken.append(tuple(t[: num_samples - seen] for t in inputs))
        seen += taken[-1][0].shape[0]
        if seen >= num_samples:
            break
    return taken


def _replace(old: Path, new: Path) -> Path:
    old.unlink(missing_ok=True)
    return new
