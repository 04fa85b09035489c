"""Choosing the variant: the top trials re-timed side by side, then the best reward.

Each trial's latency was measured against the baseline at its own moment; on a shared
machine those moments differ in load, and small models' ratios moved by +-30 % between
re-runs (issue 15), more than the accuracy gaps between the top candidates. So before
choosing, the best ``count`` feasible trials are rebuilt and timed *together* in the same
interleaved rounds (``LatencyMeter.compare_many``, until every ratio's interval is within
``measure.ratio_halfwidth``), their rewards recomputed with those ratios, and the highest
is chosen. Accuracy is each trial's own (at the highest fidelity it reached).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from compressor.actions.deploy import DeploySpec
from compressor.measure.latency import LatencyComparison
from compressor.reward import Term, reward
from compressor.search.artifact import make_artifact
from compressor.search.candidate import SearchContext, build_candidate, latency_term
from compressor.search.space import FLOPS_LEVEL_PARAM, FUSION_PARAM, QUANTIZATION_PARAM

RETIMED = 5  # trials re-timed together before choosing


@dataclass(frozen=True)
class Retimed:
    """One of the top trials after the joint re-timing."""

    trial: int
    reward_before: float  # with the latency measured during the search
    reward: float  # with the joint re-timing's ratio
    latency: LatencyComparison

    def to_json(self) -> dict:
        return {
            "trial": self.trial,
            "reward_before": self.reward_before,
            "reward": self.reward,
            "latency_ratio": self.latency.ratio,
            "latency_ratio_low": self.latency.ratio_low,
            "latency_ratio_high": self.latency.ratio_high,
            "latency_ms": self.latency.candidate.p50_ms,
            "rounds": self.latency.rounds,
        }


def top_feasible(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The ``count`` highest-reward finished trials within the FLOPs budget."""
    feasible = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")
    ]
    return sorted(feasible, key=lambda t: t.value, reverse=True)[:count]


def retime(ctx: SearchContext, trials: list[FrozenTrial]) -> list[Retimed]:
    """Rebuild ``trials``' candidates and time them together; their rewards recomputed."""
    with tempfile.TemporaryDirectory(prefix="retime-", dir=ctx.workdir) as scratch:
        models = {t.number: _candidate(ctx, t, Path(scratch)) for t in trials}
        timed = ctx.meter.compare_many(models, rounds=2 * ctx.config.measure.rounds)
    return [
        Retimed(t.number, t.value, _reward(ctx, t, timed[t.number]), timed[t.number])
        for t in trials
    ]


def choose(
    ctx: SearchContext, study: optuna.Study, count: int = RETIMED
) -> tuple[FrozenTrial | None, list[Retimed]]:
    """The best feasible trial after re-timing the top ``count`` together (None: no
    feasible trial). Without a latency meter (or a single candidate) nothing is re-timed."""
    top = top_feasible(study, count)
    if ctx.meter is None or len(top) < 2:
        return (top[0] if top else None), []
    retimed = retime(ctx, top)
    best = max(retimed, key=lambda r: r.reward)
    return next(t for t in top if t.number == best.trial), retimed


def _candidate(ctx: SearchContext, trial: FrozenTrial, folder: Path):
    model, _ = build_candidate(ctx, trial.user_attrs["ratios"])
    if QUANTIZATION_PARAM not in trial.params:  # scored as the PyTorch model
        return model
    spec = DeploySpec(trial.params[QUANTIZATION_PARAM], trial.params[FUSION_PARAM])
    return make_artifact(ctx, model, spec, folder / f"trial-{trial.number}.onnx").path


def _reward(ctx: SearchContext, trial: FrozenTrial, latency: LatencyComparison) -> float:
    budget = ctx.flops_budget
    if FLOPS_LEVEL_PARAM in trial.params:  # only a latency target: the level was searched
        budget = int(trial.params[FLOPS_LEVEL_PARAM] * ctx.baseline_flops)
    terms = [
        Term("flops", trial.user_attrs["flops"], budget, budget=True),
        latency_term(latency, ctx.config.target_latency),
    ]
    search = ctx.config.search
    return reward(trial.user_attrs["accuracy"], terms, search.reward, search.alpha, search.beta)
