"""Progress of long work (search trials, recovery steps): live on a terminal, plain lines in logs.

On a terminal a ``rich`` progress display shows k/N, elapsed time (ticking between updates,
so a slow trial is visibly alive) and the latest figures; log lines (records of the
``compressor`` logger, see :mod:`compressor.logs`) scroll above it. When stdout is not a
terminal (CI, ``| tee``, files) every update that matters is one plain line, so logs stay
readable; ``quiet`` shows nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from compressor.logs import LOGGER, ConsoleHandler

MODES = ("live", "lines", "off")


def progress_mode(enabled: bool = True) -> str:
    """``live`` on a terminal, ``lines`` otherwise, ``off`` when not ``enabled``."""
    if not enabled:
        return "off"
    return "live" if sys.stdout.isatty() else "lines"


class Steps:
    """k of ``total`` steps of one piece of work, with a line of figures.

    Args:
        description: what is being done ("search", "recovery").
        total: the number of steps (None when unknown).
        mode: one of :data:`MODES` (see :func:`progress_mode`).
        done: steps already done (a resumed search).
        every: in ``lines`` mode, print a progress line every this many steps (and at the
            last one); 0 prints none (the caller logs its own lines).
    """

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        mode: str = "lines",
        done: int = 0,
        every: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.description, self.total, self.mode = description, total, mode
        self.done, self.every = done, every
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {}
        self._live = None
        if mode == "live":
            self._start_live()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=sys.stdout),
            refresh_per_second=2,
        )
        self._task = self._live.add_task(
            self.description, total=self.total, completed=self.done, info=""
        )
        self._live.start()
        ConsoleHandler.live_console = self._live.console

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def advance(self, steps: int = 1, **fields: Any) -> None:
        """``steps`` more done; ``fields`` (name -> shown value) replace the figures shown."""
        self.done += steps
        self.fields.update(fields)
        if self._live is not None:
            self._live.update(self._task, completed=self.done, info=self.info())
        elif self.mode == "lines" and self.every and self._line_due(steps):
            self.log(f"{self.description} {self.counter()}  {self.info()}  {self.elapsed:.0f}s")

    def _line_due(self, steps: int) -> bool:
        crossed = self.done // self.every != (self.done - steps) // self.every
        return crossed or self.done == self.total

    def counter(self) -> str:
        """``k/N`` (``k`` alone when the total is unknown), padded to N's width."""
        if self.total is None:
            return str(self.done)
        return f"{self.done:>{len(str(self.total))}}/{self.total}"

    def info(self) -> str:
        return "  ".join(f"{name} {value}" for name, value in self.fields.items())

    def log(self, line: str) -> None:
        """A line of its own (a log record): above the live display, or on stdout; nothing
        when off."""
        if self.mode != "off":
            LOGGER.info(line)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            ConsoleHandler.live_console = None

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
