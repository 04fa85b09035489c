"""Multi-fidelity scoring: only the top fraction is promoted; the reward is the highest
fidelity's; a resumed study takes the same decisions."""

import copy
import dataclasses
import math

import optuna
import pytest
import torch

from compressor.records import TrialMetrics
from compressor.search.fidelity import CHEAP, DISTILLED, promoted, score_with_fidelity

optuna.logging.set_verbosity(optuna.logging.WARNING)

# A deterministic fake scorer: trial n's cheap reward, and a distilled reward that reorders
# the plans (what a better proxy is for).
CHEAP_REWARDS = [0.50, 0.42, 0.61, 0.38, 0.55, 0.70, 0.33, 0.58, 0.66, 0.45] + [
    0.52,
    0.72,
    0.40,
    0.60,
    0.35,
    0.68,
    0.57,
    0.49,
    0.74,
    0.30,
]


def distilled_reward(number: int) -> float:
    return 0.9 - 0.01 * number  # earlier plans distil better: a different order


def metrics(
    accuracy: float, reward: float, floor: float | None = None, budget_excess: float = -0.1
) -> TrialMetrics:
    return TrialMetrics(
        flops=1,
        flops_ratio=0.5,
        params=1,
        ratios={},
        channels={},
        accuracy=accuracy,
        reward=reward,
        budget_excess=budget_excess,
        seconds=1.0,
        accuracy_floor=floor,
    )


def objective(fraction: float, rescored: list[int]):
    def run(trial: optuna.Trial) -> float:
        number = trial.number
        cheap = metrics(CHEAP_REWARDS[number], CHEAP_REWARDS[number])

        def rescore():
            rescored.append(number)
            return metrics(0.95, distilled_reward(number))

        scored = score_with_fidelity(trial, cheap, rescore, fraction)
        for key, value in scored.attrs().items():
            trial.set_user_attr(key, value)
        return scored.reward

    return run


def expected_promotions(fraction: float, count: int) -> list[int]:
    """The rule applied by hand: top ceil(fraction x n) of the cheap rewards so far."""
    chosen = []
    for n in range(count):
        so_far = CHEAP_REWARDS[: n + 1]
        places = math.ceil(fraction * len(so_far))
        if sorted(so_far, reverse=True).index(CHEAP_REWARDS[n]) < places:
            chosen.append(n)
    return chosen


def test_rule_promotes_the_top_fraction_and_always_the_best_so_far():
    assert promoted(0.5, [], 0.25)  # the first trial is the best so far
    assert promoted(0.9, [0.1, 0.2, 0.3], 0.25)
    assert not promoted(0.2, [0.1, 0.5, 0.6, 0.7], 0.25)  # 4th of 5: ceil(1.25) = 2 places
    assert promoted(0.6, [0.1, 0.5, 0.3, 0.7], 0.25)  # 2nd of 5
    assert not promoted(0.9, [], 0.0)  # fraction 0: single fidelity


def test_only_the_top_fraction_is_promoted_and_the_value_is_the_highest_fidelity():
    rescored: list[int] = []
    study = optuna.create_study(direction="maximize")
    study.optimize(objective(0.25, rescored), n_trials=len(CHEAP_REWARDS))
    expected = expected_promotions(0.25, len(CHEAP_REWARDS))
    assert rescored == expected
    assert 0 < len(expected) < 0.5 * len(CHEAP_REWARDS)  # a minority of a 20-trial study
    for trial in study.trials:
        cheap = CHEAP_REWARDS[trial.number]
        if trial.number in expected:
            assert trial.user_attrs["fidelity"] == DISTILLED
            assert trial.value == pytest.approx(distilled_reward(trial.number))
            assert trial.intermediate_values == {CHEAP: cheap, DISTILLED: trial.value}
            assert trial.user_attrs["accuracy"] == 0.95
            assert trial.user_attrs["accuracy_cheap"] == cheap
        else:
            assert trial.user_attrs["fidelity"] == CHEAP
            assert trial.value == pytest.approx(cheap)
            assert trial.intermediate_values == {CHEAP: cheap}
    # The best trial is chosen on the highest fidelity: a promoted one.
    assert study.best_trial.number in expected


def test_plans_over_the_budget_are_never_promoted():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    over = metrics(0.9, 0.9, budget_excess=0.2)
    assert not over.feasible
    scored = score_with_fidelity(trial, over, pytest.fail, 1.0)
    assert scored.fidelity == CHEAP and scored.reward == 0.9


def test_a_plan_under_the_accuracy_floor_is_promoted_and_judged_after_distillation():
    # --max-accuracy-drop: a removed block scores below the floor before any training (infeasible
    # on the cheap score, yet within the FLOPs budget); its short distillation decides.
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    under_floor = metrics(0.62, 0.6, floor=0.85, budget_excess=-0.3)
    lifted = metrics(0.87, 0.85, floor=0.86, budget_excess=-0.3)
    assert not under_floor.feasible and under_floor.attrs()["feasible"] is False
    scored = score_with_fidelity(trial, under_floor, lambda: lifted, 1.0)
    assert scored.fidelity == DISTILLED and scored.feasible
    assert (scored.accuracy, scored.accuracy_cheap) == (0.87, 0.62)


