"""The result of a compression run: what ``compress`` returns and what ``result.json`` holds.

Every field is a typed record (:mod:`compressor.records`); ``result.json`` is written by
:meth:`CompressionResult.to_json` and read back by :func:`read_result`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.records import (
    SCHEMA_VERSION,
    ArtifactFile,
    Baseline,
    Chosen,
    Target,
    TrialRecord,
    WorkerStats,
    to_json,
)
from compressor.report.tables import format_count


@dataclass
class CompressionResult:
    """The compressed model and the numbers that justify it.

    ``str(result)`` is the baseline-vs-best table the CLI prints.
    """

    model: Any  # the recovered torch.nn.Module (None when read back from result.json)
    baseline: Baseline
    best: Chosen
    target: Target
    trials: list[TrialRecord]
    environment: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    artifacts: dict[str, ArtifactFile] = field(default_factory=dict)  # per ONNX file
    report: Path | None = None  # the HTML report written beside result.json
    # Per process that ran trials (hostname:pid): see records.worker_summary.
    workers: dict[str, WorkerStats] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "baseline": to_json(self.baseline),
            "best": to_json(self.best),
            "target": to_json(self.target),
            "artifacts": {name: to_json(row) for name, row in self.artifacts.items()},
            "trials": [to_json(trial) for trial in self.trials],
            "environment": self.environment,
            "workers": {name: stats.to_json() for name, stats in self.workers.items()},
        }

    def __str__(self) -> str:
        base, best = self.baseline, self.best
        rows = [
            (
                "test accuracy",
                f"{base.accuracy:.2%}",
                f"{best.accuracy:.2%}",
                f"{(best.accuracy - base.accuracy) * 100:+.2f} pt",
            ),
            (
                "FLOPs",
                format_count(base.flops),
                format_count(best.flops),
                f"{best.flops / base.flops:.2f}x",
            ),
            (
                "params",
                format_count(base.params),
                format_count(best.params),
                f"{best.params / base.params:.2f}x",
            ),
            (
                "latency p50",
                f"{base.latency_ms:.3f} ms",
                f"{best.latency_ms:.3f} ms",
                f"{best.latency_ratio:.2f}x",
            ),
        ]
        widths = [
            max(len(row[i]) for row in rows + [("", "baseline", "best", "change")])
            for i in range(4)
        ]
        lines = [
            "  ".join(
                text.ljust(w)
                for text, w in zip(("", "baseline", "best", "change"), widths, strict=True)
            )
        ]
        lines += [
            "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.append(
            f"accuracy before recovery: {best.accuracy_before_recovery:.2%}   "
            f"reward: {best.reward:.4f}   trial #{best.trial}"
        )
        if best.deployed:
            parity = best.parity
            lines.append(
                f"artifact model.onnx: quantization {best.quantization}, fusion "
                f"{'on' if best.fusion else 'off'}; fp32 pruned accuracy "
                f"{best.accuracy_fp32:.2%}; parity top-1 "
                f"{parity.top1_agreement:.2%}, cosine {parity.cosine:.4f}, "
                f"max |diff| {parity.max_abs_diff:.3g}"
            )
        if len(self.workers) > 1:
            lines.append(_workers_line(self.workers))
        if self.output_dir is not None:
            lines.append(f"written to {self.output_dir}")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def _workers_line(workers: Mapping[str, WorkerStats]) -> str:
    # Milliseconds differ between machines; each worker's baseline says what its ratios mean.
    parts = []
    for name, stats in workers.items():
        baseline = stats.baseline_latency_ms
        parts.append(
            f"{name} {stats.trials}" + (f" (baseline {baseline:.3f} ms)" if baseline else "")
        )
    return "trials by worker: " + ", ".join(parts)


def read_result(data: Mapping[str, Any], output_dir: Path | None = None) -> CompressionResult:
    """A ``result.json`` (schema 1 or 2) as records; the model is not loaded (see
    :func:`compressor.saved_model.load_compressed`)."""
    return CompressionResult(
        model=None,
        baseline=Baseline.from_json(data["baseline"]),
        best=Chosen.from_json(data["best"]),
        target=Target.from_json(data["target"]),
        trials=[TrialRecord.from_json(trial) for trial in data["trials"]],
        environment=data.get("environment", {}),
        output_dir=output_dir,
        artifacts={
            name: ArtifactFile.from_json(row) for name, row in data.get("artifacts", {}).items()
        },
        workers={name: WorkerStats.from_json(row) for name, row in data.get("workers", {}).items()},
    )
