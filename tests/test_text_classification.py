"""Text classification (issue 17): TSV splits, label checks, a tiny random BERT / DistilBERT
classifier end to end from the CLI (task inferred from the folder's config.json)."""

from __future__ import annotations

import copy
import json
import re

import pytest
from _tiny_transformers import save_tiny_classifier_folder

from compressor.cli import main
from compressor.errors import UserInputError
from compressor.tasks import get_task
from compressor.tasks.text_classification import read_tsv


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return save_tiny_classifier_folder(root / "bert", "bert", root / "data"), root / "data"


def test_read_tsv_takes_single_texts_pairs_and_a_header(tmp_path):
    single = tmp_path / "a.tsv"
    single.write_text("text\tlabel\ngood film\tpos\n\nbad\tneg\n")
    texts = read_tsv(single)
    assert texts.first == ("good film", "bad") and texts.second is None
    assert texts.labels == ("pos", "neg") and texts.lines == (2, 4)
    pairs = tmp_path / "b.tsv"
    pairs.write_text("a\tb\t1\nc\td\t0\n")
    assert read_tsv(pairs).second == ("b", "d")


@pytest.mark.parametrize("kind, pairs", [("bert", True), ("distilbert", False)])
def test_task_scores_the_unpruned_model_at_100_percent(kind, pairs, tmp_path):
    folder = save_tiny_classifier_folder(tmp_path / "m", kind, tmp_path / "d", pairs=pairs)
    task = get_task("text-classification", model=f"hf:{folder}", data=tmp_path / "d", verbose=False)
    assert task.evaluate(task.model) == 1.0 and task.evaluate_test(task.model) == 1.0
    # BERT reads segment ids for text pairs; DistilBERT has none.
    assert len(task.example_inputs) == (3 if kind == "bert" and pairs else 2)
    assert len(task.pruner.groups()) == 4  # heads and FFN of each of the 2 layers


# A whole run (or several): in `make test-slow`, to keep the default suite under ~8 min.
@pytest.mark.slow
def test_compress_text_classifier_end_to_end(bert, tmp_path, capsys):
    folder, data = bert
    out = tmp_path / "run"
    config = tmp_path / "text.yaml"
    config.write_text("recovery: {steps: 20, lr: 0.002}\nsearch: {calibration_samples: 1}\n")
    code = main(
        ["--config", str(config), "--model", f"hf:{folder}", "--data", str(data)]
        + ["--target-flops", "0.7", "--trials", "2", "--quantization", "none"]
        + ["--output", str(out), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["environment"]["task"] == "text-classification"  # from config.json
    assert result["baseline"]["accuracy"] == 1.0
    assert result["best"]["flops"] <= 0.7 * result["baseline"]["flops"]
    assert result["best"]["parity"]["top1_agreement"] >= 0.95  # the ONNX artifact ~ the model
    assert (out / "model.onnx").is_file()


def test_logit_distillation_brings_back_agreement_with_the_original(bert):
    from compressor.config import RecoveryConfig
    from compressor.tasks.text_classification import batch_accuracy

    folder, data = bert
    task = get_task("text-classification", model=f"hf:{folder}", data=data, verbose=False)
    pruned, _ = task.pruner.prune(task.model, {g.name: 0.5 for g in task.pruner.groups()})
    before = batch_accuracy(pruned, task.train_data)
    # A short run at the default rate may end worse on dev: the variant before it is kept.
    short = task.recover(copy.deepcopy(pruned), task.model, RecoveryConfig(), False)
    assert task.evaluate(short) >= task.evaluate(pruned)
    recovered = task.recover(pruned, task.model, RecoveryConfig(steps=80, lr=2e-3), False)
    after = batch_accuracy(recovered, task.train_data)
    assert before < 0.8 and after >= 0.9, (before, after)


@pytest.mark.parametrize(
    "write, message",
    [
        ({"train.tsv": ""}, "train.tsv holds no examples"),
        ({"train.tsv": "a\tpos\nb\tpos\n"}, "has one class only (pos)"),
        ({"test.tsv": "a\tmaybe\n"}, "test.tsv:1: label 'maybe' has no output in the model"),
        ({"test.tsv": "a\t7\n"}, "label '7' has no output in the model (2 outputs: neg, pos"),
        ({"test.tsv": "a\tb\tpos\nc\tneg\n"}, "test.tsv:2: expected 'text<TAB>label'"),
    ],
)
def test_bad_text_data_is_one_line(write, message, bert, tmp_path):
    folder, data = bert
    broken = tmp_path / "data"
    broken.mkdir()
    for name in ("train.tsv", "test.tsv"):
        (broken / name).write_text(write.get(name, (data / name).read_text()))
    with pytest.raises(UserInputError, match=re.escape(message)):
        get_task("text-classification", model=f"hf:{folder}", data=broken, verbose=False)
