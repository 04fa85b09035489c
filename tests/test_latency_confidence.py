"""The latency ratio's confidence interval and the rule that stops timing at a stated width."""

import math
import random

import pytest
import torch
from torch import nn

from compressor.config import MeasureConfig
from compressor.measure.confidence import precise_enough, ratio_interval, rounds_needed
from compressor.measure.latency import LatencyMeter
from compressor.measure.latency_worker import compare


def _lognormal_series(ratio: float, spread: float, n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [ratio * math.exp(rng.gauss(0.0, spread)) for _ in range(n)]


def test_interval_is_the_t_interval_of_the_log_ratios():
    # logs -0.1, 0, +0.1: mean 0, sd 0.1, t(0.975, 2) = 4.3027
    interval = ratio_interval([math.exp(-0.1), 1.0, math.exp(0.1)])
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert interval.ratio == pytest.approx(1.0)
    assert interval.low == pytest.approx(math.exp(-half), rel=1e-5)
    assert interval.high == pytest.approx(math.exp(half), rel=1e-5)
    assert interval.halfwidth == pytest.approx(math.exp(half) - 1, rel=1e-5)


def test_interval_needs_two_rounds_and_positive_ratios():
    assert math.isinf(ratio_interval([0.5]).high)
    with pytest.raises(ValueError):
        ratio_interval([0.5, 0.0])


def test_rule_stops_at_the_stated_width():
    # A noisy series (10 % per-round spread): the rule stops at the first round count whose
    # interval is within +-5 %, not before, and the ratio there is near the true 0.6.
    series = _lognormal_series(0.6, 0.10, 200, seed=1)
    stop = rounds_needed(series, halfwidth=0.05, min_rounds=6, max_rounds=200)
    assert 6 < stop < 200
    assert ratio_interval(series[:stop]).halfwidth <= 0.05
    assert all(ratio_interval(series[:k]).halfwidth > 0.05 for k in range(2, stop))
    assert ratio_interval(series[:stop]).ratio == pytest.approx(0.6, rel=0.06)
    # Expected rounds for a t-interval: (1.96 * 0.10 / log 1.05)^2 ~ 16; well under 40.
    assert stop <= 40


def test_rule_stops_at_the_minimum_for_a_quiet_series_and_at_the_cap_for_a_wild_one():
    quiet = _lognormal_series(0.8, 0.005, 50)
    assert rounds_needed(quiet, halfwidth=0.05, min_rounds=6, max_rounds=30) == 6
    assert precise_enough(quiet[:6], 0.05, 6) and not precise_enough(quiet[:5], 0.05, 6)
    wild = _lognormal_series(0.8, 0.8, 50)
    assert rounds_needed(wild, halfwidth=0.05, min_rounds=6, max_rounds=30) == 30


@pytest.mark.parametrize("continued", [False, True])
def test_worker_rounds_stop_when_the_interval_is_narrow(monkeypatch, continued):
    # The worker's own loop, timing a synthetic series: in round k every candidate call
    # takes ratios[k] ms and every baseline call 1 ms (10 % spread between rounds).
    import compressor.measure.latency_worker as worker

    ratios = _lognormal_series(0.5, 0.10, 500, seed=3)
    runs_per_round = 3
    calls = {"candidate": 0}

    def fake_time(run, device):
        key = run()
        if key == "baseline":
            return 1e-3
        calls["candidate"] += 1
        return 1e-3 * ratios[(calls["candidate"] - 1) // runs_per_round]

    monkeypatch.setattr(worker, "time_once", fake_time)
    runners = {"candidate": lambda: "candidate", "baseline": lambda: "baseline"}
    timing = dict(runs_per_round=runs_per_round, warmup=0, max_seconds=1e9)
    precise = dict(max_rounds=200, halfwidth=0.05)
    if continued:  # a short comparison first, then continued with its rounds counted
        short = compare(runners, ["candidate", "baseline"], "cpu", rounds=6, **timing)
        assert short["ratios"]["candidate"] == pytest.approx(ratios[:6])
        reply = compare(
            runners, ["candidate", "baseline"], "cpu", rounds=6, prior=short, **timing, **precise
        )
    else:
        reply = compare(runners, ["candidate", "baseline"], "cpu", rounds=6, **timing, **precise)
    measured = reply["ratios"]["candidate"]
    assert measured == pytest.approx(ratios[: len(measured)])  # no round timed twice
    assert len(measured) == rounds_needed(ratios, 0.05, 6, 200)
    assert len(reply["samples"]["candidate"]) == runs_per_round * len(measured)
    assert 6 < len(measured) < 200
    assert ratio_interval(measured).halfwidth <= 0.05 < ratio_interval(measured[:-1]).halfwidth


def _conv_net(width):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
    ).eval()


def test_meter_reports_the_interval_and_retimes_several_models_together():
    config = MeasureConfig(rounds=4, runs_per_round=5, threads=1, max_rounds=12)
    with LatencyMeter(config, (torch.zeros(1, 1, 32, 32),)) as meter:
        meter.set_baseline(_conv_net(32))
        single = meter.compare(_conv_net(4))
        several = meter.compare_many({"small": _conv_net(4), "same": _conv_net(32)})
        short = meter.compare(_conv_net(4), precise=False)
        kept = meter.compare(_conv_net(4), refine=lambda first: False)
        seen = []
        refined = meter.compare(_conv_net(4), refine=lambda first: seen.append(first) or True)
    assert 2 <= single.rounds <= 12  # 2: the time cap ran out first (a loaded machine)
    assert 2 <= short.rounds <= 4 and single.precise and not short.precise  # no rounds added
    assert 2 <= kept.rounds <= 4 and not kept.precise
    # Continued from the short comparison refine saw: its rounds are among the final ones.
    (first,) = seen
    assert not first.precise and refined.precise and first.rounds <= refined.rounds <= 12
    assert single.ratio_low <= single.ratio <= single.ratio_high
    assert set(several) == {"small", "same"}
    small, same = several["small"], several["same"]
    # One shared baseline, every model timed in every round.
    assert small.baseline == same.baseline and small.rounds == same.rounds
    assert small.candidate.runs == same.candidate.runs == 5 * small.rounds
    # 64x fewer MACs in the second conv: clearly faster than a same-size copy of the baseline.
    assert small.ratio < same.ratio
    assert small.ratio_high < same.ratio_low or small.ratio < 0.6 * same.ratio
