"""Deployment options: latency targets, the deploy config section, CLI mapping, reward term."""

from __future__ import annotations

import pytest

from compressor.cli import build_parser, config_from_args, main
from compressor.config import CompressConfig, DeployConfig, LatencyTarget, parse_latency_target
from compressor.errors import UserInputError
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.search.candidate import latency_term


@pytest.mark.parametrize(
    "text, value, is_ratio",
    [
        ("0.5", 0.5, True),
        (0.25, 0.25, True),
        ("1", 1.0, True),
        ("2.5ms", 2.5, False),
        (" 12 ms ", 12.0, False),
        ("0.8ms", 0.8, False),
    ],
)
def test_latency_targets_parse(text, value, is_ratio):
    assert parse_latency_target(text) == LatencyTarget(value, is_ratio)


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "abc", "3s", "", True])
def test_bad_latency_targets_are_user_errors(text):
    with pytest.raises(UserInputError, match="target-latency"):
        parse_latency_target(text)


def test_latency_target_round_trips_through_yaml_data():
    config = CompressConfig(target_latency="2.5ms")
    data = config.to_dict()
    assert data["target_latency"] == "2.5ms"
    assert CompressConfig.from_dict(data).target_latency == LatencyTarget(2.5, False)
    assert data["deploy"]["quantization"] == ["none", "dynamic", "static_ort", "static_nncf"]


@pytest.mark.parametrize(
    "values, field",
    [
        ({"quantization": ["int4"]}, "deploy.quantization"),
        ({"quantization": []}, "deploy.quantization"),
        ({"fusion": ["yes"]}, "deploy.fusion"),
        ({"calibration_samples": 0}, "deploy.calibration_samples"),
    ],
)
def test_bad_deploy_values_name_the_field(values, field):
    with pytest.raises(UserInputError, match=field):
        DeployConfig(**values)


def test_cli_maps_deploy_options_onto_the_config():
    args = build_parser().parse_args(
        [
            "--target-latency",
            "0.4",
            "--quantization",
            "static_ort",
            "none",
            "--keep-fp32",
            "conv1",
            "fc",
            "--no-export",
        ]
    )
    config = config_from_args(args)
    assert config.target_latency == LatencyTarget(0.4, True)
    assert config.deploy.quantization == ("static_ort", "none")
    assert config.deploy.keep_fp32 == ("conv1", "fc")
    assert config.deploy.export is False
    assert config_from_args(build_parser().parse_args([])).deploy.export is True


def test_cli_refuses_a_bad_latency_target(capsys, tmp_path):
    assert main(["--target-latency", "3", "--output", str(tmp_path / "out")]) == 2
    assert "target-latency" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _comparison(candidate_ms: float, baseline_ms: float) -> LatencyComparison:
    return LatencyComparison(
        LatencyStats(candidate_ms, candidate_ms, 10),
        LatencyStats(baseline_ms, baseline_ms, 10),
        ratio=candidate_ms / baseline_ms,
    )


def test_latency_term_is_a_budget_only_with_a_target():
    latency = _comparison(0.3, 0.6)
    free = latency_term(latency, None)
    assert (free.value, free.target, free.budget) == (0.5, 1.0, False)
    ratio = latency_term(latency, LatencyTarget(0.4, True))
    assert (ratio.value, ratio.target, ratio.budget, ratio.within) == (0.5, 0.4, True, False)
    absolute = latency_term(latency, LatencyTarget(0.35, False))
    assert (absolute.value, absolute.target, absolute.within) == (0.3, 0.35, True)


def test_a_latency_target_alone_lets_the_search_choose_the_flops_level():
    config = config_from_args(build_parser().parse_args(["--target-latency", "2ms"]))
    assert config.target_flops is None
    assert config.to_dict()["target_flops"] is None
    both = config_from_args(
        build_parser().parse_args(["--target-latency", "0.5", "--target-flops", "0.4"])
    )
    assert both.target_flops.value == 0.4
    with pytest.raises(UserInputError, match="target-flops, --target-latency"):
        CompressConfig(target_flops=None)
