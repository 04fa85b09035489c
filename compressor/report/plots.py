"""Plots as inline SVG text, drawn by matplotlib: the one plotting path of reports and benchmarks.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``, no pyplot
state, no GUI backend: ``savefig(format="svg")`` renders with the SVG backend) and saved
with text kept as text (``svg.fonttype: none``: small, searchable, selectable). Every
series can carry an SVG id (``gid``) naming its group in the output, so tests and readers
can find "the chosen variant" or count the points of a series. Each figure gets its own
id salt so several SVGs can sit in one HTML page without id clashes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure
from matplotlib.markers import MarkerStyle
from matplotlib.ticker import FuncFormatter, PercentFormatter

KINDS = ("scatter", "line", "step")


@dataclass(frozen=True)
class Series:
    """One data series of a plot.

    Attributes:
        label: legend text ("" keeps it out of the legend).
        x, y: the data.
        kind: ``scatter`` (points), ``line`` or ``step`` (a staircase, value held until
            the next x).
        marker, color, size: matplotlib marker, colour and (scatter) marker area.
        hollow: scatter markers drawn as outlines only.
        linestyle: for lines ("-", "--", ":").
        gid: the id of this series' SVG group.
        zorder: drawing order (higher on top).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    kind: str = "scatter"
    marker: str = "o"
    color: str | None = None
    size: float = 30.0
    hollow: bool = False
    linestyle: str = "-"
    gid: str | None = None
    zorder: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Series.kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.x) != len(self.y):
            raise ValueError(f"Series {self.label!r}: {len(self.x)} x values, {len(self.y)} y")


@dataclass(frozen=True)
class Reference:
    """A labelled reference line across the plot (a budget, a baseline level)."""

    value: float
    label: str
    axis: str = "x"  # "x": a vertical line at x = value; "y": a horizontal one
    color: str = "0.35"


@dataclass(frozen=True)
class SecondaryAxis:
    """A second x scale on top: ``forward`` maps the bottom axis to it, ``inverse`` back."""

    label: str
    forward: Callable
    inverse: Callable


def svg_plot(
    series: Sequence[Series],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    name: str = "plot",
    references: Sequence[Reference] = (),
    percent_y: bool = False,
    xscale: str = "linear",
    top_axis: SecondaryAxis | None = None,
    size: tuple[float, float] = (6.4, 4.2),
) -> str:
    """A scatter / line plot of ``series`` as an ``<svg>`` element (text, no XML prolog).

    Args:
        name: unique within a page; salts the SVG's internal ids and names the figure.
        percent_y: y values are fractions shown as percentages (accuracies).
        xscale: "linear" or "log".
    """
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    for item in series:
        _draw(axes, item)
    for ref in references:
        line = axes.axvline if ref.axis == "x" else axes.axhline
        line(ref.value, color=ref.color, linestyle="--", linewidth=1, label=ref.label, zorder=1)
    axes.set_xscale(xscale)
    if xscale == "log":
        _plain_log_ticks(axes.xaxis)
    axes.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        axes.set_title(title)
    if percent_y:
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if top_axis is not None:
        top = axes.secondary_xaxis("top", functions=(top_axis.forward, top_axis.inverse))
        top.set_xlabel(top_axis.label)
        if xscale == "log":
            _plain_log_ticks(top.xaxis)
    axes.grid(True, color="0.9", zorder=0)
    if any(item.label for item in series) or references:
        axes.legend(fontsize="small", framealpha=0.9)
    return figure_svg(figure, name)


def svg_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    title: str = "",
    name: str = "bars",
    gid: str | None = None,
    xlim: tuple[float, float] | None = None,
    percent_x: bool = False,
) -> str:
    """A horizontal bar chart, one bar per label (top to bottom in the given order).

    ``gid``: bar ``i`` gets the SVG id ``<gid>-<i>``.
    """
    height = 1.2 + 0.28 * max(1, len(labels))
    figure = Figure(figsize=(6.4, height), layout="constrained")
    axes = figure.add_subplot()
    positions = range(len(labels))
    bars = axes.barh(positions, values, color="#4c72b0", zorder=2)
    if gid:
        for index, bar in enumerate(bars):  # one id per bar: "<gid>-0", "<gid>-1", ...
            bar.set_gid(f"{gid}-{index}")
    axes.set_yticks(list(positions), labels=list(labels), fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    if xlim is not None:
        axes.set_xlim(*xlim)
    if percent_x:
        axes.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if title:
        axes.set_title(title)
    axes.grid(True, axis="x", color="0.9", zorder=0)
    return figure_svg(figure, name)


def figure_svg(figure: Figure, name: str) -> str:
    """A matplotlib figure as inline ``<svg>`` text, its internal ids salted with ``name``."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: it goes inline
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    # matplotlib numbers its own element ids per figure (figure_1, axes_1, ...); prefix them
    # so ids stay unique in a page. References use the salted hash ids, which are untouched.
    text = re.sub(r' id="([A-Za-z0-9.]+_\d+)"', rf' id="{name}-\1"', text)
    return text.replace("<svg ", f'<svg class="plot" data-name="{name}" ', 1)


def _plain_log_ticks(axis) -> None:
    """Log-axis ticks as plain numbers (0.5, 2, 3), not 5x10^-1; minor ones at 2, 3, 5 x 10^k."""

    def plain(value: float, _position) -> str:
        return f"{value:g}"

    def some(value: float, _position) -> str:
        leading = f"{value:e}"[0]
        return f"{value:g}" if leading in "235" else ""

    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_formatter(FuncFormatter(some))


def _draw(axes, item: Series) -> None:
    common = {"label": item.label or None, "gid": item.gid, "zorder": item.zorder}
    if item.kind == "scatter":
        color = item.color or "C0"
        if MarkerStyle(item.marker).is_filled():  # outline and fill set apart (hollow markers)
            colors = {"facecolors": "none" if item.hollow else color, "edgecolors": color}
        else:  # "x", "+": the stroke is the marker, matplotlib colours it by `color`
            colors = {"color": color}
        axes.scatter(
            item.x, item.y, s=item.size, marker=item.marker, linewidths=1.2, **colors, **common
        )
    else:
        axes.plot(
            item.x,
            item.y,
            color=item.color,
            linestyle=item.linestyle,
            drawstyle="steps-post" if item.kind == "step" else "default",
            linewidth=1.5,
            **common,
        )
