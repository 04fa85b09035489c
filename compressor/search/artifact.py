"""Scoring a candidate as its deployable artifact: accuracy, parity and latency in ONNX Runtime.

The artifact is what ships, so it is what the reward sees: the user's ``evaluate`` runs the
ONNX Runtime session (quantization error counts), and latency is timed on the same file
against the fp32 ONNX export of the unpruned model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from compressor.actions.deploy import Artifact, DeploySpec, build_artifact, calibration_feeds
from compressor.actions.deploy import model_inputs as real_inputs
from compressor.measure.latency import LatencyComparison
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.parity import measure_parity

if TYPE_CHECKING:
    from compressor.search.candidate import SearchContext


def make_artifact(ctx, model: nn.Module, spec: DeploySpec, path: Path) -> Artifact:
    """``model``'s artifact for ``spec``, calibrated on the task's training inputs."""
    deploy = ctx.config.deploy
    feeds = (
        calibration_feeds(ctx.calibration, deploy.calibration_samples)
        if spec.quantization.startswith("static")
        else []
    )
    return build_artifact(
        model, ctx.example_inputs, spec, path, calibration=feeds, keep_fp32=deploy.keep_fp32
    )


def runnable(ctx: SearchContext, artifact: Artifact) -> OnnxModule:
    """The artifact as a module the user's ``evaluate`` can call."""
    return OnnxModule(
        artifact.path, device=ctx.config.measure.device, threads=ctx.config.measure.threads
    )


def parity_of(
    ctx: SearchContext, model: nn.Module, artifact_module: OnnxModule
) -> dict[str, float]:
    """Artifact vs PyTorch model on real (training) inputs."""
    return measure_parity(
        model, artifact_module, real_inputs(ctx.calibration, ctx.config.deploy.parity_samples)
    )


def score_artifact(
    ctx: SearchContext, model: nn.Module, spec: DeploySpec
) -> tuple[object, LatencyComparison | None, dict]:
    """Build the artifact in a scratch folder; return the user's metric on it (unchecked),
    its latency against the baseline artifact, and its description with parity."""
    with tempfile.TemporaryDirectory(prefix="candidate-", dir=ctx.workdir) as scratch:
        artifact = make_artifact(ctx, model, spec, Path(scratch) / "candidate.onnx")
        module = runnable(ctx, artifact)
        accuracy = ctx.evaluate(module)
        details = {**artifact.describe(), "parity": parity_of(ctx, model, module)}
        latency = ctx.meter.compare(artifact.path) if ctx.meter is not None else None
    return accuracy, latency, details
