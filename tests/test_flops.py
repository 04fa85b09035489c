import pytest
import torch
import torch_pruning as tp
from torch import nn

from compressor.measure.flops import count_flops, count_params


class HandCountedNet(nn.Module):
    """conv 3->8 (3x3, pad 1) on 16x16, then conv 8->16 (3x3, stride 2), then linear 1024->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


HAND_MACS = (8 * 3 * 9 * 16 * 16) + (16 * 8 * 9 * 8 * 8) + (1024 * 10)  # 55296 + 73728 + 10240


def test_flops_are_twice_the_hand_counted_macs():
    model = HandCountedNet()
    assert HAND_MACS == 139264
    assert count_flops(model, (torch.zeros(1, 3, 16, 16),)) == 2 * HAND_MACS


def test_torch_pruning_counter_agrees_within_biases_and_activations():
    model = HandCountedNet()
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, 16, 16))
    # torch-pruning also counts the bias adds and ReLUs: within 5 % of the conv/linear MACs.
    assert macs == pytest.approx(HAND_MACS, rel=0.05)
    assert params == count_params(model) == 8 * 27 + 16 * 72 + 10250


def test_flops_scale_with_batch_and_default_net_is_in_range(random_digits_net):
    one = count_flops(random_digits_net, (torch.zeros(1, 1, 32, 32),))
    four = count_flops(random_digits_net, (torch.zeros(4, 1, 32, 32),))
    assert four == 4 * one
    assert 20e6 <= one / 2 <= 40e6  # the default is sized at 10-40 M MACs
