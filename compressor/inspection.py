"""``compress inspect``: what the search would work with, before searching.

Builds the task as ``compress`` does and reports, without running a trial: the model's FLOPs
and parameters, the prunable groups (torch-pruning's ``DependencyGraph`` does the coupling:
which layers lose output channels together, which lose the matching input channels), the
layers whose output channels are left alone and why, and the reachable FLOPs range (every
group at ``prune.max_ratio``). The same record is printed as text or as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from compressor.actions.prune import ROOT_MODULE_TYPES, ChannelGroup
from compressor.actions.pruner import ChannelPruner, ExcludedGroup, Pruner, usable_groups
from compressor.config import CompressConfig
from compressor.measure.flops import count_flops, count_params
from compressor.report.tables import format_count
from compressor.search.context import depth_units
from compressor.tasks.common import default_ignored_layers


@dataclass(frozen=True)
class GroupInfo:
    """One prunable group: its size and the layers it couples."""

    name: str
    size: int  # channels, heads or neurons
    outputs: tuple[str, ...]  # layers whose output channels (heads, neurons) it removes
    inputs: tuple[str, ...]  # layers that lose the matching input channels


@dataclass(frozen=True)
class LeftAlone:
    """A convolution / linear layer whose output channels are never pruned, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class Inspection:
    """What ``compress inspect`` reports (``dataclasses.asdict`` gives the JSON)."""

    task: str
    description: str
    input_shapes: tuple[tuple[int, ...], ...]
    flops: int
    params: int
    groups: tuple[GroupInfo, ...]
    left_alone: tuple[LeftAlone, ...]
    excluded_groups: tuple[ExcludedGroup, ...]
    min_flops: int  # every group pruned at max_ratio
    max_ratio: float
    # Blocks / layers depth pruning may remove (issue 14's find_units, as the search finds
    # them); None = depth pruning off (prune.depth) or not asked for.
    removable_units: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return render_text(self)


def inspect_model(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    *,
    pruner: Pruner | None = None,
    ignored_layers: Sequence[str] = (),
    user_ignored: Sequence[str] = (),
    ignored_reason: str = "",
    config: CompressConfig | None = None,
    task: str = "custom",
    description: str = "",
    removable: Sequence[str] | None = None,
) -> Inspection:
    """Inspect ``model`` as the search would see it (nothing is searched or written).

    Args:
        ignored_layers: the task's layers whose output channels stay whole (the classifier).
        user_ignored: ``--ignore-layers`` (``prune.ignore_layers``).
        ignored_reason: why the task leaves its non-classifier layers alone.
        pruner: the task's own pruner; default torch-pruning channel groups.
    """
    config = config or CompressConfig()
    model = model.eval()
    inputs = tuple(example_inputs)
    ignored = tuple(ignored_layers) + tuple(user_ignored)
    pruner = pruner or ChannelPruner.from_config(model, inputs, config.prune, ignored)
    every_group = pruner.groups()
    groups, excluded = usable_groups(pruner, model, inputs, every_group, strict=False)
    smallest, _ = pruner.prune(model, {g.name: config.prune.max_ratio for g in groups})
    broken = _broken_layers(every_group, excluded)
    reasons = _reasons(model, pruner, ignored_layers, user_ignored, ignored_reason, broken)
    pruned_out = {name for group in groups for name in (group.outputs or (group.name,))}
    return Inspection(
        task=task,
        description=description,
        input_shapes=tuple(tuple(x.shape) for x in inputs),
        flops=count_flops(model, inputs),
        params=count_params(model),
        groups=tuple(_group_info(group) for group in groups),
        left_alone=tuple(
            LeftAlone(name, reason) for name, reason in reasons.items() if name not in pruned_out
        ),
        excluded_groups=excluded,
        min_flops=count_flops(smallest, inputs),
        max_ratio=config.prune.max_ratio,
        removable_units=None if removable is None else tuple(removable),
    )


