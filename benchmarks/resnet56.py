"""B1: ResNet-56 / CIFAR-10 JPEGs at FLOPs <= 50 %, every method side by side in one run.

Rows: the unpruned model (fp32, and ONNX Runtime static INT8: the best *unpruned* pipeline);
torch-pruning's ``MagnitudePruner`` with one uniform ratio and with ``global_pruning=True``;
our search (prune only) with the AMC reward; our search with random sampling; our full search
(prune x quantize x fuse, scored as ONNX artifacts). Every method gets the same FLOPs budget,
calibration batches (adaptive BN), trial budget (the three searches) and recovery budget
(the config's: one epoch of SGD over the training images, the unpruned model included).

Accuracy is top-1 on the test images, computed on each row's ONNX artifact. Latency: each
artifact timed in ONNX Runtime at batch 1 and 64, interleaved with the unpruned fp32 artifact;
PyTorch eager (unpruned, and the full search's pruned model) in its own worker process.

``--task digits`` runs the same comparison on the embedded default (no data needed; the
smoke test uses it).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path

from benchmarks.common import latest_result, markdown_table
from benchmarks.searching import (
    best_model,
    prune_only,
    run_search,
    sensitivity_params,
    settings_for,
    torch_pruning,
    without_meter,
)
from benchmarks.tasks import cifar_task, task_config
from benchmarks.timing import TimingPlan, time_eager, time_onnx
from compressor.actions.artifact import DeploySpec
from compressor.actions.export import export_onnx
from compressor.measure.flops import count_flops, count_params
from compressor.measure.onnx_runtime import OnnxModule
from compressor.recover import recover_model
from compressor.search.candidate import make_artifact
from compressor.search.context import measuring
from compressor.search.seeds import reference_params
from compressor.search.space import (
    FUSION_PARAM,
    KEEP_ENDS_PARAM,
    QUANTIZATION_PARAM,
    spec_from_params,
)
from compressor.tasks import get_task

LITERATURE = [
    "AMC (He et al., ECCV 2018), ResNet-56 on CIFAR-10: 92.8 % -> 91.9 % at 2x fewer FLOPs "
    "(RL agent, fine-tuned; original CIFAR-10, not re-run here).",
    "DepGraph (Fang et al., CVPR 2023), ResNet-56 on CIFAR-10: 93.53 % -> 93.64 % at 2.57x "
    "after long GPU fine-tuning (not re-run here).",
]
UNPRUNED, INT8, UNIFORM, GLOBAL = "unpruned fp32", "unpruned ORT INT8", "tp uniform", "tp global"
AMC, RANDOM, FULL = "search, AMC reward", "search, random sampling", "search, full"


def load_task(args):
    name = args.task or "resnet56-cifar10"
    if name == "digits":
        return name, get_task("digits", verbose=False)
    if args.quick:  # small subsets: a smoke test, not the benchmark's numbers
        return name, cifar_task(args.data, val_images=300, test_images=1000, train_images=1280)
    return name, cifar_task(args.data)


def candidates(task, settings, resources, trials: int, log) -> tuple[dict, dict]:
    """The pruned models of every method, before recovery, and facts about each method.

    With ``max_accuracy_drop`` in the config (B1b) only the unpruned model and our search
    (no FLOPs target: the fastest variant within the accuracy floor)."""
    config = settings.config
    if config.max_accuracy_drop is not None:
        seeds = sensitivity_params(prune_only(settings))
        model, facts = full_search(settings, resources, trials, seeds, log)
        return {UNPRUNED: copy.deepcopy(task.model), FULL: model}, {FULL: facts}
    # torch-pruning's default (no channel rounding): one uniform ratio with rounding to 4
    # jumps from ~0.55x to 0.36x FLOPs on ResNet-56's 16-channel blocks (measured), which
    # would compare methods at unequal FLOPs.
    common = dict(
        round_to=None,
        max_ratio=config.prune.max_ratio,
        calibration=settings.calibration,
        calibration_samples=config.search.calibration_samples,
    )
    models, facts = {UNPRUNED: copy.deepcopy(task.model)}, {}
    for name, global_pruning in ((UNIFORM, False), (GLOBAL, True)):
        models[name], ratio = torch_pruning(
            task, settings.flops_budget, global_pruning=global_pruning, **common
        )
        facts[name] = {"pruning_ratio": ratio, "round_to": None}
        log(f"{name}: ratio {ratio:.3f}")
    log("sensitivity pass (shared by the three searches) ...")
    seeds = sensitivity_params(prune_only(settings))
    for name, search, sampler in ((AMC, {"reward": "amc"}, "tpe"), (RANDOM, {}, "random")):
        pruning = prune_only(settings, sampler=sampler, **search)
        study, seconds = run_search(
            pruning, without_meter(resources), trials=trials, sampler=sampler, seeds=seeds
        )
        models[name], best = best_model(pruning, study)
        facts[name] = _search_facts(best, seconds, trials)
        log(f"{name}: best trial #{best.number}, {seconds:.0f} s")
    models[FULL], facts[FULL] = full_search(settings, resources, trials, seeds, log)
    return models, facts


def full_search(settings, resources, trials: int, seeds, log) -> tuple:
    """Our full search (prune x depth x quantize x fuse, scored as artifacts). The reference
    pipelines (the unpruned model fp32 / fused / each INT8 mode) are extra trials on top of
    ``trials`` (``pipeline.search``), so every search samples the same number of plans."""
    study, seconds = run_search(settings, resources, trials=trials, sampler="tpe", seeds=seeds)
    model, best = best_model(settings, study, resources)
    facts = {
        **_search_facts(best, seconds, trials),
        "reference_trials": len(reference_params(settings)),
        "deploy": dataclasses.asdict(spec_from_params(best.params)),
        "trial_table": [_trial_row(t) for t in study.trials],
    }
    log(f"{FULL}: best trial #{best.number} {facts['deploy']}, {seconds:.0f} s")
    return model, facts


def _trial_row(trial) -> dict:
    attrs = trial.user_attrs
    keys = ("reference", "removed_units", "round_to", "accuracy", "flops_ratio", "latency_ratio")
    keys += ("feasible",)
    return {
        "number": trial.number,
        "reward": trial.value,
        "deploy": f"{trial.params.get(QUANTIZATION_PARAM)}"
        + (" + fused" if trial.params.get(FUSION_PARAM) else "")
        + (" + ends fp32" if trial.params.get(KEEP_ENDS_PARAM) else ""),
        **{key: attrs[key] for key in keys if key in attrs},
    }


def _search_facts(best, seconds: float, trials: int) -> dict:
    return {
        "trials": trials,
        "best_trial": best.number,
        "reward": best.value,
        "val_before_recovery": best.user_attrs["accuracy"],
        "removed_units": list(best.user_attrs.get("removed_units") or []),
        "round_to": best.user_attrs.get("round_to"),  # the channel multiple its widths kept
        "seconds": seconds,
    }


def artifact_accuracy(task, path: Path, threads: int) -> float:
    return task.evaluate_test(OnnxModule(path, threads=threads))


def run(args, session) -> tuple[dict, str]:
    name, task = load_task(args)
    trials = args.trials or (4 if args.quick else 12)
    config = task_config(name)
    if getattr(args, "max_accuracy_drop", None) is not None:  # B1b: no FLOPs target
        config = dataclasses.replace(
            config, target_flops=None, max_accuracy_drop=args.max_accuracy_drop
        )
    if getattr(args, "round_to", None) is not None:  # e.g. auto: kernel-aligned widths
        config = dataclasses.replace(
            config, prune=dataclasses.replace(config.prune, round_to=args.round_to)
        )
    if args.quick:
        config = dataclasses.replace(
            config, recovery=dataclasses.replace(config.recovery, epochs=1)
        )
    plan = (
        TimingPlan(session.threads, rounds=3, runs_per_round=6, max_seconds=3)
        if args.quick
        else TimingPlan(session.threads)
    )
    batches = (1, args.large_batch)
    log = print
    example = task.example_inputs
    with tempfile.TemporaryDirectory(prefix="bench-b1-") as folder:
        work = Path(folder)
        settings = settings_for(task, config)
        with measuring(settings) as resources:
            models, facts = candidates(task, settings, resources, trials, log)
        rows = {}
        for method, model in models.items():
            before = export_onnx(model, example, work / f"{_slug(method)}-before.onnx")
            rows[method] = {
                "flops": count_flops(model, example),
                "params": count_params(model),
                "accuracy_before_recovery": artifact_accuracy(task, before, session.threads),
                **facts.get(method, {}),
            }
            depth_pruned = bool(facts.get(method, {}).get("removed_units"))
            log(f"{method}: recovering ({config.recovery.epochs} epoch(s)) ...")
            outcome = recover_model(
                task, model, config.recovery, progress=False, depth_pruned=depth_pruned
            )
            models[method] = outcome.model
            rows[method]["recovery_method"] = outcome.method
            rows[method]["recovery_raced_val"] = dict(outcome.val_metric)
        artifacts = {}
        for method, model in models.items():
            artifacts[method] = export_onnx(model, example, work / f"{_slug(method)}.onnx")
        spec = DeploySpec(**facts[FULL]["deploy"])
        artifacts[FULL] = make_artifact(settings, models[FULL], spec, work / "full.onnx").path
        artifacts[INT8] = make_artifact(
            settings, models[UNPRUNED], DeploySpec("static_ort", True), work / "int8.onnx"
        ).path
        rows[INT8] = {**rows[UNPRUNED], "deploy": {"quantization": "static_ort", "fusion": True}}
        rows[FULL]["accuracy_fp32_after_recovery"] = artifact_accuracy(
            task, work / f"{_slug(FULL)}.onnx", session.threads
        )
        for method, path in artifacts.items():
            rows[method]["accuracy_after_recovery"] = artifact_accuracy(task, path, session.threads)
            rows[method]["size_bytes"] = path.stat().st_size
        log("timing ONNX Runtime artifacts ...")
        baseline_after = artifacts.pop(UNPRUNED)
        ort = time_onnx(artifacts, baseline_after, example, batches, plan)
        log("timing PyTorch eager ...")
        eager = time_eager({FULL: models[FULL]}, models[UNPRUNED], example, batches, plan)
    ort[UNPRUNED] = ort.pop("baseline")
    for method, row in rows.items():
        row["latency_ort"] = ort[method]
    rows[FULL]["latency_eager"] = eager[FULL]
    data = {
        "task": name,
        "description": task.description,
        "flops_budget": settings.flops_budget,
        "baseline_flops": settings.baseline_flops,
        "trials": trials,
        "recovery": dataclasses.asdict(config.recovery),
        "prune_round_to": config.prune.round_to,
        "eager_unpruned": eager["baseline"],
        "rows": rows,
        "quick": args.quick,
    }
    data["goals"] = goals(rows) if config.max_accuracy_drop is None else drop_goals(rows, config)
    data["peak_points"] = peak_points(rows, batches)
    return data, markdown(data, batches)


def goals(rows: dict) -> dict:
    """Issue 14's B1 goals, ``{name: {value, target, met}}``: speed-ups are ratios of the
    interleaved per-round medians (each row against the same fp32 baseline)."""
    after = {method: 100 * row["accuracy_after_recovery"] for method, row in rows.items()}
    int8, full = rows[INT8]["latency_ort"], rows[FULL]["latency_ort"]
    speed = {b: int8[b]["ratio_to_baseline"] / full[b]["ratio_to_baseline"] for b in full}
    small, large = min(speed), max(speed)
    measured = {
        f"speedup_vs_unpruned_int8_batch{small}": (speed[small], 1.5),
        f"speedup_vs_unpruned_int8_batch{large}": (speed[large], 1.7),
        "accuracy_vs_unpruned_int8_pt": (after[FULL] - after[INT8], -1.0),
        "accuracy_gain_over_uniform_pt": (after[FULL] - after[UNIFORM], 1.0),
    }
    return {
        name: {"value": value, "target": f">= {target:g}", "met": value >= target}
        for name, (value, target) in measured.items()
    }


def drop_goals(rows: dict, config) -> dict:
    """B1b: faster than unpruned INT8 at both batch sizes, test drop within the budget
    against the equally recovered unpruned model."""
    int8, full = rows[INT8]["latency_ort"], rows[FULL]["latency_ort"]
    drop = 100 * (rows[UNPRUNED]["accuracy_after_recovery"] - rows[FULL]["accuracy_after_recovery"])
    out = {
        f"speedup_vs_unpruned_int8_batch{b}": {
            "value": int8[b]["ratio_to_baseline"] / full[b]["ratio_to_baseline"],
            "target": "> 1.0",
            "met": int8[b]["ratio_to_baseline"] > full[b]["ratio_to_baseline"],
        }
        for b in full
    }
    out["test_drop_vs_recovered_unpruned_pt"] = {
        "value": drop,
        "target": f"<= {config.max_accuracy_drop:g}",
        "met": drop <= config.max_accuracy_drop,
    }
    return out


def peak_points(rows: dict, batches) -> list[dict]:
    """(FLOPs per call, latency) of every artifact, for B4's fraction of peak."""
    points = []
    for method, row in rows.items():
        quantized = row.get("deploy", {}).get("quantization", "none") != "none"
        for batch in batches:
            points.append(
                {
                    "name": method,
                    "setting": f"batch {batch}",
                    "flops_per_call": row["flops"] * batch,
                    "p50_ms": row["latency_ort"][batch]["p50_ms"],
                    "precision": "int8" if quantized else "fp32",
                }
            )
    return points


