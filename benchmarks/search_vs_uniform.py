"""Is the search worth having? Search vs torch-pruning's uniform ratio at the same budget.

On the embedded default task, for several seeds:
* torch-pruning uniform: ``tp.pruner.MagnitudePruner`` with one ``pruning_ratio`` for every
  layer (bisected to the FLOPs budget, ``round_to`` as in the search), scored with stale
  BatchNorm statistics and with adaptive BN;
* our search's best plan (same budget, same proxy), and both after the same recovery.
Also: how well the adaptive-BN proxy ranks random plans (Spearman against validation
accuracy after a short fine-tune).

    python -m benchmarks.search_vs_uniform [--seeds 0 1 2] [--trials 30] [--plans 12]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from benchmarks.common import markdown_table, write_results
from benchmarks.searching import torch_pruning_at_budget
from compressor.api import run_compression
from compressor.config import CompressConfig, RecoveryConfig, SearchConfig
from compressor.environment import environment_info
from compressor.measure.flops import count_flops
from compressor.recover import fine_tune, first_batches, recalibrate_batchnorm
from compressor.search.candidate import build_candidate, plan_for
from compressor.search.context import search_settings
from compressor.tasks import get_task


def recovered_accuracy(task, model, epochs: int) -> float:
    model = copy.deepcopy(model)
    fine_tune(model, task.train_data, task.loss_fn, epochs=epochs, lr=0.01, progress=False)
    return task.evaluate(model)


def compare_seed(task, seed: int, trials: int, epochs: int) -> dict:
    config = CompressConfig(
        search=SearchConfig(trials=trials, seed=seed), recovery=RecoveryConfig(epochs=epochs)
    )
    with tempfile.TemporaryDirectory() as folder:
        config.output = Path(folder) / "run"
        started = time.perf_counter()
        result = run_compression(task, config, verbose=False)
        seconds = time.perf_counter() - started
    return {
        "seed": seed,
        "search_val_before": result.best.val_accuracy_before_recovery,
        "search_val_after": result.best.val_accuracy,
        "search_flops_ratio": result.best.flops / result.baseline.flops,
        "search_seconds": seconds,
        "best_trial": result.best.trial,
    }


def proxy_rank_correlation(task, budget: int, plans: int, epochs: int, seed: int = 0) -> dict:
    """Spearman between the adaptive-BN proxy and accuracy after ``epochs`` of fine-tuning."""
    config = CompressConfig()
    settings = search_settings(
        task, config, count_flops(task.model, task.example_inputs), flops_budget=budget
    )
    groups = settings.groups
    generator = torch.Generator().manual_seed(seed)
    proxy, tuned = [], []
    for _ in range(plans):
        preferences = {g.name: float(torch.rand(1, generator=generator)) for g in groups}
        ratios, _ = plan_for(settings, preferences)
        model, _ = build_candidate(settings, ratios)
        proxy.append(task.evaluate(model))
        tuned.append(recovered_accuracy(task, model, epochs))
    rho = spearmanr(proxy, tuned).statistic
    return {
        "plans": plans,
        "fine_tune_epochs": epochs,
        "spearman": float(rho),
        "proxy": proxy,
        "after_fine_tune": tuned,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3, help="recovery epochs for both")
    parser.add_argument("--plans", type=int, default=12, help="random plans for the proxy check")
    args = parser.parse_args(argv)

    task = get_task("digits", verbose=False)
    baseline_flops = count_flops(task.model, task.example_inputs)
    budget = baseline_flops // 2
    uniform, ratio = torch_pruning_at_budget(task, budget, round_to=8)
    calibrated = copy.deepcopy(uniform)
    recalibrate_batchnorm(calibrated, first_batches(task.train_data, 256), 256)
    uniform_row = {
        "ratio": ratio,
        "flops_ratio": count_flops(uniform, task.example_inputs) / baseline_flops,
        "val_stale_bn": task.evaluate(uniform),
        "val_adaptive_bn": task.evaluate(calibrated),
        "val_after": recovered_accuracy(task, calibrated, args.epochs),
    }
    seeds = [compare_seed(task, seed, args.trials, args.epochs) for seed in args.seeds]
    margins = [s["search_val_before"] - uniform_row["val_adaptive_bn"] for s in seeds]
    proxy = proxy_rank_correlation(task, budget, args.plans, epochs=1)

    data = {
        "task": "digits",
        "budget_flops": budget,
        "baseline_flops": baseline_flops,
        "baseline_val": task.evaluate(task.model),
        "uniform": uniform_row,
        "search": seeds,
        "margin_before_recovery": {
            "per_seed": margins,
            "median": statistics.median(margins),
            "min": min(margins),
        },
        "proxy": proxy,
        "environment": environment_info("cpu", torch.get_num_threads()),
    }
    rows = [
        [
            "torch-pruning uniform (stale BN)",
            f"{uniform_row['flops_ratio']:.3f}",
            f"{uniform_row['val_stale_bn']:.2%}",
            "-",
        ],
        [
            "torch-pruning uniform (adaptive BN)",
            f"{uniform_row['flops_ratio']:.3f}",
            f"{uniform_row['val_adaptive_bn']:.2%}",
            f"{uniform_row['val_after']:.2%}",
        ],
    ]
    rows += [
        [
            f"search, seed {s['seed']} ({args.trials} trials, {s['search_seconds']:.0f} s)",
            f"{s['search_flops_ratio']:.3f}",
            f"{s['search_val_before']:.2%}",
            f"{s['search_val_after']:.2%}",
        ]
        for s in seeds
    ]
    markdown = (
        "# Search vs uniform pruning, digits, FLOPs <= 50 %\n\n"
        + markdown_table(
            [
                "method",
                "FLOPs ratio",
                "val acc before recovery",
                f"val acc after {args.epochs} epochs",
            ],
            rows,
        )
        + f"\nSearch minus uniform (adaptive BN), before recovery: median "
        f"{statistics.median(margins) * 100:+.2f} pt, min {min(margins) * 100:+.2f} pt.\n"
        + f"\nProxy quality: Spearman {proxy['spearman']:.3f} between the adaptive-BN "
        f"proxy and validation accuracy after 1 epoch, over {args.plans} random plans.\n"
    )
    json_path, md_path = write_results("search-vs-uniform", data, markdown)
    print(markdown)
    print(f"written {json_path} and {md_path}")


if __name__ == "__main__":
    main()
