"""Recovery methods on one plan at a time: fine-tuning against distillation, same budget.

``recovery.method: auto`` fine-tunes a plan, and on one that removed whole blocks races
fine-tuning against distillation and keeps the better on validation. This runs that race
(``compressor.recover.race_methods``, what ``auto`` calls) on depth plans: each recovered
twice from the same pruned model, once per method, with the task config's budget, and
scored on the validation split (what decides) and the test split (what is reported) in
PyTorch. The goal is the rule's regret: how many test points ``auto``'s pick loses, on the
worst plan, to the better of the two methods.

Plans: digits with ``layer2.1`` and ``layer3.1`` removed (no data needed; ``--quick``
runs only this one); ResNet-56 on the CIFAR-10 JPEGs with the three blocks B1b chose
removed, and with 13 of 27 removed (5 / 4 / 4 kept per stage, 0.47x FLOPs).
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import markdown_table
from benchmarks.tasks import cifar_task, task_config
from compressor.actions.depth import remove_units
from compressor.recover import race_methods, raced_methods
from compressor.tasks import get_task

B1B_BLOCKS = ("layer1.2", "layer1.3", "layer2.8")
DEEP_BLOCKS = tuple(f"layer1.{i}" for i in (1, 3, 5, 7)) + tuple(
    f"layer{stage}.{i}" for stage in (2, 3) for i in (1, 3, 5, 7, 8)
)
GOAL_REGRET_PT = 0.5


def run(args, session) -> tuple[dict, str]:
    torch.set_num_threads(session.threads)
    plans = {"digits, layer2.1 + layer3.1 removed": ("digits", ("layer2.1", "layer3.1"))}
    if not args.quick:
        plans["ResNet-56, B1b's 3 blocks removed"] = ("resnet56-cifar10", B1B_BLOCKS)
        plans["ResNet-56, 13 of 27 blocks removed"] = ("resnet56-cifar10", DEEP_BLOCKS)
    rows = {
        name: compare(task_name, blocks, args.data) for name, (task_name, blocks) in plans.items()
    }
    regret = max(row["auto_regret_pt"] for row in rows.values())
    data = {
        "plans": {name: list(blocks) for name, (_, blocks) in plans.items()},
        "rows": rows,
        "quick": args.quick,
        "goals": {
            "auto_regret_pt": {
                "value": regret,
                "target": GOAL_REGRET_PT,
                "met": regret <= GOAL_REGRET_PT,
            }
        },
    }
    return data, markdown(data)


def compare(task_name: str, blocks: tuple[str, ...], data_root) -> dict:
    """Test accuracy (%) of the teacher and of the plan after each method."""
    task = get_task(task_name, verbose=False) if task_name == "digits" else cifar_task(data_root)
    recovery = task_config(task_name).recovery
    methods = raced_methods("auto", depth_pruned=True)
    started = time.perf_counter()
    race = race_methods(task, remove_units(task.model, blocks), recovery, methods, progress=False)
    row = {
        "teacher": 100 * task.evaluate_test(task.model),
        "seconds": time.perf_counter() - started,
        "val": {method: 100 * value for method, value in race.val_metric.items()},
        "auto": race.winner,
    }
    for method, model in race.models.items():
        row[method] = 100 * task.evaluate_test(model)
    row["auto_regret_pt"] = max(row[m] for m in methods) - row[race.winner]
    return row


def markdown(data: dict) -> str:
    rows = data["rows"]
    table = markdown_table(
        [
            "plan",
            "teacher",
            "fine-tune (val)",
            "distill (val)",
            "auto picks",
            "auto's regret (pt)",
        ],
        [
            [
                name,
                f"{row['teacher']:.2f}",
                f"{row['fine_tune']:.2f} ({row['val']['fine_tune']:.2f})",
                f"{row['distill']:.2f} ({row['val']['distill']:.2f})",
                row["auto"],
                f"{row['auto_regret_pt']:.2f}",
            ]
            for name, row in rows.items()
        ],
    )
    goal = data["goals"]["auto_regret_pt"]
    return (
        "# Recovery methods: fine-tune vs distill on the same depth plans\n\n"
        "Each plan recovered from the same pruned model with the task config's budget; "
        "test accuracy (%) in PyTorch, validation accuracy (what auto's race decides on) "
        "in brackets.\n\n"
        f"{table}\n\nGoal: auto's worst regret {goal['value']:.2f} pt "
        f"(target <= {goal['target']}): {'met' if goal['met'] else 'NOT met'}\n"
    )
