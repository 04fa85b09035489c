"""What the search needs from a pruning method: its groups and a way to apply a plan.

The search space works over a list of :class:`ChannelGroup` and one ratio per group name;
a :class:`Pruner` supplies both. :class:`ChannelPruner` (torch-pruning's dependency graph,
convolution / linear output channels) is the default; a task whose structure torch-pruning
cannot see — attention heads, FFN neurons — provides its own (see ``prune_transformer``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from compressor.actions.prune import (
    ChannelGroup,
    channel_groups,
    kept_channels,
    prune_model,
    running_layers,
)
from compressor.config import PruneConfig
from compressor.errors import UserInputError, one_line


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
        whole_if_narrow: bool = False,
    ) -> None:
        self.model, self.example_inputs = model, tuple(example_inputs)
        self.importance, self.round_to = importance, round_to
        self.ignored_layers = tuple(ignored_layers)
        # A measured multiple: groups no wider than it stay whole (see kept_channels).
        self.whole_if_narrow = whole_if_narrow

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
            # Under "auto" each candidate gets its multiple (aligned_to); none until then.
            round_to=config.round_to if isinstance(config.round_to, int) else None,
            ignored_layers=ignored_layers,
        )

    def groups(self) -> list[ChannelGroup]:
        return channel_groups(self.model, self.example_inputs, self.ignored_layers)

    def aligned_to(self, round_to: int) -> ChannelPruner:
        """The same pruner rounding kept counts to the measured multiple ``round_to``, groups
        no wider than it kept whole (the search gives each candidate the multiple its
        quantization mode's kernels favour)."""
        if round_to == self.round_to and self.whole_if_narrow:
            return self
        return ChannelPruner(
            self.model,
            self.example_inputs,
            importance=self.importance,
            round_to=round_to,
            ignored_layers=self.ignored_layers,
            whole_if_narrow=True,
        )

    def kept_counts(
        self, groups: Sequence[ChannelGroup], ratios: Mapping[str, float]
    ) -> tuple[int, ...]:
        """Channels each group keeps under ``ratios``, without pruning anything."""
        return tuple(
            kept_channels(
                g.channels, float(ratios.get(g.name, 0.0)), self.round_to, self.whole_if_narrow
            )
            for g in groups
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
            whole_if_narrow=self.whole_if_narrow,
        )


@dataclass(frozen=True)
class ExcludedGroup:
    """A group left out of the search because pruning it breaks the model's forward.

    Attributes:
        name: the group's name (its root module).
        layer: where the forward failed (`` at layer 'x'`` / `` after layer 'y'``), or ''.
        error: the exception, in one line.
    """

    name: str
    layer: str
    error: str

    def __str__(self) -> str:
        return f"{self.name} (breaks the forward{self.layer}: {self.error})"


def breaking_groups(
    pruner: Pruner,
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    groups: Sequence[ChannelGroup],
    probe_ratio: float = 0.5,
) -> list[ExcludedGroup]:
    """Prune each group alone and run the example inputs through the result.

    A model that hard-codes a channel count (``x.view(-1, 512)``, a fixed ``reshape``, a
    zero-padded shortcut that adds a fixed number of channels) traces fine but breaks once
    that group is pruned; every trial touching it would fail for the same reason.
    """
    # One probe with every group pruned first: when that runs, no group alone breaks it (a
    # hard-coded count fails whatever else is pruned), and a ResNet-56 needs 1 probe, not 27.
    if len(groups) > 1 and _probe(pruner, model, example_inputs, groups, probe_ratio) is None:
        return []
    broken = []
    for group in groups:
        failure = _probe(pruner, model, example_inputs, [group], probe_ratio)
        if failure is not None:
            broken.append(ExcludedGroup(group.name, *failure))
    return broken


def _probe(
    pruner: Pruner,
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    groups: Sequence[ChannelGroup],
    ratio: float,
) -> tuple[str, str] | None:
    """``(where, error)`` when the model with ``groups`` pruned fails its forward, else None."""
    pruned, _ = pruner.prune(model, {group.name: ratio for group in groups})
    with running_layers(pruned) as trace, torch.no_grad():
        try:
            pruned(*example_inputs)
        except Exception as exc:
            return trace.where(), one_line(exc)
    return None


def usable_groups(
    pruner: Pruner,
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    groups: Sequence[ChannelGroup],
    strict: bool = False,
) -> tuple[list[ChannelGroup], tuple[ExcludedGroup, ...]]:
    """The groups the search may prune, and those excluded because pruning breaks the model.

    A group left out of a plan keeps all its channels (every pruner reads a missing ratio
    as 0), so excluding is dropping it from the list. ``strict`` (``--strict-groups``)
    turns the first breaking group into an error instead.
    """
    broken = breaking_groups(pruner, model, example_inputs, groups)
    if broken and strict:
        first = broken[0]
        more = f" (and {len(broken) - 1} more groups)" if len(broken) > 1 else ""
        names = " ".join(group.name for group in broken)
        raise UserInputError(
            f"pruning group {first.name!r} breaks the model's forward{first.layer} "
            f"({first.error}){more}; the model likely hard-codes a channel count there: "
            f"exclude with --ignore-layers {names}, or drop --strict-groups to exclude "
            "them automatically"
        )
    names = {group.name for group in broken}
    kept = [group for group in groups if group.name not in names]
    if groups and not kept:
        raise UserInputError(
            f"pruning any group breaks the model's forward (first: {broken[0]}); "
            "nothing can be pruned"
        )
    return kept, tuple(broken)
