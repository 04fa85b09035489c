"""Building and scoring one candidate: prune -> re-calibrate BatchNorm -> measure -> reward."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from compressor.actions.deploy import DeploySpec
from compressor.actions.depth import DepthUnit, remove_units
from compressor.actions.prune import ChannelGroup
from compressor.actions.pruner import ChannelPruner, Pruner
from compressor.config import CompressConfig, LatencyTarget
from compressor.errors import CompressorError
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyComparison, LatencyMeter
from compressor.recover import recalibrate_batchnorm
from compressor.reward import Term, reward
from compressor.search.artifact import score_artifact
from compressor.search.space import DepthChoice, fit_to_budget, units_to_remove


@dataclass
class SearchContext:
    """Everything a trial needs, fixed for the whole search."""

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]
    calibration: Sequence  # fixed training batches for BatchNorm re-calibration
    groups: list[ChannelGroup]
    config: CompressConfig
    ignored_layers: tuple[str, ...]
    flops_budget: int
    baseline_flops: int
    meter: LatencyMeter | None = None
    extra: dict = field(default_factory=dict)
    workdir: Path | None = None  # scratch folder for candidate artifacts
    pruner: Pruner | None = None  # None = torch-pruning channels with config.prune settings
    # FLOPs by kept-channel counts: the budget fit asks for the same shapes again and again.
    flops_cache: dict[tuple, int] = field(default_factory=dict)
    depth_units: list[DepthUnit] = field(default_factory=list)  # removable blocks / layers
    # --max-accuracy-drop: the lowest validation accuracy a feasible trial may have.
    accuracy_floor: float | None = None

    def __post_init__(self) -> None:
        if self.pruner is None:
            self.pruner = ChannelPruner.from_config(
                self.model, self.example_inputs, self.config.prune, self.ignored_layers
            )


def _prune(
    ctx: SearchContext, ratios: Mapping[str, float], removed: Sequence[str] = ()
) -> tuple[nn.Module, dict[str, int]]:
    # Widths first: group names (and the units) are paths in the unpruned numbering, which
    # removing units would shift.
    if not any(ratio > 0 for ratio in ratios.values()):  # depth only: no dependency graph
        kept = {group.name: group.channels for group in ctx.groups}
        return remove_units(ctx.model, removed), kept
    model, kept = ctx.pruner.prune(ctx.model, ratios)
    return remove_units(model, removed, inplace=True), kept


def build_candidate(
    ctx: SearchContext, ratios: dict[str, float], removed: Sequence[str] = ()
) -> tuple[nn.Module, dict[str, int]]:
    """The pruned copy for ``ratios`` (less the ``removed`` units) with BatchNorm
    statistics re-estimated (adaptive BN)."""
    model, kept = _prune(ctx, ratios, removed)
    recalibrate_batchnorm(model, ctx.calibration, ctx.config.search.calibration_samples)
    return model, kept


def flops_of_plan(
    ctx: SearchContext, ratios: Mapping[str, float], removed: Sequence[str] = ()
) -> int:
    """FLOPs of the model pruned by ``ratios`` less the ``removed`` units (no BatchNorm
    work; used to fit the budget).

    With torch-pruning's channel groups, FLOPs depend only on how many channels each group
    keeps, not on which, so plans with the same kept counts share one (cached) count.
    """
    if not isinstance(ctx.pruner, ChannelPruner):  # a task's own pruner: no shortcut
        return count_flops(_prune(ctx, ratios, removed)[0], ctx.example_inputs)
    shape = (ctx.pruner.kept_counts(ctx.groups, ratios), tuple(sorted(removed)))
    if shape not in ctx.flops_cache:
        ctx.flops_cache[shape] = count_flops(_prune(ctx, ratios, removed)[0], ctx.example_inputs)
    return ctx.flops_cache[shape]


def plan_for(
    ctx: SearchContext, preferences: Mapping[str, float], removed: Sequence[str] = ()
) -> tuple[dict[str, float], bool]:
    """Per-group ratios along ``preferences`` that, with the ``removed`` units gone, just
    fit the FLOPs budget."""
    return fit_to_budget(
        preferences,
        lambda ratios: flops_of_plan(ctx, ratios, removed),
        ctx.flops_budget,
        ctx.config.prune.max_ratio,
    )


def removed_units(ctx: SearchContext, depth: DepthChoice | None) -> tuple[str, ...]:
    """The units a trial's depth move removes (none without one)."""
    if depth is None or not ctx.depth_units:
        return ()
    return units_to_remove(ctx.depth_units, depth, ctx.baseline_flops - ctx.flops_budget)


