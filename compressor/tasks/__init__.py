"""The built-in tasks: ``get_task("digits")``.

Each task module registers its builder in :data:`compressor.tasks.base.TASKS` with
``@register_task``; the modules are imported on first use, so ``compress --help`` does not
pay for torch model definitions.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from compressor.errors import UserInputError
from compressor.tasks.base import TASKS, Task, register_task
from compressor.tasks.common import default_ignored_layers

BUILTIN_MODULES = (
    "causal_lm",
    "custom",
    "digits",
    "resnet_cifar",
    "sentence_similarity",
    "text_classification",
)


def task_names() -> list[str]:
    _load_builtin_tasks()
    return sorted(TASKS.names())


def get_task(name: str, **options) -> Task:
    """Build the task registered under ``name``.

    Options set to ``None`` are left out (the builder's default applies); an option the
    builder does not take (``--data`` for the digits task) is the user's mistake.
    """
    _load_builtin_tasks()
    if name not in TASKS:
        raise UserInputError(f"unknown task {name!r}; choose one of {', '.join(task_names())}")
    builder = TASKS.get(name).build
    options = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(builder).parameters
    for key in options:
        if key not in accepted:
            raise UserInputError(f"task {name!r} does not take the option {key!r}")
    return builder(**options)


def get_task_factory(name: str) -> Callable[[], nn.Module]:
    """The architecture factory of a built-in task (for reloading saved variants)."""
    _load_builtin_tasks()
    factory = TASKS.get(name).model_factory if name in TASKS else None
    if factory is None:
        raise UserInputError(
            f"task {name!r} has no registered model factory; pass base_model= explicitly"
        )
    return factory


def _load_builtin_tasks() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"compressor.tasks.{module}")


__all__ = [
    "Task",
    "default_ignored_layers",
    "get_task",
    "get_task_factory",
    "register_task",
    "task_names",
]
