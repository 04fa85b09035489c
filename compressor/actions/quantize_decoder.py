"""Per-layer weight precision of an exported decoder: fp32, INT8 or INT4, layer by layer.

A :class:`PrecisionPlan` gives every weight MatMul of the graph (each ``nn.Linear`` of the
PyTorch model: ``model.layers.3.mlp.down_proj``, ``lm_head``) one precision. Two ONNX
Runtime passes do the work, each told exactly which nodes are its own:

- INT4: ``MatMulNBitsQuantizer`` (block-wise 4-bit weights in ``MatMulNBits`` nodes), with
  symmetric (``rtn``) or asymmetric (``rtn-asym``, a uint4 zero point per block) round to
  nearest, or HQQ (``hqq``) scales; it imports the ``onnx-ir`` package. Or ``rtn-offset``:
  min/max blocks with a float offset (llama.cpp's Q4_1), our rewrite onto the same kernel
  (:mod:`compressor.actions.int4_offset`);
- INT8, ``block`` (the default): the same quantizer at 8 bits, block-wise weights with a
  zero point per block, activations quantized per block inside the kernel
  (``accuracy_level=4``);
- INT8, ``dynamic``: ``quantize_dynamic`` (per-channel INT8 weights, activations quantized
  per tensor at run time: ``MatMulInteger``), the one-call INT8 of ONNX Runtime.

Measured on SmolLM2-135M (test windows, fp32 perplexity 11.55, ORT GenAI's fused graph,
2026-12-01): ``dynamic`` INT8 on every MatMul costs 46 % perplexity (STACK.md), 4 % with
``lm_head`` and ``down_proj`` kept fp32, and decodes 1.3x faster than fp32; ``block``
INT8 on every MatMul, ``lm_head`` included, costs 0.5 % (11.61) and decodes within 1.4x
of INT4's time. INT4 on every MatMul: 15.63 symmetric, 15.08 asymmetric; asymmetric with
``lm_head`` INT8 14.06 (float offsets instead: 11.58 at 1.2-1.45x the decode time,
lossless because SmolLM2's weights are Q4_1 blocks; bias correction instead: 13.20 at
no cost), and with ``qkv_proj`` / ``down_proj`` of 12 of the 30 layers INT8
too (llama.cpp's Q4_K_M mix) 12.75, at ~1.1x INT4's decode time. Which layers are sensitive is
found by measurement (:mod:`compressor.search.decoder_sensitivity`), not by name.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from compressor.actions.bias_correction import Linear, correct_biases, input_means
from compressor.actions.export import module_of_node
from compressor.actions.int4_offset import float_offset_int4
from compressor.actions.quantize import _EXTRA_OPTIONS, _quiet
from compressor.registry import Registry

PRECISIONS = ("fp32", "int8", "int4")  # highest precision first
# One MatMul standing for several PyTorch linears: ORT GenAI's builder packs q, k and v.
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj")}


@dataclass(frozen=True)
class PrecisionPlan:
    """The weight precision of every linear layer of a decoder.

    Attributes:
        default: precision of the decoder layers' linears.
        lm_head: precision of the output projection (the largest single matrix).
        overrides: module name -> precision, for single layers (a sensitive
            ``model.layers.3.mlp.down_proj`` kept fp32, say; a name also covers the modules
            under it) or for a whole family by its last name (``down_proj``: every layer's).
        int4_method: ``rtn`` (symmetric round to nearest), ``rtn-asym`` (with a zero
            point per block) or ``hqq`` (half-quadratic scales).
        int8_method: ``block`` (weight-only ``MatMulNBits`` at 8 bits) or ``dynamic``
            (``quantize_dynamic``: ``MatMulInteger``, activations per tensor).
        block_size: INT4 / block INT8 block length along the input dimension.
        accuracy_level: ``MatMulNBits`` compute type; 4 quantizes activations to INT8
            inside the kernel (faster on CPU), None computes in fp32.
        offsets: modules or families (as in ``overrides``) whose INT4 layers use
            ``rtn-offset`` whatever ``int4_method`` says: exact float offsets where they
            matter most, at an extra op per layer.
        bias_correction: add each quantized layer's mean output error back as its bias
            (measured on calibration windows; :mod:`compressor.actions.bias_correction`).
            Applies to the layers ORT's ``MatMulNBitsQuantizer`` writes (INT4 ``rtn``,
            ``rtn-asym``, ``hqq``; INT8 ``block``).
    """

    default: str = "fp32"
    lm_head: str = "fp32"
    overrides: Mapping[str, str] = field(default_factory=dict)
    int4_method: str = "rtn"
    int8_method: str = "block"
    block_size: int = 32
    accuracy_level: int | None = 4
    offsets: tuple[str, ...] = ()
    bias_correction: bool = False

    def __post_init__(self) -> None:
        for name, value in (("default", self.default), ("lm_head", self.lm_head)):
            if value not in PRECISIONS:
                raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}; got {value!r}")
        for module, value in self.overrides.items():
            if value not in PRECISIONS:
                raise ValueError(f"precision of {module} must be one of {PRECISIONS}: {value!r}")
        INT4_METHODS.check("int4_method", self.int4_method)
        INT8_METHODS.check("int8_method", self.int8_method)
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two >= 16; got {self.block_size}")

    def precision_of(self, module: str) -> str:
        """The precision of the linear layer named ``module`` (longest override wins).

        A packed projection (ORT GenAI's ``qkv_proj``) gets the highest precision any of
        the layers it packs has: keeping ``v_proj`` fp32 keeps the whole ``qkv_proj`` fp32.
        """
        parent, _, last = module.rpartition(".")
        if last in PACKED:
            parts = [self.precision_of(f"{parent}.{part}") for part in PACKED[last]]
            return min(parts, key=PRECISIONS.index)
        matches = [m for m in self.overrides if _names(module, m)]
        if matches:
            return self.overrides[max(matches, key=len)]
        return self.lm_head if module == "lm_head" else self.default

    def int4_method_of(self, module: str) -> str:
        """The INT4 method of ``module``: ``rtn-offset`` where ``offsets`` name it (a packed
        projection when any layer it packs is named), else ``int4_method``."""
        parent, _, last = module.rpartition(".")
        names = [f"{parent}.{part}" for part in PACKED.get(last, ())] or [module]
        named = any(_names(name, m) for name in names for m in self.offsets)
        return "rtn-offset" if named else self.int4_method

    @property
    def is_fp32(self) -> bool:
        return (
            self.default == "fp32"
            and self.lm_head == "fp32"
            and all(v == "fp32" for v in self.overrides.values())
        )


def _names(module: str, name: str) -> bool:
    """Whether ``name`` covers ``module``: the module itself, a parent of it, a family's last
    name (``down_proj``), or a scoped family (``layers.3.down_proj``: that family within
    ``layers.3``, whatever lies between, so one name serves optimum's ``self_attn.q_proj``
    and ORT GenAI's ``attn.qkv_proj`` alike)."""
    if module == name or module.startswith(name + ".") or module.endswith("." + name):
        return True
    scope, _, family = name.rpartition(".")
    return bool(scope) and module.endswith("." + family) and f".{scope}." in f".{module}"


# How INT4 and INT8 layers are quantized: each entry rewrites ``nodes`` of a graph (model
# in, model out), with a scratch folder for the passes that only work on files.
Pass = Callable[[onnx.ModelProto, list[str], PrecisionPlan, Path], onnx.ModelProto]
INT4_METHODS: Registry[Pass] = Registry("INT4 method")
INT8_METHODS: Registry[Pass] = Registry("INT8 method")
# The methods whose nodes are ``MatMulNBits`` named ``<MatMul name>_Q4`` / ``_Q8`` (ORT's
# MatMulNBitsQuantizer's, and our float-offset rewrite's): what bias correction can correct.
NBITS_METHODS = frozenset({"rtn", "rtn-asym", "hqq", "block", "rtn-offset"})


@INT4_METHODS.register("rtn", "round to nearest, symmetric blocks (ORT's default)")
def _rtn(graph, nodes, plan, scratch):
    return _matmul_nbits(graph, nodes, plan, _round_to_nearest(plan, bits=4, symmetric=True))


@INT4_METHODS.register("rtn-asym", "round to nearest, a zero point per block (uint4)")
def _rtn_asym(graph, nodes, plan, scratch):
    return _matmul_nbits(graph, nodes, plan, _round_to_nearest(plan, bits=4, symmetric=False))


@INT4_METHODS.register("rtn-offset", "min/max blocks with a float offset (llama.cpp's Q4_1)")
def _rtn_offset(graph, nodes, plan, scratch):
    # Our rewrite: MatMulNBits plus a block-sum MatMul for the offsets (see int4_offset).
    return float_offset_int4(graph, nodes, plan.block_size, plan.accuracy_level)


@INT4_METHODS.register("hqq", "half-quadratic scales and zero points (slow: minutes)")
def _hqq(graph, nodes, plan, scratch):
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig

    algo = HQQWeightOnlyQuantConfig(block_size=plan.block_size, bits=4)
    return _matmul_nbits(graph, nodes, plan, algo)


def _round_to_nearest(plan: PrecisionPlan, bits: int, symmetric: bool):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    return DefaultWeightOnlyQuantConfig(
        block_size=plan.block_size,
        is_symmetric=symmetric,
        accuracy_level=plan.accuracy_level,
        bits=bits,
    )


@INT8_METHODS.register("block", "MatMulNBits at 8 bits: block-wise weights, INT8 compute")
def _int8_block(graph, nodes, plan, scratch):
    # Asymmetric blocks: a zero point per block costs nothing on MLAS's INT8 path.
    return _matmul_nbits(graph, nodes, plan, _round_to_nearest(plan, bits=8, symmetric=False))


@INT8_METHODS.register("dynamic", "quantize_dynamic: MatMulInteger, activations per tensor")
def _int8_dynamic(graph, nodes, plan, scratch):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic works on files; the staged copies live in the caller's scratch.
    src, dst = scratch / "int8-in.onnx", scratch / "int8-out.onnx"
    onnx.save(graph, str(src))
    quantize_dynamic(
        src,
        dst,
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        extra_options=dict(_EXTRA_OPTIONS),
    )
    return onnx.load(str(dst))


def weight_matmuls(graph: onnx.ModelProto) -> dict[str, str]:
    """``{node name: module name}`` of the MatMuls whose second input is a stored weight
    (or the transpose of one: a tied ``lm_head`` reads the embedding table transposed)."""
    weights = {init.name for init in graph.graph.initializer} | set(_transposed_weights(graph))
    return {
        node.name: module_of_node(node.name)
        for node in graph.graph.node
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in weights
    }


def _transposed_weights(graph: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """``{output: Transpose node}`` for the Transposes of a stored weight."""
    weights = {init.name for init in graph.graph.initializer}
    return {
        node.output[0]: node
        for node in graph.graph.node
        if node.op_type == "Transpose" and node.input[0] in weights
    }


def untie_weights(graph: onnx.ModelProto, nodes: list[str]) -> None:
    """Store the transposed weight of ``nodes`` as its own initializer, in place.

    optimum stores a tied ``lm_head`` once, as ``Transpose(embedding)``; the quantizers
    only quantize MatMuls whose weight is an initializer, so quantizing ``lm_head`` needs
    its own (transposed) copy while the embedding Gather keeps the fp32 table.
    """
    from onnx import numpy_helper

    transposes = _transposed_weights(graph)
    initializers = {init.name: init for init in graph.graph.initializer}
    wanted = {node.input[1] for node in graph.graph.node if node.name in set(nodes)}
    for name in wanted & set(transposes):
        node = transposes[name]
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = numpy_helper.to_array(initializers[node.input[0]]).transpose(perm)
        graph.graph.initializer.append(numpy_helper.from_array(array.copy(), name))
        graph.graph.node.remove(node)


def nodes_by_precision(graph: onnx.ModelProto, plan: PrecisionPlan) -> dict[str, list[str]]:
    """The weight MatMul node names of each precision."""
    grouped: dict[str, list[str]] = {p: [] for p in PRECISIONS}
    for node, module in weight_matmuls(graph).items():
        grouped[plan.precision_of(module)].append(node)
    return grouped


def quantize_decoder(
    src: str | Path, dst: str | Path, plan: PrecisionPlan, calibration: Iterable | None = None
) -> Path:
    """Write ``src`` with the weight precisions of ``plan`` to ``dst`` (one file).

    ``calibration``: token-id windows (``[1, length]``), needed when the plan corrects biases.
    """
    src, dst = Path(src), Path(dst)
    if plan.bias_correction and calibration is None:
        raise ValueError("bias correction needs calibration windows")
    graph = onnx.load(str(src))
    nodes = nodes_by_precision(graph, plan)
    untie_weights(graph, nodes["int4"] + nodes["int8"])
    with _quiet(), tempfile.TemporaryDirectory(dir=dst.parent, prefix=".quantize-") as scratch:
        int4 = _by_int4_method(graph, nodes["int4"], plan)
        linears = _correctable(graph, int4, nodes["int8"], plan) if plan.bias_correction else {}
        if linears:
            means = _input_means(src, graph, calibration, Path(scratch))
        for method, group in int4.items():
            graph = INT4_METHODS.get(method)(graph, group, plan, Path(scratch))
        if nodes["int8"]:
            graph = INT8_METHODS.get(plan.int8_method)(graph, nodes["int8"], plan, Path(scratch))
        if linears:
            correct_biases(graph, linears, means)
    onnx.save(graph, str(dst))
    return dst


def _by_int4_method(
    graph: onnx.ModelProto, nodes: list[str], plan: PrecisionPlan
) -> dict[str, list[str]]:
    modules = weight_matmuls(graph)
    grouped: dict[str, list[str]] = {}
    for node in nodes:
        grouped.setdefault(plan.int4_method_of(modules[node]), []).append(node)
    return grouped


def _correctable(
    graph: onnx.ModelProto, int4: dict[str, list[str]], int8: list[str], plan: PrecisionPlan
) -> dict[str, Linear]:
    """The linears that become ``MatMulNBitsQuantizer`` nodes, with their fp32 weights
    (``int4``: the INT4 nodes by method)."""
    from onnx import numpy_helper

    names = [node for method, group in int4.items() if method in NBITS_METHODS for node in group]
    if plan.int8_method in NBITS_METHODS:
        names += int8
    initializers = {init.name: init for init in graph.graph.initializer}
    by_name = {node.name: node for node in graph.graph.node}
    return {
        name: Linear(
            by_name[name].input[0], numpy_helper.to_array(initializers[by_name[name].input[1]])
        )
        for name in names
    }


# (graph file, its mtime, the calibration windows) -> the means of every weight MatMul's
# input. The study quantizes one structure's graph once per trial, and measuring the means
# writes a probe copy of the fp32 graph (540 MB for SmolLM2) and runs it: once per graph.
_MEANS: dict[tuple, dict] = {}
_MEANS_KEPT = 4


def _input_means(src: Path, graph: onnx.ModelProto, calibration: Iterable, scratch: Path):
    import hashlib

    import numpy as np

    windows = [np.asarray(window) for window in calibration]
    digest = hashlib.sha1(b"".join(w.astype(np.int64).tobytes() for w in windows)).hexdigest()
    key = (str(src.resolve()), src.stat().st_mtime_ns, digest)
    if key not in _MEANS:
        linears = weight_matmuls(graph)
        inputs = [node.input[0] for node in graph.graph.node if node.name in linears]
        while len(_MEANS) >= _MEANS_KEPT:
            _MEANS.pop(next(iter(_MEANS)))
        _MEANS[key] = input_means(graph, inputs, windows, scratch)
    return _MEANS[key]


def _matmul_nbits(graph: onnx.ModelProto, nodes: list[str], plan: PrecisionPlan, algo):
    """``MatMulNBitsQuantizer`` on ``nodes`` only, with ``algo``'s bits and scales."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    others = [name for name in weight_matmuls(graph) if name not in set(nodes)]
    quantizer = MatMulNBitsQuantizer(
        graph,
        block_size=plan.block_size,
        is_symmetric=getattr(algo, "is_symmetric", True),
        accuracy_level=plan.accuracy_level,
        nodes_to_exclude=others,
        algo_config=algo,
    )
    quantizer.process()
    return quantizer.model.model


def weight_bytes(graph: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Bytes of stored weights: ``total``, and ``streamed`` = what one decode step reads
    (all but a table only gathered from, like an untied embedding: a step reads one row)."""
    from onnx import numpy_helper

    model = graph if isinstance(graph, onnx.ModelProto) else onnx.load(str(graph))
    sizes = {init.name: numpy_helper.to_array(init).nbytes for init in model.graph.initializer}
    other_uses = {
        name for node in model.graph.node if node.op_type != "Gather" for name in node.input
    }
    gathered_only = {
        node.input[0]
        for node in model.graph.node
        if node.op_type == "Gather" and node.input[0] not in other_uses
    }
    table = sum(size for name, size in sizes.items() if name in gathered_only)
    total = sum(sizes.values())
    return {"total": total, "streamed": total - table}