def score_candidate(
    ctx: SearchContext,
    preferences: Mapping[str, float],
    deploy: DeploySpec | None = None,
    depth: DepthChoice | None = None,
) -> dict:
    """Fit, build, measure and reward one plan; returns the trial's metrics.

    With ``deploy`` the candidate is scored as its ONNX artifact (accuracy and latency in
    ONNX Runtime); without, as the pruned PyTorch model. ``depth`` removes units first and
    the widths are fitted to what is left of the budget.
    """
    started = time.perf_counter()
    removed = removed_units(ctx, depth)
    ratios, _ = plan_for(ctx, preferences, removed)
    model, kept = build_candidate(ctx, ratios, removed)
    flops = count_flops(model, ctx.example_inputs)
    metrics = {
        "flops": flops,
        "flops_ratio": flops / ctx.baseline_flops,
        "params": count_params(model),
        "ratios": ratios,
        "channels": kept,
        "removed_units": list(removed),
    }
    if deploy is not None:
        accuracy, latency, metrics["artifact"] = score_artifact(ctx, model, deploy)
    else:
        accuracy = ctx.evaluate(model)
        latency = ctx.meter.compare(model) if ctx.meter is not None else None
    metrics["accuracy"] = checked_metric(accuracy)
    terms = [Term("flops", flops, ctx.flops_budget, budget=True)]
    if latency is not None:
        metrics.update(
            latency_ms=latency.candidate.p50_ms,
            latency_p90_ms=latency.candidate.p90_ms,
            baseline_latency_ms=latency.baseline.p50_ms,
            latency_ratio=latency.ratio,
        )
        terms.append(latency_term(latency, ctx.config.target_latency))
    search = ctx.config.search
    metrics["reward"] = reward(metrics["accuracy"], terms, search.reward, search.alpha, search.beta)
    metrics["feasible"] = flops <= ctx.flops_budget and within_floor(ctx, metrics["accuracy"])
    metrics["seconds"] = time.perf_counter() - started
    return metrics


def within_floor(ctx: SearchContext, accuracy: float) -> bool:
    """Whether ``accuracy`` keeps to ``--max-accuracy-drop`` (always, without one)."""
    return ctx.accuracy_floor is None or accuracy >= ctx.accuracy_floor - 1e-9


def latency_term(latency: LatencyComparison, target: LatencyTarget | None) -> Term:
    """The reward's latency term: a budget when the user set a target, else a preference.

    A ratio target is compared with the measured ratio to the baseline (stable under load);
    a millisecond target with the candidate's median.
    """
    if target is None:
        return Term("latency", latency.ratio, 1.0, budget=False)
    if target.is_ratio:
        return Term("latency", latency.ratio, target.value, budget=True)
    return Term("latency", latency.candidate.p50_ms, target.value, budget=True)


def checked_metric(value) -> float:
    """The user's metric as a float in [0, 1]; anything else is an error, not a score."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CompressorError(f"evaluate() returned {value!r}, not a number") from None
    if not math.isfinite(number):
        raise CompressorError(f"evaluate() returned {number}, not a finite number")
    if not 0.0 <= number <= 1.0:
        raise CompressorError(f"evaluate() returned {number:g}; an accuracy in [0, 1] is expected")
    return number
