"""Helpers shared by benchmark scripts: where results go and how they are written."""

from __future__ import annotations

import time
from pathlib import Path

from compressor.artifacts import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>-<date>.json`` and ``.md``; returns both paths."""
    stem = RESULTS / f"{name}-{time.strftime('%Y-%m-%d')}"
    write_json(stem.with_suffix(".json"), data)
    stem.with_suffix(".md").write_text(markdown)
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
