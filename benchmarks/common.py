"""Helpers shared by the benchmarks: where results go, what machine they ran on, tables.

Tables and plots come from the report renderer (``compressor.report``), as the run reports
do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compressor.credentials import mask
from compressor.environment import environment_info, library_versions
from compressor.report import markdown_table as _report_table
from compressor.run_folder import write_json
from compressor.tasks.common import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
# Libraries the benchmarks compare against, beyond what compressor/environment.py records.
EXTRA_LIBRARIES = ("transformers", "nncf", "optimum", "optimum-onnx", "olive-ai", "scipy")


@dataclass(frozen=True)
class RowOutcome:
    """A peer pipeline's artifact for a benchmark row (None when skipped or failed) and
    what to record about it (its settings, and ``skipped`` / ``failed`` with the reason)."""

    path: Path | None
    facts: dict = field(default_factory=dict)


def data_root(path: str | None) -> Path:
    """``--data`` or ``../shared/data`` beside the project root."""
    return Path(path) if path else default_data_root()


def write_results(name: str, data: dict, markdown: str, folder: Path | None = None):
    """Write ``<folder>/<name>-<date>.json`` and ``.md`` (default ``benchmarks/results``)."""
    folder = Path(folder) if folder else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{name}-{time.strftime('%Y-%m-%d')}"
    write_json(stem.with_suffix(".json"), data)  # masks passwords, as in a run's files
    stem.with_suffix(".md").write_text(mask(markdown))
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def latest_result(name: str, folder: Path | None = None) -> dict | None:
    """The newest ``<name>-<date>.json`` in the results folder, or None."""
    import json

    found = sorted((Path(folder) if folder else RESULTS).glob(f"{name}-20*.json"))
    return json.loads(found[-1].read_text()) if found else None


class Session:
    """Wall time and machine load of one benchmark command, plus the machine it ran on."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.started = time.perf_counter()
        self.load_start = os.getloadavg()
        self.started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    def record(self, argv: Sequence[str]) -> dict:
        machine = environment_info("cpu", self.threads)
        machine["libraries"].update(library_versions(EXTRA_LIBRARIES))
        return {
            "command": "python -m benchmarks " + " ".join(mask(list(argv))),
            "started": self.started_at,
            "seconds": time.perf_counter() - self.started,
            "load_average_start": self.load_start,
            "load_average_end": os.getloadavg(),
            "machine": machine,
        }


def machine_markdown(run: dict) -> str:
    """The 'how and where this was measured' paragraph under every table."""
    machine = run["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    return (
        f"`{run['command']}` — started {run['started']}, took {run['seconds'] / 60:.1f} min; "
        f"load average (1/5/15 min) at start {_load(run['load_average_start'])}, "
        f"at end {_load(run['load_average_end'])}.\n\n"
        f"Machine: {machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no AVX flags'}), "
        f"{machine['cpu_count']} logical CPUs, {machine['threads']} threads used; "
        f"Python {machine['python']}; {libs}.\n"
    )


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """``compressor.report.markdown_table``, ending in a newline so text can follow."""
    return _report_table(header, rows) + "\n"


def fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def svg_line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Best-so-far curves as an SVG staircase plot (compressor.report's ``svg_plot``)."""
    from compressor.report import Series, svg_plot

    items = [Series(name, list(x), list(y), kind="step") for name, (x, y) in series.items()]
    svg = svg_plot(items, xlabel=x_label, ylabel=y_label, title=title, name="curves")
    return svg + "\n"
