"""One registry per kind of choice: adding a choice is one decorated function, and the
config, ``compress --help`` and the report pick it up."""

from __future__ import annotations

import shutil

import pytest

from compressor.actions.quantize import QUANTIZATIONS, quantization_mode
from compressor.cli import build_parser
from compressor.config import CompressConfig, DeployConfig, SearchConfig
from compressor.errors import UserInputError
from compressor.records import Target
from compressor.registry import Registry
from compressor.report.summary import reward_formula
from compressor.reward import REWARDS, Term, reward, reward_mode


def test_a_registry_names_its_choices_and_refuses_others():
    colours: Registry[int] = Registry("colour")
    colours.register("red", "warm")(1)
    assert colours.names() == ("red",) and colours.get("red") == 1
    assert [entry.description for entry in colours] == ["warm"]
    with pytest.raises(UserInputError, match=r"^paint\.colour must be one of red; got 'blue'$"):
        colours.check("paint.colour", "blue")
    with pytest.raises(ValueError, match="registered twice"):
        colours.register("red")(2)


@pytest.fixture
def dummy_mode():
    @quantization_mode("copy_for_test", "a copy of the fp32 graph (test only)")
    def _copy(src, dst, spec):
        shutil.copyfile(src, dst)

    yield "copy_for_test"
    QUANTIZATIONS.unregister("copy_for_test")


def test_a_new_quantization_mode_is_one_decorated_function(dummy_mode):
    assert DeployConfig(quantization=(dummy_mode,)).quantization == (dummy_mode,)
    assert dummy_mode in CompressConfig().deploy.quantization  # the default: every mode
    action = next(a for a in build_parser()._actions if a.dest == "quantization")
    assert dummy_mode in action.choices and "(test only)" in action.help
    args = build_parser().parse_args(["--quantization", dummy_mode])
    assert args.quantization == [dummy_mode]


def test_an_unknown_mode_is_refused_with_the_registered_ones():
    with pytest.raises(UserInputError, match="deploy.quantization must be one of none, dynamic"):
        DeployConfig(quantization=("int3",))


@pytest.fixture
def dummy_reward():
    @reward_mode("accuracy_only", "accuracy alone (test only)", lambda a, b: "R = accuracy")
    def _accuracy(accuracy, terms, alpha, beta):
        return accuracy

    yield "accuracy_only"
    REWARDS.unregister("accuracy_only")


def test_a_new_reward_reaches_the_config_the_search_and_the_report(dummy_reward):
    assert SearchConfig(reward=dummy_reward).reward == dummy_reward
    assert reward(0.7, [Term("flops", 2.0, 1.0)], dummy_reward) == 0.7
    target = Target(flops=10, flops_ratio=0.5, spec="0.5", reward=dummy_reward)
    assert reward_formula(target).startswith("R = accuracy. T_FLOPs")
