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
from compressor.search.space import FUSION_PARAM, QUANTIZATION_PARAM
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
    """The pruned models of every method, before recovery, and facts about each method."""
    config = settings.config
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
    study, seconds = run_search(settings, resources, trials=trials, sampler="tpe", seeds=seeds)
    models[FULL], best = best_model(settings, study)
    facts[FULL] = {
        **_search_facts(best, seconds, trials),
        "deploy": {
            "quantization": best.params[QUANTIZATION_PARAM],
            "fusion": best.params[FUSION_PARAM],
        },
    }
    log(f"{FULL}: best trial #{best.number} {facts[FULL]['deploy']}, {seconds:.0f} s")
    return models, facts


def _search_facts(best, seconds: float, trials: int) -> dict:
    return {
        "trials": trials,
        "best_trial": best.number,
        "reward": best.value,
        "val_before_recovery": best.user_attrs["accuracy"],
        "seconds": seconds,
    }


def artifact_accuracy(task, path: Path, threads: int) -> float:
    return task.evaluate_test(OnnxModule(path, threads=threads))


def run(args, session) -> tuple[dict, str]:
    name, task = load_task(args)
    trials = args.trials or (4 if args.quick else 12)
    config = task_config(name)
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
            log(f"{method}: recovering ({config.recovery.epochs} epoch(s)) ...")
            models[method] = recover_model(task, model, config.recovery, progress=False)
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
        "eager_unpruned": eager["baseline"],
        "rows": rows,
        "quick": args.quick,
    }
    data["goals"] = goals(rows)
    data["peak_points"] = peak_points(rows, batches)
    return data, markdown(data, batches)


def goals(rows: dict) -> dict:
    gain = 100 * (rows[FULL]["accuracy_after_recovery"] - rows[UNIFORM]["accuracy_after_recovery"])
    int8, full = rows[INT8]["latency_ort"], rows[FULL]["latency_ort"]
    speed = {b: int8[b]["ratio_to_baseline"] / full[b]["ratio_to_baseline"] for b in full}
    return {
        "accuracy_gain_over_uniform_pt": gain,
        "accuracy_goal_met": gain >= 1.0,
        "speedup_vs_unpruned_int8": speed,
        "speed_goal_met": speed[max(speed)] >= 1.5 and speed[min(speed)] >= 1.0,
    }


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
    speed = goal["speedup_vs_unpruned_int8"]
    text = (
        f"# B1: {data['task']} at FLOPs <= {data['flops_budget'] / data['baseline_flops']:.2f}x\n\n"
        f"{data['description']}. Same budget for every method: {data['trials']} search trials, "
        f"recovery {_recovery_text(data['recovery'])} (the unpruned model too). Accuracy: top-1 "
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
        "Goals:\n"
        f"- full search vs torch-pruning uniform after the same recovery: "
        f"{goal['accuracy_gain_over_uniform_pt']:+.2f} pt (goal >= +1.0: "
        f"{'met' if goal['accuracy_goal_met'] else 'not met'});\n"
        f"- full search vs unpruned ORT INT8: {speed[large]:.2f}x at batch {large}, "
        f"{speed[small]:.2f}x at batch {small} (goal >= 1.5x and >= 1.0x: "
        f"{'met' if goal['speed_goal_met'] else 'not met'}).\n\n"
        "Literature (not re-run; original 32x32 CIFAR-10 PNGs, long GPU fine-tuning):\n"
        + "".join(f"- {line}\n" for line in LITERATURE)
    )
    peak = latest_result("peak")
    if peak:
        text += _fractions(data["peak_points"], peak["peak_gops"])
    return text


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
