import math

import pytest
import torch
from torch import nn

from compressor.config import MeasureConfig
from compressor.measure.latency import LatencyMeter, LatencyStats


def test_stats_from_samples():
    stats = LatencyStats.from_seconds([0.001 * i for i in range(1, 11)])
    assert stats.p50_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.0)
    assert stats.runs == 10


def _conv_net(width):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
    ).eval()


def test_meter_interleaves_candidate_and_baseline_in_a_subprocess():
    config = MeasureConfig(rounds=4, runs_per_round=5, threads=1)
    with LatencyMeter(config, (torch.zeros(1, 1, 32, 32),)) as meter:
        meter.set_baseline(_conv_net(16))
        comparison = meter.compare(_conv_net(4))
        worker = meter._process
        assert worker.poll() is None  # one persistent measurement process
    assert worker.poll() is not None  # and it is gone after the block
    # The 4 rounds asked for (2 when the time cap runs out first on a loaded machine), more
    # while the ratio's interval is wider than +-5 %.
    assert comparison.rounds >= 2
    assert comparison.candidate.runs == comparison.baseline.runs == 5 * comparison.rounds
    assert (
        comparison.candidate.p50_ms > 0 and comparison.baseline.p90_ms >= comparison.baseline.p50_ms
    )
    assert math.isfinite(comparison.ratio) and comparison.ratio > 0


def test_meter_reports_worker_errors_instead_of_hanging():
    from compressor.errors import CompressorError

    config = MeasureConfig(rounds=2, runs_per_round=2)
    with (
        LatencyMeter(config, (torch.zeros(1, 3),)) as meter,
        pytest.raises(CompressorError, match="latency measurement failed"),
    ):
        meter._request(
            {
                "op": "compare",
                "keys": ["missing", "baseline"],
                "rounds": 1,
                "runs_per_round": 1,
                "warmup": 0,
                "max_seconds": 1,
            }
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_meter_synchronises():
    config = MeasureConfig(device="cuda", rounds=2, runs_per_round=5)
    with LatencyMeter(config, (torch.zeros(1, 1, 32, 32),)) as meter:
        meter.set_baseline(_conv_net(16))
        comparison = meter.compare(_conv_net(8))
    assert comparison.candidate.p50_ms > 0
