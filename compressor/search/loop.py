"""The search loop: an Optuna study (stored in SQLite in the output folder) over plans."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from compressor.search.candidate import SearchContext, score_candidate
from compressor.search.space import suggest_deploy, suggest_flops_level, suggest_preferences

STUDY_NAME = "compress"


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, feasibility-aware) or random sampling, seeded."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constraints_func=_constraints,
            n_startup_trials=max(3, min(10, trials // 4)))


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    # <= 0 means within the FLOPs budget; lets TPE learn where feasible plans are.
    return trial.user_attrs.get("constraint", [1.0])


def open_study(output_dir: Path, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study in ``output_dir/study.db`` (created, or continued if it exists)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(output_dir / 'study.db').resolve()}"
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                               direction="maximize", load_if_exists=True)


class Objective:
    """Optuna objective: sample a plan, score it, keep every metric on the trial."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx

    def __call__(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        config = ctx.config
        if config.target_flops is None:  # only a latency target: the FLOPs level is searched
            level = suggest_flops_level(trial)
            ctx = dataclasses.replace(ctx, flops_budget=int(level * ctx.baseline_flops))
        preferences = suggest_preferences(trial, ctx.groups, config.prune)
        deploy = suggest_deploy(trial, config.deploy) if config.deploy.export else None
        try:
            metrics = score_candidate(ctx, preferences, deploy)
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("constraint", [metrics["flops"] / ctx.flops_budget - 1.0])
        return metrics["reward"]


def run_study(study: optuna.Study, ctx: SearchContext, trials: int, time_budget: float | None,
              report: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None) -> None:
    """Run trials until ``trials`` have finished in the study or ``time_budget`` runs out."""
    finished = sum(t.state.is_finished() for t in study.trials)
    remaining = trials - finished
    if remaining <= 0:
        return
    study.optimize(Objective(ctx), n_trials=remaining, timeout=time_budget,
                   catch=(Exception,), callbacks=[report] if report else None,
                   gc_after_trial=False)


def best_feasible_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """Highest-reward finished trial within the FLOPs budget."""
    feasible = [t for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible")]
    return max(feasible, key=lambda t: t.value, default=None)


class ProgressPrinter:
    """One line per finished trial, with the best so far."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not self.enabled:
            return
        best = best_feasible_trial(study)
        best_text = f"best R {best.value:.4f} (#{best.number})" if best else "no feasible yet"
        elapsed = time.perf_counter() - self.started
        if trial.state != optuna.trial.TrialState.COMPLETE:
            print(f"[{trial.number + 1:>3}/{self.total}] failed: {trial.user_attrs.get('error')}"
                  f"  {best_text}", flush=True)
            return
        attrs = trial.user_attrs
        latency = (f"  latency {attrs['latency_ratio']:.2f}x" if "latency_ratio" in attrs else "")
        mark = " " if attrs.get("feasible") else "!"
        artifact = attrs.get("artifact")
        if artifact:
            latency += f"  {artifact['quantization']}{'+fused' if artifact['fusion'] else ''}"
        print(f"[{trial.number + 1:>3}/{self.total}] acc {attrs['accuracy']:.2%}  "
              f"FLOPs {attrs['flops_ratio']:.2f}x{mark}{latency}  R {trial.value:.4f}  "
              f"{best_text}  {elapsed:.0f}s", flush=True)
