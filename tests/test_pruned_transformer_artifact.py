"""Transformer artifacts after head / layer pruning: ORT fuses every remaining attention
layer (its warning about the q/k/v width is only that), and NNCF sees a transformer."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from compressor.actions.depth import remove_units
from compressor.actions.export import export_onnx
from compressor.actions.fuse import fuse_onnx, fused_counts
from compressor.actions.prune_transformer import TransformerPruner
from compressor.actions.quantize import is_transformer_graph
from compressor.measure.onnx_runtime import OnnxModule
from compressor.tasks.digits import DigitsResNet
from compressor.tasks.sentence_similarity import SentenceEncoder
from tests._tiny_transformers import tiny_bert

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
