"""Proxies: which cheap score ranks compressed candidates as recovery will?

The search scores thousands of candidates it never fine-tunes, so it optimises a *proxy*;
the variant it ships is judged after recovery. For N plans at the benchmark's FLOPs budget
(random per-group preferences fitted to the budget, as the search samples them, plus the
uniform plan; quantization modes in turn), every proxy is computed on the candidate's ONNX
artifact and compared, by rank, with the accuracy of the same plan's artifact after the
recovery budget:

- ``adaptive_bn``: the metric after BatchNorm re-estimation (what the search scores today;
  EagleEye, Li et al. ECCV 2020);
- ``output_gap``: minus the distillation loss between the artifact's and the unpruned
  model's outputs on held training inputs (the reconstruction-error family: ThiNet, Luo et
  al. 2017; NISP, Yu et al. 2018), after adaptive BN, no training;
- ``distill_k`` (k = 20 / 50 / 100): the metric after k steps of distillation from the
  unpruned model at a constant learning rate, on a fixed set of training batches whose
  teacher outputs are cached (one 100-step run scores all three: its first k steps *are*
  a k-step run).

Recovery here is the benchmark's recovery *method* on a reduced, stated budget (the full
one-epoch B1 recovery takes ~3.5 min per plan on a quiet 2-core machine): every plan gets
the same batches in the same order. Spearman (scipy.stats.spearmanr) and Kendall tau, the
accuracy lost by trusting each proxy's top pick (regret), and the seconds each proxy costs
per candidate.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr
from torch import nn

from benchmarks.common import data_root, fmt, markdown_table
from benchmarks.searching import settings_for
from benchmarks.tasks import cifar_task, minilm_task, task_config
from compressor.actions.artifact import DeploySpec
from compressor.distill import distill, embedding_kd_loss, logits_kd_loss
from compressor.errors import UserInputError
from compressor.recover import recalibrate_batchnorm, recover_model
from compressor.search.candidate import (
    build_candidate,
    checked_metric,
    make_artifact,
    plan_for,
    removed_units,
    runnable,
)
from compressor.search.space import DepthChoice
from compressor.tasks import get_task

GOAL_SPEARMAN = 0.8
MIN_PLANS = 16


@dataclass(frozen=True)
class BenchSetup:
    """How one task is cut and recovered for this benchmark."""

    name: str
    load: Callable  # (args) -> Task
    modes: tuple[str, ...]  # quantization modes, assigned to plans in turn
    distill_batches: int  # fixed training batches of the short distillation
    recovery_steps: int  # the reduced recovery budget (optimiser steps)
    embeddings: bool  # sentence encoder (embedding loss) rather than a classifier
    distill_lr: float
    distill_optimizer: str
    distill_steps: tuple[int, ...] = (20, 50, 100)

    @property
    def proxies(self) -> tuple[str, ...]:
        return ("adaptive_bn", "output_gap", *(f"distill_{k}" for k in self.distill_steps))


def _cifar(args):
    if args.quick:
        return cifar_task(data_root(args.data), val_images=200, test_images=300, batch_size=32)
    return cifar_task(data_root(args.data), val_images=500, test_images=1000, batch_size=32)


def _minilm(args):
    if args.quick:
        return minilm_task(data_root(args.data), test_pairs=200, dev_pairs=200, train_sentences=320)
    return minilm_task(data_root(args.data), test_pairs=500, train_sentences=150 * 32)


def _digits(args):
    return get_task("digits", verbose=False)


SETUPS = {
    # Recovery: SGD fine-tuning at lr 0.01 (configs/resnet56-cifar10.yaml) over the first
    # 60 batches of 32 augmented training images (1 920 images, 4 % of an epoch): what 16
    # plans afford on a heavily shared 2-core machine (~2.3 s per training step).
    "resnet56-cifar10": BenchSetup(
        "resnet56-cifar10",
        _cifar,
        ("none", "static_ort"),
        40,
        60,
        False,
        0.01,
        "sgd",
        (10, 20, 40),
    ),
    # Recovery: B2's own (150 AdamW steps of embedding distillation, 32 sentences each).
    "minilm-stsb": BenchSetup(
        "minilm-stsb", _minilm, ("none", "dynamic"), 20, 150, True, 1e-4, "adamw"
    ),
    "digits": BenchSetup(
        "digits", _digits, ("none", "static_ort"), 10, 30, False, 0.01, "sgd", (5, 10, 20)
    ),
}


DEPTH_SHARES = (0.0, 0.5, 1.0)  # share of the FLOPs cut taken by removing units, in turn


def make_plans(
    settings, count: int, modes: tuple[str, ...], seed: int = 0, share: range | None = None
) -> list[dict]:
    """The uniform plan and ``count - 1`` random plans, fitted to the budget: random
    per-group width preferences and, where the task has depth units, a depth share taken
    in turn from ``DEPTH_SHARES`` with random unit preferences (what the search samples:
    widths only, mixed, depth first).

    ``share``: fit only these plans (the draws stay those of the whole sequence; the fit,
    a bisection of pruned FLOPs counts, is what costs)."""
    rng = random.Random(seed)
    step = settings.config.prune.ratio_step
    plans = []
    for index in range(count):
        if index == 0:
            preferences = {group.name: 1.0 for group in settings.groups}
            depth = None
        else:
            preferences = {
                group.name: round(rng.randint(0, int(round(1 / step))) * step, 6)
                for group in settings.groups
            }
            units = {
                u.name: rng.randint(1, int(round(1 / step))) * step for u in settings.depth_units
            }
            depth = DepthChoice(DEPTH_SHARES[index % len(DEPTH_SHARES)], units)
        if share is not None and index not in share:
            continue
        removed = removed_units(settings, depth, settings.flops_budget)
        ratios, fits = plan_for(settings, preferences, removed=removed)
        plans.append(
            {
                "index": index,
                "ratios": ratios,
                "removed": removed,
                "fits": fits,
                "mode": modes[index % len(modes)],
            }
        )
    return plans


class Scorer:
    """Scores one plan's artifact: the task's metric and the output gap to the teacher."""

    def __init__(self, settings, bench: BenchSetup, held: list, folder: Path) -> None:
        self.settings, self.bench, self.folder = settings, bench, folder
        self.loss = embedding_kd_loss if bench.embeddings else logits_kd_loss()
        self.held = held  # [(inputs, teacher outputs)]

    def artifact(self, model: nn.Module, mode: str):
        spec = DeploySpec(mode, True)
        return runnable(
            self.settings, make_artifact(self.settings, model, spec, self.folder / "c.onnx").path
        )

    def metric(self, model: nn.Module, mode: str, evaluate=None) -> float:
        return self.metric_of(self.artifact(model, mode), evaluate)

    def metric_of(self, module, evaluate=None) -> float:
        return checked_metric((evaluate or self.settings.evaluate)(module))

    def gap_of(self, module) -> float:
        with torch.no_grad():
            losses = [
                float(self.loss(module(*inputs), target, None)) for inputs, target in self.held
            ]
        return sum(losses) / len(losses)


def _inputs(batch) -> tuple:
    inputs = batch[0]
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def score_plan(task, settings, bench: BenchSetup, plan: dict, scorer: Scorer, data: dict) -> dict:
    """Every proxy of one plan, its accuracy after the reduced recovery, and the seconds."""
    mode = plan["mode"]
    row = {"plan": plan["index"], "mode": mode, "removed": list(plan.get("removed", ()))}
    started = time.perf_counter()
    model, kept = build_candidate(settings, plan["ratios"], plan.get("removed", ()))
    built = time.perf_counter() - started
    row["channels"] = kept
    clock = time.perf_counter()
    module = scorer.artifact(model, mode)
    built += time.perf_counter() - clock  # the artifact: both proxies need it
    clock = time.perf_counter()
    row["adaptive_bn"] = scorer.metric_of(module)
    row["seconds_adaptive_bn"] = built + time.perf_counter() - clock
    clock = time.perf_counter()
    row["output_gap"] = -scorer.gap_of(module)
    row["seconds_output_gap"] = built + time.perf_counter() - clock

    student, trained = copy.deepcopy(model), {"seconds": 0.0, "last": time.perf_counter()}

    def checkpoint(step: int, current: nn.Module) -> None:
        trained["seconds"] += time.perf_counter() - trained["last"]
        if step in bench.distill_steps:
            clock = time.perf_counter()
            # Training-mode steps overwrite BatchNorm statistics with momentum averages of
            # a moving network; re-estimate them (adaptive BN again) before scoring.
            snapshot = recalibrate_batchnorm(
                copy.deepcopy(current),
                settings.calibration,
                settings.config.search.calibration_samples,
            )
            row[f"distill_{step}"] = scorer.metric(snapshot, mode)
            row[f"seconds_distill_{step}"] = (
                built + trained["seconds"] + time.perf_counter() - clock
            )
        trained["last"] = time.perf_counter()

    torch.manual_seed(0)
    distill(
        student,
        settings.model,
        data["distill"],
        embedding_kd_loss if bench.embeddings else logits_kd_loss(),
        steps=max(bench.distill_steps),
        lr=bench.distill_lr,
        optimizer=bench.distill_optimizer,
        progress=False,
        constant_lr=True,
        on_step=checkpoint,
    )
    clock = time.perf_counter()
    torch.manual_seed(0)
    recovered = recover_model(data["recovery_task"], model, data["recovery"], progress=False).model
    row["seconds_recovery"] = time.perf_counter() - clock
    row["after_recovery"] = scorer.metric(recovered, mode, task.evaluate_test)
    return row


def recovery_setup(task, config, bench: BenchSetup) -> tuple:
    """The task and recovery config giving every plan the same reduced recovery."""
    recovery = dataclasses.replace(config.recovery, epochs=1, steps=bench.recovery_steps)
    if task.recover is not None:  # the task's own recovery (MiniLM: B2's, steps-limited)
        return task, recovery
    # fine_tune has no step budget: one pass over the first N batches of a fresh stream.
    return dataclasses.replace(task, train_data=first_of(task, bench.recovery_steps)), recovery


def first_of(task, count: int) -> list:
    """The first ``count`` training batches, the same for every plan."""
    from compressor.tasks.image_folder import AugmentedBatches

    batches = task.train_data
    if isinstance(batches, AugmentedBatches):  # its generator is stateful: restart it
        batches = AugmentedBatches(batches.inputs, batches.labels, batches.batch_size)
    return list(itertools.islice(iter(batches), count))


def correlations(rows: list[dict], proxies: tuple[str, ...]) -> dict:
    truth = [r["after_recovery"] for r in rows]
    best = max(truth)
    summary = {}
    for proxy in proxies:
        scores = [r[proxy] for r in rows]
        rho = spearmanr(scores, truth).statistic
        tau = kendalltau(scores, truth).statistic
        pick = max(range(len(rows)), key=lambda i: scores[i])
        seconds = [r[f"seconds_{proxy}"] for r in rows]
        summary[proxy] = {
            "spearman": float(rho),
            "kendall": float(tau),
            "regret_pt": 100 * (best - truth[pick]),
            "seconds_per_candidate": sum(seconds) / len(seconds),
        }
    return summary


def study_task(name: str, args, log) -> dict:
    bench = SETUPS[name]
    steps = getattr(args, "recovery_steps", None)
    if steps is not None:  # rank against a longer (or shorter) recovery than the default
        if steps < 1:
            raise UserInputError(f"--recovery-steps must be a positive step count, not {steps}")
        bench = dataclasses.replace(bench, recovery_steps=steps)
    task = bench.load(args)
    config = task_config(name, measure={"threads": args.threads})
    settings = settings_for(task, config)
    count = args.plans or (6 if args.quick else 16)
    share = None
    if args.plan_range:  # a share of the plans (several processes; see merge())
        first, last = (int(x) for x in args.plan_range.split(":"))
        share = range(first, last)
    plans = make_plans(settings, count, bench.modes, share=share)
    distill_data = first_of(task, bench.distill_batches)
    with torch.no_grad():
        held = [(_inputs(b), settings.model(*_inputs(b))) for b in distill_data[:4]]
    recovery_task, recovery = recovery_setup(task, config, bench)
    data = {"distill": distill_data, "recovery_task": recovery_task, "recovery": recovery}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as folder:
        scorer = Scorer(settings, bench, held, Path(folder))
        for plan in plans:
            row = score_plan(task, settings, bench, plan, scorer, data)
            rows.append(row)
            log(json.dumps({"task": name, **{k: v for k, v in row.items() if k != "channels"}}))
    return {
        **describe(
            name, task.description, recovery, settings.flops_budget / settings.baseline_flops
        ),
        "flops_budget": settings.flops_budget,
        "baseline_flops": settings.baseline_flops,
        "plans": len(rows),
        "rows": rows,
        "correlations": correlations(rows, bench.proxies),
    }


def describe(name: str, description: str, recovery, flops_ratio: float) -> dict:
    """What a task's result states about its setting (also rebuilt for merged logs)."""
    bench = SETUPS[name]
    return {
        "task": name,
        "description": description,
        "flops_ratio": flops_ratio,
        "modes": bench.modes,
        "recovery": {"steps": bench.recovery_steps, **dataclasses.asdict(recovery)},
        "distill": {
            "steps": bench.distill_steps,
            "batches": bench.distill_batches,
            "lr": bench.distill_lr,
            "optimizer": bench.distill_optimizer,
        },
        "proxies": bench.proxies,
    }


