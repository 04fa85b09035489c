"""Structured channel pruning with one ratio per coupled channel group.

torch-pruning's ``DependencyGraph`` does the heavy lifting: it traces the model and groups
every layer whose channels must be removed together (the convolutions that meet at a
residual addition, their BatchNorms, the next layers' input channels). A pruning *plan* maps
each group's name (its root module) to the share of channels to remove; the search picks
those ratios, this module applies them to a copy.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from compressor.actions.importance import IMPORTANCES
from compressor.errors import UserInputError, one_line

ROOT_MODULE_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled channels that is pruned as one unit.

    Attributes:
        name: the root module's name; the key of this group's ratio in a plan.
        channels: the number of channels in the unpruned model.
        members: the convolutions / linears whose weights this group touches.
        outputs: those of ``members`` whose *output* channels it removes (the others lose
            input channels); empty when the pruner does not say.
    """

    name: str
    channels: int
    members: tuple[str, ...]
    outputs: tuple[str, ...] = ()


def channel_groups(
    model: nn.Module, example_inputs: Sequence[torch.Tensor], ignored_layers: Sequence[str] = ()
) -> list[ChannelGroup]:
    """The prunable groups of ``model``, as torch-pruning's dependency graph forms them."""
    graph, names = _dependency_graph(model, example_inputs)
    groups = []
    for group in graph.get_all_groups(
        ignored_layers=_modules(model, ignored_layers), root_module_types=ROOT_MODULE_TYPES
    ):
        layers = [
            (names[dep.target.module], graph.is_out_channel_pruning_fn(dep.handler))
            for dep, _ in group
            if isinstance(dep.target.module, ROOT_MODULE_TYPES)
        ]
        root = group[0].dep.target.module
        groups.append(
            ChannelGroup(
                names[root],
                len(group[0].idxs),
                tuple(sorted({name for name, _ in layers})),
                tuple(sorted({name for name, out in layers if out})),
            )
        )
    return groups


def kept_channels(
    channels: int, ratio: float, round_to: int | None = None, whole_if_narrow: bool = False
) -> int:
    """How many of ``channels`` survive pruning ``ratio`` of them, rounded to ``round_to``.

    Rounding to multiples of 8 or 16 keeps the shapes the int8 / SIMD kernels are fast on;
    odd counts made a pruned ResNet-56 slower than the unpruned one under ONNX Runtime int8.
    A group no wider than ``round_to`` is pruned unrounded, or with ``whole_if_narrow`` (a
    measured multiple: 9-12 of 16 channels ran slower than 16 under INT8) kept whole.
    """
    keep = channels * (1.0 - ratio)
    if whole_if_narrow and round_to and channels <= round_to:
        return channels
    if round_to and channels > round_to:
        keep = round_to * max(1, round(keep / round_to))
    return int(min(channels, max(1, round(keep))))


def prune_model(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    ratios: Mapping[str, float],
    *,
    importance: str = "magnitude",
    round_to: int | None = None,
    ignored_layers: Sequence[str] = (),
    whole_if_narrow: bool = False,
) -> tuple[nn.Module, dict[str, int]]:
    """Prune a copy of ``model``: group ``name`` loses ``ratios[name]`` of its channels.

    Groups missing from ``ratios`` are left whole. The least important channels go, as
    scored by ``importance`` (see :data:`IMPORTANCES`) over all layers of the group.

    Returns:
        The pruned copy (eval mode) and the kept channel count of every group.
    """
    scorer = IMPORTANCES.get(importance)()
    pruned = copy.deepcopy(model).eval()
    graph, names = _dependency_graph(pruned, example_inputs)
    roots = [
        (group[0].dep.target.module, group[0].dep.handler)
        for group in graph.get_all_groups(
            ignored_layers=_modules(pruned, ignored_layers), root_module_types=ROOT_MODULE_TYPES
        )
    ]
    kept: dict[str, int] = {}
    for root, handler in roots:
        channels = _out_channels(root)
        ratio = float(ratios.get(names[root], 0.0))
        keep = kept_channels(channels, ratio, round_to, whole_if_narrow)
        kept[names[root]] = keep
        if keep < channels:
            _prune_group(graph, root, handler, scorer, channels - keep)
    return pruned, kept


def _prune_group(
    graph: tp.DependencyGraph, root: nn.Module, handler, scorer, n_remove: int
) -> None:
    # Score the whole group (all coupled layers), then drop the lowest-scoring channels.
    whole = graph.get_pruning_group(root, handler, idxs=list(range(_out_channels(root))))
    with torch.no_grad():
        scores = scorer(whole)
    drop = torch.argsort(scores)[:n_remove].tolist()
    graph.get_pruning_group(root, handler, idxs=drop).prune()


def _dependency_graph(model: nn.Module, example_inputs: Sequence[torch.Tensor]):
    names = {module: name for name, module in model.named_modules()}
    inputs = tuple(example_inputs)
    with running_layers(model) as trace:
        try:
            graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=inputs if len(inputs) > 1 else inputs[0]
            )
        except Exception as exc:  # torch-pruning's tracer meets an operator it cannot follow
            raise UserInputError(
                f"torch-pruning could not trace the model{trace.where()} ({one_line(exc)}); "
                "exclude that layer with --ignore-layers, or pass a pruner for this architecture"
            ) from None
    return graph, names


class LayerTrace:
    """Which layer a forward pass was in (or had just left) when it raised."""

    def __init__(self) -> None:
        self.running: list[str] = []  # submodules whose forward is running, outermost first
        self.last_finished: str | None = None

    def enter(self, name: str) -> Callable[..., None]:
        return lambda module, args: self.running.append(name)

    def leave(self, module: nn.Module, args, output) -> None:
        # Returns None on purpose: a forward hook's return value replaces the layer's output.
        self.last_finished = self.running.pop()

    def where(self) -> str:
        """`` at layer 'x'`` inside a layer's forward, `` after layer 'y'`` in the glue code
        between layers (a ``view`` in the parent's forward), else ``''``."""
        if self.running:
            return f" at layer {self.running[-1]!r}"
        return f" after layer {self.last_finished!r}" if self.last_finished else ""


@contextlib.contextmanager
def running_layers(model: nn.Module) -> Iterator[LayerTrace]:
    """Trace the layers a forward pass goes through, for error messages.

    Forward pre-hooks push a layer's name and forward hooks pop it; when a forward raises,
    its post-hook never runs, so after the exception the trace still names the layer that
    failed (or the last one that finished, when the failure is between layers).
    """
    trace = LayerTrace()
    handles = []
    for name, module in model.named_modules():
        if name:  # the model itself names nothing useful
            handles.append(module.register_forward_pre_hook(trace.enter(name)))
            handles.append(module.register_forward_hook(trace.leave))
    try:
        yield trace
    finally:
        for handle in handles:
            handle.remove()


def _modules(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    modules = []
    for name in names:
        try:
            modules.append(model.get_submodule(name))
        except AttributeError:
            raise UserInputError(f"ignored layer {name!r} is not a module of the model") from None
    return modules


def _out_channels(module: nn.Module) -> int:
    return module.weight.shape[0]
