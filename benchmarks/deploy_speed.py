"""The deployable path, measured: the chosen ONNX artifact vs the fp32 baseline artifact.

    python -m benchmarks.deploy_speed --task digits --trials 30
    python -m benchmarks.deploy_speed --task digits-resnet20 --trials 30

Runs one full ``compress --target-flops 0.5`` (pruning, quantization mode and fusion searched
together), then reports from that one run, where every latency was timed side by side
against the same fp32 baseline artifact in the measurement process:

* speed-up of ``model.onnx`` over the fp32 ONNX export of the unpruned model (and of the
  fp32 export of the pruned model, to separate pruning's share from quantization's);
* test accuracy of ``model.onnx`` vs the fp32 pruned PyTorch model, and parity;
* ``model.onnx`` reloaded in a fresh ONNX Runtime session reproduces the recorded accuracy;
* per quantization mode, the trials' measured latency ratios and rewards (dynamic INT8 on
  convolutions shows up slower, with a lower reward).

Results go to ``benchmarks/results/deploy_<task>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from compressor.api import run_task
from compressor.config import CompressConfig
from compressor.measure.onnx_runtime import OnnxModule
from compressor.records import TrialRecord, to_json
from compressor.tasks import get_task

RESULTS = Path(__file__).parent / "results"


def per_mode(trials: list[TrialRecord]) -> dict[str, dict]:
    """Measured latency ratio and reward of the trials, grouped by quantization mode."""
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        if trial.finished and trial.artifact is not None:
            groups.setdefault(trial.artifact.quantization, []).append(trial)
    return {
        mode: {
            "trials": len(items),
            "latency_ratio_median": statistics.median(t.latency_ratio for t in items),
            "reward_median": statistics.median(t.reward for t in items),
            "reward_best": max(t.reward for t in items),
        }
        for mode, items in sorted(groups.items())
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--target-latency",
        default=None,
        help="also a latency budget (e.g. 0.5 = half the fp32 baseline artifact)",
    )
    args = parser.parse_args(argv)
    output = Path(args.output or f"runs/bench-deploy-{args.task}-{time.strftime('%H%M%S')}")
    config = CompressConfig.from_dict(
        {
            "task": args.task,
            "target_flops": 0.5,
            "target_latency": args.target_latency,
            "output": str(output),
            "search": {"trials": args.trials, "seed": args.seed},
        }
    )
    started = time.perf_counter()
    result = run_task(config, verbose=True)
    seconds = time.perf_counter() - started

    task = get_task(args.task, verbose=False)
    reloaded = task.evaluate_test(OnnxModule(output / "model.onnx"))  # a fresh session
    artifacts, best = result.artifacts, result.best
    base_ms = artifacts["baseline_fp32.onnx"].latency_ms.p50
    report = {
        "task": args.task,
        "trials": args.trials,
        "seconds": seconds,
        "target_latency": args.target_latency,
        "speedup_vs_fp32_baseline": 1 / artifacts["model.onnx"].latency_ratio,
        "speedup_pruned_fp32": 1 / artifacts["pruned_fp32.onnx"].latency_ratio,
        "baseline_fp32_p50_ms": base_ms,
        "artifacts": {name: to_json(row) for name, row in artifacts.items()},
        "chosen": {
            "quantization": best.quantization,
            "fusion": best.fusion,
            "flops_ratio": best.flops / result.baseline.flops,
        },
        "accuracy": {
            "baseline_fp32": result.baseline.accuracy,
            "pruned_fp32": best.accuracy_fp32,
            "artifact": best.accuracy,
            "artifact_reloaded": reloaded,
            "artifact_minus_pruned_fp32_pt": 100 * (best.accuracy - best.accuracy_fp32),
        },
        "parity": to_json(best.parity),
        "per_quantization_mode": per_mode(result.trials),
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = f"-latency{args.target_latency}" if args.target_latency else ""
    (RESULTS / f"deploy_{args.task}{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "artifacts"}, indent=2))
    return report


if __name__ == "__main__":
    main()
