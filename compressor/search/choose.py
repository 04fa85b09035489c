"""Choosing the variant: the top trials re-timed side by side, then the best reward.

Each trial's latency was measured against the baseline at its own moment; on a shared
machine those moments differ in load, and small models' ratios moved by +-30 % between
re-runs, more than the accuracy gaps between the top candidates. So before choosing, the
best ``count`` feasible trials are rebuilt and timed *together* in the same interleaved
rounds (``LatencyMeter.compare_many``, until every ratio's interval is within
``measure.ratio_halfwidth``), their rewards recomputed with those ratios, and the highest
is chosen. Accuracy is each trial's own (at the highest fidelity it reached).

The finished reference pipelines (the unpruned model fp32 / fused / INT8,
``seeds.reference_params``) are timed in the same rounds whatever their rank: a feasible
one competes with the searched plans on equal figures, and an infeasible one, which is
never chosen, gives the report a same-load measure of what the targets cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from compressor.measure.latency import LatencyComparison
from compressor.records import Retimed
from compressor.search.candidate import (
    build_candidate,
    complexity_terms,
    make_artifact,
    reward_of,
)
from compressor.search.context import Resources, SearchSettings
from compressor.search.duplicates import distinct, plan_number
from compressor.search.loop import trial_cost
from compressor.search.seeds import REFERENCE_ATTR
from compressor.search.space import FLOPS_LEVEL_PARAM, QUANTIZATION_PARAM, spec_from_params

RETIMED = 5  # top feasible trials re-timed together (with the references) before choosing


def top_feasible(study: optuna.Study, count: int, fastest: bool = False) -> list[FrozenTrial]:
    """The ``count`` highest-reward finished trials within every budget (``fastest``: the
    ``count`` fastest, as ``--max-accuracy-drop`` ranks them), each plan once (a duplicate's
    original stands for it: timing one artifact twice would take a finalist's place)."""
    feasible = [
        t
        for t in distinct(study.get_trials(deepcopy=False))
        if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")
    ]
    if fastest:
        return sorted(feasible, key=lambda t: (trial_cost(t), -t.value))[:count]
    return sorted(feasible, key=lambda t: t.value, reverse=True)[:count]


def finished_references(study: optuna.Study) -> list[FrozenTrial]:
    """The reference pipelines' finished trials, within the budgets or not."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and t.user_attrs.get(REFERENCE_ATTR)
    ]


def retimed_set(study: optuna.Study, count: int, fastest: bool = False) -> list[FrozenTrial]:
    """What is timed together before choosing: the top ``count`` feasible trials (see
    :func:`top_feasible`) and every finished reference pipeline, each plan once."""
    top = top_feasible(study, count, fastest)
    numbers = {t.number for t in top}
    # A reference may repeat a top trial's plan (one group: its sensitivity seed prunes
    # nothing): the plan is timed once, as the top trial.
    return top + [t for t in finished_references(study) if plan_number(t) not in numbers]


def retime(
    settings: SearchSettings, resources: Resources, trials: list[FrozenTrial]
) -> list[Retimed]:
    """Rebuild ``trials``' candidates and time them together; their rewards recomputed."""
    with tempfile.TemporaryDirectory(prefix="retime-", dir=resources.workdir) as scratch:
        models = {t.number: _candidate(settings, t, Path(scratch)) for t in trials}
        rounds = 2 * settings.config.measure.rounds
        timed = resources.meter.compare_many(models, rounds=rounds)
    return [_retimed(settings, t, timed[t.number]) for t in trials]


def choose_retimed(
    study: optuna.Study,
    settings: SearchSettings,
    resources: Resources | None,
    count: int = RETIMED,
    fastest: bool = False,
) -> tuple[FrozenTrial | None, tuple[Retimed, ...]]:
    """The best feasible trial after re-timing :func:`retimed_set` together (None: no
    feasible trial); ``fastest`` picks the lowest re-timed latency ratio instead of the
    highest reward. Only feasible trials are chosen; the records cover every re-timed one.
    Without a latency meter, or with one trial to time, nothing is re-timed."""
    timed = retimed_set(study, count, fastest)
    feasible = [t for t in timed if t.user_attrs.get("feasible")]
    if not feasible:
        return None, ()
    if resources is None or resources.meter is None or len(timed) < 2:
        return feasible[0], ()
    retimed = retime(settings, resources, timed)
    best = _best([r for r in retimed if r.feasible], fastest)
    return next(t for t in feasible if t.number == best.trial), tuple(retimed)


def _best(retimed: list[Retimed], fastest: bool) -> Retimed:
    if fastest:
        return min(retimed, key=lambda r: (r.latency_ratio, -r.reward))
    return max(retimed, key=lambda r: r.reward)


def _candidate(settings: SearchSettings, trial: FrozenTrial, folder: Path):
    removed = tuple(trial.user_attrs.get("removed_units") or ())  # depth (issue 14)
    multiple = trial.user_attrs.get("round_to")  # the widths its artifact's kernels favour
    model, _ = build_candidate(settings, trial.user_attrs["ratios"], removed, multiple)
    if QUANTIZATION_PARAM not in trial.params:  # scored as the PyTorch model
        return model
    spec = spec_from_params(trial.params)
    return make_artifact(settings, model, spec, folder / f"trial-{trial.number}.onnx").path


def _retimed(settings: SearchSettings, trial: FrozenTrial, latency: LatencyComparison) -> Retimed:
    budget = settings.flops_budget
    if FLOPS_LEVEL_PARAM in trial.params:  # only a latency target: the level was searched
        budget = int(trial.params[FLOPS_LEVEL_PARAM] * settings.baseline_flops)
    terms = complexity_terms(settings, trial.user_attrs["flops"], budget, latency)
    return Retimed(
        trial=trial.number,
        reward_before=trial.value,
        reward=reward_of(settings, trial.user_attrs["accuracy"], terms),
        latency_ratio=latency.ratio,
        latency_ratio_low=latency.ratio_low,
        latency_ratio_high=latency.ratio_high,
        latency_ms=latency.candidate.p50_ms,
        rounds=latency.rounds,
        feasible=bool(trial.user_attrs.get("feasible")),
    )
