"""Building and scoring one candidate: prune -> re-calibrate BatchNorm -> measure -> reward."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from compressor.actions.prune import ChannelGroup
from compressor.actions.pruner import ChannelPruner, Pruner
from compressor.config import CompressConfig
from compressor.errors import CompressorError
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyMeter
from compressor.recover import recalibrate_batchnorm
from compressor.reward import Term, reward
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
    pruner: Pruner | None = None  # None = torch-pruning channels with config.prune settings


def _prune(ctx: SearchContext, ratios: Mapping[str, float]) -> tuple[nn.Module, dict[str, int]]:
    prune = ctx.config.prune
    pruner = ctx.pruner or ChannelPruner(ctx.model, ctx.example_inputs,
                                         importance=prune.importance, round_to=prune.round_to,
                                         ignored_layers=ctx.ignored_layers)
    return pruner.prune(ctx.model, ratios)


def build_candidate(ctx: SearchContext, ratios: dict[str, float]) -> tuple[nn.Module, dict[str, int]]:
    """The pruned copy for ``ratios`` with BatchNorm statistics re-estimated (adaptive BN)."""
    model, kept = _prune(ctx, ratios)
    recalibrate_batchnorm(model, ctx.calibration, ctx.config.search.calibration_samples)
    return model, kept


def flops_of_plan(ctx: SearchContext, ratios: Mapping[str, float]) -> int:
    """FLOPs of the model pruned by ``ratios`` (no BatchNorm work; used to fit the budget)."""
    model, _ = _prune(ctx, ratios)
    return count_flops(model, ctx.example_inputs)


def plan_for(ctx: SearchContext, preferences: Mapping[str, float]) -> tuple[dict[str, float], bool]:
    """Per-group ratios along ``preferences`` that just fit the FLOPs budget."""
    return fit_to_budget(preferences, lambda ratios: flops_of_plan(ctx, ratios), ctx.flops_budget,
                         ctx.config.prune.max_ratio)


def score_candidate(ctx: SearchContext, preferences: Mapping[str, float]) -> dict:
    """Fit, build, measure and reward one plan; returns the trial's metrics."""
    started = time.perf_counter()
    ratios, _ = plan_for(ctx, preferences)
    model, kept = build_candidate(ctx, ratios)
    flops = count_flops(model, ctx.example_inputs)
    accuracy = checked_metric(ctx.evaluate(model))
    metrics = {"accuracy": accuracy, "flops": flops, "flops_ratio": flops / ctx.baseline_flops,
               "params": count_params(model), "ratios": ratios, "channels": kept}
    terms = [Term("flops", flops, ctx.flops_budget, budget=True)]
    if ctx.meter is not None:
        latency = ctx.meter.compare(model)
        metrics.update(latency_ms=latency.candidate.p50_ms, latency_p90_ms=latency.candidate.p90_ms,
                       baseline_latency_ms=latency.baseline.p50_ms, latency_ratio=latency.ratio)
        # No latency target yet: latency is a soft preference against the baseline.
        terms.append(Term("latency", latency.ratio, 1.0, budget=False))
    search = ctx.config.search
    metrics["reward"] = reward(accuracy, terms, search.reward, search.alpha, search.beta)
    metrics["feasible"] = flops <= ctx.flops_budget
    metrics["seconds"] = time.perf_counter() - started
    return metrics


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
