"""The result of a compression run: what ``compress`` returns and what ``result.json`` holds."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from compressor.report.tables import format_count


@dataclass
class CompressionResult:
    """The compressed model and the numbers that justify it.

    ``str(result)`` is the baseline-vs-best table the CLI prints.
    """

    model: nn.Module
    baseline: dict[str, Any]
    best: dict[str, Any]
    target: dict[str, Any]
    trials: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)  # per ONNX file: latency, size
    report: Path | None = None  # the HTML report written beside result.json
    # Per process that ran trials (hostname:pid): see worker_summary.
    workers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "best": self.best,
            "target": self.target,
            "artifacts": self.artifacts,
            "trials": self.trials,
            "environment": self.environment,
            "workers": self.workers,
        }

    def __str__(self) -> str:
        base, best = self.baseline, self.best
        rows = [
            (
                "test accuracy",
                f"{base['accuracy']:.2%}",
                f"{best['accuracy']:.2%}",
                f"{(best['accuracy'] - base['accuracy']) * 100:+.2f} pt",
            ),
            (
                "FLOPs",
                format_count(base["flops"]),
                format_count(best["flops"]),
                f"{best['flops'] / base['flops']:.2f}x",
            ),
            (
                "params",
                format_count(base["params"]),
                format_count(best["params"]),
                f"{best['params'] / base['params']:.2f}x",
            ),
            (
                "latency p50",
                f"{base['latency_ms']:.3f} ms",
                f"{best['latency_ms']:.3f} ms",
                f"{best['latency_ratio']:.2f}x",
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
            f"accuracy before recovery: {best['accuracy_before_recovery']:.2%}   "
            f"reward: {best['reward']:.4f}   trial #{best['trial']}"
        )
        if "quantization" in best:
            parity = best["parity"]
            lines.append(
                f"artifact model.onnx: quantization {best['quantization']}, fusion "
                f"{'on' if best['fusion'] else 'off'}; fp32 pruned accuracy "
                f"{best['accuracy_fp32']:.2%}; parity top-1 "
                f"{parity['top1_agreement']:.2%}, cosine {parity['cosine']:.4f}, "
                f"max |diff| {parity['max_abs_diff']:.3g}"
            )
        if len(self.workers) > 1:
            lines.append(_workers_line(self.workers))
        if self.output_dir is not None:
            lines.append(f"written to {self.output_dir}")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def _workers_line(workers: dict[str, Any]) -> str:
    # Milliseconds differ between machines; each worker's baseline says what its ratios mean.
    parts = []
    for name, info in workers.items():
        baseline = info.get("baseline_latency_ms")
        parts.append(
            f"{name} {info['trials']}" + (f" (baseline {baseline:.3f} ms)" if baseline else "")
        )
    return "trials by worker: " + ", ".join(parts)


# What result.json keeps of each trial's user attributes (set by the search objective).
TRIAL_KEYS = (
    "reference",  # the unpruned pipeline a reference trial scores (issue 14)
    "removed_units",
    "accuracy",
    "flops",
    "flops_ratio",
    "params",
    "latency_ms",
    "latency_p90_ms",
    "baseline_latency_ms",
    "latency_ratio",
    "feasible",
    "seconds",
    "error",
    "artifact",
    "channels",
    "worker",  # hostname:pid of the process that scored and timed it (scale-out)
)


def trial_record(trial) -> dict[str, Any]:
    """An Optuna trial as ``result.json`` (and the report) lists it."""
    attrs = trial.user_attrs
    record = {"number": trial.number, "state": trial.state.name, "reward": trial.value}
    record.update((key, attrs[key]) for key in TRIAL_KEYS if key in attrs)
    record["plan"] = attrs.get("ratios", {})
    if "failed_trial" in trial.system_attrs:  # queued again after its process died
        record["retry_of"] = trial.system_attrs["failed_trial"]
    return record


def worker_summary(
    trials: Iterable[dict[str, Any]], machines: Mapping[str, dict] | None = None
) -> dict[str, dict[str, Any]]:
    """Per process that scored trials (a trial record's ``worker``, ``hostname:pid``): its
    machine (when ``machines`` has it), its finished trials (count and numbers) and the median
    baseline latency it timed them against.

    Latency ratios compare across workers, milliseconds do not: each worker timed its
    candidates against the baseline artifact on its own machine.
    """
    table: dict[str, dict[str, Any]] = {
        name: {**info, "trials": 0, "trial_numbers": []} for name, info in (machines or {}).items()
    }
    baselines: dict[str, list[float]] = {}
    for trial in trials:
        worker = trial.get("worker")
        if worker is None or trial["state"] != "COMPLETE":
            continue
        entry = table.setdefault(worker, {"trials": 0, "trial_numbers": []})
        entry["trials"] += 1
        entry["trial_numbers"].append(trial["number"])
        if trial.get("baseline_latency_ms"):
            baselines.setdefault(worker, []).append(trial["baseline_latency_ms"])
    for worker, values in baselines.items():
        table[worker]["baseline_latency_ms"] = statistics.median(values)
    return table