def goals(results: list[dict]) -> dict:
    """The best proxy's Spearman per task, against the issue's bar for ResNet-56 (>= 0.8 over
    >= 16 plans); the same bar is applied to every task so the goals table shows each one."""
    out = {}
    for result in results:
        best = max(result["proxies"], key=lambda p: result["correlations"][p]["spearman"])
        value = result["correlations"][best]["spearman"]
        out[f"{result['task'].split('-')[0]}_proxy_spearman"] = {
            "value": value,
            "target": GOAL_SPEARMAN,
            # The issue asks for >= 16 plans: fewer cannot meet it, whatever the value.
            "met": value >= GOAL_SPEARMAN and result["plans"] >= MIN_PLANS,
            "plans": result["plans"],
            "proxy": best,
            "seconds_per_candidate": result["correlations"][best]["seconds_per_candidate"],
        }
    return out


def markdown(results: list[dict]) -> str:
    parts = ["# Proxies: rank correlation with accuracy after recovery\n"]
    for result in results:
        corr, proxies = result["correlations"], result["proxies"]
        parts.append(
            f"\n## {result['task']}: {result['plans']} plans at FLOPs <= "
            f"{result['flops_ratio']:.2f}x, modes "
            f"{', '.join(result['modes'])}\n\n{result['description']}. Recovery: "
            f"{result['recovery']['steps']} steps of `{result['recovery']['method']}` at lr "
            f"{result['recovery']['lr']} (the same batches for every plan). Short distillation: "
            f"{result['distill']['optimizer']} at constant lr {result['distill']['lr']} on "
            f"{result['distill']['batches']} fixed training batches.\n\n"
            + markdown_table(
                ["proxy", "Spearman", "Kendall tau", "regret (pt)", "s / candidate"],
                [
                    [
                        p,
                        f"{corr[p]['spearman']:.3f}",
                        f"{corr[p]['kendall']:.3f}",
                        f"{corr[p]['regret_pt']:.2f}",
                        f"{corr[p]['seconds_per_candidate']:.1f}",
                    ]
                    for p in proxies
                ],
            )
            + "\n"
            + markdown_table(
                ["plan", "mode", "units removed", *proxies, "after recovery"],
                [
                    [
                        r["plan"],
                        r["mode"],
                        len(r.get("removed", ())),
                        *(fmt(r[p], ".4f") for p in proxies),
                        fmt(r["after_recovery"], ".4f"),
                    ]
                    for r in result["rows"]
                ],
            )
        )
    return "".join(parts)


