"""INT8 quantization of an ONNX graph: one registered function per mode.

=============  ==========================================================================
mode           what does the work
=============  ==========================================================================
none           nothing: the fp32 graph is the artifact
dynamic        ONNX Runtime ``quantize_dynamic`` (per-channel QInt8 weights, activations
               quantized at run time): for MatMul-heavy models. On convolutions it emits
               ConvInteger, measured ~5x *slower* on this CPU -- kept in the search so the
               measured latency shows it, not excluded by hand
static_ort     ONNX Runtime ``quantize_static``: QDQ format, activations QUInt8, weights
               QInt8 per channel (S8S8 activations were measured slow here), calibrated
               (MinMax) on the task's training inputs
static_nncf    NNCF ``nncf.quantize`` on the ONNX model (~3x faster CNNs in ORT, measured);
               ``model_type=nncf.ModelType.TRANSFORMER`` on transformer graphs, as NNCF's
               documentation asks (it changes which operations are quantized); a fused
               graph first gets its fused operators' shapes (:func:`shaped_for_nncf`)
=============  ==========================================================================

Every mode takes the same :class:`QuantizeSpec`, so adding one is one decorated function
(:func:`quantization_mode`); the config, ``compress --help`` and the report read the
registry :data:`QUANTIZATIONS`.
``quant_pre_process`` is not run: its ORT optimization step would fold BatchNorm (the fuse
action's job, which the search toggles) and its symbolic shape inference (as it calls it,
without ``auto_merge``) fails on BERT.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from compressor.registry import Registry

Feed = dict[str, np.ndarray]
Quantizer = Callable[[Path, Path, "QuantizeSpec"], None]


@dataclass(frozen=True)
class QuantizationMode:
    """A registered mode: the function that applies it and what the search needs to know.

    Attributes:
        apply: ``apply(src, dst, spec)`` writes the quantized graph.
        calibrated: it needs calibration inputs (static modes).
        preference: the seeded plans use the allowed mode with the highest preference
            (measured fastest on this project's CNNs); the sampler then explores the rest.
        linear_preference: the same for models whose weights sit in linear layers
            (transformers), where ORT's CPU kernels rank the modes differently.
    """

    apply: Quantizer
    calibrated: bool = False
    preference: int = 0
    linear_preference: int = 0


QUANTIZATIONS: Registry[QuantizationMode] = Registry("quantization mode")


@dataclass(frozen=True)
class QuantizeSpec:
    """How to quantize one graph.

    Attributes:
        mode: a name registered in :data:`QUANTIZATIONS`.
        calibration: input feeds (name -> array) for the static modes; real task inputs.
        keep_fp32: ONNX node names left in floating point (e.g. first conv, classifier).
    """

    mode: str
    calibration: Sequence[Feed] = ()
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        QUANTIZATIONS.check("quantization mode", self.mode)
        if QUANTIZATIONS.get(self.mode).calibrated and not self.calibration:
            raise ValueError(f"quantization mode {self.mode!r} needs calibration inputs")


def quantization_mode(
    name: str,
    description: str,
    *,
    calibrated: bool = False,
    preference: int = 0,
    linear_preference: int = 0,
) -> Callable[[Quantizer], Quantizer]:
    """Register the function that applies quantization mode ``name``."""

    def wrap(function: Quantizer) -> Quantizer:
        QUANTIZATIONS.register(name, description)(
            QuantizationMode(function, calibrated, preference, linear_preference)
        )
        return function

    return wrap


def needs_calibration(mode: str) -> bool:
    return QUANTIZATIONS.get(mode).calibrated


def preferred_mode(allowed: Sequence[str], linear: bool = False) -> str:
    """The allowed mode the seeded plans use (highest preference, ``linear_preference`` for
    a model whose weights are mostly in linear layers; the first on a tie)."""

    def rank(mode: str) -> int:
        entry = QUANTIZATIONS.get(mode)
        return entry.linear_preference if linear else entry.preference

    return max(allowed, key=rank)


def quantize_onnx(src: str | Path, dst: str | Path, spec: QuantizeSpec) -> Path:
    """Write ``src`` quantized as ``spec`` says to ``dst`` (one file); return ``dst``."""
    src, dst = Path(src), Path(dst)
    with _quiet():
        QUANTIZATIONS.get(spec.mode).apply(src, dst, spec)
    if spec.keep_fp32 and spec.mode != "none":
        keep_float(dst, spec.keep_fp32)
    return dst


# ONNX Runtime's session optimizer `WeightBiasQuantization` (1.2x+) quantizes the float
# weights of any Conv / ConvTranspose / Gemm whose input comes from a per-tensor
# DequantizeLinear -- exactly what an excluded layer between quantized neighbours looks
# like -- per *tensor*, so a layer kept fp32 ran INT8 after all, worse than per-channel
# (measured: output error 0.18 instead of 0.03 relative with the layer "kept").
WEIGHTED = ("Conv", "ConvTranspose", "Gemm")


def keep_float(path: Path, nodes: Sequence[str]) -> None:
    """Make the layers ``nodes`` (left fp32 by the quantizer) stay fp32 in ONNX Runtime:
    each reads its input through its own DequantizeLinear with the same scale repeated per
    channel (axis 1; the same values), which that optimizer does not match."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph, wanted = model.graph, set(nodes)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    for node in list(graph.node):
        dq = producers.get(node.input[0]) if node.op_type in WEIGHTED else None
        if node.name not in wanted or dq is None or dq.op_type != "DequantizeLinear":
            continue
        weight = initializers.get(node.input[1])
        if weight is None or any(name not in initializers for name in dq.input[1:]):
            continue  # a quantized weight, or quantization parameters that are not constants
        channels = _input_channels(node, numpy_helper.to_array(weight))
        repeated = [
            numpy_helper.from_array(
                np.full(channels, numpy_helper.to_array(initializers[name])),
                f"{node.name}_input_{role}",
            )
            for name, role in zip(dq.input[1:], ("scale", "zero_point"), strict=False)
        ]
        graph.initializer.extend(repeated)
        own = helper.make_node(
            "DequantizeLinear",
            [dq.input[0], *(tensor.name for tensor in repeated)],
            [f"{node.name}_input_fp32"],
            name=f"{node.name}_input_fp32",
            axis=1,
        )
        node.input[0] = own.output[0]
        graph.node.insert(list(graph.node).index(node), own)
    onnx.save(model, str(path))


def _input_channels(node, weight: np.ndarray) -> int:
    """Channels (features) of a weighted node's input, from its weight's shape."""
    if node.op_type == "Conv":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return weight.shape[1] * group
    if node.op_type == "ConvTranspose":
        return weight.shape[0]
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return weight.shape[1] if trans_b else weight.shape[0]


@contextlib.contextmanager
def _quiet():
    """Silence the quantizers' per-call chatter: a search quantizes dozens of graphs.

    ONNX Runtime logs a pre-processing hint on the root logger every call and NNCF draws
    progress bars on stdout; errors still raise.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


# Fused transformer graphs hold com.microsoft ops whose output types the quantizer cannot
# infer; telling it to assume float is what makes fused + quantized graphs work (measured).
_EXTRA_OPTIONS = {"DefaultTensorType": onnx.TensorProto.FLOAT}


# Preferences, measured on ORT's CPU provider (../shared/STACK.md, benchmarks/README.md):
# on CNNs static QDQ runs 3.2x faster than fp32 while dynamic falls back to ConvInteger, 5x
# slower; on MiniLM dynamic INT8 (fused) is the fastest mode (B2: 1.12 ms against 1.90 fp32
# at 12 tokens) while static QDQ graphs ran 1.7-2.0x *slower* than fp32 and NNCF's 12.8 ms.
@quantization_mode("none", "no quantization: the fp32 graph", linear_preference=1)
def _copy(src: Path, dst: Path, spec: QuantizeSpec) -> None:
    shutil.copyfile(src, dst)


@quantization_mode(
    "dynamic",
    "ONNX Runtime quantize_dynamic: INT8 weights, activations at run time",
    linear_preference=2,
)
def _dynamic(src: Path, dst: Path, spec: QuantizeSpec) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        src,
        dst,
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(spec.keep_fp32),
        extra_options=dict(_EXTRA_OPTIONS),
    )


@quantization_mode(
    "static_ort",
    "ONNX Runtime quantize_static: QDQ INT8, calibrated (MinMax)",
    calibrated=True,
    preference=2,
)
def _static_ort(src: Path, dst: Path, spec: QuantizeSpec) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        src,
        dst,
        _FeedReader(spec.calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(spec.keep_fp32),
        extra_options=dict(_EXTRA_OPTIONS),
    )


@quantization_mode(
    "static_nncf", "NNCF nncf.quantize on the ONNX graph, calibrated", calibrated=True, preference=1
)
def _static_nncf(src: Path, dst: Path, spec: QuantizeSpec) -> None:
    import nncf

    feeds = list(spec.calibration)
    model = shaped_for_nncf(onnx.load(str(src)))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        subset_size=len(feeds),
        model_type=nncf.ModelType.TRANSFORMER if is_transformer_graph(model) else None,
        ignored_scope=nncf.IgnoredScope(names=list(spec.keep_fp32), validate=False),
    )
    onnx.save(quantized, str(dst))


def shaped_for_nncf(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a shape for every tensor a node consumes, so NNCF sees every edge.

    NNCF builds its graph from ``onnx.shape_inference.infer_shapes`` and adds an edge only
    for a tensor that inference gave a ``value_info``. ONNX's own inference does not know
    ONNX Runtime's ``com.microsoft`` operators, so on a fused transformer graph the outputs
    of Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu get none:
    NNCF's graph then has no edge into, e.g., the attention output MatMul, and its
    SmoothQuant (on in TRANSFORMER mode) fails asking for that MatMul's activation input
    ("does not contain input edge connected to 0 port ID"). ONNX Runtime's symbolic shape
    inference (``SymbolicShapeInference.infer_shapes``) does the heavy lifting: it knows
    those operators. ``auto_merge`` lets it equate the position-table clamp
    ``Min(max_positions, sequence)`` with ``sequence``, which BERT exports hold and
    without which it gives up. Graphs ONNX's inference fully shapes (unfused ones, CNNs)
    are returned unchanged.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    known = {
        tensor.name
        for tensor in (*graph.value_info, *graph.input, *graph.output, *graph.initializer)
    }
    produced = {output for node in graph.node for output in node.output}
    consumed = {name for node in graph.node for name in node.input}
    if not (produced & consumed) - known:
        return model
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


# Operators only transformer graphs hold: ONNX Runtime's fused ones, or the LayerNorm of an
# unfused export (opset >= 17); a CNN's graph has none of them.
TRANSFORMER_OPS = frozenset(
    {
        "Attention",
        "MultiHeadAttention",
        "EmbedLayerNormalization",
        "SkipLayerNormalization",
        "LayerNormalization",
    }
)


def is_transformer_graph(model: onnx.ModelProto) -> bool:
    """Whether NNCF should quantize ``model`` as a transformer (attention + LayerNorm)."""
    ops = {node.op_type for node in model.graph.node}
    return bool(ops & TRANSFORMER_OPS) and ("Softmax" in ops or "Attention" in ops)


class _FeedReader:
    """ONNX Runtime's CalibrationDataReader protocol over a fixed list of feeds."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self._feeds: Iterator[Feed] = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._feeds, None)
