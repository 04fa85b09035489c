"""Transformer artifacts after head / layer pruning: ORT fuses every remaining attention
layer (its warning about the q/k/v width is only that), NNCF sees a transformer and
quantizes the fused graph."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from compressor.actions.artifact import DeploySpec, build_artifact
from compressor.actions.depth import remove_units
from compressor.actions.export import export_onnx
from compressor.actions.fuse import fuse_onnx, fused_counts
from compressor.actions.prune_transformer import TransformerPruner
from compressor.actions.quantize import is_transformer_graph
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.parity import measure_parity
from compressor.tasks.digits import DigitsResNet
from compressor.tasks.sentence_similarity import SentenceEncoder
from tests._tiny_transformers import WORDS, tiny_bert

LAYER = "transformer.encoder.layer"


def test_head_pruned_and_depth_pruned_layers_are_all_fused(tmp_path):
    model = SentenceEncoder(tiny_bert(layers=3)).eval()
    ids = torch.randint(1, 20, (1, 8), generator=torch.Generator().manual_seed(0))
    example = (ids, torch.ones_like(ids))
    pruned, kept = TransformerPruner(model).prune(
        model, {f"{LAYER}.0.attention": 0.5, f"{LAYER}.2.attention": 0.25}
    )
    assert [kept[f"{LAYER}.{i}.attention"] for i in range(3)] == [2, 4, 3]
    for variant, layers in ((pruned, 3), (remove_units(pruned, [f"{LAYER}.1"]), 2)):
        src = export_onnx(variant, example, tmp_path / f"m{layers}.onnx")
        fused = fuse_onnx(src, tmp_path / f"m{layers}.fused.onnx")
        counts = fused_counts(fused)
        assert counts.get("Attention") == layers, counts
        with torch.no_grad():
            expected = variant(*example).numpy()
        np.testing.assert_allclose(
            OnnxModule(fused, threads=1)(*example).numpy(), expected, atol=1e-4
        )
        assert is_transformer_graph(onnx.load(str(src)))


def test_a_cnn_graph_is_not_quantized_as_a_transformer(tmp_path):
    src = export_onnx(DigitsResNet().eval(), (torch.zeros(1, 1, 32, 32),), tmp_path / "c.onnx")
    assert not is_transformer_graph(onnx.load(str(src)))


def _token_batch(seed: int, rows: int = 4, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random word ids with some rows padded, as the tokenizer's batches are."""
    ids = torch.randint(
        1, len(WORDS) + 5, (rows, length), generator=torch.Generator().manual_seed(seed)
    )
    mask = torch.ones_like(ids)
    mask[1::2, length // 2 :] = 0
    return ids, mask


def test_static_nncf_quantizes_a_fused_head_pruned_transformer(tmp_path):
    # The B2 plan that failed inside nncf.quantize, in small: heads and FFN neurons pruned
    # uniformly in every layer (SDPA attention, as the MiniLM task loads it), then fused and
    # quantized by NNCF.
    model = SentenceEncoder(tiny_bert("sdpa", layers=2)).eval()
    ratios = {f"{LAYER}.{i}.{group}": 0.5 for i in range(2) for group in ("attention", "ffn")}
    pruned, kept = TransformerPruner(model).prune(model, ratios)
    assert kept[f"{LAYER}.0.attention"] == 2
    calibration = [
        dict(zip(("input_0", "input_1"), (t.numpy() for t in _token_batch(seed)), strict=True))
        for seed in range(8)
    ]
    example = tuple(t[:1] for t in _token_batch(0))
    artifact = build_artifact(
        pruned,
        example,
        DeploySpec("static_nncf", fusion=True),
        tmp_path / "a.onnx",
        calibration=calibration,
    )
    assert artifact.fused_ops.get("Attention") == 2, artifact.fused_ops
    # Every MatMul left beside the fused operators -- the attention output projection fed
    # by the fused Attention among them -- reads INT8 activations and weights.
    graph = onnx.load(str(artifact.path)).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert len(matmuls) == 6
    for node in matmuls:
        assert [producers.get(name) for name in node.input] == ["DequantizeLinear"] * 2, node.name
    # Parity with the fp32 pruned model on unseen, padded batches. Each quantized tensor is
    # off by at most half a step, 1/510 of its calibrated range; six INT8 MatMuls in a row
    # (with LayerNorms between) stay well under 2 % of the output's scale (measured ~0.03 %),
    # while a graph computing something else would be off by about the scale itself.
    batches = [_token_batch(seed) for seed in (100, 101)]
    parity = measure_parity(pruned, OnnxModule(artifact.path, threads=1), batches)
    with torch.no_grad():
        scale = max(float(pruned(*batch).abs().max()) for batch in batches)
    assert parity["max_abs_diff"] <= 0.02 * scale, (parity, scale)
    assert parity["cosine"] >= 0.999, parity
