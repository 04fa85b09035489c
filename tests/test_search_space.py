import optuna
import pytest

from compressor.actions.prune import ChannelGroup
from compressor.config import PruneConfig
from compressor.search.sensitivity import preferences_from_sensitivity
from compressor.search.space import (
    fit_to_budget,
    preferences_from_params,
    suggest_preferences,
    uniform_params,
)


def linear_flops(ratios):
    """A stand-in model: each group contributes 100 FLOPs, scaled by the share it keeps."""
    return round(sum(100 * (1 - r) for r in ratios.values()))


def test_fit_to_budget_lands_just_under_the_budget():
    ratios, fits = fit_to_budget({"a": 1.0, "b": 0.5}, linear_flops, budget=140, max_ratio=0.9)
    assert fits
    assert 138 <= linear_flops(ratios) <= 140
    assert ratios["a"] == pytest.approx(2 * ratios["b"], rel=1e-6)  # the preferences' shape kept


def test_fit_to_budget_respects_max_ratio_and_reports_unreachable():
    ratios, fits = fit_to_budget({"a": 1.0, "b": 1.0}, linear_flops, budget=10, max_ratio=0.8)
    assert not fits and ratios == {"a": 0.8, "b": 0.8}  # the most-pruned plan, still over


def test_zero_preferences_mean_no_pruning():
    ratios, fits = fit_to_budget({"a": 0.0, "b": 0.0}, linear_flops, budget=200, max_ratio=0.8)
    assert fits and ratios == {"a": 0.0, "b": 0.0}
    ratios, fits = fit_to_budget({"a": 0.0, "b": 1.0}, linear_flops, budget=150, max_ratio=0.8)
    assert fits and ratios["a"] == 0.0 and ratios["b"] == pytest.approx(0.5, abs=0.01)


def test_suggested_preferences_round_trip_through_trial_params():
    groups = [ChannelGroup("conv1", 16, ("conv1",)), ChannelGroup("layer1.0.conv1", 16, ())]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    study.enqueue_trial(uniform_params(groups))
    trial = study.ask()
    preferences = suggest_preferences(trial, groups, PruneConfig())
    assert preferences == {"conv1": 1.0, "layer1.0.conv1": 1.0}
    assert preferences_from_params(trial.params) == preferences


def test_sensitivity_preferences_spare_the_most_sensitive_group():
    preferences = preferences_from_sensitivity({"stem": 0.6, "inner": 0.0, "mid": 0.3}, step=0.05)
    assert preferences == {"stem": 0.0, "inner": 1.0, "mid": 0.5}
    assert preferences_from_sensitivity({"a": 0.0}, 0.05) == {"a": 1.0}


def test_one_outlier_does_not_flatten_the_other_preferences():
    # digits' measured drops: the stem loses 8.4 pt, the rest 0-2.2 pt. Linear in the drop,
    # every other group would sit within 0.25 of 1 (close to the uniform plan).
    drops = {"stem": 0.084, "a": 0.0, "b": 0.003, "c": 0.003, "d": 0.022}
    preferences = preferences_from_sensitivity(drops, step=0.05)
    assert preferences == {"stem": 0.0, "a": 1.0, "b": 0.65, "c": 0.65, "d": 0.35}
    assert preferences_from_sensitivity({"x": 0.1, "y": 0.1}, 0.05) == {"x": 1.0, "y": 1.0}


def test_uneven_preferences_can_still_reach_a_deep_budget():
    # Only "a" is strongly preferred, but the budget needs both groups pruned hard: the
    # scale goes on growing once "a" is clipped at max_ratio.
    ratios, fits = fit_to_budget({"a": 1.0, "b": 0.1}, linear_flops, budget=60, max_ratio=0.8)
    assert fits and ratios["a"] == 0.8
    assert 58 <= linear_flops(ratios) <= 60


def test_trial_seeds_of_different_run_seeds_do_not_overlap():
    from compressor.search.samplers import trial_seed

    seeds = {(run, n): trial_seed(run, n) for run in range(3) for n in range(50)}
    assert len(set(seeds.values())) == len(seeds)  # no shifted replay between run seeds
    assert trial_seed(4, 7) == trial_seed(4, 7)
