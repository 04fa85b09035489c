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
