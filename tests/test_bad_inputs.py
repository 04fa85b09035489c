"""Every bad input of a bring-your-own-model run: one line on stderr naming the problem and
the fix, exit code 2, nothing written, the user's files untouched (issue 6, table-driven)."""

from __future__ import annotations

import shutil

import pytest
import torch
from _real_model_helpers import tiny_cnn, write_image_folder

from compressor.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A valid image folder and valid weights, plus one broken variant of each input."""
    root = tmp_path_factory.mktemp("inputs")
    data = write_image_folder(root / "images")
    one_class = root / "one_class"
    shutil.copytree(data, one_class)
    shutil.rmtree(one_class / "train" / "light")
    empty = root / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "test" / "cat").mkdir(parents=True)
    other_classes = root / "other_classes"
    shutil.copytree(data, other_classes)
    (other_classes / "test" / "light").rename(other_classes / "test" / "bright")
    torch.save({"bogus.weight": torch.zeros(1)}, root / "wrong_keys.pt")
    state = tiny_cnn().state_dict()
    state["0.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save(state, root / "wrong_shape.pt")
    (root / "garbage.safetensors").write_bytes(b"not a safetensors file")
    torch.save(tiny_cnn(), root / "whole_model.pt")  # a pickled nn.Module
    _text_inputs(root)
    return root


def _text_inputs(root):
    """A tiny sequence classifier (labels neg / pos) and broken text data for it."""
    from _tiny_transformers import save_tiny_classifier_folder

    save_tiny_classifier_folder(root / "classifier", "distilbert", root / "text", count=16)
    good = {name: (root / "text" / name).read_text() for name in ("train.tsv", "test.tsv")}
    broken = {
        "text_empty": {"train.tsv": ""},
        "text_one_class": {"train.tsv": "a dog\tpos\nthe cat\tpos\n"},
        "text_unknown_label": {"test.tsv": "a dog\tpos\nthe cat\tmaybe\n"},
    }
    for folder, files in broken.items():
        (root / folder).mkdir()
        for name, text in {**good, **files}.items():
            (root / folder / name).write_text(text)


def _cli(inputs, model="_real_model_helpers:tiny_cnn", data="images", *extra):
    args = ["--task", "image-classification", "--model", model, "--data", str(inputs / data)]
    return [*args, "--trials", "2", "--epochs", "0", "--round-to", "1", *extra]


def _weights(file_name):
    """Arguments that load ``file_name`` (in the inputs folder) as the factory's weights."""
    return lambda d: _cli(
        d, "_real_model_helpers:tiny_cnn", "images", "--weights", str(d / file_name)
    )


