"""The way in for a user's model (issue 17): groups whose pruning breaks the forward are
excluded and listed, ``--task`` is inferred when the inputs say which task it is."""

from __future__ import annotations

import json
import re

import pytest
from _real_model_helpers import HardCodedFlatten, write_image_folder

from compressor.actions.pruner import ChannelPruner, usable_groups
from compressor.cli import main
from compressor.errors import UserInputError


def test_breaking_groups_are_excluded_and_named():
    model = HardCodedFlatten().eval()
    pruner = ChannelPruner(model, (__import__("torch").zeros(1, 3, 8, 8),), ignored_layers=("fc",))
    groups, excluded = usable_groups(pruner, model, pruner.example_inputs, pruner.groups())
    assert [g.name for g in groups] == ["conv1"]
    assert [g.name for g in excluded] == ["conv2"]
    assert excluded[0].layer == " after layer 'conv2'" and "shape" in excluded[0].error
    with pytest.raises(UserInputError, match="drop --strict-groups"):
        usable_groups(pruner, model, pruner.example_inputs, pruner.groups(), strict=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images") / "imgs", per_class=20)


def test_a_run_excludes_breaking_groups_and_lists_them(images, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["--model", "_real_model_helpers:hard_coded_flatten", "--data", str(images)]
        + ["--target-flops", "0.6", "--trials", "3", "--epochs", "0", "--round-to", "1"]
        + ["--no-export", "--output", str(out)]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "excluded group conv2 (breaks the forward after layer 'conv2'" in printed.out
    result = json.loads((out / "result.json").read_text())
    assert result["environment"]["task"] == "image-classification"  # inferred
    assert [g["name"] for g in result["best"]["plan"]["excluded_groups"]] == ["conv2"]
    assert set(result["best"]["plan"]["ratios"]) == {"conv1"}
    assert result["best"]["flops"] <= 0.6 * result["baseline"]["flops"]
    summary = (out / "summary.md").read_text()
    assert re.search(r"\| conv2 +\| excluded \| kept whole: breaks the forward after", summary)


def _hf_folder(root, architecture):
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    return f"hf:{root}"


def test_task_is_inferred_when_the_inputs_leave_one_reading(tmp_path, images):
    from compressor.infer_task import infer_task

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\t1\n")
    text = tmp_path / "text"
    text.mkdir()
    for name in ("train.tsv", "test.tsv"):
        (text / name).write_text("good\tpos\n")
    classifier = _hf_folder(tmp_path / "clf", "BertForSequenceClassification")
    encoder = _hf_folder(tmp_path / "enc", "BertModel")
    assert infer_task(None, None) == "digits"
    assert infer_task("_real_model_helpers:tiny_cnn", images) == "image-classification"
    assert infer_task(classifier, text) == "text-classification"
    assert infer_task(encoder, pairs) == "sentence-similarity"
    assert infer_task(None, pairs) == "sentence-similarity"


@pytest.mark.parametrize(
    "case, message",
    [
        ("factory with a file", "pass --task image-classification --data DIR"),
        ("data folder alone", "pass --task (resnet56-cifar10 or minilm-stsb"),
        ("encoder without data", "pass --task text-classification"),
        ("encoder with text files", "not a sequence classifier"),
        ("causal LM", "is a causal language model"),
        ("no config.json", "no config.json"),
    ],
)
def test_ambiguous_inputs_name_the_task_to_pass(case, message, tmp_path):
    from compressor.infer_task import infer_task

    text = tmp_path / "text"
    text.mkdir()
    for name in ("train.tsv", "test.tsv"):
        (text / name).write_text("good\tpos\n")
    encoder = _hf_folder(tmp_path / "enc", "BertModel")
    inputs = {
        "factory with a file": ("_real_model_helpers:tiny_cnn", text / "train.tsv"),
        "data folder alone": (None, text),
        "encoder without data": (encoder, None),
        "encoder with text files": (encoder, text),
        "causal LM": (_hf_folder(tmp_path / "lm", "GPT2LMHeadModel"), None),
        "no config.json": (f"hf:{tmp_path}", None),
    }[case]
    if case == "causal LM":
        from compressor.tasks import task_names

        if "causal-lm" in task_names():
            assert infer_task(*inputs) == "causal-lm"
            return
    with pytest.raises(UserInputError, match=re.escape(message)):
        infer_task(*inputs)
