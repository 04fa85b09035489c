"""What the search needs from a pruning method: its groups and a way to apply a plan.

The search space works over a list of :class:`ChannelGroup` and one ratio per group name;
a :class:`Pruner` supplies both. :class:`ChannelPruner` (torch-pruning's dependency graph,
convolution / linear output channels) is the default; a task whose structure torch-pruning
cannot see — attention heads, FFN neurons — provides its own (see ``prune_transformer``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from compressor.actions.prune import ChannelGroup, channel_groups, kept_channels, prune_model
from compressor.config import PruneConfig


@runtime_checkable
class Pruner(Protocol):
    """``groups()`` names the prunable units; ``prune`` applies ratios to a *copy*."""

    def groups(self) -> list[ChannelGroup]: ...

    def prune(
        self, model: nn.Module, ratios: Mapping[str, float]
    ) -> tuple[nn.Module, dict[str, int]]: ...


class ChannelPruner:
    """The default: torch-pruning channel groups (see :mod:`compressor.actions.prune`)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Sequence[torch.Tensor],
        *,
        importance: str = "magnitude",
        round_to: int | None = None,
        ignored_layers: Sequence[str] = (),
    ) -> None:
        self.model, self.example_inputs = model, tuple(example_inputs)
        self.importance, self.round_to = importance, round_to
        self.ignored_layers = tuple(ignored_layers)

    @classmethod
    def from_config(
        cls,
        model: nn.Module,
        example_inputs: Sequence[torch.Tensor],
        config: PruneConfig,
        ignored_layers: Sequence[str] = (),
    ) -> ChannelPruner:
        return cls(
            model,
            example_inputs,
            importance=config.importance,
            round_to=config.round_to,
            ignored_layers=ignored_layers,
        )

    def groups(self) -> list[ChannelGroup]:
        return channel_groups(self.model, self.example_inputs, self.ignored_layers)

    def kept_counts(
        self, groups: Sequence[ChannelGroup], ratios: Mapping[str, float]
    ) -> tuple[int, ...]:
        """Channels each group keeps under ``ratios``, without pruning anything."""
        return tuple(
            kept_channels(g.channels, float(ratios.get(g.name, 0.0)), self.round_to) for g in groups
        )

    def prune(
        self, model: nn.Module, ratios: Mapping[str, float]
    ) -> tuple[nn.Module, dict[str, int]]:
        return prune_model(
            model,
            self.example_inputs,
            ratios,
            importance=self.importance,
            round_to=self.round_to,
            ignored_layers=self.ignored_layers,
        )
