"""Reports: a run's HTML page and Markdown summary, and the tables and plots they are made of.

``write_report(run_dir)`` renders ``report.html`` (self-contained: inline SVG plots and
styles, no network) and ``summary.md`` from a run folder. The building blocks are public
so benchmarks render their tables and plots the same way: :func:`markdown_table`,
:func:`svg_plot` (scatter / line / step series) and :func:`svg_bars`.
"""

from compressor.report.plots import Reference, SecondaryAxis, Series, svg_bars, svg_plot
from compressor.report.render import ReportFiles, dashboard_command, write_report
from compressor.report.run_data import RunData, load_run, pareto_front, save_run_info
from compressor.report.tables import (
    format_bytes,
    format_count,
    format_ms,
    format_pct,
    markdown_table,
)

__all__ = [
    "Reference",
    "ReportFiles",
    "RunData",
    "SecondaryAxis",
    "Series",
    "dashboard_command",
    "format_bytes",
    "format_count",
    "format_ms",
    "format_pct",
    "load_run",
    "markdown_table",
    "pareto_front",
    "save_run_info",
    "svg_bars",
    "svg_plot",
    "write_report",
]
