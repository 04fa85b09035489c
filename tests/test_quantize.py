"""INT8 quantization modes and the artifact pipeline: structure, fp32 exclusions, parity."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import pytest
import torch
from deploy_helpers import image_batch, labelled_batches, tiny_resnet

from compressor.actions.artifact import DeploySpec, build_artifact, calibration_feeds
from compressor.actions.quantize import QUANTIZATIONS, QuantizeSpec
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.parity import measure_parity

EXAMPLE = (torch.zeros(1, 1, 16, 16),)


@dataclass(frozen=True)
class Case:
    mode: str
    fusion: bool
    must_have: tuple[str, ...]  # operators the quantized graph must contain
    min_cosine: float  # output cosine vs fp32 PyTorch on real inputs


CASES = [
    Case("none", False, ("Conv", "BatchNormalization"), 0.99999),
    Case("none", True, ("Conv",), 0.99999),
    Case("static_ort", True, ("QuantizeLinear", "DequantizeLinear"), 0.99),
    Case("static_ort", False, ("QuantizeLinear", "DequantizeLinear"), 0.99),
    Case("static_nncf", True, ("QuantizeLinear", "DequantizeLinear"), 0.99),
    # Dynamic quantization turns convolutions into ConvInteger (slow on CPU; the search's
    # latency measurement is what rejects it).
    Case("dynamic", True, ("ConvInteger", "DynamicQuantizeLinear"), 0.99),
]


@pytest.fixture(scope="module")
def model():
    return tiny_resnet()


@pytest.fixture(scope="module")
def feeds():
    return calibration_feeds(labelled_batches(), 64)


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c.mode}-{'fused' if c.fusion else 'plain'}"
)
def test_artifact_structure_and_parity(case, model, feeds, tmp_path):
    artifact = build_artifact(
        model, EXAMPLE, DeploySpec(case.mode, case.fusion), tmp_path / "a.onnx", calibration=feeds
    )
    onnx.checker.check_model(str(artifact.path))
    ops = {node.op_type for node in onnx.load(str(artifact.path)).graph.node}
    assert set(case.must_have) <= ops
    assert ("BatchNormalization" in ops) == (not case.fusion)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # intermediates removed
    parity = measure_parity(model, OnnxModule(artifact.path), [(image_batch(64, seed=3),)])
    assert parity["cosine"] >= case.min_cosine
    assert artifact.size_bytes == artifact.path.stat().st_size


def test_static_int8_graph_is_smaller_than_fp32(model, feeds, tmp_path):
    fp32 = build_artifact(model, EXAMPLE, DeploySpec("none", True), tmp_path / "f.onnx")
    int8 = build_artifact(
        model, EXAMPLE, DeploySpec("static_ort", True), tmp_path / "q.onnx", calibration=feeds
    )
    assert int8.int8_ops["QuantizeLinear"] >= 3
    assert int8.size_bytes < fp32.size_bytes


@pytest.mark.parametrize("mode", ["static_ort", "static_nncf", "dynamic"])
def test_kept_modules_stay_fp32(mode, model, feeds, tmp_path):
    artifact = build_artifact(
        model,
        EXAMPLE,
        DeploySpec(mode, True),
        tmp_path / "a.onnx",
        calibration=feeds,
        keep_fp32=("conv1", "fc"),
    )
    assert artifact.fp32_nodes == ("/conv1/Conv", "/fc/Gemm")
    graph = onnx.load(str(artifact.path)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name in artifact.fp32_nodes:
            # fp32 weights straight from initializers, not from a DequantizeLinear
            assert node.op_type in ("Conv", "Gemm")
            assert producers.get(node.input[1]) != "DequantizeLinear"
    quantized = [
        n
        for n in graph.node
        if n.op_type in ("ConvInteger", "Conv") and n.name not in artifact.fp32_nodes
    ]
    assert quantized, "the other convolution is still quantized"


def test_static_modes_require_calibration():
    with pytest.raises(ValueError, match="calibration"):
        QuantizeSpec("static_ort")
    with pytest.raises(ValueError, match="one of"):
        QuantizeSpec("int4")
    assert set(QUANTIZATIONS.names()) == {"none", "dynamic", "static_ort", "static_nncf"}


def test_calibration_feeds_cover_the_requested_samples():
    feeds = calibration_feeds(labelled_batches(count=100, batch=40), 70, batch_size=32)
    assert [f["input"].shape[0] for f in feeds] == [32, 8, 30]


def test_searched_keep_ends_keeps_the_first_and_last_layer_fp32(model, feeds, tmp_path):
    spec = DeploySpec("static_ort", True, keep_ends=True)
    artifact = build_artifact(model, EXAMPLE, spec, tmp_path / "e.onnx", calibration=feeds)
    assert artifact.fp32_nodes == ("/conv1/Conv", "/fc/Gemm")
    assert artifact.describe()["keep_ends"] is True


def test_seeded_plans_quantize_cnns_statically_and_transformers_dynamically():
    from _tiny_transformers import tiny_bert

    from compressor.config import CompressConfig, DeployConfig
    from compressor.search.context import seeded_mode

    every_mode = CompressConfig(
        deploy=DeployConfig(quantization=("none", "dynamic", "static_ort", "static_nncf"))
    )
    # ORT on CPU: QDQ is the fast INT8 path for Conv, dynamic (MatMulInteger) for MatMul
    assert seeded_mode(every_mode, tiny_resnet()) == "static_ort"
    assert seeded_mode(every_mode, tiny_bert()) == "dynamic"
    static_only = CompressConfig(deploy=DeployConfig(quantization=("none", "static_ort")))
    assert seeded_mode(static_only, tiny_bert()) == "none"  # static QDQ ran slower than fp32
    assert seeded_mode(CompressConfig(deploy=DeployConfig(export=False)), tiny_bert()) == "none"
