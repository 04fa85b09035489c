"""Depth pruning: remove whole residual blocks of a CNN or whole layers of an encoder.

A *unit* is a child of an ``nn.Sequential`` or ``nn.ModuleList`` (named by its path, e.g.
``layer2.3`` or ``transformer.encoder.layer.4``) whose output has its input's shape and
that sits on a residual path, so the network still computes something sensible without it
(Veit et al. 2016: residual networks behave like ensembles of shallow paths). Removing it
deletes it from its container, which renumbers the later siblings; a model's removed units
are therefore always named in the *unpruned* model's numbering and applied all at once by
:func:`remove_units`, the same way when a plan is built and when a saved model is reloaded.

On ONNX Runtime this is the move that pays in proportion to FLOPs (measured on ResNet-56
INT8: 0.44x FLOPs by depth ran at 0.44x the unpruned INT8 latency at batch 1, while halving
widths to 0.67x FLOPs gave only 0.82x), see ../shared/STACK.md.

Built-in tasks declare their units; for other models :func:`find_units` finds them: it
records each container child's call on the example inputs (``forward`` hooks with kwargs),
keeps those whose first output has the first input's shape, and calls a unit *residual*
when, with every convolution and linear weight in it zeroed, its output still follows its
input (``relu(bn(0) + x)``, ``LayerNorm(bias + x)``); a plain conv-bn-relu block then
outputs a constant and is not a unit.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from compressor.errors import UserInputError
from compressor.measure.flops import EXTRA_FORMULAS

CONTAINERS = (nn.Sequential, nn.ModuleList)
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# transformers configs store the layer count under these names (BERT / DistilBERT)
LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers")


@dataclass(frozen=True)
class DepthUnit:
    """A removable block or layer.

    Attributes:
        name: its path in the unpruned model; what a plan lists when it removes it.
        flops: FLOPs of one call on the example inputs (2 x MACs, as ``count_flops``).
    """

    name: str
    flops: int


def remove_units(model: nn.Module, names: Iterable[str], *, inplace: bool = False) -> nn.Module:
    """``model`` without the units ``names`` (paths in the unpruned numbering).

    Each container is rebuilt once without its removed children, so several siblings can
    go in one call. A Hugging Face config whose layer count equals the container's length is
    updated (``config.num_hidden_layers``), so ``save_pretrained`` describes the new depth.
    """
    names = sorted(set(names))
    if not names:
        return model if inplace else copy.deepcopy(model)
    target = model if inplace else copy.deepcopy(model)
    by_parent: dict[str, set[int]] = {}
    for name in names:
        parent, _, index = name.rpartition(".")
        container = _container(target, parent, name)
        if not index.isdigit() or int(index) >= len(container):
            raise UserInputError(f"depth unit {name!r} is not a child of {parent!r}")
        by_parent.setdefault(parent, set()).add(int(index))
    for parent, indices in by_parent.items():
        container = target.get_submodule(parent)
        _update_layer_counts(target, len(container), len(container) - len(indices))
        for index in sorted(indices, reverse=True):  # torch renumbers the later children
            del container[index]
    return target


def find_units(
    model: nn.Module, example_inputs: Sequence[torch.Tensor], pattern: str | None = None
) -> list[DepthUnit]:
    """The removable units of ``model``, found from one forward pass (see module docstring).

    ``pattern`` (a glob such as ``'layer*.*'`` or ``'*.encoder.layer.*'``) restricts the
    candidates by name. Each found unit is checked by removing it alone and running the
    model: a unit whose removal breaks the forward pass is left out.
    """
    calls = _record_calls(model, example_inputs, _candidate_names(model, pattern))
    residual = [
        name
        for name, call in calls.items()
        if _keeps_shape(call) and _is_residual(model, name, call)
    ]
    runnable = [name for name in residual if _runs_without(model, example_inputs, name)]
    return units_with_flops(model, example_inputs, runnable)


def declared_units(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    names: Sequence[str],
    pattern: str | None = None,
) -> list[DepthUnit]:
    """A task's declared units (optionally filtered by ``pattern``), with their FLOPs."""
    for name in names:
        parent, _, _ = name.rpartition(".")
        _container(model, parent, name)
    chosen = [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]
    return units_with_flops(model, example_inputs, chosen)


