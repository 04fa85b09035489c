"""MatMulNBits blocks: float-offset INT4 (compressor.actions.int4_offset) and reading ORT's
quantized blocks back (compressor.actions.bias_correction.dequantized)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor.actions.bias_correction import dequantized
from compressor.actions.int4_offset import float_offset_int4, offset_blocks
from compressor.actions.quantize_decoder import PrecisionPlan, quantize_decoder

BLOCK = 32


def q4_1_weight(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A ``[rows, cols]`` weight already on llama.cpp Q4_1 blocks (what a GGUF unpacks to)."""
    rng = np.random.default_rng(seed)
    blocks = -(-rows // BLOCK)
    step = rng.uniform(0.01, 0.05, size=(blocks, 1, cols)).astype(np.float32)
    low = rng.uniform(-0.4, -0.1, size=(blocks, 1, cols)).astype(np.float32)
    codes = rng.integers(0, 16, size=(blocks, BLOCK, cols))
    codes[:, 0], codes[:, 1] = 0, 15  # every block spans its whole range, as Q4_1's do
    return (low + step * codes).astype(np.float32).reshape(blocks * BLOCK, cols)[:rows]


def two_linears(first: np.ndarray, second: np.ndarray) -> onnx.ModelProto:
    """``y = x @ first``, ``z = x @ second``: two weight MatMuls reading one input."""
    rows = first.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["y"], name="/a/MatMul"),
            helper.make_node("MatMul", ["x", "w2"], ["z"], name="/b/MatMul"),
        ],
        "linears",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", first.shape[1]]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", second.shape[1]]),
        ],
        [numpy_helper.from_array(first, "w1"), numpy_helper.from_array(second, "w2")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session.run(None, {"x": x})


@pytest.mark.parametrize("rows", [96, 72])  # whole blocks, and a partial last block
def test_weights_on_q4_1_blocks_come_back_exactly(rows):
    weight = q4_1_weight(rows, 24)
    blocks = offset_blocks(weight, BLOCK)
    assert blocks.packed.shape == (24, 3, BLOCK // 2) and blocks.packed.dtype == np.uint8

    x = np.random.default_rng(1).standard_normal((3, rows)).astype(np.float32)
    model = float_offset_int4(
        two_linears(weight, q4_1_weight(rows, 40, seed=2)),
        ["/a/MatMul", "/b/MatMul"],
        BLOCK,
        accuracy_level=None,
    )
    ops = [node.op_type for node in model.graph.node]
    # one block-sum MatMul for the shared input; per linear MatMulNBits + offsets + Add
    assert ops.count("MatMulNBits") == 2 and ops.count("MatMul") == 3 and ops.count("Add") == 2
    # The kernel's blocks plus each block's offset are the weight itself.
    inits = {init.name: init for init in model.graph.initializer}
    kernel = dequantized(next(n for n in model.graph.node if n.name == "/a/MatMul_Q4"), inits)
    offsets = np.repeat(numpy_helper.to_array(inits["w1_offsets"]), BLOCK, axis=0)[:rows]
    np.testing.assert_allclose(kernel + offsets, weight, atol=1e-6)
    y, z = run(model, x)
    np.testing.assert_allclose(y, x @ weight, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z, x @ q4_1_weight(rows, 40, seed=2), rtol=1e-4, atol=1e-4)
    assert {init.name for init in model.graph.initializer}.isdisjoint({"w1", "w2"})


def test_float_offsets_err_less_than_ort_zero_points_on_q4_1_weights_and_no_more_elsewhere(
    tmp_path,
):
    """On GGUF-born weights the integer zero point is what loses; on Gaussian weights both
    are round to nearest on the same blocks and err alike."""
    x = np.random.default_rng(3).standard_normal((8, 128)).astype(np.float32)
    grid = q4_1_weight(128, 64)
    gaussian = np.random.default_rng(4).standard_normal((128, 64)).astype(np.float32) * 0.05
    onnx.save(two_linears(grid, gaussian), str(tmp_path / "fp32.onnx"))

    def errors(method: str) -> tuple[float, float]:
        plan = PrecisionPlan(default="int4", int4_method=method, accuracy_level=None)
        out = quantize_decoder(tmp_path / "fp32.onnx", tmp_path / f"{method}.onnx", plan)
        y, z = run(onnx.load(str(out)), x)
        return float(np.abs(y - x @ grid).mean()), float(np.abs(z - x @ gaussian).mean())

    offset, zero_point = errors("rtn-offset"), errors("rtn-asym")
    scale = float(np.abs(x @ grid).mean())
    assert offset[0] < 1e-5 * scale < zero_point[0]
    assert offset[1] < 1.1 * zero_point[1]


def test_an_unknown_node_is_refused_before_anything_changes():
    model = two_linears(q4_1_weight(32, 8), q4_1_weight(32, 8))
    with pytest.raises(ValueError, match="no MatMul named '/c/MatMul'"):
        float_offset_int4(model, ["/a/MatMul", "/c/MatMul"])
    assert [node.op_type for node in model.graph.node] == ["MatMul", "MatMul"]


@pytest.mark.parametrize(
    "plan",
    [
        PrecisionPlan(default="int4", int4_method="rtn", accuracy_level=None),
        PrecisionPlan(default="int4", int4_method="rtn-asym", accuracy_level=None),
        PrecisionPlan(default="int8", accuracy_level=None),
    ],
    ids=["int4-symmetric", "int4-zero-points", "int8-block"],
)
def test_dequantized_blocks_are_what_ort_computes_with(plan, tmp_path):
    x = np.random.default_rng(5).standard_normal((4, 72)).astype(np.float32)
    gaussian = np.random.default_rng(6).standard_normal((72, 48)).astype(np.float32)
    onnx.save(two_linears(gaussian, gaussian[:, :8].copy()), str(tmp_path / "fp32.onnx"))
    model = onnx.load(str(quantize_decoder(tmp_path / "fp32.onnx", tmp_path / "q.onnx", plan)))
    inits = {init.name: init for init in model.graph.initializer}
    nodes = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    weights = [dequantized(node, inits) for node in nodes]
    assert [w.shape for w in weights] == [(72, 48), (72, 8)]
    for out, weight in zip(run(model, x), weights, strict=True):
        np.testing.assert_allclose(out, x @ weight, rtol=1e-4, atol=1e-4)
    assert 0 < np.abs(weights[0] - gaussian).max() < 0.5  # quantized, not the fp32 weight


def test_the_sensitivity_pass_simulates_ort_int4_zero_points_exactly(tmp_path):
    """The prior ranks families by what ``rtn-asym`` costs them, so its PyTorch simulation
    must be ORT's arithmetic."""
    import torch

    from compressor.search.decoder_sensitivity import _int4_weight

    weight = np.random.default_rng(8).standard_normal((72, 40)).astype(np.float32)  # [K, N]
    weight[:32, 0] = np.abs(weight[:32, 0])  # a block entirely above zero
    onnx.save(two_linears(weight, weight), str(tmp_path / "fp32.onnx"))
    plan = PrecisionPlan(default="int4", int4_method="rtn-asym", accuracy_level=None)
    model = onnx.load(str(quantize_decoder(tmp_path / "fp32.onnx", tmp_path / "q.onnx", plan)))
    inits = {init.name: init for init in model.graph.initializer}
    ort_weight = dequantized(next(n for n in model.graph.node if n.op_type == "MatMulNBits"), inits)
    simulated = _int4_weight(torch.from_numpy(weight.T.copy()), 32).numpy().T
    np.testing.assert_allclose(simulated, ort_weight, atol=1e-6)


def test_corrected_biases_cancel_the_mean_output_error_on_the_calibration_inputs(tmp_path):
    from compressor.actions.bias_correction import Linear, correct_biases

    rng = np.random.default_rng(9)
    x = (rng.standard_normal((256, 64)) + rng.uniform(-2, 2, 64)).astype(np.float32)  # mean != 0
    first, second = (rng.standard_normal((64, n)).astype(np.float32) * 0.1 for n in (32, 16))
    onnx.save(two_linears(first, second), str(tmp_path / "fp32.onnx"))
    plan = PrecisionPlan(default="int4", int4_method="rtn-asym", accuracy_level=None)
    model = onnx.load(str(quantize_decoder(tmp_path / "fp32.onnx", tmp_path / "q.onnx", plan)))
    plain = [out - x @ w for out, w in zip(run(model, x), (first, second), strict=True)]
    linears = {"/a/MatMul": Linear("x", first), "/b/MatMul": Linear("x", second)}
    assert correct_biases(model, linears, {"x": x.mean(axis=0)}) == ["/a/MatMul_Q4", "/b/MatMul_Q4"]
    corrected = [out - x @ w for out, w in zip(run(model, x), (first, second), strict=True)]
    for before, after in zip(plain, corrected, strict=True):
        assert np.abs(before.mean(axis=0)).max() > 0.05  # a real shift to cancel
        assert np.abs(after.mean(axis=0)).max() < 1e-4
