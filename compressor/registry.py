"""One small registry helper: named choices (quantization modes, rewards, samplers, ...)
declared next to the function that implements them, with one decorator.

The config validates against ``registry.names()``, the CLI offers them as ``choices`` and the
report reads each entry's ``description``, so adding a choice touches one file only. This is
the pattern of torchao's ``@register_quantize_module_handler``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from compressor.errors import UserInputError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered choice: its name, the object it stands for and a one-line text."""

    name: str
    value: T
    description: str


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` says which, for messages: "quantization mode")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator: ``@QUANTIZATIONS.register("static_ort", "static INT8, QDQ")``."""

        def add(value: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            text = description or (getattr(value, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, value, text)
            return value

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throwaway choice clean up with this)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> Entry[T]:
        self.check(self.kind, name)
        return self._entries[name]

    def get(self, name: str) -> T:
        """The registered object; an unknown name is a :class:`UserInputError`."""
        return self.entry(name).value

    def check(self, field: str, name: object) -> None:
        """Refuse ``name`` unless registered, with a message naming ``field`` and the
        choices."""
        if not isinstance(name, str) or name not in self._entries:
            raise UserInputError(f"{field} must be one of {', '.join(self._entries)}; got {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
