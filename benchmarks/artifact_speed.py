"""Re-time a finished run's ``model.onnx`` against the fp32 ONNX export of the unpruned model.

    python -m benchmarks.artifact_speed RUN_DIR --task resnet56-cifar10 [--batches 1 8]

The search times every candidate with a short interleaved comparison; this re-measures the
chosen artifact with many more rounds (20 x 50 runs, each round alternating baseline and
artifact in the same measurement process, so machine noise hits both), at batch 1 and a
larger batch, and records the load average before and after. Results go to
``benchmarks/results/artifact-speed-<task>-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.common import fmt, markdown_table, write_results
from compressor.actions.export import export_onnx
from compressor.config import MeasureConfig
from compressor.environment import environment_info
from compressor.measure.latency import LatencyMeter, default_threads
from compressor.tasks import get_task


def retime(run_dir: Path, task_name: str, batches: list[int], rounds: int) -> dict:
    task = get_task(task_name, verbose=False)
    report: dict = {"run": str(run_dir), "task": task_name, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="compressor-") as workdir:
        baseline = export_onnx(task.model.eval(), task.example_inputs, Path(workdir) / "fp32.onnx")
        for batch in batches:
            config = MeasureConfig(
                rounds=rounds, runs_per_round=50, max_seconds=120.0, batch_size=batch
            )
            with LatencyMeter(config, task.example_inputs) as meter:  # ORT, own process
                meter.set_baseline(baseline)
                measured = meter.compare(run_dir / "model.onnx")
            report[f"batch_{batch}"] = {
                "fp32_baseline_p50_ms": measured.baseline.p50_ms,
                "fp32_baseline_p90_ms": measured.baseline.p90_ms,
                "artifact_p50_ms": measured.candidate.p50_ms,
                "artifact_p90_ms": measured.candidate.p90_ms,
                "ratio": measured.ratio,  # median of the per-round ratios
                "speedup": 1.0 / measured.ratio,
            }
    report["load_after"] = os.getloadavg()
    report["environment"] = environment_info("cpu", default_threads())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    report = retime(args.run_dir, args.task, args.batches, args.rounds)
    rows = [
        [batch, fmt(m["fp32_baseline_p50_ms"], ".3f"), fmt(m["artifact_p50_ms"], ".3f"),
         f"{m['speedup']:.2f}x"]
        for batch, m in ((b, report[f"batch_{b}"]) for b in args.batches)
    ]  # fmt: skip
    table = markdown_table(["batch", "fp32 p50 ms", "model.onnx p50 ms", "speed-up"], rows)
    print(table)
    print("written:", *write_results(f"artifact-speed-{args.task}", report, table))


if __name__ == "__main__":
    main()
