"""Bring your own model: factory import, weights, an ImageFolder directory, the CLI path."""

from __future__ import annotations

import pytest
import torch
from _real_model_helpers import tiny_cnn, write_image_folder

from compressor.cli import main
from compressor.errors import UserInputError
from compressor.tasks import get_task
from compressor.tasks.custom import build_user_model, import_factory


def test_import_factory_resolves_module_and_dotted_attribute():
    assert import_factory("_real_model_helpers:tiny_cnn") is tiny_cnn
    assert import_factory("torch.nn:Linear.forward") is torch.nn.Linear.forward


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon", "must look like"),
        ("not_a_module_xyz:f", "cannot import"),
        ("_real_model_helpers:missing", "no attribute"),
        ("_real_model_helpers:SHARED_DATA", "not callable"),
    ],
)
def test_bad_factory_specs_are_user_errors(spec, message):
    with pytest.raises(UserInputError, match=message):
        import_factory(spec)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_strictly_from_both_formats(tmp_path, suffix):
    from safetensors.torch import save_file

    source = tiny_cnn()
    with torch.no_grad():
        source[0].weight.add_(1.0)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model, example = build_user_model("_real_model_helpers:tiny_cnn", path)
    assert example is None
    assert torch.equal(model[0].weight, source[0].weight)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(UserInputError, match="does not fit"):
        build_user_model("_real_model_helpers:tiny_cnn", tmp_path / "w.pt")


def test_factory_may_return_example_inputs():
    model, example = build_user_model("_real_model_helpers:tiny_cnn_with_inputs")
    assert isinstance(model, torch.nn.Module) and example[0].shape == (1, 3, 8, 8)


def test_image_folder_task_builds_from_directory(tmp_path):
    data = write_image_folder(tmp_path / "imgs")
    task = get_task(
        "image-classification", model="_real_model_helpers:tiny_cnn", data=data, verbose=False
    )
    assert task.example_inputs[0].shape == (1, 3, 8, 8)
    assert task.ignored_layers == ("8",)  # the classifier
    inputs, labels = next(iter(task.train_data))
    assert inputs.shape[1:] == (3, 8, 8) and set(labels.tolist()) <= {0, 1}
    assert 0.0 <= task.evaluate(task.model) <= 1.0
    assert 0.0 <= task.evaluate_test(task.model) <= 1.0


def test_compress_cli_on_own_model_and_image_folder(tmp_path, capsys):
    data = write_image_folder(tmp_path / "imgs", per_class=20)
    out = tmp_path / "run"
    code = main(
        [
            "--task",
            "image-classification",
            "--model",
            "_real_model_helpers:tiny_cnn",
            "--data",
            str(data),
            "--target-flops",
            "0.6",
            "--trials",
            "3",
            "--epochs",
            "1",
            "--round-to",
            "1",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    import json

    result = json.loads((out / "result.json").read_text())
    assert result["best"]["flops"] <= 0.6 * result["baseline"]["flops"]
    assert result["environment"]["task"] == "image-classification"


def test_image_classification_without_model_is_exit_2(tmp_path, capsys):
    assert main(["--task", "image-classification", "--data", str(tmp_path)]) == 2
    assert "needs --model" in capsys.readouterr().err
