"""Reports: a run's HTML page and Markdown summary, and the tables and plots they are made of.

``write_report(run_dir)`` renders ``report.html`` (self-contained: inline SVG plots and
styles, no network) and ``summary.md`` from a run folder. The building blocks are public
so benchmarks render their tables and plots the same way: :func:`markdown_table`,
:func:`svg_plot` (scatter / line / step series) and :func:`svg_bars`.

Names are imported on first use, so ``compress report --help`` does not load matplotlib.
"""

from importlib import import_module

_EXPORTS = {
    "Reference": "plots",
    "SecondaryAxis": "plots",
    "Series": "plots",
    "svg_bars": "plots",
    "svg_plot": "plots",
    "ReportFiles": "render",
    "dashboard_command": "render",
    "write_report": "render",
    "RunData": "run_data",
    "load_run": "run_data",
    "pareto_front": "run_data",
    "save_run_info": "run_data",
    "format_bytes": "tables",
    "format_count": "tables",
    "format_ms": "tables",
    "format_pct": "tables",
    "markdown_table": "tables",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compressor.report' has no attribute {name!r}")
    return getattr(import_module(f"compressor.report.{_EXPORTS[name]}"), name)
