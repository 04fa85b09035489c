"""Registry of built-in tasks: ``get_task("digits")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from compressor.errors import UserInputError
from compressor.tasks.base import Task

_TASKS: dict[str, Callable[..., Task]] = {}
_FACTORIES: dict[str, Callable[[], nn.Module]] = {}


def register_task(
    name: str, model_factory: Callable[[], nn.Module] | None = None
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator: make a task builder available to ``--task NAME`` and YAML ``task: NAME``.

    ``model_factory`` builds the bare architecture, so a saved variant can be reloaded
    without building the task (no data, no training).
    """

    def wrap(builder: Callable[..., Task]) -> Callable[..., Task]:
        _TASKS[name] = builder
        if model_factory is not None:
            _FACTORIES[name] = model_factory
        return builder

    return wrap


def task_names() -> list[str]:
    _load_builtin_tasks()
    return sorted(_TASKS)


def get_task(name: str, **options) -> Task:
    """Build the task registered under ``name`` (imports its module on first use).

    Options set to ``None`` are left out (the builder's default applies); an option the
    builder does not take (``--data`` for the digits task) is the user's mistake.
    """
    _load_builtin_tasks()
    if name not in _TASKS:
        raise UserInputError(f"unknown task {name!r}; choose one of {', '.join(sorted(_TASKS))}")
    builder = _TASKS[name]
    options = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(builder).parameters
    for key in options:
        if key not in accepted:
            raise UserInputError(f"task {name!r} does not take the option {key!r}")
    return builder(**options)


def get_task_factory(name: str) -> Callable[[], nn.Module]:
    """The architecture factory of a built-in task (for reloading saved variants)."""
    _load_builtin_tasks()
    if name not in _FACTORIES:
        raise UserInputError(
            f"task {name!r} has no registered model factory; pass base_model= explicitly"
        )
    return _FACTORIES[name]


def _load_builtin_tasks() -> None:
    # Imported lazily so `compress --help` does not pay for torch model definitions.
    from compressor.tasks import (  # noqa: F401
        causal_lm,
        custom,
        digits,
        resnet_cifar,
        sentence_similarity,
    )


__all__ = ["Task", "get_task", "get_task_factory", "register_task", "task_names"]
