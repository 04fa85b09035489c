"""``prune.round_to: auto``: each candidate's widths on the multiple its quantization mode's
kernels favour: a CNN's channels (conv kernels), a transformer's MLP neurons (Linear kernels).
A stored measurement stands in for the probe (no timing here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compressor.actions.artifact import DeploySpec
from compressor.actions.prune import channel_groups, kept_channels
from compressor.actions.prune_transformer import TransformerPruner
from compressor.actions.pruner import ChannelPruner
from compressor.config import CompressConfig
from compressor.errors import UserInputError
from compressor.measure.flops import count_flops
from compressor.measure.kernel_widths import KernelWidths
from compressor.search import context
from compressor.search.candidate import flops_of_plan, prune_plan, round_to_for, score_candidate
from compressor.search.context import Resources, SearchSettings, search_settings
from compressor.tasks import Task
from tests._tiny_transformers import tiny_bert
from tests.deploy_helpers import labelled_batches

FP32, INT8 = 4, 16  # distinct multiples, so a candidate rounded to the wrong one shows
WIDTHS = KernelWidths({"none": FP32, "static_ort": INT8}, {}, {}, "test cpu")


class TwoConvs(nn.Module):
    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _accuracy(model) -> float:
    images, labels = labelled_batches(64)[0]
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


@pytest.fixture(scope="module")
def settings() -> SearchSettings:
    torch.manual_seed(0)
    model = TwoConvs().eval()
    example = (torch.zeros(1, 1, 16, 16),)
    config = CompressConfig.from_dict(
        {
            "prune": {"round_to": "auto"},
            "deploy": {"calibration_samples": 32, "parity_samples": 32},
            "search": {"calibration_samples": 64},
        }
    )
    pruner = ChannelPruner.from_config(model, example, config.prune, ("fc",))
    flops = count_flops(model, example)
    return SearchSettings(
        model=model,
        example_inputs=example,
        evaluate=_accuracy,
        calibration=tuple(labelled_batches(64)),
        groups=tuple(channel_groups(model, example, ("fc",))),
        config=config,
        ignored_layers=("fc",),
        flops_budget=int(0.6 * flops),  # 36 of 48 channels fit, on multiples of 4
        baseline_flops=flops,
        pruner=pruner,
        kernel_widths=WIDTHS,
    )


def test_each_mode_gets_its_kernels_multiple(settings):
    assert round_to_for(settings, DeploySpec("static_ort")) == INT8
    assert round_to_for(settings, DeploySpec("static_nncf")) == INT8
    assert round_to_for(settings, DeploySpec("none")) == FP32
    assert round_to_for(settings, None) == FP32  # scored as the PyTorch model: fp32


@pytest.mark.parametrize("mode, multiple", [("static_ort", INT8), ("none", FP32)])
def test_a_candidates_channels_are_multiples_of_its_modes_multiple(
    settings, tmp_path, mode, multiple
):
    preferences = {group.name: 1.0 for group in settings.groups}
    metrics = score_candidate(settings, Resources(tmp_path), preferences, DeploySpec(mode))
    assert metrics.round_to == multiple
    assert metrics.flops <= settings.flops_budget
    pruned = [kept for kept in metrics.channels.values() if kept < 48]
    assert pruned and all(kept % multiple == 0 for kept in pruned)
    if multiple == FP32:  # the finer multiple is used, not merely allowed
        assert any(kept % INT8 for kept in pruned)


def test_flops_are_memoised_per_multiple(settings):
    ratios = {group.name: 0.4 for group in settings.groups}  # 48 -> 28.8 channels
    assert flops_of_plan(settings, ratios, (), FP32) < flops_of_plan(settings, ratios, (), INT8)


def test_a_group_no_wider_than_a_measured_multiple_stays_whole():
    assert kept_channels(16, 0.5, 16) == 8  # a fixed multiple: pruned unrounded, as before
    assert kept_channels(16, 0.5, 16, whole_if_narrow=True) == 16  # 9-12 of 16: slower
    assert kept_channels(48, 0.5, 16, whole_if_narrow=True) == 32


def test_round_to_accepts_auto_or_a_positive_integer():
    assert CompressConfig.from_dict({"prune": {"round_to": "auto"}}).prune.round_to == "auto"
    for bad in ("abc", 0, 2.5, True):
        with pytest.raises(UserInputError, match="prune.round_to"):
            CompressConfig.from_dict({"prune": {"round_to": bad}})


# The Linear measurement injected: a distinct multiple per mode (dynamic = MatMulInteger).
LINEAR = {"none": 4, "dynamic": 16, "static_ort": 8}
LINEAR_WIDTHS = KernelWidths(LINEAR, {}, {}, "test cpu", op="linear")
TOKENS = (torch.tensor([[2, 7, 9, 11, 5, 8, 3]]), torch.ones(1, 7, dtype=torch.long))


@pytest.fixture(scope="module")
def encoder_settings() -> SearchSettings:
    model = tiny_bert()  # 2 layers of 4 heads and 64 MLP neurons
    pruner = TransformerPruner(model)
    flops = count_flops(model, TOKENS)
    return SearchSettings(
        model=model,
        example_inputs=TOKENS,
        evaluate=lambda _: 0.5,
        calibration=(),
        groups=tuple(pruner.groups()),
        config=CompressConfig.from_dict({"prune": {"round_to": "auto"}}),
        ignored_layers=(),
        flops_budget=flops,
        baseline_flops=flops,
        pruner=pruner,
        kernel_widths=LINEAR_WIDTHS,
    )


def _encoder_ratios(settings: SearchSettings) -> dict[str, float]:
    # 64 * 0.575 = 36.8 neurons: 36 on multiples of 4, 40 of 8, 32 of 16; 2 of 4 heads.
    return {g.name: 0.425 if g.name.endswith(".ffn") else 0.5 for g in settings.groups}


@pytest.mark.parametrize(
    "mode, multiple", [("none", 4), ("dynamic", 16), ("static_ort", 8), ("static_nncf", 8)]
)
def test_an_encoders_mlp_neurons_keep_its_modes_linear_multiple(encoder_settings, mode, multiple):
    assert round_to_for(encoder_settings, DeploySpec(mode)) == multiple
    _, kept = prune_plan(encoder_settings, _encoder_ratios(encoder_settings), (), multiple)
    assert [n for name, n in kept.items() if name.endswith(".ffn")] == [
        {4: 36, 8: 40, 16: 32}[multiple]
    ] * 2
    # Heads are pruned whole: 2 of 4, never rounded up to the multiple.
    assert [n for name, n in kept.items() if name.endswith(".attention")] == [2, 2]


def test_an_encoders_flops_are_memoised_per_linear_multiple(encoder_settings):
    ratios = _encoder_ratios(encoder_settings)
    assert flops_of_plan(encoder_settings, ratios, (), 16) < flops_of_plan(
        encoder_settings, ratios, (), 4
    )


@pytest.mark.parametrize("kind, multiple", [("transformer", 16), ("cnn", INT8)])
def test_auto_measures_the_kind_of_layer_the_model_prunes(monkeypatch, kind, multiple):
    asked = []
    measured = {"linear": LINEAR_WIDTHS, "conv": WIDTHS}
    monkeypatch.setattr(
        context, "cached_kernel_widths", lambda op: asked.append(op) or measured[op]
    )
    if kind == "transformer":
        model, example, ignored = tiny_bert(), TOKENS, ()
        pruner = TransformerPruner(model)
    else:
        model, example, ignored, pruner = (
            TwoConvs().eval(),
            (torch.zeros(1, 1, 16, 16),),
            ("fc",),
            None,
        )
    task = Task(
        kind,
        model,
        example,
        lambda _: 0.5,
        lambda _: 0.5,
        [],
        ignored_layers=ignored,
        pruner=pruner,
    )
    config = CompressConfig.from_dict({"prune": {"round_to": "auto", "depth": False}})
    settings = search_settings(task, config, count_flops(model, example))
    assert asked == ["linear" if kind == "transformer" else "conv"]
    # Plans built without a deployment round as the seeded mode's artifacts do: dynamic INT8
    # on a transformer, static INT8 on a CNN.
    assert settings.pruner.round_to == multiple
