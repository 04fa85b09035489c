"""Helpers shared by the benchmarks: where results go, what machine they ran on, tables.

The Markdown table and the SVG line plot are small local functions on purpose: the report
renderer (``compressor/report/``, issue 8) is not on main yet; once it is, these two are the
only places to swap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from compressor.artifacts import write_json
from compressor.environment import environment_info
from compressor.tasks.resnet_cifar import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
# Libraries the benchmarks compare against, beyond what compressor/environment.py records.
EXTRA_LIBRARIES = ("transformers", "nncf", "optimum", "optimum-onnx", "scipy")


def data_root(path: str | None) -> Path:
    """``--data`` or ``../shared/data`` beside the project root."""
    return Path(path) if path else default_data_root()


def write_results(name: str, data: dict, markdown: str, folder: Path | None = None):
    """Write ``<folder>/<name>-<date>.json`` and ``.md`` (default ``benchmarks/results``)."""
    folder = Path(folder) if folder else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{name}-{time.strftime('%Y-%m-%d')}"
    write_json(stem.with_suffix(".json"), data)
    stem.with_suffix(".md").write_text(markdown)
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
        versions = {}
        for name in EXTRA_LIBRARIES:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        machine = environment_info("cpu", self.threads)
        machine["libraries"].update(versions)
        return {
            "command": "python -m benchmarks " + " ".join(argv),
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
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def svg_line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 400,
) -> str:
    """A minimal SVG line chart (no plotting library is installed here)."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    xs = [x for values, _ in series.values() for x in values]
    ys = [y for _, values in series.values() for y in values]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi == y_lo:
        y_hi = y_lo + 1e-9
    left, right, top, bottom = 70, 160, 40, 50

    def px(x: float) -> float:
        return left + (x - x_lo) / max(x_hi - x_lo, 1e-9) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 10}" '
        f'text-anchor="middle">{x_label}</text>',
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" '
        f'text-anchor="middle">{y_label}</text>',
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_lo + fraction * (y_hi - y_lo)
        x = x_lo + fraction * (x_hi - x_lo)
        parts.append(f'<text x="{left - 5}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 15}" text-anchor="middle">{x:.3g}</text>'
        )
    for index, (name, (x_values, y_values)) in enumerate(series.items()):
        colour = colours[index % len(colours)]
        points = " ".join(
            f"{px(x):.1f},{py(y):.1f}" for x, y in zip(x_values, y_values, strict=True)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        y_text = top + 15 * index
        parts.append(f'<text x="{width - right + 10}" y="{y_text}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
