"""ResNet-56 (option A) for CIFAR-10: architecture, pruning groups, the real checkpoint."""

from __future__ import annotations

import pytest
import torch
from _real_model_helpers import require_shared

from compressor.actions.prune import channel_groups, prune_model
from compressor.cli import main
from compressor.errors import UserInputError
from compressor.measure.flops import count_flops, count_params
from compressor.tasks import get_task
from compressor.tasks.resnet_cifar import OptionAShortcut, outer_layers, resnet56

EXAMPLE = (torch.zeros(1, 3, 32, 32),)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet56().eval()


def test_resnet56_size_matches_the_paper(model):
    # 0.85 M parameters and ~125.5 M MACs (= 251 M FLOPs at 2 x MACs).
    assert count_params(model) == 853_018
    assert count_flops(model, EXAMPLE) == 250_971_392


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).view(2, 4, 4, 4)
    out = OptionAShortcut(4, 8, stride=2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_only_inner_block_channels_are_prunable(model):
    groups = channel_groups(model, EXAMPLE, outer_layers(model))
    assert len(groups) == 27
    assert all(g.name.endswith(".conv1") and g.name.count(".") == 2 for g in groups)
    assert [g.channels for g in groups] == [16] * 9 + [32] * 9 + [64] * 9
    # each group touches its own block's conv1 (outputs) and conv2 (inputs), nothing else
    assert all(g.members == (g.name, g.name[:-1] + "2") for g in groups)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pruned_variants_run_and_shrink(model, seed):
    groups = channel_groups(model, EXAMPLE, outer_layers(model))
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(len(groups), generator=generator) * 0.8
    ratios = {g.name: float(r) for g, r in zip(groups, draws, strict=True)}
    pruned, kept = prune_model(
        model, EXAMPLE, ratios, round_to=4, ignored_layers=outer_layers(model)
    )
    out = pruned(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert count_flops(pruned, EXAMPLE) < count_flops(model, EXAMPLE)
    for name, channels in kept.items():
        block = pruned.get_submodule(name.rsplit(".", 1)[0])
        assert block.conv1.out_channels == channels == block.conv2.in_channels
        assert block.conv2.out_channels == model.get_submodule(name).out_channels  # stream intact


def test_missing_data_is_one_line_exit_2(tmp_path, capsys):
    assert (
        main(
            [
                "--config",
                "configs/resnet56-cifar10.yaml",
                "--data",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and "not found" in err
    assert not (tmp_path / "out").exists()


def test_digits_refuses_a_data_option():
    with pytest.raises(UserInputError, match="does not take the option 'data'"):
        get_task("digits", data="x", verbose=False)


@pytest.mark.slow
def test_pretrained_resnet56_scores_about_83_percent_on_test_jpegs():
    data = require_shared("resnet-cifar10/resnet56.safetensors", "cifar10-jpeg/cifar10-jpeg.tar.gz")
    task = get_task("resnet56-cifar10", data=data, verbose=False)
    assert 0.85 <= task.evaluate(task.model) <= 0.95  # 2 000 held-out train images
    assert 0.82 <= task.evaluate_test(task.model) <= 0.845  # measured 83.20 %
