import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.config import CompressConfig, FlopsTarget, load_config_file, parse_flops_target
from compressor.errors import UserInputError


@pytest.mark.parametrize(
    "text, value, is_ratio",
    [
        ("0.5", 0.5, True),
        ("1", 1.0, True),
        (".25", 0.25, True),
        ("12M", 12e6, False),
        ("1.5G", 1.5e9, False),
        ("800k", 8e5, False),
        ("3e7", 3e7, False),
        (0.3, 0.3, True),
    ],
)
def test_flops_target_parsing(text, value, is_ratio):
    target = parse_flops_target(text)
    assert target.value == pytest.approx(value)
    assert target.is_ratio is is_ratio


@pytest.mark.parametrize(
    "text, message",
    [
        ("0", "must be > 0"),
        ("-1", "not a number"),
        ("1.5", "ratio above 1"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("0M", "must be > 0"),
        ("12X", "not a number"),
    ],
)
def test_bad_flops_targets_are_refused(text, message):
    with pytest.raises(UserInputError, match=message):
        parse_flops_target(text)


@given(st.floats(min_value=1e-6, max_value=1.0, allow_nan=False))
def test_any_ratio_in_range_parses_to_itself(ratio):
    target = parse_flops_target(repr(ratio))
    assert target.is_ratio and target.value == pytest.approx(ratio)
    assert target.resolve(1_000_000) == round(ratio * 1_000_000)


@given(st.floats(min_value=0.001, max_value=999.0), st.sampled_from(["K", "M", "G", "k", "m"]))
def test_any_count_with_suffix_is_absolute(number, suffix):
    target = parse_flops_target(f"{number}{suffix}")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}[suffix.upper()]
    assert not target.is_ratio
    assert target.value == pytest.approx(float(f"{number}") * scale)


@given(st.text(alphabet="abcxyz!@# ", min_size=1, max_size=8))
def test_garbage_is_always_a_user_error(text):
    with pytest.raises(UserInputError):
        parse_flops_target(text)


def test_config_round_trips_and_validates_fields():
    config = CompressConfig.from_dict(
        {"target_flops": "12M", "search": {"trials": 7, "seed": 3}, "prune": {"round_to": 16}}
    )
    assert config.target_flops == FlopsTarget(12e6, False)
    again = CompressConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.search.trials == 7 and again.prune.round_to == 16


@pytest.mark.parametrize(
    "data, message",
    [
        ({"search": {"trials": 0}}, "search.trials"),
        ({"search": {"reward": "fancy"}}, "search.reward"),
        ({"prune": {"importance": "taylor9"}}, "prune.importance"),
        ({"prune": {"max_ratio": 1.5}}, "prune.max_ratio"),
        ({"measure": {"device": "tpu"}}, "measure.device"),
        ({"search": {"nope": 1}}, "unknown key search.nope"),
        ({"colour": "red"}, "unknown config key"),
        ({"search": 5}, "must be a mapping"),
    ],
)
def test_bad_config_values_name_the_field(data, message):
    with pytest.raises(UserInputError, match=message):
        CompressConfig.from_dict(data)


def test_config_file_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("search: [unclosed\n")
    with pytest.raises(UserInputError, match="could not be read"):
        load_config_file(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(UserInputError, match="mapping"):
        load_config_file(listing)


def test_shipped_default_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
    config = CompressConfig.from_dict(load_config_file(path))
    assert config.task == "digits" and config.target_flops == FlopsTarget(0.5, True)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=3),
)
_sections = {
    "search": ["trials", "seed", "sampler", "reward", "time_budget", "trial_timeout"],
    "prune": ["importance", "round_to", "max_ratio", "ratio_step", "ignore_layers"],
    "measure": ["device", "threads", "batch_size", "rounds"],
    "recovery": ["epochs", "lr"],
}


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "target_flops": _values,
            "task": _values,
            **{
                name: st.dictionaries(st.sampled_from(keys), _values, max_size=3)
                for name, keys in _sections.items()
            },
        },
    )
)
def test_any_config_mapping_is_accepted_or_refused_with_one_clear_line(data):
    try:
        config = CompressConfig.from_dict(data)
    except UserInputError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:  # whatever was accepted round-trips
        assert CompressConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
