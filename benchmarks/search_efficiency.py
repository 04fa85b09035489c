"""B3, search efficiency: best reward vs trials, the TPE sampler vs random sampling.

Both samplers search the same space (per-group pruning preferences fitted to the FLOPs
budget, ``search/space.py``) with the same seeds, trial budget, calibration batches and
reward (``soft``, accuracy x FLOPs factor). Every trial comes from the sampler: the seeded
plans ``compress`` enqueues (uniform, sensitivity) are left out, since they are the same
for both and would hide the sampler's own contribution. Trials are scored as pruned
PyTorch models (no artifact, no latency term): the reward is then a deterministic function
of the plan, so the curves differ by the sampler only.

Goal: TPE reaches random search's final best reward in at most half the trials (median
over the seeds).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.common import RESULTS, fmt, markdown_table, svg_line_plot
from benchmarks.searching import prune_only, reward_curve, run_search, settings_for
from benchmarks.tasks import cifar_task, task_config
from compressor.search.context import measuring
from compressor.tasks import get_task

SAMPLERS = ("tpe", "random")
# Trials per study; ResNet-56 trials score on a fixed 500-image validation subset (~2 s).
BUDGETS = {"digits": (30, 12), "resnet56-cifar10": (20, 6)}  # full, quick
VAL_IMAGES = {"full": 500, "quick": 200}


def load_task(name: str, args):
    if name == "resnet56-cifar10":
        size = VAL_IMAGES["quick" if args.quick else "full"]
        return cifar_task(args.data, val_images=size, train_images=2000)
    return get_task(name, verbose=False)


def trials_to_reach(curve: list[float | None], target: float) -> int | None:
    """1-based trial count at which ``curve`` first reaches ``target`` (None: never)."""
    for index, value in enumerate(curve):
        if value is not None and value >= target - 1e-12:
            return index + 1
    return None


def study_task(name: str, args) -> dict:
    task = load_task(name, args)
    trials = args.trials or BUDGETS[name][1 if args.quick else 0]
    # Each trial's sampler is seeded from (seed, trial number) through SeedSequence
    # (search/samplers.py: trial_seed), so any distinct seeds give independent streams.
    seeds = args.seeds or ([0, 1000] if args.quick else [0, 1000, 2000])
    settings = prune_only(settings_for(task, task_config(name)), reward="soft")
    runs = []
    for seed in seeds:
        curves = {}
        for sampler in SAMPLERS:
            with measuring(settings, meter=False) as resources:
                study, seconds = run_search(
                    settings, resources, trials=trials, sampler=sampler, seed=seed
                )
            curves[sampler] = {"curve": reward_curve(study), "seconds": seconds}
            print(
                f"{name} seed {seed} {sampler}: best {curves[sampler]['curve'][-1]} "
                f"({seconds:.0f} s)",
                flush=True,
            )
        target = curves["random"]["curve"][-1]
        reached = trials_to_reach(curves["tpe"]["curve"], target) if target is not None else None
        runs.append(
            {"seed": seed, **curves, "random_final_best": target, "tpe_trials_to_reach": reached}
        )
    fractions = [(r["tpe_trials_to_reach"] or float("inf")) / trials for r in runs]
    median_fraction = statistics.median(fractions)
    return {
        "task": name,
        "trials": trials,
        "seeds": seeds,
        "runs": runs,
        "tpe_fraction_to_reach_random_best": fractions,
        "median_fraction": median_fraction,
        "goal_met": median_fraction <= 0.5,
    }


def plot(result: dict) -> str:
    series = {}
    for run in result["runs"]:
        for sampler in SAMPLERS:
            curve = run[sampler]["curve"]
            points = [(i + 1, v) for i, v in enumerate(curve) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                series[f"{sampler} seed {run['seed']}"] = (xs, ys)
    return svg_line_plot(
        series, f"best reward vs trials: {result['task']}", "trials", "best feasible reward"
    )


def run(args, session) -> tuple[dict, str]:
    names = (args.task or "digits,resnet56-cifar10").split(",")
    folder = Path(args.results) if args.results else RESULTS
    results, markdown = [], ["# B3: search efficiency, TPE vs random sampling\n"]
    for name in names:
        result = study_task(name, args)
        svg = folder / f"search-efficiency-{name}{'-quick' if args.quick else ''}.svg"
        folder.mkdir(parents=True, exist_ok=True)
        svg.write_text(plot(result))
        result["plot"] = svg.name
        results.append(result)
        rows = [
            [
                r["seed"],
                fmt(r["tpe"]["curve"][-1], ".4f"),
                fmt(r["random"]["curve"][-1], ".4f"),
                r["tpe_trials_to_reach"] or f"not within {result['trials']}",
                f"{r['tpe']['seconds']:.0f} / {r['random']['seconds']:.0f}",
            ]
            for r in result["runs"]
        ]
        markdown.append(
            f"\n## {name}, {result['trials']} trials per study\n\n"
            + markdown_table(
                [
                    "seed",
                    "TPE best R",
                    "random best R",
                    "TPE trials to reach random's best",
                    "seconds TPE / random",
                ],
                rows,
            )
            + f"\nMedian fraction of the budget TPE needs to reach random's final best: "
            f"**{result['median_fraction']:.2f}** (goal <= 0.50: "
            f"{'met' if result['goal_met'] else 'not met'}). Plot: `{svg.name}`.\n"
        )
    return {"tasks": results, "quick": args.quick}, "".join(markdown)
