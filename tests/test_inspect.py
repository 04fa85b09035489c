"""``compress inspect`` (issue 17): groups, couplings, layers left alone and the reachable FLOPs
range, without searching: on the embedded default, the ResNet-56 layout and a BERT config."""

from __future__ import annotations

import json

import torch
from _real_model_helpers import HardCodedFlatten

from compressor.cli import main
from compressor.inspection import inspect_model
from compressor.tasks.resnet_cifar import OUTER_LAYERS_REASON, outer_layers, resnet56


def test_inspect_the_embedded_default_as_text_and_json(digits_task, tmp_path, capsys):
    assert main(["inspect"]) == 0
    text = capsys.readouterr().out
    assert "prunable groups (9):" in text
    assert "fc       classifier: its outputs are the model's outputs" in text
    # issue 14's depth units, as the search finds them
    assert "removable units (depth pruning): layer1.0, layer1.1, layer2.1, layer3.1" in text
    assert main(["inspect", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["task"] == "digits" and record["flops"] == 52_724_992
    assert len(record["groups"]) == 9 and record["excluded_groups"] == []
    stem = next(g for g in record["groups"] if g["name"] == "conv1")
    # The stem is coupled with both blocks' conv2 through the residual additions.
    assert stem["outputs"] == ["conv1", "layer1.0.conv2", "layer1.1.conv2"]
    assert "layer2.0.shortcut.0" in stem["inputs"]
    assert 0.1 < record["min_flops"] / record["flops"] < 0.3
    assert not list(tmp_path.iterdir())  # nothing written


def test_inspect_resnet56_layout_without_data():
    model = resnet56()
    inspection = inspect_model(
        model,
        (torch.zeros(1, 3, 32, 32),),
        ignored_layers=outer_layers(model),
        ignored_reason=OUTER_LAYERS_REASON,
    )
    assert len(inspection.groups) == 27
    assert all(
        g.name.endswith(".conv1") and g.inputs == (g.name[:-1] + "2",) for g in inspection.groups
    )
    reasons = {x.name: x.reason for x in inspection.left_alone}
    assert len(reasons) == 29  # the stem, 27 conv2, the classifier
    assert reasons["layer2.0.conv2"] == OUTER_LAYERS_REASON
    assert reasons["linear"].startswith("classifier")
    assert abs(inspection.flops - 2 * 125.49e6) < 1e6  # ResNet-56: 125.49M MACs, as papers state
    assert inspection.min_flops < 0.65 * inspection.flops


def test_inspect_a_bert_classifier_from_its_config():
    from _tiny_transformers import tiny_config
    from transformers import BertForSequenceClassification

    from compressor.actions.prune_transformer import TransformerPruner
    from compressor.tasks.text_classification import SequenceClassifier

    torch.manual_seed(0)
    config = tiny_config("bert")
    model = SequenceClassifier(BertForSequenceClassification(config)).eval()
    ids = torch.randint(0, config.vocab_size, (1, 16))
    inspection = inspect_model(model, (ids, torch.ones_like(ids)), pruner=TransformerPruner(model))
    names = [g.name for g in inspection.groups]
    assert names == [
        f"model.bert.encoder.layer.{i}.{kind}" for i in (0, 1) for kind in ("attention", "ffn")
    ]
    attention = inspection.groups[0]
    assert attention.size == 4 and attention.inputs == (
        "model.bert.encoder.layer.0.attention.output.dense",
    )
    reasons = {x.name: x.reason for x in inspection.left_alone}
    assert reasons["model.classifier"].startswith("classifier")
    assert "hidden size" in reasons["model.bert.pooler.dense"]
    assert inspection.min_flops < 0.7 * inspection.flops


def test_inspect_lists_groups_that_break_the_forward():
    inspection = inspect_model(
        HardCodedFlatten(), (torch.zeros(1, 3, 8, 8),), ignored_layers=("fc",)
    )
    assert [g.name for g in inspection.groups] == ["conv1"]
    assert [g.name for g in inspection.excluded_groups] == ["conv2"]
    reasons = {x.name: x.reason for x in inspection.left_alone}
    assert reasons["conv2"].startswith("pruning it breaks the forward after layer 'conv2'")
    assert "conv2    pruning it breaks the forward after layer" in str(inspection)


def test_inspect_bad_input_is_one_line(capsys):
    assert main(["inspect", "--task", "no-such-task"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compress inspect: error: unknown task 'no-such-task'")
    assert err.count("\n") == 1


def test_a_user_resnet20_option_a_has_its_residual_stream_excluded_in_one_group():
    """The issue's case: a CIFAR ResNet-20 with zero-padded shortcuts, brought as a user
    model (only the classifier ignored). Pruning the residual stream breaks the classifier;
    that one group couples 10 layers, all excluded at once instead of by ten reruns."""
    from compressor.tasks.resnet_cifar import CifarResNet

    inspection = inspect_model(
        CifarResNet(blocks=3).eval(), (torch.zeros(1, 3, 32, 32),), ignored_layers=("linear",)
    )
    assert [g.name for g in inspection.excluded_groups] == ["conv1"]
    assert "at layer 'linear'" in inspection.excluded_groups[0].layer
    assert len(inspection.groups) == 9  # each block's inner channels
    broken = [x.name for x in inspection.left_alone if "breaks the forward" in x.reason]
    assert len(broken) == 10 and "layer3.2.conv2" in broken
