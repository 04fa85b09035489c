"""B2's Optimum row: the real Optimum pipeline (optimum-onnx), as its documentation runs it.

From the sentence-transformers checkpoint folder: ``main_export`` (library
``sentence_transformers``, task ``feature-extraction``, Optimum's default opset), then
``ORTOptimizer`` with ``AutoOptimizationConfig.O2()`` (the transformer fusions for CPU;
O3 adds a GELU approximation, O4 is GPU fp16), then ``ORTQuantizer`` with
``AutoQuantizationConfig.<cpu>(is_static=False)`` (dynamic INT8, Optimum's defaults:
per-channel QInt8 weights, QUInt8 activations, every quantizable operator). The heavy
lifting is those three library calls; this module picks the CPU's config and records what
they produced.

Two faults of this pipeline on this stack (optimum-onnx 0.1.0, optimum 2.1.0, onnxruntime
1.32), neither caused by running offline (the export reads the local folder):

- ``ORTQuantizer.quantize`` on an ``ORTOptimizer`` output fails with ``RuntimeError: Unable
  to find data type for weight_name='/0/encoder/layer.0/attention/output/dense/MatMul_output_0'``.
  ONNX Runtime's quantizer types each MatMul output by ONNX shape inference, which cannot
  type tensors behind the fused ``com.microsoft`` ops (Attention, BiasGelu). ONNX Runtime's
  remedy is the extra option ``DefaultTensorType`` (microsoft/onnxruntime#19455), but
  ``ORTQuantizer.quantize`` builds its own ``extra_options`` and cannot pass it (the PR
  adding it, huggingface/optimum#1959, closed unmerged; same report:
  huggingface/sentence-transformers#2598). So the quantizer Optimum constructs gets
  ``DefaultTensorType=FLOAT`` added (:func:`float_default_tensor_type`), the fix that error
  message names, as the ORT INT8 rows pass it to ``quantize_dynamic``.
- At opset 18 the sentence-transformers ``Normalize`` module exports a ``ReduceL2`` whose
  axes are an input; ONNX Runtime's symbolic shape inference handles that form only for
  ReduceSum / ReduceMean / ReduceProd, so it fails ("failed in shape inference") and
  ``ORTOptimizer`` skips SkipLayerNormalization fusion (it needs shapes). ONNX Runtime's
  session optimizer (``ORT_ENABLE_ALL``, as every row is loaded) fuses them at load, so
  the timed graph has them; the facts record the optimizer's own node counts.

The graph keeps one output, ``sentence_embedding`` (mean pooling + L2 normalisation, so
cosine scores are unchanged), like every other row's artifact; ``token_embeddings`` is
dropped from the outputs before optimizing so no row copies extra tensors out.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from pathlib import Path

from benchmarks.common import RowOutcome
from compressor.actions.fuse import op_counts
from compressor.environment import cpu_flags

OUTPUT = "sentence_embedding"
OPTIMIZATION_LEVEL = "O2"
# Node types that show the optimizer's fusions and the quantizer's INT8 kernels.
COUNTED = (
    "Attention",
    "QAttention",
    "BiasGelu",
    "SkipLayerNormalization",
    "LayerNormalization",
    "MatMulInteger",
    "DynamicQuantizeLinear",
)


def missing_reason() -> str | None:
    """Why the Optimum row cannot run here (None when optimum-onnx imports)."""
    try:
        importlib.import_module("optimum.onnxruntime")
        importlib.import_module("optimum.exporters.onnx")
    except ImportError as exc:
        return (
            f"optimum-onnx is not installed ({exc}); install the llm extra with "
            "`pip install -c constraints.txt '.[llm]'`"
        )
    return None


def quantization_choice(flags: list[str] | None = None) -> str:
    """The ``AutoQuantizationConfig`` constructor for this CPU.

    ``avx512_vnni`` when the CPU has AVX-512 VNNI (this machine does): its VPDPBUSD
    instruction multiplies u8 activations by s8 weights and accumulates in 32 bits, which
    the config's QUInt8 x QInt8 scheme and ONNX Runtime's MatMulInteger / QAttention kernels
    use there. Without VNNI, ``avx2``: it quantizes weights to u8 as well, because AVX2's
    u8 x s8 multiply-add (VPMADDUBSW) saturates its 16-bit intermediate sums.
    """
    present = cpu_flags() if flags is None else flags
    return "avx512_vnni" if "avx512_vnni" in present else "avx2"


def run_optimum(checkpoint: Path, work: Path) -> RowOutcome:
    """Export ``checkpoint`` (a sentence-transformers folder), optimize, quantize; the
    quantized model, or why there is none."""
    reason = missing_reason()
    choice = quantization_choice()
    base = {
        "pipeline": f"main_export -> ORTOptimizer {OPTIMIZATION_LEVEL} -> ORTQuantizer "
        f"{choice}(is_static=False)",
        "cpu_flags": cpu_flags(),
    }
    if reason:
        return RowOutcome(None, {**base, "skipped": reason})
    started = time.perf_counter()
    try:
        exported = export_encoder(checkpoint, work / "optimum-export")
        optimized = optimize(exported, work / "optimum-optimized")
        quantized = quantize(optimized, work / "optimum-quantized", choice)
    except Exception as exc:  # the peer pipeline failing is this row's result, said plainly
        logging.getLogger(__name__).warning("the Optimum pipeline failed", exc_info=True)
        return RowOutcome(None, {**base, "failed": f"{type(exc).__name__}: {exc}"})
    facts = {
        **base,
        "seconds": time.perf_counter() - started,
        "opset": opset_of(exported),
        "optimized_nodes": node_counts(optimized),
        "quantized_nodes": node_counts(quantized),
    }
    return RowOutcome(quantized, facts)


def export_encoder(checkpoint: Path, folder: Path) -> Path:
    """``main_export`` of the sentence-transformers model, reduced to its pooled output."""
    from optimum.exporters.onnx import main_export

    main_export(
        str(checkpoint),
        folder,
        task="feature-extraction",
        library_name="sentence_transformers",
        do_validation=False,  # the row is scored on STS-B like every other row
    )
    keep_output(folder / "model.onnx", OUTPUT)
    return folder / "model.onnx"


def optimize(model: Path, folder: Path) -> Path:
    """``ORTOptimizer`` at Optimum's CPU transformer level (fusions, fp32)."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(model.parent, file_names=[model.name])
    config = getattr(AutoOptimizationConfig, OPTIMIZATION_LEVEL)()
    optimizer.optimize(save_dir=folder, optimization_config=config)
    return folder / f"{model.stem}_optimized.onnx"