def units_with_flops(
    model: nn.Module, example_inputs: Sequence[torch.Tensor], names: Sequence[str]
) -> list[DepthUnit]:
    """``names`` as units, each with its FLOPs from one counted forward pass (torch's
    ``FlopCounterMode`` keeps a per-module breakdown, keyed by module path)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(*example_inputs)
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    units = []
    for name in names:
        counts = per_module.get(name) or per_module.get(f"{root}.{name}") or {}
        units.append(DepthUnit(name, int(sum(counts.values()))))
    return units


def removed_flops(units: Sequence[DepthUnit], removed: Iterable[str]) -> int:
    """FLOPs saved by removing ``removed`` (units are disjoint, so savings add up)."""
    removed = set(removed)
    return sum(unit.flops for unit in units if unit.name in removed)


def _candidate_names(model: nn.Module, pattern: str | None) -> list[str]:
    names = []
    for parent, module in model.named_modules():
        if isinstance(module, CONTAINERS):
            for index, child in enumerate(module):
                name = f"{parent}.{index}" if parent else str(index)
                if _has_weights(child) and (pattern is None or fnmatch.fnmatchcase(name, pattern)):
                    names.append(name)
    return names


@dataclass
class _Call:
    args: tuple
    kwargs: dict
    output: object


def _record_calls(
    model: nn.Module, example_inputs: Sequence[torch.Tensor], names: Sequence[str]
) -> dict[str, _Call]:
    """Each named module's first call (arguments and output) during one forward pass."""
    calls: dict[str, _Call] = {}
    handles = []

    def recorder(name: str):
        def hook(module, args, kwargs, output):
            calls.setdefault(name, _Call(args, kwargs, output))

        return hook

    for name in names:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(recorder(name), with_kwargs=True))
    try:
        with torch.no_grad():
            model.eval()(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    if isinstance(value, dict) and value:
        return _first_tensor(next(iter(value.values())))
    return getattr(value, "last_hidden_state", None)


def _call_input(call: _Call) -> torch.Tensor | None:
    if call.args:
        return _first_tensor(call.args[0])
    return _first_tensor(call.kwargs.get("hidden_states"))


def _keeps_shape(call: _Call) -> bool:
    x, y = _call_input(call), _first_tensor(call.output)
    return x is not None and y is not None and x.shape == y.shape and x.is_floating_point()


def _is_residual(model: nn.Module, name: str, call: _Call) -> bool:
    """With its weights zeroed, does the unit's output still follow its input?"""
    unit = copy.deepcopy(model.get_submodule(name)).eval()
    with torch.no_grad():
        for module in unit.modules():
            if isinstance(module, WEIGHTED):
                module.weight.zero_()
        x = _call_input(call)
        generator = torch.Generator().manual_seed(0)
        shifted = x + torch.randn(x.shape, generator=generator) * (x.std() + 1.0)
        first = _first_tensor(_call_with(unit, call, x))
        second = _first_tensor(_call_with(unit, call, shifted))
    return not torch.allclose(first, second, atol=1e-5)


def _call_with(unit: nn.Module, call: _Call, x: torch.Tensor):
    if call.args:
        return unit(x, *call.args[1:], **call.kwargs)
    return unit(*call.args, **{**call.kwargs, "hidden_states": x})


def _runs_without(model: nn.Module, example_inputs: Sequence[torch.Tensor], name: str) -> bool:
    try:
        with torch.no_grad():
            remove_units(model, [name]).eval()(*example_inputs)
    except Exception:  # the parent indexes its children or hard-codes their count
        return False
    return True


def _has_weights(module: nn.Module) -> bool:
    return any(isinstance(m, WEIGHTED) for m in module.modules())


def _container(model: nn.Module, parent: str, name: str) -> nn.Module:
    try:
        container = model.get_submodule(parent)
    except AttributeError:
        raise UserInputError(f"depth unit {name!r}: {parent!r} is not a module") from None
    if not isinstance(container, CONTAINERS):
        raise UserInputError(
            f"depth unit {name!r}: its parent {parent!r} is a {type(container).__name__}, "
            "not an nn.Sequential or nn.ModuleList"
        )
    return container


def _update_layer_counts(model: nn.Module, before: int, after: int) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        for attr in LAYER_COUNT_ATTRS:
            if getattr(config, attr, None) == before:
                setattr(config, attr, after)
