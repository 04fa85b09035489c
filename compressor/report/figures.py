"""The report's figures: Pareto fronts, reward per trial, the chosen plan's pruning ratios.

Each figure is an inline SVG (see :mod:`compressor.report.plots`) whose series carry ids
``<figure>-<series>``: ``-feasible`` and ``-infeasible`` (one point per finished trial,
split by the budgets the user set), ``-front``, ``-baseline``, ``-chosen``, ``-recovered``.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.report.plots import Reference, SecondaryAxis, Series, svg_bars, svg_plot
from compressor.report.run_data import RunData, pareto_front
from compressor.report.summary import has_flops_target

FEASIBLE, INFEASIBLE, FRONT = "#4c72b0", "#d62728", "#ff7f0e"
CHOSEN, RECOVERED, BASELINE = "#e6ab02", "#2ca02c", "black"


@dataclass(frozen=True)
class Axis:
    """How one cost axis reads a trial, the baseline and the recovered variant."""

    name: str
    title: str
    label: str
    key: str  # the trial record's field
    scale: float  # plotted value = stored value / scale
    baseline: float | None
    recovered: float | None


def report_figures(run: RunData) -> dict[str, str]:
    """Name -> SVG for every figure the run's data supports."""
    figures = {}
    latency = latency_axis(run)
    if latency is not None:
        figures["pareto-latency"] = pareto_plot(run, latency)
    figures["pareto-flops"] = pareto_plot(run, flops_axis(run))
    if run.trials:
        figures["reward"] = reward_plot(run)
    plan = plan_ratios(run)
    if plan:
        figures["plan"] = svg_bars(
            list(plan),
            list(plan.values()),
            xlabel="fraction of channels pruned",
            title="Chosen plan: pruning ratio per group",
            name="plan",
            gid="plan-ratios",
            xlim=(0.0, 1.0),
            percent_x=True,
        )
    return figures


def latency_axis(run: RunData) -> Axis | None:
    """Latency as the ratio to the baseline artifact, measured in alternating rounds (the
    number the reward uses; stable under machine load, unlike milliseconds)."""
    if not any(t.latency_ratio is not None for t in run.finished):
        return None
    return Axis(
        "latency",
        "latency",
        "latency p50 ÷ baseline artifact's (measured)",
        "latency_ratio",
        1.0,
        baseline=1.0,
        recovered=run.best.latency_ratio if run.best else None,
    )


def flops_axis(run: RunData) -> Axis:
    return Axis(
        "flops",
        "FLOPs",
        "FLOPs (millions)",
        "flops",
        1e6,
        baseline=run.baseline.flops / 1e6 if run.baseline else None,
        recovered=run.best.flops / 1e6 if run.best else None,
    )


def pareto_plot(run: RunData, axis: Axis) -> str:
    """Validation accuracy (before recovery) against one cost, every finished trial a point."""
    name = f"pareto-{axis.name}"
    trials = [t for t in run.finished if getattr(t, axis.key) is not None]
    points = [(getattr(t, axis.key) / axis.scale, t.accuracy) for t in trials]
    front = pareto_front(points)
    series = [
        _points(name, "feasible", "within the budgets", trials, points, True),
        _points(name, "infeasible", "over a budget", trials, points, False),
        Series(
            "Pareto front",
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            kind="step",
            color=FRONT,
            gid=f"{name}-front",
            zorder=1.5,
        ),
    ]
    series += _marked_points(run, axis, name)
    references = []
    if axis.name == "flops" and has_flops_target(run.target):
        references.append(Reference(run.target.flops / axis.scale, "FLOPs budget"))
    top = None
    baseline_ms = run.baseline_latency_ms
    if axis.name == "latency" and baseline_ms:
        top = SecondaryAxis(
            f"ms (baseline artifact {baseline_ms:.3f} ms)",
            lambda r: r * baseline_ms,
            lambda ms: ms / baseline_ms,
        )
    return svg_plot(
        series,
        xlabel=axis.label,
        ylabel="validation accuracy (search, no fine-tuning)",
        title=f"Accuracy vs {axis.title}: {len(trials)} finished trials",
        name=name,
        references=references,
        percent_y=True,
        top_axis=top,
        # Slow modes (dynamic INT8 on convolutions: ~5x) would squeeze every useful
        # trial into the left edge of a linear axis; a log axis keeps both readable.
        xscale="log" if axis.name == "latency" else "linear",
    )


