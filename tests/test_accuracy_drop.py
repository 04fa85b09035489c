"""--max-accuracy-drop: parsed as points, turned into a floor, and the fastest feasible trial
chosen (R unchanged)."""

from __future__ import annotations

import optuna
import pytest

from compressor.config import CompressConfig
from compressor.errors import UserInputError
from compressor.search.context import accuracy_floor
from compressor.search.loop import best_feasible_trial


def _study(trials: list[dict]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for attrs in trials:
        study.add_trial(
            optuna.trial.create_trial(value=attrs.pop("reward"), user_attrs=attrs, params={})
        )
    return study


def test_the_fastest_trial_within_the_floor_is_chosen_not_the_best_reward():
    study = _study(
        [
            {"reward": 0.95, "accuracy": 0.99, "latency_ratio": 1.00, "feasible": True},
            {"reward": 0.80, "accuracy": 0.985, "latency_ratio": 0.40, "feasible": True},
            {"reward": 0.70, "accuracy": 0.90, "latency_ratio": 0.20, "feasible": False},
        ]
    )
    assert best_feasible_trial(study).number == 0  # highest R
    assert best_feasible_trial(study, fastest=True).number == 1  # fastest within the floor


def test_drop_in_points_becomes_a_floor_on_the_fraction():
    config = CompressConfig(target_flops=None, max_accuracy_drop="1.5")
    assert config.max_accuracy_drop == 1.5
    assert accuracy_floor(config, 0.9) == pytest.approx(0.885)
    assert accuracy_floor(CompressConfig(), 0.9) is None


@pytest.mark.parametrize("value", [-0.5, 100, "abc", float("nan"), True])
def test_bad_drops_are_refused(value):
    with pytest.raises(UserInputError, match="max accuracy drop must be a number of points"):
        CompressConfig(max_accuracy_drop=value)


def test_yaml_round_trip_keeps_the_drop():
    config = CompressConfig.from_dict({"target_flops": None, "max_accuracy_drop": 2})
    assert CompressConfig.from_dict(config.to_dict()).max_accuracy_drop == 2.0


def test_without_a_flops_target_the_depth_only_plan_is_seeded_at_every_ladder_level(
    digits_task,
):
    from compressor.config import CompressConfig, DeployConfig
    from compressor.measure.flops import count_flops
    from compressor.search.candidate import removed_units
    from compressor.search.context import search_settings
    from compressor.search.seeds import DEPTH_LADDER, Sensitivity, seed_params
    from compressor.search.space import (
        DEPTH_SHARE_PARAM,
        FLOPS_LEVEL_PARAM,
        DepthChoice,
        depth_param,
    )

    base = count_flops(digits_task.model, digits_task.example_inputs)

    def seeds(target_flops):
        config = CompressConfig(
            max_accuracy_drop=1.0, target_flops=target_flops, deploy=DeployConfig(export=False)
        )
        settings = search_settings(digits_task, config, base, baseline_accuracy=0.98)
        units = [unit.name for unit in settings.depth_units]
        prefer = {name: 1.0 - 0.1 * rank for rank, name in enumerate(units)}
        widths = {group.name: 0.5 for group in settings.groups}
        return settings, units, seed_params(settings, Sensitivity(widths, prefer))

    settings, units, params = seeds(None)  # the FLOPs level is searched: the ladder
    ladder = [p for p in params if FLOPS_LEVEL_PARAM in p]
    assert [p[FLOPS_LEVEL_PARAM] for p in ladder] == list(DEPTH_LADDER)
    removed = []
    for p in ladder:
        choice = DepthChoice(p[DEPTH_SHARE_PARAM], {u: p[depth_param(u)] for u in units})
        removed.append(removed_units(settings, choice, int(p[FLOPS_LEVEL_PARAM] * base)))
    # digits: four blocks of 18 % each, the most preferred first, one more per rung
    assert removed == [tuple(sorted(units[:k])) for k in (1, 2, 3)]

    _, _, params = seeds("0.5")  # a FLOPs target fixes the level: one depth-only seed
    assert not any(FLOPS_LEVEL_PARAM in p for p in params)
    assert sum(p.get(DEPTH_SHARE_PARAM) == 1.0 for p in params) == 1
