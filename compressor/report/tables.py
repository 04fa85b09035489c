"""Tables and number formats shared by the HTML report, the Markdown summary and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

__all__ = ["format_bytes", "format_count", "format_ms", "format_pct", "markdown_table"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``tabulate``'s ``github`` format).

    Cells are used as given: format numbers before (``format_count``, ``format_pct``...).
    """
    return tabulate(
        [[_cell(value) for value in row] for row in rows],
        headers=list(headers),
        tablefmt="github",
        disable_numparse=True,
    )


def format_count(value: float) -> str:
    """``52.72M``, ``174.97K``: FLOPs and parameter counts as people read them."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def format_pct(value: float | None, digits: int = 2) -> str:
    """``0.9861`` -> ``98.61%``; ``None`` -> ``—``."""
    return "—" if value is None else f"{value:.{digits}%}"


def format_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} ms"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _cell(value: Any) -> str:
    # Pipes would end the cell early in Markdown.
    return "—" if value is None else str(value).replace("|", "\\|")
