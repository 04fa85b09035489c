"""B3, search efficiency: best reward vs trials, Optuna's samplers vs random sampling.

Samplers (``compressor.search.loop.SAMPLERS``): TPE multivariate (the default), TPE with
``group=True``, GPSampler, CMA-ES, NSGA-II (population of a quarter of the trials; here on
the single objective R, since these trials have no latency term) and random sampling. All
samplers search the same space (per-group pruning preferences fitted to the FLOPs
budget, ``search/space.py``) with the same seeds, trial budget, calibration batches and
reward (``soft``, accuracy x FLOPs factor). Every trial comes from the sampler: the seeded
plans ``compress`` enqueues (uniform, sensitivity) are left out, since they are the same
for both and would hide the sampler's own contribution. Trials are scored as pruned
PyTorch models (no artifact, no latency term): the reward is then a deterministic function
of the plan, so the curves differ by the sampler only.

Goal: the default sampler reaches random search's final best reward in at most half the
trials (median over the seeds); the same in wall-clock seconds (each study's own clock,
sampler overhead included) is reported beside it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.common import RESULTS, fmt, markdown_table, svg_line_plot
from benchmarks.searching import prune_only, reward_curve, run_search, settings_for
from benchmarks.tasks import cifar_task, task_config
from compressor.search.context import measuring
from compressor.tasks import get_task

SAMPLERS = ("tpe", "tpe-group", "gp", "cmaes", "nsga2", "random")
DEFAULT = "tpe"
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


def seconds_curve(study) -> list[float]:
    """Seconds from the study's first start to each trial's end (trial-number order)."""
    trials = sorted(study.trials, key=lambda t: t.number)
    start = min(t.datetime_start for t in trials)
    return [(t.datetime_complete - start).total_seconds() for t in trials]


def study_task(name: str, args) -> dict:
    task = load_task(name, args)
    trials = args.trials or BUDGETS[name][1 if args.quick else 0]
    samplers = args.samplers or SAMPLERS
    # Each trial's sampler is seeded from (seed, trial number) through SeedSequence
    # (search/samplers.py: trial_seed), so any distinct seeds give independent streams.
    seeds = args.seeds or ([0, 1000] if args.quick else [0, 1000, 2000])
    # Single fidelity: the samplers are compared on the same cheap reward.
    settings = prune_only(
        settings_for(task, task_config(name)), reward="soft", promote_fraction=0.0
    )
    runs = []
    for seed in seeds:
        curves = {}
        for sampler in samplers:
            with measuring(settings, meter=False) as resources:
                study, seconds = run_search(
                    settings, resources, trials=trials, sampler=sampler, seed=seed
                )
            curves[sampler] = {
                "curve": reward_curve(study),
                "seconds_curve": seconds_curve(study),
                "seconds": seconds,
            }
            print(
                f"{name} seed {seed} {sampler}: best {curves[sampler]['curve'][-1]} "
                f"({seconds:.0f} s)",
                flush=True,
            )
        target = curves["random"]["curve"][-1]
        reached = {
            sampler: trials_to_reach(curves[sampler]["curve"], target)
            if target is not None
            else None
            for sampler in samplers
        }
        runs.append(
            {"seed": seed, **curves, "random_final_best": target, "trials_to_reach": reached}
        )
    summary = {sampler: summarise(runs, sampler, trials) for sampler in samplers}
    best = min(
        (s for s in samplers if s != "random"),
        key=lambda s: (summary[s]["median_fraction"], -summary[s]["median_final_best"]),
    )
    default = summary[DEFAULT]["median_fraction"]
    return {
        "task": name,
        "trials": trials,
        "seeds": seeds,
        "samplers": list(samplers),
        "runs": runs,
        "summary": summary,
        "best_sampler": best,
        "default_sampler": DEFAULT,
        "median_fraction": default,
        "goal_met": default <= 0.5,
    }


def summarise(runs: list[dict], sampler: str, trials: int) -> dict:
    """Median over seeds: fraction of the trials (and of random's seconds) needed to reach
    random's final best, and the final best reward."""
    fractions, time_fractions = [], []
    for run in runs:
        reached = run["trials_to_reach"][sampler]
        fractions.append((reached or float("inf")) / trials)
        seconds = run[sampler]["seconds_curve"][reached - 1] if reached else float("inf")
        time_fractions.append(seconds / run["random"]["seconds_curve"][-1])
    finals = [run[sampler]["curve"][-1] or 0.0 for run in runs]
    return {
        "fractions": fractions,
        "median_fraction": statistics.median(fractions),
        "median_time_fraction": statistics.median(time_fractions),
        "median_final_best": statistics.median(finals),
        "median_seconds": statistics.median(run[sampler]["seconds"] for run in runs),
    }


def plot(result: dict) -> str:
    series = {}
    for run in result["runs"]:
        for sampler in result["samplers"]:
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
    results, markdown = [], ["# B3: search efficiency, Optuna's samplers vs random sampling\n"]
    for name in names:
        result = study_task(name, args)
        svg = folder / f"search-efficiency-{name}{'-quick' if args.quick else ''}.svg"
        folder.mkdir(parents=True, exist_ok=True)
        svg.write_text(plot(result))
        result["plot"] = svg.name
        results.append(result)
        markdown.append(task_markdown(result, svg.name))
    goals = {
        f"{r['task']}_default_reaches_random_best": {
            "value": r["median_fraction"],
            "target": 0.5,
            "met": r["goal_met"],
            "sampler": r["default_sampler"],
        }
        for r in results
    }
    return {"tasks": results, "quick": args.quick, "goals": goals}, "".join(markdown)


def task_markdown(result: dict, plot_name: str) -> str:
    summary = result["summary"]
    rows = [
        [
            sampler + (" (default)" if sampler == result["default_sampler"] else ""),
            " / ".join(fmt(f, ".2f") for f in summary[sampler]["fractions"]),
            fmt(summary[sampler]["median_fraction"], ".2f"),
            fmt(summary[sampler]["median_time_fraction"], ".2f"),
            fmt(summary[sampler]["median_final_best"], ".4f"),
            f"{summary[sampler]['median_seconds']:.0f}",
        ]
        for sampler in result["samplers"]
    ]
    return (
        f"\n## {result['task']}, {result['trials']} trials per study, seeds "
        f"{', '.join(map(str, result['seeds']))}\n\n"
        + markdown_table(
            [
                "sampler",
                "fraction of trials to reach random's best, per seed",
                "median",
                "median fraction of random's seconds",
                "median final best R",
                "median seconds per study",
            ],
            rows,
        )
        + f"\nBest by median fraction (ties: final best R): **{result['best_sampler']}**. "
        f"Default ({result['default_sampler']}): median fraction "
        f"**{result['median_fraction']:.2f}** (goal <= 0.50: "
        f"{'met' if result['goal_met'] else 'not met'}). `inf`: not reached within the "
        f"trials. Plot: `{plot_name}`.\n"
    )