def _points(name, part, label, trials, points, feasible: bool) -> Series:
    chosen = [p for t, p in zip(trials, points, strict=True) if bool(t.feasible) == feasible]
    return Series(
        label,
        [p[0] for p in chosen],
        [p[1] for p in chosen],
        marker="o" if feasible else "x",
        color=FEASIBLE if feasible else INFEASIBLE,
        size=22,
        gid=f"{name}-{part}",
    )


def _marked_points(run: RunData, axis: Axis, name: str) -> list[Series]:
    """Baseline, the chosen trial and (a finished run) the chosen variant after recovery."""
    marks = []
    if run.baseline and axis.baseline is not None:
        accuracy = run.baseline.val_accuracy
        marks.append(
            Series(
                "baseline",
                [axis.baseline],
                [accuracy],
                marker="s",
                color=BASELINE,
                size=60,
                gid=f"{name}-baseline",
                zorder=4,
            )
        )
    trial = run.chosen_trial
    if trial is not None and getattr(trial, axis.key) is not None:
        x, y = getattr(trial, axis.key) / axis.scale, trial.accuracy
        label = f"chosen: trial #{trial.number}" + ("" if run.best else " (best so far)")
        marks.append(
            Series(
                label, [x], [y], marker="*", color=CHOSEN, size=220, gid=f"{name}-chosen", zorder=5
            )
        )
        recovered_accuracy = run.best.val_accuracy if run.best else None
        if axis.recovered is not None and recovered_accuracy is not None:
            marks.append(
                Series(
                    "",
                    [x, axis.recovered],
                    [y, recovered_accuracy],
                    kind="line",
                    color=RECOVERED,
                    linestyle=":",
                    zorder=3,
                )
            )
            marks.append(
                Series(
                    "chosen after recovery (model.onnx)",
                    [axis.recovered],
                    [recovered_accuracy],
                    marker="D",
                    color=RECOVERED,
                    size=60,
                    gid=f"{name}-recovered",
                    zorder=5,
                )
            )
    return marks


def reward_plot(run: RunData) -> str:
    """Reward per trial, the best feasible reward so far, and where trials failed."""
    finished = run.finished
    series = [
        Series(
            label,
            [t.number for t in group],
            [t.reward for t in group],
            marker=marker,
            color=color,
            size=22,
            gid=f"reward-{part}",
        )
        for part, label, marker, color, group in (
            (
                "feasible",
                "within the budgets",
                "o",
                FEASIBLE,
                [t for t in finished if t.feasible],
            ),
            (
                "infeasible",
                "over a budget",
                "x",
                INFEASIBLE,
                [t for t in finished if not t.feasible],
            ),
        )
    ]
    steps_x, steps_y, best = [], [], None
    for t in sorted(finished, key=lambda t: t.number):
        if t.feasible and (best is None or t.reward > best):
            best = t.reward
        if best is not None:
            steps_x.append(t.number)
            steps_y.append(best)
    series.append(
        Series(
            "best feasible so far", steps_x, steps_y, kind="step", color=FRONT, gid="reward-best"
        )
    )
    rewards = [t.reward for t in finished]
    if run.failed:
        floor = min(rewards) if rewards else 0.0
        series.append(
            Series(
                "failed (no reward)",
                [t.number for t in run.failed],
                [floor] * len(run.failed),
                marker="v",
                color="0.4",
                size=30,
                gid="reward-failed",
            )
        )
    return svg_plot(
        series,
        xlabel="trial number",
        ylabel="reward R",
        title="Search: reward per trial",
        name="reward",
    )


def plan_ratios(run: RunData) -> dict[str, float]:
    if run.best is not None:
        return dict(run.best.plan.ratios)
    trial = run.chosen_trial
    return dict(trial.plan) if trial else {}
