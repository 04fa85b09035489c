"""Layer fusion on an exported ONNX graph.

ONNX Runtime's transformer optimizer does the heavy lifting
(``onnxruntime.transformers.optimizer.optimize_model``). With ``opt_level=1`` it first runs
ONNX Runtime's provider-independent *basic* graph optimizations and saves the result (this
folds BatchNorm into the preceding convolution, folds constants and drops Identity nodes),
then its pattern fusions for BERT-like graphs: EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu. On a CNN the BERT patterns simply find nothing.

The graph stays runnable on any execution provider: level 1 writes no CPU-only fused
kernels (those come at run time, from the session's own optimizer).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx

# Operators only a fusion produces; counted in reports and tests.
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SimplifiedLayerNormalization",
    # ORT GenAI's decoder graphs (compressor.actions.build_decoder); the rotary embedding is
    # a node of its own only where it is not inside GroupQueryAttention.
    "GroupQueryAttention",
    "RotaryEmbedding",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "LayerNormalization",
)


def fuse_onnx(
    src: str | Path,
    dst: str | Path,
    *,
    num_heads: int = 0,
    hidden_size: int = 0,
    model_type: str = "bert",
) -> Path:
    """Write the fused graph of ``src`` to ``dst`` (one file) and return ``dst``.

    ``num_heads`` / ``hidden_size`` help the attention fusion on transformer graphs;
    0 lets ONNX Runtime detect them from the graph. ``model_type`` picks the optimizer's
    pattern set ("gpt2" for decoders: RMS-norm fusions without BERT's embedding pattern).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer logs every fusion it tries at WARNING; a search runs it many times.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimize_model(
        str(src),
        model_type=model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1,
        use_gpu=False,
    )
    dst = Path(dst)
    optimized.save_model_to_file(str(dst), use_external_data_format=False)
    return dst


def op_counts(graph: str | Path | onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each operator type the graph holds."""
    if not isinstance(graph, onnx.ModelProto):  # the weights are not needed to count nodes
        graph = onnx.load(str(graph), load_external_data=False)
    return dict(Counter(node.op_type for node in graph.graph.node))


def fused_counts(graph: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Counts of the fused operator types present in the graph."""
    return {op: count for op, count in op_counts(graph).items() if op in FUSED_OPS}
