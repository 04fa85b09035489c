"""Choosing after the joint re-timing: which trials are timed together, which may be chosen,
and how the report states the reference pipelines with those figures.

A fake meter stands in for the timing (no model is built or run), so the rule is checked on
exact ratios; the end-to-end runs of test_deploy_search.py / test_scale_out.py time real
artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from compressor.config import CompressConfig
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.records import Baseline, Chosen, Plan, Retimed, TrialRecord
from compressor.report.run_data import RunData
from compressor.report.summary import reference_lines
from compressor.reward import Term, soft_reward
from compressor.search import choose
from compressor.search.choose import RETIMED, choose_retimed, retimed_set
from compressor.search.seeds import REFERENCE_ATTR

BUDGET = 50_000_000  # FLOPs
SEARCHED = 6  # one more feasible searched plan than RETIMED: the last is not re-timed
INFEASIBLE_REF, FEASIBLE_REF, FAILED_REF = SEARCHED, SEARCHED + 1, SEARCHED + 2
# Re-timed ratios: the infeasible reference is the fastest, then the feasible one.
RATIOS = {**{n: 0.6 for n in range(SEARCHED)}, INFEASIBLE_REF: 0.2, FEASIBLE_REF: 0.3}


@dataclass
class FakeMeter:
    """``compare_many`` answering each trial's ratio from :data:`RATIOS`."""

    timed: list[set] = field(default_factory=list)

    def compare_many(self, models, rounds=None):
        self.timed.append(set(models))
        return {number: _comparison(RATIOS[number]) for number in models}


def _comparison(ratio: float) -> LatencyComparison:
    return LatencyComparison(
        candidate=LatencyStats(ratio, ratio, 30),
        baseline=LatencyStats(1.0, 1.0, 30),
        ratio=ratio,
        ratio_low=0.95 * ratio,
        ratio_high=1.05 * ratio,
        rounds=8,
    )


def _trial(value, accuracy, flops, feasible, reference=None, state=TrialState.COMPLETE):
    attrs = {"accuracy": accuracy, "flops": flops, "feasible": feasible, "latency_ratio": 0.6}
    if reference:
        attrs[REFERENCE_ATTR] = reference
    return create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None, user_attrs=attrs
    )


def _study(references: bool = True, searched: int = SEARCHED) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for number in range(searched):  # rewards 0.90, 0.89, ...: #0 ranks first
        study.add_trial(_trial(0.90 - 0.01 * number, 0.90 - 0.01 * number, 45_000_000, True))
    if references:
        study.add_trial(_trial(0.50, 0.99, 2 * BUDGET, False, "unpruned none"))
        study.add_trial(_trial(0.80, 0.95, BUDGET, True, "unpruned static_ort + fused"))
        study.add_trial(_trial(None, 0.0, 0, False, "unpruned dynamic", TrialState.FAIL))
    return study


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    monkeypatch.setattr(choose, "_candidate", lambda settings, trial, folder: trial.number)
    config = CompressConfig.from_dict({"measure": {"rounds": 3}})
    settings = SimpleNamespace(config=config, flops_budget=BUDGET, baseline_flops=2 * BUDGET)
    return settings, SimpleNamespace(workdir=tmp_path, meter=FakeMeter())


def _expected_reward(accuracy: float, flops: float, ratio: float) -> float:
    terms = [Term("flops", flops, BUDGET), Term("latency", ratio, 1.0, budget=False)]
    return soft_reward(accuracy, terms, -0.07, -0.07)


@pytest.mark.parametrize("fastest", [False, True])
def test_references_are_retimed_with_the_top_but_only_a_feasible_one_is_chosen(fakes, fastest):
    settings, resources = fakes
    best, records = choose_retimed(_study(), settings, resources, fastest=fastest)

    top = set(range(RETIMED))  # #5, feasible but sixth by reward, is not re-timed
    assert resources.meter.timed == [top | {INFEASIBLE_REF, FEASIBLE_REF}]  # not the failed one
    by_trial = {r.trial: r for r in records}
    assert {n for n, r in by_trial.items() if not r.feasible} == {INFEASIBLE_REF}
    # With the re-timed figures the infeasible reference has the highest reward and the
    # lowest ratio; the choice takes the feasible reference in either mode instead.
    infeasible, feasible = by_trial[INFEASIBLE_REF], by_trial[FEASIBLE_REF]
    assert infeasible.reward == pytest.approx(_expected_reward(0.99, 2 * BUDGET, 0.2))
    assert feasible.reward == pytest.approx(_expected_reward(0.95, BUDGET, 0.3))
    assert by_trial[0].reward == pytest.approx(_expected_reward(0.90, 45_000_000, 0.6))
    assert infeasible.reward > feasible.reward > by_trial[0].reward
    assert best.number == FEASIBLE_REF
    assert (feasible.reward_before, feasible.latency_ratio, feasible.rounds) == (0.80, 0.3, 8)


