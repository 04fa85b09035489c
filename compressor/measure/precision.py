"""Which layers of a model lose the most to INT8 quantization, measured in one pass.

ONNX Runtime's own debugging tool (``onnxruntime.quantization.qdq_loss_debug``) does the
heavy lifting: ``modify_model_output_intermediate_tensors`` makes every float tensor of the
fp32 graph and of its QDQ-quantized copy a graph output, ``collect_activations`` runs both on
the same real inputs, and ``compute_signal_to_quantization_noice_ratio`` (SQNR, dB) compares
a tensor of the QDQ graph with the same tensor of the fp32 one.

Error accumulates along the graph, so a layer's SQNR alone mostly says how deep it sits.
What a layer *adds* is read from the noise-to-signal ratio ``NSR = 10^(-SQNR/10)`` (noise
powers add): ``NSR(its output) - NSR(its input)``, each tensor as the next layer sees it
(after its QuantizeLinear -> DequantizeLinear pair), so what a layer adds is its weights'
quantization and its output's: a weight outlier, or an output range that one channel blows
up. Keeping the layers that add the most in fp32 is what ``DeploySpec.keep_sensitive`` does.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from compressor.actions.export import module_of_node

WEIGHTED_OPS = ("Conv", "FusedConv", "ConvTranspose", "Gemm", "MatMul")
# The quantizer's name for a tensor as its consumers see it: after QuantizeLinear ->
# DequantizeLinear (it may give the raw name to another tensor: a Relu it folds away hands
# its output name to the node before it).
DEQUANTIZED = "_DequantizeLinear_Output"
Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class LayerSensitivity:
    """One weighted layer's measured INT8 error.

    Attributes:
        module: the PyTorch module the ONNX node came from (e.g. ``layer1.0.conv2``).
        node: the node's name in the fp32 export.
        sqnr_db: its output in the QDQ graph vs the fp32 graph (higher = closer).
        added_noise: noise-to-signal ratio it adds (output's less its input's).
    """

    module: str
    node: str
    sqnr_db: float
    added_noise: float


def quantization_sensitivity(
    fp32_path: str | Path, qdq_path: str | Path, feeds: Sequence[Feed]
) -> list[LayerSensitivity]:
    """Every weighted layer of the fp32 graph at ``fp32_path``, the one whose QDQ version
    (``qdq_path``: quantized as the artifact will be) adds the most noise first."""
    from onnxruntime.quantization.qdq_loss_debug import collect_activations

    with tempfile.TemporaryDirectory(prefix="sensitivity-") as folder:
        fp32 = collect_activations(_augmented(fp32_path, Path(folder) / "fp32.onnx"), list(feeds))
        qdq = collect_activations(_augmented(qdq_path, Path(folder) / "qdq.onnx"), list(feeds))
    layers = []
    for node in onnx.load(str(fp32_path), load_external_data=False).graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        output = _sqnr(fp32, qdq, node.output[0])
        added = _nsr(output) - _nsr(_sqnr(fp32, qdq, node.input[0]))
        layers.append(LayerSensitivity(module_of_node(node.name), node.name, output, added))
    return sorted(layers, key=lambda layer: -layer.added_noise)


def _augmented(path: str | Path, to: Path) -> str:
    from onnxruntime.quantization.qdq_loss_debug import (
        modify_model_output_intermediate_tensors,
    )

    modify_model_output_intermediate_tensors(str(path), str(to))
    return str(to)


def _sqnr(fp32: dict, qdq: dict, tensor: str) -> float:
    """SQNR (dB) of ``tensor`` in the QDQ graph as its consumers see it (dequantized)
    against the fp32 graph's; infinite where it is not a float tensor of both graphs."""
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio,
    )

    seen = qdq.get(tensor + DEQUANTIZED, qdq.get(tensor))
    if tensor not in fp32 or seen is None:
        return math.inf
    return compute_signal_to_quantization_noice_ratio(fp32[tensor], seen)


def _nsr(sqnr_db: float) -> float:
    return 0.0 if math.isinf(sqnr_db) else 10.0 ** (-sqnr_db / 10.0)


def ranked_modules(layers: Sequence[LayerSensitivity]) -> tuple[str, ...]:
    """The modules of ``layers`` (ranked, most noise first), each once: a module exported as
    several weighted nodes is kept or quantized as one."""
    return tuple(dict.fromkeys(layer.module for layer in layers))