def quantize(model: Path, folder: Path, choice: str) -> Path:
    """``ORTQuantizer`` dynamic INT8 with the CPU's ``AutoQuantizationConfig``."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(model.parent, file_name=model.name)
    config = getattr(AutoQuantizationConfig, choice)(is_static=False)
    with float_default_tensor_type():
        quantizer.quantize(save_dir=folder, quantization_config=config)
    return folder / f"{model.stem}_quantized.onnx"


@contextlib.contextmanager
def float_default_tensor_type():
    """Within the block, the ONNX Runtime quantizer that ``ORTQuantizer.quantize`` builds
    gets ``DefaultTensorType=FLOAT`` (see the module docstring: Optimum cannot pass it)."""
    import onnx
    import optimum.onnxruntime.quantization as optimum_quantization

    original = optimum_quantization.ONNXQuantizer

    class FloatDefaultQuantizer(original):
        def __init__(self, *args, extra_options=None, **kwargs):
            options = {**(extra_options or {}), "DefaultTensorType": onnx.TensorProto.FLOAT}
            super().__init__(*args, extra_options=options, **kwargs)

    optimum_quantization.ONNXQuantizer = FloatDefaultQuantizer
    try:
        yield
    finally:
        optimum_quantization.ONNXQuantizer = original


def keep_output(path: Path, name: str) -> None:
    """Rewrite ``path`` with ``name`` as its only graph output."""
    import onnx

    model = onnx.load(str(path))
    kept = [output for output in model.graph.output if output.name == name]
    if not kept:
        raise ValueError(f"{path} has no output {name!r}")
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(path))


def node_counts(path: Path) -> dict[str, int]:
    """How many nodes of each :data:`COUNTED` type the graph holds."""
    counts = op_counts(path)
    return {op: counts.get(op, 0) for op in COUNTED}


def opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