CASES = {
    "malformed factory": (
        lambda d: _cli(d, model="tiny_cnn"),
        "must look like pkg.module:factory",
    ),
    "module not importable": (
        lambda d: _cli(d, model="no_such_module_xyz:build"),
        "cannot import 'no_such_module_xyz'",
    ),
    "factory raises": (
        lambda d: _cli(d, model="_real_model_helpers:raising_factory"),
        "the factory raised FileNotFoundError: checkpoints/encoder.bin",
    ),
    "weights missing": (
        _weights("no.pt"),
        "does not exist",
    ),
    "weights unreadable": (
        _weights("garbage.safetensors"),
        "not a readable safetensors file",
    ),
    "weights with other keys": (
        _weights("wrong_keys.pt"),
        "missing keys 0.weight, 0.bias, 1.weight (+",
    ),
    "weights of other shapes": (
        _weights("wrong_shape.pt"),
        "shape mismatches 0.weight (4, 3, 3, 3) vs model (8, 3, 3, 3)",
    ),
    "weights file is a whole pickled model": (
        _weights("whole_model.pt"),
        "--trust-pickle",
    ),
    "pickled model without --trust-pickle": (
        lambda d: _cli(d, model=str(d / "whole_model.pt")),
        "is a pickled model and loading it runs code stored in the file: pass --trust-pickle",
    ),
    "pickled model missing": (
        lambda d: _cli(d, str(d / "absent.pt"), "images", "--trust-pickle"),
        "does not exist",
    ),
    "data folder missing": (
        lambda d: _cli(d, data="nowhere"),
        "must hold train/ and test/",
    ),
    "empty dataset": (lambda d: _cli(d, data="empty"), "holds no images"),
    "a split with one class": (lambda d: _cli(d, data="one_class"), "one class only (dark)"),
    "splits with different classes": (
        lambda d: _cli(d, data="other_classes"),
        "every split needs the same class sub-folders",
    ),
    "model that breaks once pruned, with --strict-groups": (
        lambda d: _cli(d, "_real_model_helpers:hard_coded_flatten", "images", "--strict-groups"),
        "pruning group 'conv2' breaks the model's forward after layer 'conv2'",
    ),
    "channels that the model does not take": (
        lambda d: _cli(d, "_real_model_helpers:tiny_gray_cnn", "images", "--channels", "3"),
        "--channels is 3 but the model takes 1 input channels (its first convolution '0'); "
        "set --channels 1",
    ),
    "mean of the wrong length": (
        lambda d: _cli(d, "_real_model_helpers:tiny_cnn", "images", "--mean", "0.1", "0.2"),
        "images.mean (--mean) must be 1 or 3 numbers",
    ),
    "std of 3 values for grayscale": (
        lambda d: _cli(d, "_real_model_helpers:tiny_gray_cnn", "images", "--std", ".2", ".2", ".2"),
        "--std has 3 values but the images have 1 channel",
    ),
    "unknown augmentation": (
        lambda d: _cli(d, "_real_model_helpers:tiny_cnn", "images", "--augment", "rotate"),
        "invalid choice: 'rotate'",
    ),
    "ignored layer that does not exist": (
        lambda d: _cli(d, "_real_model_helpers:tiny_cnn", "images", "--ignore-layers", "head"),
        "ignored layer 'head' is not a module",
    ),
}
# --max-accuracy-drop takes points in [0, 100): anything else is refused before any work.
for _value in ("-1", "100", "abc"):
    CASES[f"max accuracy drop {_value}"] = (
        lambda d, v=_value: (
            _cli(d, "_real_model_helpers:tiny_cnn", "images") + ["--max-accuracy-drop", v]
        ),
        f"max accuracy drop must be a number of points in [0, 100) (1 = one point of "
        f"accuracy); got '{_value}'",
    )


def _text(data):
    return lambda d: (
        ["--model", f"hf:{d / 'classifier'}", "--data", str(d / data)]
        + [
            "--trials",
            "2",
            "--epochs",
            "0",
        ]
    )


# Cases with their own arguments: text classification and the inferred task.
CASES.update(
    {
        "text file with no examples": (_text("text_empty"), "train.tsv holds no examples"),
        "text labels of one class": (_text("text_one_class"), "has one class only (pos)"),
        "text label the model has no output for": (
            _text("text_unknown_label"),
            "test.tsv:2: label 'maybe' has no output in the model (2 outputs: neg, pos, or 0..1)",
        ),
        "text data folder without the TSV files": (
            lambda d: (
                ["--task", "text-classification", "--model", f"hf:{d / 'classifier'}"]
                + ["--data", str(d / "images")]
            ),
            "must be a folder holding train.tsv and test.tsv",
        ),
        "task that cannot be told from the inputs": (
            lambda d: ["--model", "_real_model_helpers:tiny_cnn", "--data", str(d / "no.tsv")],
            "cannot tell the task of --model _real_model_helpers:tiny_cnn without --data DIR",
        ),
        "a data folder alone": (
            lambda d: ["--data", str(d / "images")],
            "cannot tell the task from --data",
        ),
    }
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written_inputs_untouched(
    case, inputs, tmp_path, capsys
):
    build_args, message = CASES[case]
    before = {p: p.stat().st_mtime_ns for p in inputs.rglob("*")}
    output = tmp_path / "out"
    code = main([*build_args(inputs), "--output", str(output), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("compress: error: ")
    assert not output.exists()
    assert {p: p.stat().st_mtime_ns for p in inputs.rglob("*")} == before


def test_a_trusted_pickled_model_runs(inputs, tmp_path, capsys):
    output = tmp_path / "out"
    code = main(
        [*_cli(inputs, str(inputs / "whole_model.pt"), "images", "--trust-pickle")]
        + ["--target-flops", "0.6", "--no-export", "--output", str(output), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    assert (output / "result.json").is_file()
