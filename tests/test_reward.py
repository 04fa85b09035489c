import math

import pytest

from compressor.reward import Term, amc_reward, hard_factor, reward, soft_factor


def test_soft_factor_follows_mnasnet():
    assert soft_factor(0.5) == pytest.approx(0.5**-0.07)  # under target: small bonus
    assert soft_factor(0.5) == pytest.approx(1.04971, abs=1e-5)
    assert soft_factor(2.0) == pytest.approx(0.95264, abs=1e-5)  # over target: penalty
    assert soft_factor(1.0) == 1.0
    assert soft_factor(2.0, alpha=0.0, beta=-1.0) == pytest.approx(0.5)


def test_soft_reward_multiplies_terms():
    terms = [Term("flops", 50, 100), Term("latency", 0.8, 1.0, budget=False)]
    expected = 0.9 * 0.5**-0.07 * 0.8**-0.07
    assert reward(0.9, terms, "soft") == pytest.approx(expected)
    assert reward(0.9, terms, "soft") == pytest.approx(0.95962, abs=1e-5)


def test_hard_reward_ranks_every_over_budget_variant_below_every_feasible_one():
    feasible_bad = reward(0.0, [Term("flops", 100, 100)], "hard")
    over_good = reward(1.0, [Term("flops", 101, 100)], "hard")
    assert feasible_bad == 0.0
    assert over_good < feasible_bad
    assert reward(0.93, [Term("flops", 40, 100)], "hard") == pytest.approx(0.93)  # alpha = 0
    assert hard_factor(2.0) == pytest.approx(2.0**-20)


def test_hard_reward_keeps_latency_preference_soft():
    value = reward(0.9, [Term("flops", 40, 100), Term("latency", 0.5, 1.0, budget=False)], "hard")
    assert value == pytest.approx(0.9 * 0.5**-0.07)


def test_amc_reward_is_minus_error_times_log_flops():
    assert amc_reward(0.9, 1e6) == pytest.approx(-0.1 * math.log(1e6))
    assert amc_reward(0.9, 1e6) == pytest.approx(-1.381551, abs=1e-6)
    # fewer FLOPs at the same error is better; less error at the same FLOPs is better
    assert amc_reward(0.9, 1e5) > amc_reward(0.9, 1e6)
    assert amc_reward(0.95, 1e6) > amc_reward(0.9, 1e6)
    assert reward(0.9, [Term("flops", 1e6, 2e6)], "amc") == amc_reward(0.9, 1e6)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="reward must be one of soft, hard, amc"):
        reward(0.9, [Term("flops", 1, 1)], "nope")
