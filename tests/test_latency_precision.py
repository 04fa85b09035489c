"""Latency timed precisely only where it can change a decision: the rule (could the trial
still be promoted or beat the best?), the favourable end of a short comparison, and the
meter calls it leads to."""

import dataclasses
from types import SimpleNamespace

import optuna
import pytest

from compressor.config import CompressConfig
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.search.candidate import favourable_end, timed, worth_precision
from compressor.search.fidelity import worth_timing

optuna.logging.set_verbosity(optuna.logging.WARNING)


def comparison(ratio: float, low: float | None, high: float | None) -> LatencyComparison:
    stats = LatencyStats(p50_ms=ratio, p90_ms=ratio, runs=90)
    return LatencyComparison(stats, LatencyStats(1.0, 1.0, 90), ratio, low, high, rounds=6)


def finished(study, value: float, cheap: float, feasible: bool = True) -> None:
    trial = study.ask()
    trial.set_user_attr("reward_cheap", cheap)
    trial.set_user_attr("feasible", feasible)
    study.tell(trial, value)


def test_a_trial_matters_while_it_could_be_promoted_or_beat_the_best():
    study = optuna.create_study(direction="maximize")
    assert worth_timing(study.trials, 0, 0.25)(0.0)  # the first trial always matters
    # Cheap rewards 0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2; the best value (one promoted) 1.05.
    for cheap in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2):
        finished(study, 1.05 if cheap == 0.9 else cheap, cheap)
    matters = worth_timing(study.trials, len(study.trials), 0.25)
    # With a ninth trial, ceil(0.25 x 9) = 3 places: promoted above the 3rd best cheap (0.7).
    assert matters(0.71) and matters(0.7)
    assert not matters(0.69) and not matters(0.3)
    # Without promotion only the best so far counts.
    single = worth_timing(study.trials, len(study.trials), 0.0)
    assert not single(1.0) and single(1.05) and single(1.2)


def test_infeasible_trials_do_not_set_the_bar():
    study = optuna.create_study(direction="maximize")
    finished(study, 2.0, 2.0, feasible=False)  # over budget: never chosen
    finished(study, 0.8, 0.8)
    matters = worth_timing(study.trials, 2, 0.0)
    assert matters(0.85) and not matters(0.75)


def test_the_favourable_end_is_the_low_end_of_the_interval():
    best_case = favourable_end(comparison(0.8, 0.5, 1.2))
    assert best_case.ratio == 0.5
    assert best_case.candidate.p50_ms == pytest.approx(0.5)  # the median scaled alike


def test_a_candidate_is_timed_precisely_only_if_its_best_case_reward_matters():
    settings = SimpleNamespace(config=CompressConfig.from_dict({"target_flops": 0.5}))
    flops, budget = 50, 100
    short = comparison(0.8, 0.5, 1.2)
    seen = []

    def matters(reward: float) -> bool:
        seen.append(reward)
        return reward >= 0.9

    worth = worth_precision(settings, flops, budget, matters)
    assert worth(0.9, short)  # at ratio 0.5 the soft reward exceeds the accuracy
    assert seen[-1] > 0.9
    assert not worth(0.8, short)  # even the favourable end falls short of 0.9
    assert worth(0.5, comparison(0.8, None, None))  # no interval: time it precisely
    assert worth_precision(settings, flops, budget, None) is None


class FakeMeter:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def compare(self, model, rounds=None, precise=True, refine=None):
        """As LatencyMeter.compare: with ``refine``, short rounds first, continued only when
        it asks (``calls``: False for the short rounds, True for rounds towards the interval)."""
        if refine is not None:
            self.calls.append(False)
            short = dataclasses.replace(comparison(0.8, 0.5, 1.2), precise=False)
            if not refine(short):
                return short
        self.calls.append(True)
        return comparison(0.8, 0.7, 0.9)


@pytest.mark.parametrize(
    ("worth", "calls", "rounds_kept"),
    [(None, [True], "precise"), (False, [False], "short"), (True, [False, True], "precise")],
)
def test_the_meter_is_asked_for_a_short_comparison_first_when_there_is_a_rule(
    worth, calls, rounds_kept
):
    meter = FakeMeter()
    resources = SimpleNamespace(meter=meter)
    rule = None if worth is None else (lambda accuracy, short: worth)
    latency = timed(resources, "candidate.onnx", 0.9, rule)
    assert meter.calls == calls
    assert latency.ratio_low == (0.7 if rounds_kept == "precise" else 0.5)
    assert latency.precise == (rounds_kept == "precise")  # recorded as latency_precise
    assert timed(SimpleNamespace(meter=None), "candidate.onnx", 0.9, rule) is None
