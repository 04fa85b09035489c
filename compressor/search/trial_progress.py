"""What a user sees while the search runs: one line per trial and a live k/N display.

Every finished trial gets one line (its accuracy, FLOPs and latency ratios, artifact, reward)
with the best feasible trial so far; on a terminal a live display below the lines shows
k/N, the elapsed time and the best reward, accuracy and latency so far.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from compressor.progress import Steps
from compressor.search.budget import spent
from compressor.search.loop import best_feasible_trial


class TrialProgress:
    """Optuna callback (``study.optimize(callbacks=[...])``) and context manager.

    Args:
        study: the study about to run (a resumed one counts its finished trials as done).
        total: the trial budget.
        mode: ``live``, ``lines`` or ``off`` (see :func:`compressor.progress.progress_mode`).
    """

    def __init__(self, study: optuna.Study, total: int, mode: str) -> None:
        done = min(total, spent(study.get_trials(deepcopy=False)))
        self.steps = Steps("search", total, mode=mode, done=done)
        self._show_best(study)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # The budget's count, as run_study keeps it (advance() adds this trial).
        self.steps.done = spent(study.get_trials(deepcopy=False)) - 1
        best_text = self._show_best(study)
        self.steps.advance()
        self.steps.log(
            f"[{self.steps.counter()}] {trial_summary(trial)}  {best_text}  "
            f"{self.steps.elapsed:.0f}s"
        )

    def _show_best(self, study: optuna.Study) -> str:
        best = best_feasible_trial(study)
        if best is None:
            self.steps.fields = {"best": "no feasible trial yet"}
            return "no feasible yet"
        attrs = best.user_attrs
        self.steps.fields = {"best R": f"{best.value:.4f} (#{best.number})"}
        self.steps.fields["acc"] = f"{attrs['accuracy']:.2%}"
        if "latency_ratio" in attrs:
            self.steps.fields["latency"] = f"{attrs['latency_ratio']:.2f}x"
        return f"best R {best.value:.4f} (#{best.number})"

    def close(self) -> None:
        self.steps.close()

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def trial_summary(trial: FrozenTrial) -> str:
    """One trial in a few figures; ``!`` marks a plan over a budget (FLOPs or latency)."""
    if trial.state != TrialState.COMPLETE:
        return f"failed: {trial.user_attrs.get('error', trial.state.name)}"
    attrs = trial.user_attrs
    latency = f"  latency {attrs['latency_ratio']:.2f}x" if "latency_ratio" in attrs else ""
    artifact = attrs.get("artifact")
    if artifact:
        latency += f"  {artifact['quantization']}{'+fused' if artifact['fusion'] else ''}"
    mark = " " if attrs.get("feasible") else "!"
    return (
        f"acc {attrs['accuracy']:.2%}  FLOPs {attrs['flops_ratio']:.2f}x{mark}{latency}  "
        f"R {trial.value:.4f}"
    )
