"""Per-layer precision by measurement: the sensitivity pass finds the layer INT8 hurts most,
and ``keep_sensitive`` leaves exactly that layer in fp32, closer to the fp32 model."""

from __future__ import annotations

import copy
import json

import onnx
import pytest
import torch
from deploy_helpers import image_batch, labelled_batches, tiny_resnet

from compressor.actions.artifact import DeploySpec, build_artifact, calibration_feeds
from compressor.actions.prune import channel_groups
from compressor.actions.pruner import ChannelPruner
from compressor.config import CompressConfig
from compressor.errors import UserInputError
from compressor.measure.flops import count_flops
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.precision import quantization_sensitivity, ranked_modules
from compressor.records import ArtifactInfo
from compressor.search.candidate import score_candidate
from compressor.search.context import Resources, SearchSettings
from compressor.search.space import spec_from_params

EXAMPLE = (torch.zeros(1, 1, 16, 16),)


def hard_to_quantize(model: torch.nn.Module) -> torch.nn.Module:
    """``conv2`` gets one weight 1000x its largest, on an input channel the ReLU before it
    holds at zero: the fp32 model computes the same, but per-channel INT8 rounds every other
    weight of that output channel to zero (an error only keeping ``conv2`` fp32 removes)."""
    with torch.no_grad():
        model.bn1.bias[0] = -1e3  # conv2's input channel 0: always 0 after the ReLU
        model.conv2.weight[0, 0, 1, 1] = 1000 * model.conv2.weight.abs().max()
    return model


@pytest.fixture(scope="module")
def feeds():
    return calibration_feeds(labelled_batches(), 64)


@pytest.fixture(scope="module")
def model():
    return hard_to_quantize(tiny_resnet())


def _ranking(model, feeds, folder):
    fp32 = build_artifact(model, EXAMPLE, DeploySpec("none"), folder / "fp32.onnx").path
    spec = DeploySpec("static_ort")
    qdq = build_artifact(model, EXAMPLE, spec, folder / "qdq.onnx", calibration=feeds).path
    return quantization_sensitivity(fp32, qdq, feeds)


def test_the_pass_ranks_the_layer_with_an_outlier_first(model, feeds, tmp_path):
    ranked = _ranking(model, feeds, tmp_path)
    assert {layer.module for layer in ranked} == {"conv1", "conv2", "fc"}
    assert ranked_modules(ranked)[:1] == ("conv2",)
    clean = {layer.module: layer for layer in _ranking(tiny_resnet(), feeds, tmp_path)}
    assert ranked[0].added_noise > 10 * clean["conv2"].added_noise  # the outlier, measured
    assert ranked[0].added_noise > 10 * max(layer.added_noise for layer in ranked[1:])


def _float_convs(path) -> int:
    """Conv nodes whose weight is not dequantized INT8 (left in floating point)."""
    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return sum(n.op_type == "Conv" and n.input[1] not in dequantized for n in graph.node)


def _relative_error(model, path) -> float:
    """``||artifact(x) - model(x)|| / ||model(x)||`` on images it was not calibrated on."""
    images = image_batch(64, seed=3)
    with torch.no_grad():
        expected = model(images)
    got = torch.as_tensor(OnnxModule(path)(images))
    return float((got - expected).norm() / expected.norm())


def test_keeping_the_most_sensitive_layer_fp32_brings_the_output_closer(model, feeds, tmp_path):
    sensitive = ranked_modules(_ranking(model, feeds, tmp_path))
    built = {}
    for keep in (0, 1):
        spec = DeploySpec("static_ort", True, keep_sensitive=keep)
        built[keep] = build_artifact(
            model, EXAMPLE, spec, tmp_path / f"k{keep}.onnx", calibration=feeds, sensitive=sensitive
        )
    assert built[1].sensitive_fp32 == ("conv2",) and built[0].sensitive_fp32 == ()
    assert (_float_convs(built[0].path), _float_convs(built[1].path)) == (0, 1)
    assert any("conv2" in node for node in built[1].fp32_nodes)
    error = {keep: _relative_error(model, artifact.path) for keep, artifact in built.items()}
    assert error[1] < 0.7 * error[0]  # measured: 0.028 against 0.054


def test_a_removed_or_unquantized_layer_is_not_kept(model, feeds, tmp_path):
    spec = DeploySpec("static_ort", keep_sensitive=2)
    artifact = build_artifact(
        model, EXAMPLE, spec, tmp_path / "a.onnx", calibration=feeds, sensitive=("gone", "fc")
    )
    assert artifact.sensitive_fp32 == ("fc",)  # "gone" (a removed block) is skipped
    fp32 = build_artifact(model, EXAMPLE, DeploySpec("none", keep_sensitive=2), tmp_path / "f.onnx")
    assert fp32.sensitive_fp32 == ()


def test_the_searched_count_round_trips_and_is_validated():
    params = {"deploy.quantization": "static_ort", "deploy.fusion": True}
    assert spec_from_params(params).keep_sensitive == 0  # trials of older studies
    assert spec_from_params({**params, "deploy.keep_sensitive": 2}).keep_sensitive == 2
    assert CompressConfig.from_dict({}).deploy.keep_sensitive == (0, 1, 2, 4)
    for bad in ([], [-1], ["a"]):
        with pytest.raises(UserInputError, match="deploy.keep_sensitive"):
            CompressConfig.from_dict({"deploy": {"keep_sensitive": bad}})


def test_a_searched_candidate_keeps_the_measured_layer_and_records_it(model, tmp_path):
    model = copy.deepcopy(model)
    config = CompressConfig.from_dict(
        {"deploy": {"calibration_samples": 64, "parity_samples": 32}, "prune": {"depth": False}}
    )
    groups = tuple(channel_groups(model, EXAMPLE, ("fc",)))
    settings = SearchSettings(
        model=model,
        example_inputs=EXAMPLE,
        evaluate=lambda module: 0.5,  # the metric is not what is checked here
        calibration=tuple(labelled_batches()),
        groups=groups,
        config=config,
        ignored_layers=("fc",),
        flops_budget=count_flops(model, EXAMPLE),
        baseline_flops=count_flops(model, EXAMPLE),
        pruner=ChannelPruner.from_config(model, EXAMPLE, config.prune, ("fc",)),
    )
    no_pruning = {group.name: 0.0 for group in groups}
    spec = DeploySpec("static_ort", True, keep_sensitive=1)
    metrics = score_candidate(settings, Resources(tmp_path), no_pruning, spec)
    assert metrics.artifact.sensitive_fp32 == ("conv2",)
    assert metrics.artifact.keep_sensitive == 1
    assert [layer.module for layer in settings.precision_cache["ranking"]][0] == "conv2"
    record = ArtifactInfo.from_json(json.loads(json.dumps(metrics.attrs()["artifact"])))
    assert record.sensitive_fp32 == ("conv2",)  # what result.json and the report read