def inspect_task(config: CompressConfig, verbose: bool = False) -> Inspection:
    """Build ``config.task`` (as ``compress`` would) and inspect its model."""
    from compressor.tasks import get_task

    task = get_task(config.task, verbose=verbose, **config.task_options())
    units = depth_units(task, config) if config.prune.depth else None
    return inspect_model(
        task.model,
        task.example_inputs,
        pruner=task.pruner,
        ignored_layers=task.ignored_layers,
        user_ignored=config.prune.ignore_layers,
        ignored_reason=task.ignored_reason,
        config=config,
        task=task.name,
        description=task.description,
        removable=None if units is None else [unit.name for unit in units],
    )


def _group_info(group: ChannelGroup) -> GroupInfo:
    outputs = group.outputs or (group.name,)
    return GroupInfo(
        group.name,
        group.channels,
        outputs,
        tuple(name for name in group.members if name not in outputs),
    )


def _broken_layers(
    groups: Sequence[ChannelGroup], excluded: Sequence[ExcludedGroup]
) -> dict[str, str]:
    """Layer -> why it stays whole, for the layers of the groups excluded from the search:
    a zero-padded shortcut couples a whole residual stream into one such group."""
    reasons = {}
    for group in groups:
        failure = next((x for x in excluded if x.name == group.name), None)
        if failure is None:
            continue
        for layer in group.outputs or (group.name,):
            coupled = "" if layer == group.name else f"in group {group.name!r}: "
            reasons[layer] = (
                f"{coupled}pruning it breaks the forward{failure.layer} ({failure.error})"
            )
    return reasons


def _reasons(
    model: nn.Module,
    pruner: Pruner,
    task_ignored: Sequence[str],
    user_ignored: Sequence[str],
    task_reason: str,
    broken: dict[str, str],
) -> dict[str, str]:
    """Why each convolution / linear layer might keep its output channels."""
    classifier = set(default_ignored_layers(model))
    other = (
        "not in any group of the custom pruner: "
        + getattr(pruner, "LEFT_ALONE", "its structure is kept")
        if not isinstance(pruner, ChannelPruner)
        else "torch-pruning found no group rooted here (coupled into one it cannot prune)"
    )
    reasons = {}
    for name, module in model.named_modules():
        if not isinstance(module, ROOT_MODULE_TYPES):
            continue
        if name in broken:
            reasons[name] = broken[name]
        elif name in user_ignored:
            reasons[name] = "--ignore-layers"
        elif name in classifier:
            reasons[name] = "classifier: its outputs are the model's outputs"
        elif name in task_ignored:
            reasons[name] = task_reason or "left whole by the task"
        else:
            reasons[name] = other
    return reasons


def render_text(inspection: Inspection) -> str:
    """The human-readable report: a few lines and three aligned tables."""
    from tabulate import tabulate

    shapes = ", ".join("x".join(map(str, shape)) for shape in inspection.input_shapes)
    lines = [
        f"task {inspection.task}: {inspection.description}".rstrip(": "),
        f"FLOPs {format_count(inspection.flops)}   params {format_count(inspection.params)}"
        f"   (example input {shapes})",
        f"reachable FLOPs: {format_count(inspection.min_flops)} "
        f"({inspection.min_flops / inspection.flops:.2f}x, every group at prune.max_ratio "
        f"{inspection.max_ratio:g}) .. {format_count(inspection.flops)} (1.00x)",
        "",
        f"prunable groups ({len(inspection.groups)}):",
    ]
    rows = [(g.name, g.size, _names(g.outputs), _names(g.inputs) or "—") for g in inspection.groups]
    lines.append(tabulate(rows, ("group", "size", "removes outputs of", "and inputs of"), "simple"))
    lines += ["", f"left alone ({len(inspection.left_alone)}):"]
    lines.append(
        tabulate([(x.name, x.reason) for x in inspection.left_alone], ("layer", "why"), "simple")
        if inspection.left_alone
        else "  none"
    )
    units = inspection.removable_units
    lines += [
        "",
        "removable units (depth pruning): "
        + ("off (prune.depth)" if units is None else (_names(units, 8) or "none")),
    ]
    return "\n".join(lines)


def _names(names: Sequence[str], shown: int = 4) -> str:
    more = f" (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
