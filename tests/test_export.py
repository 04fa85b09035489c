"""ONNX export and layer fusion: graph structure and numerical parity with PyTorch."""

from __future__ import annotations

import onnx
import pytest
import torch
from deploy_helpers import image_batch, tiny_resnet

from compressor.actions.export import export_onnx, module_of_node, nodes_of_modules
from compressor.actions.fuse import fuse_onnx, fused_counts, op_counts
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.parity import measure_parity

FP32_TOLERANCE = 1e-4  # max |diff| of logits between PyTorch and the fp32 ONNX graph


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_resnet()
    path = export_onnx(
        model, (torch.zeros(1, 1, 16, 16),), tmp_path_factory.mktemp("export") / "model.onnx"
    )
    return model, path


def test_export_writes_one_checked_file_with_batchnorm_kept(exported):
    model, path = exported
    onnx.checker.check_model(str(path), full_check=True)
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no external data
    counts = op_counts(path)
    assert counts["Conv"] == 2 and counts["BatchNormalization"] == 2 and counts["Gemm"] == 1


def test_fp32_export_matches_pytorch_on_other_batch_sizes(exported):
    model, path = exported
    parity = measure_parity(model, OnnxModule(path), [(image_batch(64),), (image_batch(3),)])
    assert parity["samples"] == 67
    assert parity["max_abs_diff"] < FP32_TOLERANCE
    assert parity["top1_agreement"] == 1.0 and parity["cosine"] > 0.99999


def test_fusion_folds_batchnorm_into_convolutions(exported, tmp_path):
    model, path = exported
    fused = fuse_onnx(path, tmp_path / "fused.onnx")
    counts = op_counts(fused)
    assert "BatchNormalization" not in counts and "Identity" not in counts
    assert counts["Conv"] == 2
    parity = measure_parity(model, OnnxModule(fused), [(image_batch(64),)])
    assert parity["max_abs_diff"] < FP32_TOLERANCE


@pytest.mark.parametrize(
    "node, module",
    [
        ("/conv1/Conv", "conv1"),
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/layer2/layer2.0/shortcut/shortcut.0/Conv", "layer2.0.shortcut.0"),
        ("/Relu", ""),
    ],
)
def test_node_names_map_back_to_modules(node, module):
    assert module_of_node(node) == module


def test_nodes_of_modules_finds_first_conv_and_classifier(exported):
    _, path = exported
    assert nodes_of_modules(path, ["conv1", "fc"]) == ["/conv1/Conv", "/fc/Gemm"]


def test_transformer_fusion_on_a_tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    layers, heads, hidden = 2, 4, 32
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask):
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    model = Encoder().eval()
    path = export_onnx(model, (ids[:1], mask[:1]), tmp_path / "bert.onnx")
    fused = fuse_onnx(path, tmp_path / "bert-fused.onnx", num_heads=heads, hidden_size=hidden)
    assert fused_counts(fused) == {
        "EmbedLayerNormalization": 1,
        "Attention": layers,
        "SkipLayerNormalization": 2 * layers,
        "BiasGelu": layers,
    }
    assert op_counts(fused).get("Softmax", 0) == 0  # attention really replaced
    parity = measure_parity(model, OnnxModule(fused), [(ids, mask)])
    assert parity["cosine"] > 0.9999 and parity["max_abs_diff"] < 1e-3
