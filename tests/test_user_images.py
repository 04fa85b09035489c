"""Image folders as users have them (issue 17): channels, size, normalisation, augmentation,
checkpoints without BatchNorm counters, a grayscale model end to end."""

from __future__ import annotations

import json

import pytest
import torch
from _real_model_helpers import tiny_cnn, write_image_folder

from compressor.cli import main
from compressor.config import CompressConfig
from compressor.errors import UserInputError
from compressor.tasks import get_task
from compressor.tasks.custom import build_user_model
from compressor.tasks.image_folder import AugmentedBatches, normalise


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("gray") / "imgs", per_class=20, gray=True)


def test_grayscale_folder_is_decoded_to_one_channel_for_a_one_channel_model(gray_folder):
    task = get_task(
        "image-classification",
        model="_real_model_helpers:tiny_gray_cnn",
        data=gray_folder,
        verbose=False,
    )
    assert task.example_inputs[0].shape == (1, 1, 8, 8)
    inputs, _ = next(iter(task.train_data))
    assert inputs.shape[1:] == (1, 8, 8)
    # The default gray statistics: dark images (~40/255) sit well below zero.
    assert inputs.mean() < 0.5 and 0.0 <= task.evaluate(task.model) <= 1.0


def test_size_mean_std_and_augment_are_applied(tmp_path):
    data = write_image_folder(tmp_path / "imgs")
    task = get_task(
        "image-classification",
        model="_real_model_helpers:tiny_cnn",
        data=data,
        verbose=False,
        image_size=12,
        mean=(0.5,),
        std=(0.25,),
        augment="flip",
    )
    assert task.example_inputs[0].shape == (1, 3, 12, 12)
    assert task.train_data.augment == "flip"
    raw = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(normalise(raw, (0.5,), (0.25,)), torch.full((1, 3, 2, 2), 2.0))


@pytest.mark.parametrize("augment", ["none", "flip", "crop", "crop+flip"])
def test_each_augmentation_does_only_what_it_says(augment):
    images = torch.arange(4 * 36, dtype=torch.float32).view(4, 1, 6, 6) + 1
    batches = AugmentedBatches(images, torch.arange(4), batch_size=4, augment=augment, pad=2)
    rows = [
        (x, images[label])
        for _ in range(10)
        for batch, labels in batches
        for x, label in zip(batch, labels, strict=True)
    ]
    same = sum(torch.equal(x, original) for x, original in rows)
    flipped = sum(torch.equal(x, original.flip(-1)) for x, original in rows)
    other = len(rows) - same - flipped
    if augment == "none":
        assert same == len(rows)
    elif augment == "flip":
        assert other == 0 and 0 < flipped < len(rows)
    elif augment == "crop":
        assert flipped == 0 and other > 0  # shifted, never mirrored
    else:
        assert other > 0


def test_channel_mismatch_names_both_and_the_option(tmp_path):
    data = write_image_folder(tmp_path / "imgs")
    with pytest.raises(
        UserInputError,
        match=r"--channels is 3 but the model takes 1 .*"
        r"first convolution '0'.*set --channels 1",
    ):
        get_task(
            "image-classification",
            model="_real_model_helpers:tiny_gray_cnn",
            data=data,
            channels=3,
            verbose=False,
        )


def test_images_section_round_trips_through_yaml_data():
    config = CompressConfig.from_dict(
        {"images": {"channels": 1, "size": 28, "mean": [0.1307], "std": 0.3081, "augment": "crop"}}
    )
    assert config.images.std == (0.3081,)
    assert CompressConfig.from_dict(config.to_dict()) == config
    assert config.task_options()["image_size"] == 28


def test_checkpoint_without_batchnorm_counters_loads_with_a_note(tmp_path, caplog):
    state = {k: v for k, v in tiny_cnn().state_dict().items() if "num_batches" not in k}
    torch.save(state, tmp_path / "w.pt")
    with caplog.at_level("WARNING"):
        model, _ = build_user_model("_real_model_helpers:tiny_cnn", tmp_path / "w.pt")
    notes = [r.message for r in caplog.records if "num_batches_tracked" in r.message]
    assert len(notes) == 1 and "2 layers" in notes[0]
    assert torch.equal(model[1].num_batches_tracked, torch.tensor(0))


def test_grayscale_model_compresses_end_to_end_from_the_cli(gray_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["--task", "image-classification", "--model", "_real_model_helpers:tiny_gray_cnn"]
        + ["--data", str(gray_folder), "--target-flops", "0.6", "--trials", "3"]
        + ["--epochs", "1", "--round-to", "1", "--no-export", "--output", str(out), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["best"]["flops"] <= 0.6 * result["baseline"]["flops"]
    assert "1 channel" in result["environment"]["task_description"]
