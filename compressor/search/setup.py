"""What every process that runs trials sets up the same way: the search context (channel
groups, FLOPs budget, calibration batches) and, around the search, the latency meter with the
baseline artifact timed on *this* machine. ``compress`` and ``compress worker`` share it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from compressor.actions.depth import DepthUnit, declared_units, find_units
from compressor.actions.export import export_onnx
from compressor.actions.pruner import ChannelPruner
from compressor.config import CompressConfig
from compressor.errors import UserInputError
from compressor.measure.latency import LatencyMeter
from compressor.recover import first_batches
from compressor.search.candidate import SearchContext, flops_of_plan, plan_for
from compressor.tasks import Task


def search_context(
    task: Task,
    config: CompressConfig,
    baseline_flops: int,
    baseline_accuracy: float | None = None,
) -> SearchContext:
    """The fixed part of every trial. Raises :class:`UserInputError` when nothing can be
    pruned. ``baseline_accuracy`` (validation) sets the ``--max-accuracy-drop`` floor."""
    model = task.model.eval()
    # Without a FLOPs target the budget is the whole model; each trial samples its own level.
    budget = config.target_flops.resolve(baseline_flops) if config.target_flops else baseline_flops
    ignored = tuple(task.ignored_layers) + tuple(config.prune.ignore_layers)
    pruner = task.pruner or ChannelPruner.from_config(
        model, task.example_inputs, config.prune, ignored
    )
    ctx = SearchContext(
        model=model,
        example_inputs=task.example_inputs,
        evaluate=task.evaluate,
        calibration=first_batches(
            task.calibration_data or task.train_data, config.search.calibration_samples
        ),
        groups=pruner.groups(),
        config=config,
        ignored_layers=ignored,
        flops_budget=budget,
        baseline_flops=baseline_flops,
        pruner=pruner,
        depth_units=depth_units(task, config),
        accuracy_floor=accuracy_floor(config, baseline_accuracy),
    )
    if not ctx.groups:
        raise UserInputError("the model has no prunable convolution or linear layers")
    return ctx


def accuracy_floor(config: CompressConfig, baseline_accuracy: float | None) -> float | None:
    """The lowest feasible validation accuracy under ``--max-accuracy-drop`` (points / 100:
    metrics are fractions in [0, 1])."""
    if config.max_accuracy_drop is None:
        return None
    if baseline_accuracy is None:
        raise ValueError("--max-accuracy-drop needs the baseline's validation accuracy")
    return baseline_accuracy - config.max_accuracy_drop / 100.0


def depth_units(task: Task, config: CompressConfig) -> list[DepthUnit]:
    """The task's declared depth units, else those found in its model; none with
    ``prune.depth`` off. ``prune.depth_units`` (a glob) restricts either."""
    if not config.prune.depth:
        return []
    model, pattern = task.model.eval(), config.prune.depth_units
    if task.depth_units is not None:
        return declared_units(model, task.example_inputs, task.depth_units, pattern)
    return find_units(model, task.example_inputs, pattern)


def check_reachable(ctx: SearchContext, budget: int) -> float:
    """Refuse a budget below the smallest reachable FLOPs; return the uniform ratio at it."""
    ratios, fits = plan_for(ctx, {group.name: 1.0 for group in ctx.groups})
    if not fits:
        smallest = flops_of_plan(ctx, ratios)
        raise UserInputError(
            f"target {budget / 1e6:.3g}M FLOPs cannot be reached: the smallest reachable is "
            f"{smallest / 1e6:.3g}M ({smallest / ctx.baseline_flops:.2f} of the model) at "
            f"prune.max_ratio {ctx.config.prune.max_ratio}"
        )
    return max(ratios.values())


@contextlib.contextmanager
def measuring(ctx: SearchContext, example_inputs) -> Iterator[Path | None]:
    """Give ``ctx`` a scratch folder and a latency meter whose baseline is timed here.

    Yields the baseline artifact (the fp32 ONNX export of the unpruned model; None with
    ``deploy.export`` off, when the PyTorch model is the baseline). With ``measure.threads``
    set, this process's own torch work uses that many threads too, so N processes on one
    machine can each be given their share of the cores.
    """
    config = ctx.config
    previous_threads = torch.get_num_threads()
    if config.measure.threads:
        torch.set_num_threads(config.measure.threads)
    try:
        with (
            LatencyMeter(config.measure, example_inputs) as meter,
            tempfile.TemporaryDirectory(prefix="compressor-") as workdir,
        ):
            ctx.workdir = Path(workdir)
            baseline_artifact = (
                export_onnx(ctx.model, example_inputs, ctx.workdir / "baseline.onnx")
                if config.deploy.export
                else None
            )
            meter.set_baseline(baseline_artifact or ctx.model)
            ctx.meter = meter
            yield baseline_artifact
    finally:
        torch.set_num_threads(previous_threads)
