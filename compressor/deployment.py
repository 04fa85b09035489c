"""The chosen variant's deployable artifact: write ``model.onnx`` and measure it for the report.

Runs after recovery, so the artifact is exported, fused and quantized (calibrated) from the
fine-tuned weights, as the best trial chose.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from compressor.actions.export import export_onnx
from compressor.artifacts import atomic_path
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.search.artifact import make_artifact, parity_of, runnable
from compressor.search.candidate import SearchContext, checked_metric
from compressor.search.space import spec_from_params
from compressor.tasks import Task


def deploy_best(
    ctx: SearchContext,
    task: Task,
    model: nn.Module,
    params: Mapping,
    baseline: Path,
    output_dir: Path,
) -> dict:
    """Write ``output_dir/model.onnx`` for the trial ``params`` chose, and measure it.

    Also times the fp32 export of the pruned model, to tell pruning's speed-up from
    quantization's.
    """
    spec = spec_from_params(params)
    output_dir.mkdir(parents=True, exist_ok=True)
    built = make_artifact(ctx, model, spec, ctx.workdir / "model.onnx")
    with atomic_path(output_dir / "model.onnx") as tmp:
        shutil.copyfile(built.path, tmp)
    artifact = dataclasses.replace(built, path=output_dir / "model.onnx")
    module = runnable(ctx, artifact)
    pruned_fp32 = export_onnx(model, task.example_inputs, ctx.workdir / "pruned_fp32.onnx")
    return {
        "path": artifact.path,
        "accuracy": checked_metric(task.evaluate_test(module)),
        "val_accuracy": checked_metric(task.evaluate(module)),
        "best": {
            "quantization": spec.quantization,
            "fusion": spec.fusion,
            "keep_ends_fp32": spec.keep_ends,
            "parity": parity_of(ctx, model, module),
            "artifact": artifact.describe(),
        },
        "sizes": {
            "baseline_fp32.onnx": baseline.stat().st_size,
            "pruned_fp32.onnx": pruned_fp32.stat().st_size,
            "model.onnx": artifact.size_bytes,
        },
        "pruned_fp32": ctx.meter.compare(pruned_fp32, rounds=3 * ctx.config.measure.rounds),
    }


def artifact_table(deployed: dict, latency: LatencyComparison) -> dict:
    """Per-artifact latency (p50, p90) and file size; all timed against the same baseline."""
    sizes, pruned = deployed["sizes"], deployed["pruned_fp32"]
    return {
        "baseline_fp32.onnx": _row(latency.baseline, sizes["baseline_fp32.onnx"]),
        "pruned_fp32.onnx": {
            **_row(pruned.candidate, sizes["pruned_fp32.onnx"]),
            "latency_ratio": pruned.ratio,
        },
        "model.onnx": {
            **_row(latency.candidate, sizes["model.onnx"]),
            "latency_ratio": latency.ratio,
        },
    }


def _row(stats: LatencyStats, size: int) -> dict:
    return {"latency_ms": {"p50": stats.p50_ms, "p90": stats.p90_ms}, "size_bytes": size}