def markdown(data: dict, batches) -> str:
    rows, eager = data["rows"], data["eager_unpruned"]
    small, large = batches
    table = []
    for method, row in rows.items():
        ort = row["latency_ort"]
        deploy = row.get("deploy")
        label = method + (
            f" ({deploy['quantization']}{' + fused' if deploy['fusion'] else ''})" if deploy else ""
        )
        table.append(
            [
                label,
                f"{row['flops'] / 1e6:.1f}M ({row['flops'] / data['baseline_flops']:.2f}x)",
                f"{row['params'] / 1e3:.0f}K",
                f"{100 * row['accuracy_before_recovery']:.2f}",
                f"{100 * row['accuracy_after_recovery']:.2f}",
                f"{ort[small]['p50_ms']:.3f} / {ort[small]['p90_ms']:.3f}",
                f"{ort[large]['p50_ms']:.2f} / {ort[large]['p90_ms']:.2f}",
                " / ".join(f"{eager[b]['p50_ms'] / ort[b]['p50_ms']:.2f}x" for b in batches),
                " / ".join(f"{1 / ort[b]['ratio_to_baseline']:.2f}x" for b in batches),
            ]
        )
    goal = data["goals"]
    text = (
        f"# B1: {data['task']} at FLOPs <= {data['flops_budget'] / data['baseline_flops']:.2f}x\n\n"
        f"{data['description']}. Same budget for every method: {data['trials']} search trials, "
        f"recovery {_recovery_text(data['recovery'])} (the unpruned model too); the searches "
        f"keep channel counts on multiples of {data.get('prune_round_to')} (`prune.round_to`; "
        "auto: the multiple this CPU's kernels favour per quantization mode). Accuracy: top-1 "
        "% on the test images of each row's ONNX artifact. Latency: ONNX Runtime, ms p50 / p90; "
        "speed-ups use p50 (vs fp32 ORT: median of interleaved per-round ratios).\n\n"
        + markdown_table(
            [
                "method",
                "FLOPs",
                "params",
                "acc. before recovery",
                "acc. after recovery",
                f"batch {small} ms",
                f"batch {large} ms",
                f"vs fp32 torch eager (b{small} / b{large})",
                f"vs fp32 ORT (b{small} / b{large})",
            ],
            table,
        )
        + f"\nPyTorch eager fp32, unpruned: {eager[small]['p50_ms']:.2f} / "
        f"{eager[large]['p50_ms']:.1f} ms (batch {small} / {large}); the full search's pruned "
        f"model in eager: {rows[FULL]['latency_eager'][small]['p50_ms']:.2f} / "
        f"{rows[FULL]['latency_eager'][large]['p50_ms']:.1f} ms.\n\n"
        + _full_search_text(rows[FULL])
        + "Goals (full search):\n"
        + "".join(
            f"- {name}: {g['value']:+.2f} (goal {g['target']}: {_met(g)})\n"
            for name, g in goal.items()
        )
        + "\n"
        "Literature (not re-run; original 32x32 CIFAR-10 PNGs, long GPU fine-tuning):\n"
        + "".join(f"- {line}\n" for line in LITERATURE)
    )
    peak = latest_result("peak")
    if peak:
        text += _fractions(data["peak_points"], peak["peak_gops"])
    return text


