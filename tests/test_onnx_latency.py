"""The latency meter's ONNX backend: artifacts timed by ONNX Runtime in the worker process."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import tiny_resnet

from compressor.actions.export import export_onnx
from compressor.config import MeasureConfig
from compressor.errors import CompressorError
from compressor.measure.latency import LatencyMeter

EXAMPLE = (torch.zeros(1, 1, 16, 16),)


def test_onnx_artifacts_are_timed_against_an_onnx_baseline(tmp_path):
    model = tiny_resnet()
    baseline = export_onnx(model, EXAMPLE, tmp_path / "baseline.onnx")
    candidate = export_onnx(model, EXAMPLE, tmp_path / "candidate.onnx", fold_batchnorm=True)
    # ratio_halfwidth 0: exactly the rounds asked for, no interval rule.
    config = MeasureConfig(threads=1, rounds=2, runs_per_round=5, ratio_halfwidth=0)
    with LatencyMeter(config, EXAMPLE) as meter:
        meter.set_baseline(baseline)
        comparison = meter.compare(candidate)
        assert comparison.candidate.runs == comparison.baseline.runs == 10
        assert 0 < comparison.candidate.p50_ms <= comparison.candidate.p90_ms
        assert comparison.ratio > 0
        # one meter, one backend: a torch model is refused against an ONNX baseline
        with pytest.raises(CompressorError, match="torchscript model cannot be timed"):
            meter.compare(model)
