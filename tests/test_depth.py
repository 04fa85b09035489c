"""Depth pruning: removable units found or declared, removed with shapes kept, reloaded."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from compressor.actions.depth import declared_units, find_units, remove_units
from compressor.measure.flops import count_flops
from compressor.saved_model import load_model, save_model
from compressor.tasks.digits import DigitsResNet, identity_blocks
from compressor.tasks.resnet_cifar import CifarResNet, residual_blocks


class UserBlock(nn.Module):
    """A user's standard pre-activation residual block (no declarations anywhere)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.relu(self.bn(x)))


class UserNet(nn.Module):
    """Stem (shape-changing), 3 residual blocks, a plain conv block, a downsampling block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(UserBlock(8), UserBlock(8), UserBlock(8))
        self.plain = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.ModuleList([nn.Conv2d(8, 16, 3, stride=2, padding=1)])
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.plain(self.blocks(self.stem(x)))
        for layer in self.down:
            x = layer(x)
        return self.head(x.mean((2, 3)))


def test_user_residual_blocks_are_found_without_declarations():
    model = UserNet().eval()
    units = find_units(model, (torch.randn(1, 3, 16, 16),))
    # Only the residual blocks: not the stem (shape changes), not the plain conv / BN / ReLU
    # (with its weights zeroed its output no longer follows the input), not the downsampler.
    assert [u.name for u in units] == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(u.flops == 2 * 8 * 8 * 9 * 16 * 16 for u in units)  # 2 x MACs of one 3x3 conv
    assert [u.name for u in find_units(model, (torch.randn(1, 3, 16, 16),), "blocks.[02]")] == [
        "blocks.0",
        "blocks.2",
    ]


def test_digits_declared_blocks_match_the_automatic_search():
    model = DigitsResNet(blocks=2).eval()
    example = (torch.randn(1, 1, 32, 32),)
    declared = identity_blocks(model)
    assert declared == ("layer1.0", "layer1.1", "layer2.1", "layer3.1")
    assert [u.name for u in find_units(model, example)] == list(declared)


def test_cifar_resnet_removal_keeps_output_shape_and_cuts_flops():
    assert len(residual_blocks(CifarResNet(blocks=9))) == 25  # ResNet-56: 27 less 2 openers
    model = CifarResNet(blocks=3).eval()  # ResNet-20, the same layout, faster to count
    example = (torch.randn(2, 3, 32, 32),)
    names = residual_blocks(model)
    assert len(names) == 7
    units = declared_units(model, example, names)
    removed = [n for n in names if n.endswith((".1", ".2"))]
    pruned = remove_units(model, removed)
    assert len(pruned.layer2) == 1 and len(model.layer2) == 3  # a copy, original untouched
    with torch.no_grad():
        assert pruned(*example).shape == model(*example).shape
    saved = sum(u.flops for u in units if u.name in removed)
    assert count_flops(pruned, example) == count_flops(model, example) - saved
    assert count_flops(pruned, example) < 0.35 * count_flops(model, example)


def test_removed_units_reload_without_the_search(tmp_path):
    torch.manual_seed(0)
    model = DigitsResNet(blocks=3).eval()
    pruned = remove_units(model, ["layer1.1", "layer2.2", "layer3.1"])
    save_model(pruned, tmp_path / "model.safetensors", ["layer1.1", "layer2.2", "layer3.1"])
    reloaded = load_model(DigitsResNet(blocks=3), tmp_path / "model.safetensors")
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), pruned(x))
    assert [len(s) for s in (reloaded.layer1, reloaded.layer2, reloaded.layer3)] == [2, 2, 2]


def test_encoder_layers_removed_and_config_updated(tmp_path):
    from compressor.tasks.sentence_similarity import SentenceEncoder, encoder_layers
    from tests._tiny_transformers import tiny_bert

    model = SentenceEncoder(tiny_bert(layers=3)).eval()
    ids = torch.randint(0, 20, (2, 7))
    example = (ids, torch.ones_like(ids))
    declared = encoder_layers(model)
    found = [u.name for u in find_units(model, example)]
    assert found == list(declared) and len(declared) >= 2
    pruned = remove_units(model, [declared[0]])
    assert pruned.transformer.config.num_hidden_layers == len(declared) - 1
    assert model.transformer.config.num_hidden_layers == len(declared)
    with torch.no_grad():
        assert pruned(*example).shape == model(*example).shape
    save_model(pruned, tmp_path / "m.safetensors", [declared[0]])
    reloaded = load_model(SentenceEncoder(tiny_bert(layers=3, seed=1)), tmp_path / "m.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(*example), pruned(*example))