def run(args, session) -> tuple[dict, str]:
    # Training and ONNX Runtime on `--threads` (on a loaded 2-core machine one thread ran
    # a ResNet-56 training step 10x faster than two contending ones).
    torch.set_num_threads(session.threads)
    args.threads = session.threads
    names = (args.task or "resnet56-cifar10,minilm-stsb").split(",")
    results = [study_task(name, args, lambda line: print(line, flush=True)) for name in names]
    data = {"tasks": results, "quick": args.quick}
    data["goals"] = goals(results)
    return data, markdown_with_goals(results, data["goals"])


def markdown_with_goals(results: list[dict], goals_: dict) -> str:
    text = markdown(results)
    for name, goal in goals_.items():
        text += (
            f"\nGoal {name}: best proxy `{goal['proxy']}` Spearman {goal['value']:.3f} over "
            f"{goal['plans']} plans (target >= {goal['target']} over >= {MIN_PLANS} plans: "
            f"{'met' if goal['met'] else 'not met'}), "
            f"{goal['seconds_per_candidate']:.1f} s per candidate.\n"
        )
    return text


def merge(paths: list[Path]) -> tuple[dict, str]:
    """One result from runs that each scored a share of the plans (``--plan-range``):
    their result JSON files, and the logs (one JSON row per line) of runs stopped early."""
    parts, logged = [], []
    for path in map(Path, paths):
        if path.suffix == ".json":
            parts.append(json.loads(path.read_text()))
        else:
            text = path.read_text().splitlines()
            logged += [json.loads(line) for line in text if line[:1] == "{"]
    names = [t["task"] for part in parts for t in part["tasks"]] + [r["task"] for r in logged]
    merged = []
    for name in dict.fromkeys(names):
        shares = [t for part in parts for t in part["tasks"] if t["task"] == name]
        by_plan = {r["plan"]: r for r in logged if r["task"] == name}
        by_plan.update({r["plan"]: r for t in shares for r in t["rows"]})
        rows = [by_plan[plan] for plan in sorted(by_plan)]
        if shares:
            result = dict(shares[0])
        else:  # only logs: the setting as study_task states it
            config = task_config(name)
            recovery = dataclasses.replace(
                config.recovery, epochs=1, steps=SETUPS[name].recovery_steps
            )
            result = describe(name, CUTS[name], recovery, config.target_flops.value)
        result.update(
            rows=rows, plans=len(rows), correlations=correlations(rows, tuple(result["proxies"]))
        )
        merged.append(result)
    data = {"tasks": merged, "quick": False, "goals": goals(merged)}
    data["runs"] = [part["run"] for part in parts]
    return data, markdown_with_goals(merged, data["goals"])


CUTS = {  # the task descriptions of the full (not --quick) runs
    "resnet56-cifar10": "ResNet-56 on CIFAR-10 JPEGs (cut: val 500, test 1000, train 48000)",
    "minilm-stsb": "all-MiniLM-L6-v2, STS-B (cut)",
    "digits": "DigitsResNet on scikit-learn digits",
}


if __name__ == "__main__":  # python -m benchmarks.proxy NAME PART.json|PART.log ...
    import sys

    from benchmarks.common import write_results

    data, text = merge([Path(p) for p in sys.argv[2:]])
    data = {"benchmark": "proxy", **data}
    plans = ", ".join(f"{t['task']}: {t['plans']} plans" for t in data["tasks"])
    text += f"\nMerged from {len(sys.argv) - 2} parts ({plans}).\n"
    print(text)
    print(write_results(sys.argv[1], data, text))
