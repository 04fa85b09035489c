"""The kernel-width decision on synthetic timings (the probe itself is timed on the target)."""

import numpy as np
import pytest

from compressor.measure.kernel_widths import (
    GEOMETRIES,
    LARGEST,
    NOISY,
    KernelWidths,
    decide,
    probe_widths,
    realised_savings,
    round_noise,
)


def _kernel(multiple: int, penalty: float = 2.0):
    """A kernel whose time is linear in the width, ``penalty`` x off ``multiple``."""
    return lambda width: width * (1.0 if width % multiple == 0 else penalty)


def _rounds(kernel, rounds: int, load, rng) -> dict[tuple, list[float]]:
    """Per (mode, W, w) the timings of ``rounds`` rounds under ``load(rng)`` (>= 1: load only
    ever slows a call down)."""
    return {
        ("none", channels, width): [kernel(width) * load(rng) for _ in range(rounds)]
        for channels, _ in GEOMETRIES
        for width in (*probe_widths(channels), channels)
    }


def _spiky(rng) -> float:
    # A loaded machine: most rounds 0-15 % slow, one in four 2-6x slower (a preempted call).
    return 1.0 + rng.uniform(0, 0.15) + (rng.uniform(1, 5) if rng.random() < 0.25 else 0.0)


def test_probe_widths_are_exact_multiples_of_1_2_4_8_below_the_full_width():
    assert probe_widths(16) == (9, 10, 12, 8)
    assert probe_widths(32) == (17, 18, 20, 24)
    assert probe_widths(64) == (33, 34, 36, 40)


@pytest.mark.parametrize("multiple", [1, 2, 4, 8, 16])
def test_the_decision_finds_the_favoured_multiple_through_load_spikes(multiple):
    for seed in range(20):  # 20 noisy measurements, every one decided right
        rng = np.random.default_rng(seed)
        assert decide(_rounds(_kernel(multiple), 7, _spiky, rng), "none") == multiple


def test_a_mild_penalty_that_still_beats_the_full_width_is_not_enough():
    # 9 of 16 at 1.6x costs 0.9 of 16: faster, but it keeps under a quarter of its saving.
    rng = np.random.default_rng(0)
    assert decide(_rounds(_kernel(16, penalty=1.6), 7, lambda r: 1.0, rng), "none") == 16


def test_timings_that_are_only_noise_fall_back_to_the_largest_multiple():
    rng = np.random.default_rng(0)
    # Every round heavily and differently loaded: the rounds disagree, nothing is trusted.
    samples = _rounds(_kernel(1), 7, lambda r: r.uniform(1, 6), rng)
    assert round_noise(samples, "none") > NOISY
    assert decide(samples, "none") == LARGEST


def test_realised_savings_read_against_the_full_width():
    shares = realised_savings({16: 10.0, 8: 5.0, 12: 12.0}, 16)
    assert shares[8] == pytest.approx(1.0)  # half the width, half the time: all of it
    assert shares[12] < 0  # narrower and slower


def test_int8_modes_share_the_static_int8_multiple_and_fp32_has_its_own():
    widths = KernelWidths({"none": 8, "static_ort": 16}, {}, {}, "cpu")
    assert widths.round_to("none") == 8
    assert widths.round_to("static_ort") == widths.round_to("static_nncf") == 16
    assert widths.round_to("dynamic") == 16