def _met(goal: dict) -> str:
    return "met" if goal["met"] else "NOT met"


def _full_search_text(row: dict) -> str:
    removed = row.get("removed_units") or []
    text = (
        f"\nFull search: best trial #{row['best_trial']} of {row['trials']} + "
        f"{row.get('reference_trials', 0)} reference trials; removed blocks: "
        f"{', '.join(removed) if removed else 'none'}; recovery {row.get('recovery_method')}.\n"
    )
    table = row.get("trial_table")
    if table:
        text += "\n" + markdown_table(
            ["trial", "reference", "removed blocks", "deploy", "val acc", "FLOPs", "latency", "R"],
            [
                [
                    t["number"],
                    t.get("reference", ""),
                    len(t.get("removed_units", [])),
                    t["deploy"],
                    f"{100 * t['accuracy']:.2f}" if "accuracy" in t else "-",
                    f"{t['flops_ratio']:.2f}x" if "flops_ratio" in t else "-",
                    f"{t['latency_ratio']:.2f}x" if "latency_ratio" in t else "-",
                    f"{t['reward']:.4f}" if t.get("reward") is not None else "-",
                ]
                for t in table
            ],
        )
    return text + "\n"


def _fractions(points: list[dict], peak: dict) -> str:
    from benchmarks.peak import achieved

    cells = [f"{p['name']} {p['setting']}: {achieved(p, peak):.1%}" for p in points]
    return (
        f"\nFraction of this CPU's ONNX Runtime GEMM peak (B4: fp32 {peak['fp32']:.0f}, "
        f"INT8 {peak['int8']:.0f} GOP/s): " + "; ".join(cells) + ".\n"
    )


def _recovery_text(recovery: dict) -> str:
    budget = (
        f"{recovery['steps']} steps" if recovery.get("steps") else f"{recovery['epochs']} epoch(s)"
    )
    return f"{budget} of {recovery['method']} at lr {recovery['lr']}"


def _slug(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method)
