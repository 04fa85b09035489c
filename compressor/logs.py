"""The ``compressor`` logger and its console handler.

Everything a run tells the user (baseline, trial lines, recovery, the final table) is a
record of the ``compressor`` logger. :func:`console_output` shows those records as plain
lines on stdout, or above the live progress display while one is on screen
(:class:`compressor.progress.Steps` registers it), so lines never tear the display. A caller
with its own logging set-up just attaches its handlers to ``logging.getLogger("compressor")``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from compressor.credentials import mask

LOGGER = logging.getLogger("compressor")


class ConsoleHandler(logging.Handler):
    """Plain lines on stdout, or through the live display's console while one is shown."""

    live_console: Any = None  # a rich Console, set while a live progress display runs

    def emit(self, record: logging.LogRecord) -> None:
        line = mask(self.format(record))  # a URL a message carries, its password hidden
        console = ConsoleHandler.live_console
        if console is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:  # sys.stdout read now: it may have been replaced since (tests capture it)
            print(line, file=sys.stdout, flush=True)


@contextlib.contextmanager
def console_output(enabled: bool = True) -> Iterator[None]:
    """Show the ``compressor`` logger's INFO records on the console inside the block.

    Nested uses share the outer handler; with ``enabled`` False nothing is shown.
    """
    if not enabled or any(isinstance(h, ConsoleHandler) for h in LOGGER.handlers):
        yield
        return
    handler = ConsoleHandler()
    level, propagate = LOGGER.level, LOGGER.propagate
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # shown once here, not again by a root handler
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
        LOGGER.propagate = propagate
