"""A run folder as the report reads it: ``result.json`` if the run finished, the study always.

The Optuna study (``study.db``) holds every trial, and the search stores what else a report
needs (baseline, targets, layer sizes, environment) as a study attribute when it starts
(:func:`save_run_info`), so an interrupted run, with no ``result.json`` yet, still has a
report: its trials, the best feasible plan so far, and no recovered model.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compressor.credentials import mask
from compressor.errors import UserInputError
from compressor.records import (
    ArtifactFile,
    Baseline,
    Chosen,
    Target,
    TrialRecord,
    WorkerStats,
    trial_record,
    worker_summary,
)

RUN_INFO_ATTR = "compressor.run"  # the study attribute holding save_run_info's record
STUDY_FILE = "study.db"
PREFERRED_STUDY = "compress"  # compressor.search.loop.STUDY_NAME, without importing optuna here


def save_run_info(study, **info: Any) -> None:
    """Store ``info`` (plain JSON data) on the study, for reports of unfinished runs; the
    study is shared with every worker, so passwords (in the command line) are masked."""
    study.set_user_attr(RUN_INFO_ATTR, mask(info))


@dataclass
class RunData:
    """Everything one report shows, from one run folder.

    Attributes:
        best: the chosen, recovered variant (``result.json``'s ``best``); None until the
            run finishes.
        trials: every trial as ``result.json`` lists it (from the study when it exists).
        stale: the study holds trials that ``result.json`` does not (a resumed run that
            has not finished); ``best`` is then the earlier run's.
    """

    run_dir: Path
    trials: list[TrialRecord]
    baseline: Baseline | None = None
    target: Target | None = None
    best: Chosen | None = None
    artifacts: dict[str, ArtifactFile] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    channels_before: dict[str, int] = field(default_factory=dict)
    # Groups left whole because pruning them breaks the forward: name, layer, error.
    excluded_groups: list[dict[str, str]] = field(default_factory=list)
    stale: bool = False

    @property
    def complete(self) -> bool:
        return self.best is not None

    @property
    def finished(self) -> list[TrialRecord]:
        """Trials that were scored (Optuna state COMPLETE)."""
        return [t for t in self.trials if t.finished]

    @property
    def failed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "FAIL"]

    @property
    def planned_trials(self) -> int | None:
        return ((self.config or {}).get("search") or {}).get("trials")

    @property
    def chosen_trial(self) -> TrialRecord | None:
        """The trial the chosen variant came from; before the run ends, the best so far."""
        if self.best is not None:
            return next((t for t in self.trials if t.number == self.best.trial), None)
        feasible = [t for t in self.finished if t.feasible]
        return max(feasible, key=lambda t: t.reward, default=None)

    @property
    def workers(self) -> dict[str, WorkerStats]:
        """Per process that scored trials (``records.worker_summary`` of the trials)."""
        return worker_summary(self.trials)

    @property
    def baseline_latency_ms(self) -> float | None:
        """The baseline artifact's p50: measured at the end, else the trials' median."""
        if self.baseline and self.baseline.latency_ms is not None:
            return self.baseline.latency_ms
        alongside = [t.baseline_latency_ms for t in self.trials if t.baseline_latency_ms]
        return statistics.median(alongside) if alongside else None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; raises :class:`UserInputError` when it holds nothing to report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir} is not a folder")
    result = _read_json(run_dir / "result.json")
    study = _read_study(run_dir / STUDY_FILE)
    if result is None and study is None:
        raise UserInputError(f"{run_dir} holds neither result.json nor {STUDY_FILE}")
    if study is not None:
        trials, info = study
    else:
        trials, info = [TrialRecord.from_json(t) for t in result["trials"]], {}
    result = result or {}
    best = Chosen.from_json(result["best"]) if "best" in result else None
    baseline = result.get("baseline", info.get("baseline"))
    target = result.get("target", info.get("target"))
    return RunData(
        run_dir=run_dir,
        trials=trials,
        baseline=Baseline.from_json(baseline) if baseline else None,
        target=Target.from_json(target) if target else None,
        best=best,
        artifacts={
            name: ArtifactFile.from_json(row) for name, row in result.get("artifacts", {}).items()
        },
        # Masked again: a folder written before issue 19 holds them in clear.
        environment=mask(result.get("environment", info.get("environment", {}))),
        config=mask(_read_yaml(run_dir / "config.yaml")),
        channels_before=(best.plan.channels_before if best else None)
        or info.get("channels_before", {}),
        excluded_groups=list(best.plan.excluded_groups if best else ())
        or info.get("excluded_groups", []),
        stale=bool(result) and len(trials) > len(result["trials"]),
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (cost) and higher y (accuracy).

    Returned in order of increasing cost; of equal points the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is unreadable: {exc}") from None


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError) as exc:
        raise UserInputError(f"{path} is unreadable: {exc}") from None


def _read_study(path: Path) -> tuple[list[TrialRecord], dict] | None:
    """Trial records and the run info of the study in ``path`` (None if there is no file)."""
    if not path.is_file():
        return None
    import optuna
    import sqlalchemy.exc

    from compressor.search.budget import reported_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        names = optuna.get_all_study_names(storage)
        name = PREFERRED_STUDY if PREFERRED_STUDY in names else names[0] if names else None
        if name is None:
            raise UserInputError(f"{path} holds no Optuna study")
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, KeyError) as exc:
        raise UserInputError(f"{path} is not a readable Optuna study: {exc}") from None
    records = [trial_record(t) for t in reported_trials(trials)]
    return records, study.user_attrs.get(RUN_INFO_ATTR, {})