def test_without_references_the_top_feasible_are_retimed(fakes):
    settings, resources = fakes
    best, records = choose_retimed(_study(references=False), settings, resources)
    assert resources.meter.timed == [set(range(RETIMED))]
    assert best.number == 0 and all(r.feasible for r in records)


def test_one_feasible_trial_is_still_timed_with_the_references_for_the_report(fakes):
    settings, resources = fakes
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0.50, 0.99, 2 * BUDGET, False, "unpruned none"))
    study.add_trial(_trial(0.90, 0.90, 45_000_000, True))
    assert [t.number for t in retimed_set(study, RETIMED)] == [1, 0]  # the top, then refs
    best, records = choose_retimed(study, settings, resources)
    assert best.number == 1  # the only feasible trial, whatever the re-timing says
    assert resources.meter.timed == [{0, 1}]
    assert {r.trial: r.feasible for r in records} == {0: False, 1: True}


def test_nothing_feasible_means_no_choice_and_no_timing(fakes):
    settings, resources = fakes
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0.50, 0.99, 2 * BUDGET, False, "unpruned none"))
    study.add_trial(_trial(0.40, 0.80, 2 * BUDGET, False))
    assert choose_retimed(study, settings, resources) == (None, ())
    assert resources.meter.timed == []


def _retimed(trial: int, ratio: float) -> Retimed:
    return Retimed(trial, 0.9, 0.9, ratio, ratio, 8, 0.95 * ratio, 1.05 * ratio, True)


def test_reference_lines_use_the_retimed_ratios_when_there_are_some(tmp_path):
    reference = dict(state="COMPLETE", reward=0.5, accuracy=0.985, flops_ratio=1.0)
    trials = [
        TrialRecord(number=0, state="COMPLETE", reward=0.9, accuracy=0.95, feasible=True),
        # Timed at 0.80 during the search, 0.40 with the finalists.
        TrialRecord(
            number=1, latency_ratio=0.8, feasible=False, reference="unpruned none", **reference
        ),
        # Not re-timed (no meter then): its search-time figure and the chosen's final one.
        TrialRecord(
            number=2, latency_ratio=0.5, feasible=False, reference="unpruned dynamic", **reference
        ),
    ]
    plan = Plan(ratios={}, channels={}, channels_before={}, importance="l1")
    measured = dict(accuracy=0.95, val_accuracy=0.95, flops=1, params=1, latency_ms=0.1)
    best = Chosen(
        **measured,
        accuracy_before_recovery=0.9,
        val_accuracy_before_recovery=0.95,
        latency_p90_ms=0.1,
        latency_ratio=0.25,  # the final timing, alone against the baseline
        reward=0.9,
        trial=0,
        plan=plan,
        retimed=(_retimed(0, 0.2), _retimed(1, 0.4)),
    )
    baseline = Baseline(accuracy=0.99, val_accuracy=0.99, flops=2, params=2)
    run = RunData(run_dir=tmp_path, trials=trials, baseline=baseline, best=best)
    assert reference_lines(run, best) == [
        "Reference unpruned none (trial #1): 2.50× the fp32 baseline's speed at -0.50 pt "
        "validation accuracy, FLOPs 1.00×: excluded by the targets; the chosen variant runs "
        "at 2.00× its speed (timed again with the finalists before choosing).",
        "Reference unpruned dynamic (trial #2): 2.00× the fp32 baseline's speed at -0.50 pt "
        "validation accuracy, FLOPs 1.00×: excluded by the targets; the chosen variant runs "
        "at 2.00× its speed.",
    ]
