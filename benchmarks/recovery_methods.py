"""Recovery methods on one plan at a time: fine-tuning against distillation, same budget.

``recovery.method: auto`` distils a plan that removed whole blocks and fine-tunes the
others. This measures that rule where it matters: each depth plan below is recovered
twice from the same pruned model, once per method, with the task config's budget, and
scored on the test split in PyTorch. The goal is the rule's regret: how many points
``auto`` loses, on the worst plan, to the better of the two methods.

Plans: digits with ``layer2.1`` and ``layer3.1`` removed (no data needed; ``--quick``
runs only this one); ResNet-56 on the CIFAR-10 JPEGs with the three blocks B1b chose
removed, and with 13 of 27 removed (5 / 4 / 4 kept per stage, 0.47x FLOPs).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from benchmarks.common import markdown_table
from benchmarks.tasks import cifar_task, task_config
from compressor.actions.depth import remove_units
from compressor.recover import recover_model, resolved_method
from compressor.tasks import get_task

METHODS = ("fine_tune", "distill")
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
    row = {"teacher": 100 * task.evaluate_test(task.model)}
    for method in METHODS:
        student = remove_units(task.model, blocks)
        started = time.perf_counter()
        config = dataclasses.replace(recovery, method=method)
        recovered = recover_model(task, student, config, progress=False)
        row[method] = 100 * task.evaluate_test(recovered)
        row[f"{method}_seconds"] = time.perf_counter() - started
    row["auto"] = resolved_method("auto", depth_pruned=True)
    row["auto_regret_pt"] = max(row[m] for m in METHODS) - row[row["auto"]]
    return row


def markdown(data: dict) -> str:
    rows = data["rows"]
    table = markdown_table(
        ["plan", "teacher", "fine-tune", "distill", "auto picks", "auto's regret (pt)"],
        [
            [
                name,
                f"{row['teacher']:.2f}",
                f"{row['fine_tune']:.2f}",
                f"{row['distill']:.2f}",
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
        "test accuracy (%) in PyTorch.\n\n"
        f"{table}\n\nGoal: auto's worst regret {goal['value']:.2f} pt "
        f"(target <= {goal['target']}): {'met' if goal['met'] else 'NOT met'}\n"
    )
