"""A compressed all-MiniLM-L6-v2 on STS-B: uniform head/FFN plan at a FLOPs budget,
distilled, with its test Spearman (x100), FLOPs ratio and latency ratio.

A cheaper stand-in for ``compress --config configs/minilm-stsb.yaml`` on a loaded machine:
the plan is the search's uniform seed (every layer pruned alike, fitted to the budget by the
search's own bisection) instead of the best of a search, which saves the 12-group
sensitivity pass and the trials (each embeds 1 500 sentences).

    python benchmarks/minilm_stsb.py [--data ../shared/data] [--target 0.5] [--steps 150]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from compressor.config import MeasureConfig, RecoveryConfig
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyMeter
from compressor.search.space import fit_to_budget
from compressor.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding stsb/ (default ../shared/data)")
    parser.add_argument("--target", type=float, default=0.5, help="FLOPs ratio budget")
    parser.add_argument("--steps", type=int, default=150, help="distillation steps (32 sentences)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--output", default="benchmarks/results/minilm_stsb.json")
    args = parser.parse_args()

    started = time.perf_counter()
    task = get_task("minilm-stsb", data=args.data, verbose=False)
    teacher, example, pruner = task.model, task.example_inputs, task.pruner
    base_flops = count_flops(teacher, example)
    groups = pruner.groups()
    ratios, fits = fit_to_budget({g.name: 1.0 for g in groups},
                                 lambda r: count_flops(pruner.prune(teacher, r)[0], example),
                                 int(args.target * base_flops), max_ratio=0.8)
    student, kept = pruner.prune(teacher, ratios)
    record = {"target_flops_ratio": args.target, "plan": "uniform", "fits": fits, "kept": kept,
              "baseline_test_spearman_x100": 100 * task.evaluate_test(teacher),
              "flops": count_flops(student, example), "baseline_flops": base_flops,
              "params": count_params(student), "baseline_params": count_params(teacher)}
    record["flops_ratio"] = record["flops"] / base_flops
    record["test_spearman_x100_before_recovery"] = 100 * task.evaluate_test(student)
    print(json.dumps(record, indent=1), flush=True)
    recovery = RecoveryConfig(epochs=1, steps=args.steps, lr=args.lr)
    student = task.recover(student, teacher, recovery, True)
    record["recovery"] = {"method": "embedding distillation (MSE + cosine), AdamW",
                          "steps": args.steps, "batch_sentences": 32, "lr": args.lr}
    record["test_spearman_x100"] = 100 * task.evaluate_test(student)
    with LatencyMeter(MeasureConfig(rounds=10), example) as meter:
        meter.set_baseline(teacher)
        latency = meter.compare(student)
    record.update(latency_ms=latency.candidate.p50_ms, baseline_latency_ms=latency.baseline.p50_ms,
                  latency_ratio=latency.ratio, seconds=time.perf_counter() - started)
    print(json.dumps(record, indent=1))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
