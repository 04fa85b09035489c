import pytest
import torch

from compressor.actions.prune import channel_groups, kept_channels, prune_model
from compressor.errors import UserInputError
from compressor.measure.flops import count_flops

INPUTS = (torch.zeros(1, 1, 32, 32),)


@pytest.mark.parametrize(
    "channels, ratio, round_to, kept",
    [
        (64, 0.5, None, 32),
        (64, 0.3, None, 45),
        (64, 0.3, 8, 48),
        (16, 0.3, 8, 8),
        (16, 0.2, 8, 16),
        (64, 0.99, 8, 8),
        (10, 0.95, None, 1),
        (4, 0.5, 8, 2),
    ],
)
def test_kept_channels(channels, ratio, round_to, kept):
    assert kept_channels(channels, ratio, round_to) == kept


def test_groups_follow_residual_coupling(random_digits_net):
    groups = {g.name: g for g in channel_groups(random_digits_net, INPUTS, ("fc",))}
    assert len(groups) == 9  # 3 residual streams + 6 block-inner groups
    stem = groups["conv1"]  # the stem is coupled with every conv writing into stage 1's stream
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2"} <= set(stem.members)
    assert groups["layer1.0.conv1"].members == ("layer1.0.conv1", "layer1.0.conv2")


def test_pruning_cuts_flops_keeps_shapes_and_leaves_the_original_alone(random_digits_net):
    before = {k: v.clone() for k, v in random_digits_net.state_dict().items()}
    base_flops = count_flops(random_digits_net, INPUTS)
    groups = channel_groups(random_digits_net, INPUTS, ("fc",))
    pruned, kept = prune_model(
        random_digits_net, INPUTS, {g.name: 0.5 for g in groups}, round_to=8, ignored_layers=("fc",)
    )
    assert count_flops(pruned, INPUTS) <= 0.3 * base_flops  # both sides of most convs halve
    assert pruned(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    assert pruned.fc.out_features == 10
    assert all(k % 8 == 0 for k in kept.values())
    # residual partners stay equal: the stem and the stage-1 block outputs
    assert pruned.conv1.out_channels == kept["conv1"]
    assert (
        pruned.layer1[0].conv2.out_channels == pruned.layer1[1].conv2.out_channels == kept["conv1"]
    )
    for name, tensor in random_digits_net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_per_group_ratios_are_applied_independently(random_digits_net):
    pruned, kept = prune_model(
        random_digits_net, INPUTS, {"layer3.0.conv1": 0.75}, ignored_layers=("fc",)
    )
    assert kept["layer3.0.conv1"] == 16 and pruned.layer3[0].conv1.out_channels == 16
    assert pruned.layer3[1].conv1.out_channels == 64  # untouched group
    assert pruned.layer3[0].conv2.in_channels == 16


def test_magnitude_importance_drops_the_weakest_channels(random_digits_net):
    with torch.no_grad():
        random_digits_net.layer2[0].conv1.weight[:8].mul_(1e-4)  # make 8 channels negligible
    pruned, _ = prune_model(
        random_digits_net, INPUTS, {"layer2.0.conv1": 0.25}, ignored_layers=("fc",)
    )
    kept_weights = pruned.layer2[0].conv1.weight
    assert kept_weights.abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_unknown_ignored_layer_is_a_user_error(random_digits_net):
    with pytest.raises(UserInputError, match="not a module"):
        channel_groups(random_digits_net, INPUTS, ("classifier",))


def test_an_untraceable_model_is_a_user_error_that_names_the_fix():
    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow cannot be traced with these inputs
                raise RuntimeError("tracer met a branch it cannot follow")
            return self.conv(x)

    with pytest.raises(UserInputError, match="could not trace the model.*--ignore-layers"):
        channel_groups(DataDependent(), (torch.ones(1, 1, 8, 8),))


def test_layer_trace_names_the_layer_a_forward_failed_in():
    from compressor.actions.prune import running_layers

    class Fails(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("unsupported op")

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(Fails()))
    with running_layers(model) as trace:
        assert torch.equal(model[0](torch.ones(1, 4)), model[0](torch.ones(1, 4)))  # untouched
        with pytest.raises(RuntimeError):
            model(torch.ones(1, 4))
    assert trace.where() == " at layer '1.0'"
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks  # hooks removed