def test_a_resumed_study_promotes_as_an_uninterrupted_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first: list[int] = []
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    study.optimize(objective(0.25, first), n_trials=9)
    # A new process: nothing in memory but the stored trials.
    second: list[int] = []
    resumed = optuna.load_study(storage=url, study_name="s")
    resumed.optimize(objective(0.25, second), n_trials=len(CHEAP_REWARDS) - 9)
    assert first + second == expected_promotions(0.25, len(CHEAP_REWARDS))
    assert second  # promotions happened after the resume too
    fidelities = [t.user_attrs["fidelity"] for t in resumed.trials]
    assert fidelities.count(DISTILLED) == len(first) + len(second)


def test_the_distilled_floor_is_the_baseline_after_the_same_distillation(monkeypatch):
    # Short distillation trains on the task's data: it lifts the unpruned model too (a
    # pretrained ResNet-56 gains ~4 pt on CIFAR-10 JPEGs), so a distilled score is held to the
    # baseline distilled alike, less the drop; the baseline is distilled once per process.
    from types import SimpleNamespace

    from compressor.records import within_floor
    from compressor.search import fidelity

    untrained, distilled = object(), object()
    calls = []

    def fake_recoveries(settings, model, depth_pruned):
        calls.append((model, depth_pruned))
        return {"fine_tune": distilled}

    monkeypatch.setattr(fidelity, "short_recoveries", fake_recoveries)
    settings = SimpleNamespace(
        model=untrained,
        accuracy_floor=0.866,  # the untrained baseline's 0.876, less one point
        fidelity_cache={},
        config=SimpleNamespace(max_accuracy_drop=1.0),
        evaluate=lambda model: {untrained: 0.876, distilled: 0.914}[model],
    )
    floor = fidelity.distilled_floor(settings)
    assert floor == pytest.approx(0.904)
    assert fidelity.distilled_floor(settings) == floor and calls == [(untrained, False)]
    assert within_floor(settings.accuracy_floor, 0.893)  # passes the untrained floor ...
    assert not within_floor(floor, 0.893)  # ... not the distilled one
    assert fidelity.distilled_floor(SimpleNamespace(accuracy_floor=None)) is None


def test_the_short_recovery_races_fine_tuning_and_distillation_on_depth_plans_only():
    # As the final recovery under ``auto``: a plan that removed blocks is fine-tuned and
    # distilled (the better scores), any other plan (and the floor's baseline) fine-tuned.
    from types import SimpleNamespace

    from _real_model_helpers import tiny_cnn

    from compressor.config import CompressConfig
    from compressor.search import fidelity

    teacher = tiny_cnn().eval()
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(8, 3, 8, 8, generator=generator),
            torch.randint(0, 2, (8,), generator=generator),
        )
        for _ in range(3)
    ]
    settings = SimpleNamespace(
        model=teacher,
        recover=None,
        distill_batches=tuple(batches),
        calibration=tuple(batches),
        config=CompressConfig.from_dict({"search": {"promote_steps": 3}}),
        fidelity_cache={},
    )
    student = copy.deepcopy(teacher)
    raced = fidelity.short_recoveries(settings, student, depth_pruned=True)
    assert set(raced) == {"fine_tune", "distill"}
    first = lambda m: next(m.parameters())  # noqa: E731
    assert not torch.equal(first(raced["fine_tune"]), first(raced["distill"]))
    assert torch.equal(first(student), first(teacher))  # trained copies only
    assert set(fidelity.short_recoveries(settings, student, depth_pruned=False)) == {"fine_tune"}
    settings.config = CompressConfig.from_dict(
        {"search": {"promote_steps": 3}, "recovery": {"method": "distill"}}
    )
    assert set(fidelity.short_recoveries(settings, student, depth_pruned=True)) == {"distill"}
    (outputs,) = settings.fidelity_cache.values()  # the teacher's, kept for the next trial
    assert len(outputs) == len(batches)


def test_under_a_drop_floor_a_plan_that_may_beat_the_fastest_feasible_one_is_promoted():
    # The fastest feasible trial is what --max-accuracy-drop ships: a plan that may be faster
    # is promoted whatever its reward (here the worst so far, which the fraction rule skips).
    study = optuna.create_study(direction="maximize")
    for reward, latency, feasible in ((0.95, 0.40, True), (0.97, 0.30, False)):
        study.add_trial(
            optuna.trial.create_trial(
                value=reward,
                user_attrs={"reward_cheap": reward, "latency_ratio": latency, "feasible": feasible},
            )
        )

    def plan(latency, low, floor=0.85):
        timed = metrics(0.80, 0.5, floor=floor)
        return dataclasses.replace(timed, latency_ratio=latency, latency_ratio_low=low)

    lifted = metrics(0.87, 0.9, floor=0.85)
    for candidate, expected in (
        (plan(0.41, 0.38), DISTILLED),  # its interval reaches under the fastest feasible 0.40
        (plan(0.41, 0.405), CHEAP),  # surely slower: the fraction rule alone, which skips it
        (plan(0.35, None), DISTILLED),  # no interval: its ratio decides
        (plan(0.35, None, floor=None), CHEAP),  # no --max-accuracy-drop: the fraction rule
    ):
        scored = score_with_fidelity(study.ask(), candidate, lambda: lifted, 0.25)
        assert scored.fidelity == expected
