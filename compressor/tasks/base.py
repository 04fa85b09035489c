"""A task bundles what a compression run needs besides the search: model, data, metric.

Later tasks (ResNet-56 / CIFAR-10, MiniLM / STS-B) fill the same fields, so the search loop
never needs to know which task it is running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressor.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Task:
    """Model + data + metric.

    Attributes:
        name: registry name, recorded in ``result.json`` so a saved model can be rebuilt.
        model: the trained, uncompressed model (eval mode). Never modified by compression.
        example_inputs: inputs of the deployment shape (batch 1), used to trace and to time.
        evaluate: ``evaluate(model) -> float`` on the validation split, higher is better.
        evaluate_test: the same metric on the held-out test split, for the final report.
        train_data: re-iterable ``(inputs, labels)`` batches for recovery.
        calibration_data: fixed (unshuffled) training batches for BatchNorm re-calibration and
            INT8 calibration; defaults to ``train_data`` (deterministic only if it does not
            shuffle).
        loss_fn: training loss for recovery.
        ignored_layers: module names whose *output* channels must not be pruned (the classifier).
        pruner: the task's own pruning method (groups + prune); None = torch-pruning channels.
        recover: ``recover(student, teacher, recovery_config, progress) -> model``, the task's
            own recovery (e.g. embedding distillation); None = the configured method.
        ignored_reason: why the task leaves ``ignored_layers`` beyond the classifier whole,
            as ``compress inspect`` states it.
        depth_units: the blocks / layers depth pruning may remove (module paths, see
            ``compressor.actions.depth``); None = found automatically.
    """

    name: str
    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]
    evaluate_test: Callable[[nn.Module], float]
    train_data: Iterable[Batch]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    ignored_layers: tuple[str, ...] = ()
    calibration_data: Iterable[Batch] | None = None
    description: str = ""
    pruner: Any = None  # a compressor.actions.pruner.Pruner
    recover: Callable[..., nn.Module] | None = None
    ignored_reason: str = ""
    depth_units: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: its builder, and the bare architecture's factory (so a saved
    variant can be reloaded without building the task: no data, no training)."""

    build: Callable[..., Task]
    model_factory: Callable[[], nn.Module] | None = None


# The built-in tasks; ``compressor.tasks.get_task`` imports their modules on first use.
TASKS: Registry[TaskEntry] = Registry("task")


def register_task(
    name: str, model_factory: Callable[[], nn.Module] | None = None
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator: make a task builder available to ``--task NAME`` and YAML ``task: NAME``."""

    def wrap(builder: Callable[..., Task]) -> Callable[..., Task]:
        doc = (builder.__doc__ or "").strip().split("\n")[0]
        TASKS.register(name, doc)(TaskEntry(builder, model_factory))
        return builder

    return wrap
