"""Latency of benchmark rows through compressor's one measurement interface.

Every artifact is timed by :class:`compressor.measure.latency.LatencyMeter` (a subprocess
that does nothing else) in alternating rounds against the same fp32 ONNX baseline, so the
baseline is re-measured interleaved with every row of the same run. PyTorch eager models
get their own meter (a separate worker process): torch and ONNX Runtime thread pools timed
in one process spin-wait against each other (../shared/STACK.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressor.config import MeasureConfig
from compressor.measure.latency import LatencyComparison, LatencyMeter


@dataclass(frozen=True)
class TimingPlan:
    """How long to time: alternating rounds and calls per round, per batch size."""

    threads: int
    rounds: int = 6
    runs_per_round: int = 15
    max_seconds: float = 8.0

    def config(self, batch_size: int) -> MeasureConfig:
        # Large batches run ~batch-size times longer per call: fewer calls per round.
        runs = self.runs_per_round if batch_size == 1 else max(3, self.runs_per_round // 3)
        return MeasureConfig(
            threads=self.threads,
            batch_size=batch_size,
            rounds=self.rounds,
            runs_per_round=runs,
            max_seconds=self.max_seconds,
        )


def row(comparison: LatencyComparison) -> dict:
    """Candidate p50/p90, the interleaved baseline's p50/p90 and the per-round ratio."""
    return {
        "p50_ms": comparison.candidate.p50_ms,
        "p90_ms": comparison.candidate.p90_ms,
        "runs": comparison.candidate.runs,
        "ratio_to_baseline": comparison.ratio,
        "baseline_p50_ms": comparison.baseline.p50_ms,
        "baseline_p90_ms": comparison.baseline.p90_ms,
    }


def time_onnx(
    artifacts: Mapping[str, Path],
    baseline: Path,
    example_inputs: Sequence[torch.Tensor],
    batch_sizes: Sequence[int],
    plan: TimingPlan,
) -> dict[str, dict[int, dict]]:
    """``{name: {batch: row}}`` for each ONNX artifact, each timed against ``baseline``.

    The baseline itself is a row too (``"baseline"``): the median of its interleaved p50s
    over the run, so drifting load shows up as its spread (``baseline_p50_range_ms``).
    """
    paths = {name: Path(path) for name, path in artifacts.items()}
    return _time_against(paths, Path(baseline), example_inputs, batch_sizes, plan, eager=False)


def time_eager(
    models: Mapping[str, nn.Module],
    baseline: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    batch_sizes: Sequence[int],
    plan: TimingPlan,
) -> dict[str, dict[int, dict]]:
    """The same for PyTorch eager modules (``models`` may be empty: baseline only)."""
    return _time_against(models, baseline, example_inputs, batch_sizes, plan, eager=True)


def _time_against(items, baseline, example_inputs, batch_sizes, plan, *, eager: bool):
    out: dict[str, dict[int, dict]] = {name: {} for name in items}
    out["baseline"] = {}
    for batch in batch_sizes:
        with LatencyMeter(plan.config(batch), example_inputs, eager=eager) as meter:
            meter.set_baseline(baseline)
            # The baseline is timed against itself when nothing else is asked for.
            timed = dict(items) or {"baseline-self": baseline}
            rows = {name: row(meter.compare(item)) for name, item in timed.items()}
        for name in items:
            out[name][batch] = rows[name]
        out["baseline"][batch] = _baseline_summary(list(rows.values()))
    return out


def _baseline_summary(rows: list[dict]) -> dict:
    p50s = [r["baseline_p50_ms"] for r in rows]
    return {
        "p50_ms": statistics.median(p50s),
        "p90_ms": statistics.median(r["baseline_p90_ms"] for r in rows),
        "baseline_p50_range_ms": [min(p50s), max(p50s)],
        "ratio_to_baseline": 1.0,
    }
