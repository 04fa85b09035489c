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
from compressor.actions.prune import ChannelGroup
from compressor.actions.pruner import ChannelPruner, ExcludedGroup, Pruner
from compressor.config import CompressConfig, LatencyTarget
from compressor.errors import CompressorError
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyComparison, LatencyMeter
from compressor.recover import recalibrate_batchnorm
from compressor.reward import Term, reward
from compressor.search.artifact import score_artifact
from compressor.search.space import fit_to_budget


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
    # Groups left whole because pruning them breaks the forward (issue 17).
    excluded_groups: tuple[ExcludedGroup, ...] = ()
    # FLOPs by kept-channel counts: the budget fit asks for the same shapes again and again.
    flops_cache: dict[tuple[int, ...], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pruner is None:
            self.pruner = ChannelPruner.from_config(
                self.model, self.example_inputs, self.config.prune, self.ignored_layers
            )


def _prune(ctx: SearchContext, ratios: Mapping[str, float]) -> tuple[nn.Module, dict[str, int]]:
    return ctx.pruner.prune(ctx.model, ratios)


def build_candidate(
    ctx: SearchContext, ratios: dict[str, float]
) -> tuple[nn.Module, dict[str, int]]:
    """The pruned copy for ``ratios`` with BatchNorm statistics re-estimated (adaptive BN)."""
    model, kept = _prune(ctx, ratios)
    recalibrate_batchnorm(model, ctx.calibration, ctx.config.search.calibration_samples)
    return model, kept


def flops_of_plan(ctx: SearchContext, ratios: Mapping[str, float]) -> int:
    """FLOPs of the model pruned by ``ratios`` (no BatchNorm work; used to fit the budget).

    With torch-pruning's channel groups, FLOPs depend only on how many channels each group
    keeps, not on which, so plans with the same kept counts share one (cached) count.
    """
    if not isinstance(ctx.pruner, ChannelPruner):  # a task's own pruner: no shortcut
        return count_flops(_prune(ctx, ratios)[0], ctx.example_inputs)
    shape = ctx.pruner.kept_counts(ctx.groups, ratios)
    if shape not in ctx.flops_cache:
        ctx.flops_cache[shape] = count_flops(_prune(ctx, ratios)[0], ctx.example_inputs)
    return ctx.flops_cache[shape]


def plan_for(ctx: SearchContext, preferences: Mapping[str, float]) -> tuple[dict[str, float], bool]:
    """Per-group ratios along ``preferences`` that just fit the FLOPs budget."""
    return fit_to_budget(
        preferences,
        lambda ratios: flops_of_plan(ctx, ratios),
        ctx.flops_budget,
        ctx.config.prune.max_ratio,
    )


def score_candidate(
    ctx: SearchContext, preferences: Mapping[str, float], deploy: DeploySpec | None = None
) -> dict:
    """Fit, build, measure and reward one plan; returns the trial's metrics.

    With ``deploy`` the candidate is scored as its ONNX artifact (accuracy and latency in
    ONNX Runtime); without, as the pruned PyTorch model.
    """
    started = time.perf_counter()
    ratios, _ = plan_for(ctx, preferences)
    model, kept = build_candidate(ctx, ratios)
    flops = count_flops(model, ctx.example_inputs)
    metrics = {
        "flops": flops,
        "flops_ratio": flops / ctx.baseline_flops,
        "params": count_params(model),
        "ratios": ratios,
        "channels": kept,
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
    metrics["feasible"] = flops <= ctx.flops_budget
    metrics["seconds"] = time.perf_counter() - started
    return metrics


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
