"""A compressed real model at a FLOPs budget, before and after a stated recovery budget.

The plan is the search's uniform seed (every group pruned alike, fitted to the budget with
the search's own bisection), not the best plan of a search: on a loaded 2-core machine a
full ``compress --config configs/...`` run (sensitivity pass + trials) takes an hour, this
takes minutes. Reports the test metric (x100) of the unpruned model, of the pruned model
after adaptive BN only, and after recovery, the FLOPs ratio and the measured latency ratio.

    python benchmarks/real_models.py --task resnet56-cifar10 --epochs 1 --lr 0.01
    python benchmarks/real_models.py --task minilm-stsb --steps 150 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from compressor.actions.pruner import ChannelPruner
from compressor.config import MeasureConfig, RecoveryConfig
from compressor.distill import recover_model
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyMeter
from compressor.recover import first_batches, recalibrate_batchnorm
from compressor.search.space import fit_to_budget
from compressor.tasks import get_task


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=["resnet56-cifar10", "minilm-stsb"])
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    parser.add_argument("--target", type=float, default=0.5, help="FLOPs ratio budget")
    parser.add_argument("--epochs", type=int, default=1, help="recovery epochs")
    parser.add_argument("--steps", type=int, default=None, help="recovery steps (replaces epochs)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--round-to", type=int, default=4, help="channel rounding (CNNs)")
    parser.add_argument("--output", default=None, help="JSON file (default benchmarks/results/)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    task = get_task(args.task, data=args.data, verbose=False)
    teacher, example = task.model, task.example_inputs
    pruner = task.pruner or ChannelPruner(
        teacher, example, round_to=args.round_to, ignored_layers=task.ignored_layers
    )
    base_flops = count_flops(teacher, example)
    ratios, fits = fit_to_budget(
        {g.name: 1.0 for g in pruner.groups()},
        lambda r: count_flops(pruner.prune(teacher, r)[0], example),
        int(args.target * base_flops),
        max_ratio=0.8,
    )
    student, kept = pruner.prune(teacher, ratios)
    recalibrate_batchnorm(student, first_batches(task.train_data, 256), 256)  # adaptive BN
    record = {
        "task": args.task,
        "plan": "uniform",
        "target_flops_ratio": args.target,
        "fits": fits,
        "kept": kept,
        "baseline_test_x100": 100 * task.evaluate_test(teacher),
        "flops": count_flops(student, example),
        "baseline_flops": base_flops,
        "params": count_params(student),
        "baseline_params": count_params(teacher),
    }
    record["flops_ratio"] = record["flops"] / base_flops
    record["test_x100_before_recovery"] = 100 * task.evaluate_test(student)
    print(json.dumps(record, indent=1), flush=True)
    recovery = RecoveryConfig(epochs=args.epochs, steps=args.steps, lr=args.lr)
    student = recover_model(task, student, recovery, progress=True)
    record["recovery"] = {
        "epochs": args.epochs,
        "steps": args.steps,
        "lr": args.lr,
        "how": "task hook" if task.recover else "fine_tune (SGD, cosine)",
    }
    record["test_x100_after_recovery"] = 100 * task.evaluate_test(student)
    with LatencyMeter(MeasureConfig(rounds=10), example) as meter:
        meter.set_baseline(teacher)
        latency = meter.compare(student)
    record.update(
        latency_ms=latency.candidate.p50_ms,
        baseline_latency_ms=latency.baseline.p50_ms,
        latency_ratio=latency.ratio,
        seconds=time.perf_counter() - started,
    )
    print(json.dumps(record, indent=1))
    output = Path(args.output or f"benchmarks/results/{args.task}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
