"""Typed, frozen records of a run: the baseline, the targets, each trial, the chosen variant,
the artifacts and the workers.

``result.json`` is written from these records and read back into them (``to_json`` /
``from_json``), so the report, ``compress report``, the worker table, the tests and the
benchmarks read attributes, not keys: a renamed field is an error where it is used, not a
silently empty cell. No torch here: the report reads these without loading a model.

Schema version 2 (``result.json``'s ``schema_version``) keeps every key of version 1; what
changed: a run without a FLOPs target stores ``target.spec`` as ``null`` (it was the text
``"None"``), and ``target.within_budgets`` / trial ``feasible`` mean within *every* budget
the user set (FLOPs and latency), not only the FLOPs one.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

SCHEMA_VERSION = 2
R = TypeVar("R")


def to_json(record: Any) -> dict[str, Any]:
    """Plain data for JSON: nested records become dicts; optional fields left at None are
    omitted, so a run without an artifact has no artifact keys (as before)."""
    data = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if value is None and item.metadata.get("omit_none", True):
            continue
        data[item.name] = _plain(value)
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class Record:
    """Base of the records: ``from_json`` builds one from plain data, ignoring keys it does
    not know (files written by a newer version). Records with nested records override it
    to convert those first."""

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        names = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def keep(value: Any = None) -> Any:
    """A field written to JSON even when it is None."""
    return field(default=value, metadata={"omit_none": False})


@dataclass(frozen=True)
class Baseline(Record):
    """The unmodified model. Latencies are filled at the end (the fp32 baseline artifact)."""

    accuracy: float  # test split
    val_accuracy: float
    flops: int
    params: int
    evaluate_seconds: float = 0.0
    latency_ms: float | None = None
    latency_p90_ms: float | None = None


@dataclass(frozen=True)
class Target(Record):
    """The user's targets and the reward's parameters, as the run applied them."""

    flops: int  # the FLOPs budget (the whole model when there is no FLOPs target)
    flops_ratio: float
    spec: str | None = keep()  # the user's --target-flops as given; None: no FLOPs target
    reward: str = "soft"
    alpha: float = -0.07
    beta: float = -0.07
    uniform_ratio: float = 0.0
    latency: str | None = keep()  # the user's --target-latency; None: no latency target
    max_accuracy_drop: float | None = None  # --max-accuracy-drop, points

    @property
    def has_flops(self) -> bool:
        return self.spec is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        data = dict(data)
        if data.get("spec") == "None":  # schema 1 wrote a missing target as text
            data["spec"] = None
        return super().from_json(data)


@dataclass(frozen=True)
class Parity(Record):
    """The artifact against the PyTorch model on real inputs."""

    max_abs_diff: float
    cosine: float
    top1_agreement: float  # meaningful for classifiers; read the cosine for embeddings
    samples: int | None = None


@dataclass(frozen=True)
class ArtifactInfo(Record):
    """What an ONNX artifact holds (``parity`` is set for trials' artifacts)."""

    quantization: str
    fusion: bool
    size_bytes: int
    int8_ops: dict[str, int] = field(default_factory=dict)
    fused_ops: dict[str, int] = field(default_factory=dict)
    fp32_nodes: tuple[str, ...] = ()
    parity: Parity | None = None
    keep_ends: bool = False  # the first and last weighted layers kept fp32 (searched)
    keep_sensitive: int = 0  # how many measured most sensitive layers stay fp32 (searched)
    sensitive_fp32: tuple[str, ...] = ()  # those layers (module names)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactInfo:
        data = dict(data)
        data["fp32_nodes"] = tuple(data.get("fp32_nodes", ()))
        data["sensitive_fp32"] = tuple(data.get("sensitive_fp32", ()))
        if data.get("parity") is not None:
            data["parity"] = Parity.from_json(data["parity"])
        return super().from_json(data)


@dataclass(frozen=True)
class TrialMetrics(Record):
    """What scoring one candidate measured (stored as the Optuna trial's user attributes)."""

    flops: int
    flops_ratio: float
    params: int
    ratios: dict[str, float]
    channels: dict[str, int]
    accuracy: float
    reward: float
    budget_excess: float  # max over the budgets of (value / target - 1); <= 0 when within
    seconds: float
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    baseline_latency_ms: float | None = None
    latency_ratio: float | None = None
    # The ratio's 95 % confidence interval and the interleaved rounds it took (issue 15).
    latency_ratio_low: float | None = None
    latency_ratio_high: float | None = None
    latency_rounds: int | None = None
    # False: timed in the short comparison alone, its figure unable to change a decision
    # (search/candidate.py: timed); True: timed towards the stated interval.
    latency_precise: bool | None = None
    artifact: ArtifactInfo | None = None
    removed_units: tuple[str, ...] = ()  # depth: whole blocks / layers removed (issue 14)
    round_to: int | None = None  # the multiple its kept counts were rounded to
    # Multi-fidelity (search/fidelity.py): 0 = adaptive BN only, 1 = after a short
    # distillation; ``accuracy`` and ``reward`` are the highest fidelity's, the cheap ones
    # are kept beside them.
    fidelity: int = 0
    accuracy_cheap: float | None = None
    reward_cheap: float | None = None
    # --max-accuracy-drop: the lowest feasible accuracy at this trial's fidelity (the
    # baseline's accuracy at the same fidelity, less the drop).
    accuracy_floor: float | None = None

    @property
    def within_budgets(self) -> bool:
        """Within the FLOPs / latency budgets, whatever its accuracy (``feasible`` also
        holds it to the ``--max-accuracy-drop`` floor)."""
        return self.budget_excess <= 0

    @property
    def feasible(self) -> bool:
        """Within every budget the user set (FLOPs, latency when targeted) and, with
        ``--max-accuracy-drop``, at or above the accuracy floor of its fidelity."""
        return self.within_budgets and within_floor(self.accuracy_floor, self.accuracy)

    def attrs(self) -> dict[str, Any]:
        """The trial's user attributes (plain JSON data); ``feasible`` is written too, as
        the choice of the best trial, the report and TPE's constraints read it."""
        return to_json(self) | {"feasible": self.feasible}


def within_floor(floor: float | None, accuracy: float) -> bool:
    """Whether ``accuracy`` keeps to the ``--max-accuracy-drop`` ``floor`` (always, without
    one)."""
    return floor is None or accuracy >= floor - 1e-9


@dataclass(frozen=True)
class TrialRecord(Record):
    """One trial as ``result.json`` and the report list it."""

    number: int
    state: str  # Optuna's TrialState name: COMPLETE, FAIL, RUNNING, WAITING
    reward: float | None = keep()
    accuracy: float | None = None
    flops: int | None = None
    flops_ratio: float | None = None
    params: int | None = None
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    baseline_latency_ms: float | None = None
    latency_ratio: float | None = None
    latency_ratio_low: float | None = None
    latency_ratio_high: float | None = None
    latency_rounds: int | None = None
    latency_precise: bool | None = None  # False: a short comparison (it could not matter)
    feasible: bool | None = None
    seconds: float | None = None
    error: str | None = None
    fidelity: int | None = None  # the highest fidelity reached (search/fidelity.py)
    accuracy_cheap: float | None = None
    accuracy_floor: float | None = None  # --max-accuracy-drop floor at its fidelity
    artifact: ArtifactInfo | None = None
    channels: dict[str, int] | None = None
    worker: str | None = None  # hostname:pid of the process that scored and timed it
    plan: dict[str, float] = field(default_factory=dict)  # per-group pruning ratios
    retry_of: int | None = None  # the trial it re-runs after its process died
    removed_units: tuple[str, ...] = ()  # depth: whole blocks / layers removed
    reference: str | None = None  # the unpruned pipeline a reference trial scores
    round_to: int | None = None  # the multiple its kept counts were rounded to
    duplicate_of: int | None = None  # the earlier trial of the same plan, whose result it reuses

    @property
    def finished(self) -> bool:
        return self.state == "COMPLETE"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        data = dict(data)
        if data.get("artifact") is not None:
            data["artifact"] = ArtifactInfo.from_json(data["artifact"])
        data["removed_units"] = tuple(data.get("removed_units") or ())
        return super().from_json(data)


@dataclass(frozen=True)
class Plan(Record):
    """The chosen pruning plan."""

    ratios: dict[str, float]
    channels: dict[str, int]
    channels_before: dict[str, int]
    importance: str
    round_to: int | None = keep()  # the multiple kept counts were rounded to
    round_to_measured: bool = False  # prune.round_to auto: measured for the artifact's mode
    # Groups left whole because pruning them breaks the forward: name, layer, error.
    excluded_groups: tuple[dict[str, str], ...] = ()
    removed_units: tuple[str, ...] = ()  # depth: blocks / layers removed (unpruned numbering)
    depth_units: tuple[str, ...] = ()  # the units the search could remove

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        data = dict(data)
        for key in ("removed_units", "depth_units"):
            data[key] = tuple(data.get(key) or ())
        return super().from_json(data)


@dataclass(frozen=True)
class Retimed(Record):
    """A trial re-timed with the others before choosing (``search/choose.py``): one of the
    top trials, or a reference pipeline."""

    trial: int
    reward_before: float  # with the latency measured during the search
    reward: float  # with the joint re-timing's ratio: what the choice used
    latency_ratio: float
    latency_ms: float
    rounds: int
    latency_ratio_low: float | None = None  # None: too few rounds for an interval
    latency_ratio_high: float | None = None
    # Whether the choice may take it: within every budget (the decoder search judges its
    # latency as re-timed, the pruning search as scored). None: not recorded.
    feasible: bool | None = None


@dataclass(frozen=True)
class Chosen(Record):
    """The chosen variant after recovery (``result.json``'s ``best``).

    ``accuracy`` / ``val_accuracy`` are the deployed artifact's when there is one (else the
    PyTorch model's); ``accuracy_fp32`` is the recovered PyTorch model's.
    """

    accuracy: float
    accuracy_before_recovery: float
    val_accuracy: float
    val_accuracy_before_recovery: float
    flops: int
    params: int
    latency_ms: float
    latency_p90_ms: float
    latency_ratio: float
    reward: float
    trial: int
    plan: Plan
    recovery: dict[str, Any] = field(default_factory=dict)
    accuracy_fp32: float | None = None
    quantization: str | None = None
    fusion: bool | None = None
    parity: Parity | None = None
    artifact: ArtifactInfo | None = None
    latency_ratio_low: float | None = None  # the 95 % interval of the final timing
    latency_ratio_high: float | None = None
    fidelity: int | None = None  # the chosen trial's highest fidelity
    retimed: tuple[Retimed, ...] = ()  # the top trials and the references, re-timed together

    @property
    def deployed(self) -> bool:
        """Whether the variant was written as an ONNX artifact (``model.onnx``)."""
        return self.quantization is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Chosen:
        data = dict(data)
        data["plan"] = Plan.from_json(data["plan"])
        if data.get("parity") is not None:
            data["parity"] = Parity.from_json(data["parity"])
        if data.get("artifact") is not None:
            data["artifact"] = ArtifactInfo.from_json(data["artifact"])
        data["retimed"] = tuple(Retimed.from_json(item) for item in data.get("retimed", ()))
        return super().from_json(data)


@dataclass(frozen=True)
class Percentiles(Record):
    p50: float
    p90: float


@dataclass(frozen=True)
class ArtifactFile(Record):
    """One ONNX file the run wrote or timed: latency (all against the same baseline), size."""

    latency_ms: Percentiles
    size_bytes: int
    latency_ratio: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactFile:
        data = dict(data)
        data["latency_ms"] = Percentiles(**data["latency_ms"])
        return super().from_json(data)


@dataclass(frozen=True)
class WorkerStats(Record):
    """One process that scored trials: its finished trials and the baseline it timed against.

    Latency ratios compare across workers, milliseconds do not: each worker timed its
    candidates against the baseline artifact on its own machine.
    """

    trials: int = 0
    trial_numbers: tuple[int, ...] = ()
    baseline_latency_ms: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)  # what record_worker stored

    def to_json(self) -> dict[str, Any]:
        # Flat, as result.json has always listed a worker: machine fields beside the counts.
        data = {**self.machine, "trials": self.trials, "trial_numbers": list(self.trial_numbers)}
        if self.baseline_latency_ms is not None:
            data["baseline_latency_ms"] = self.baseline_latency_ms
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerStats:
        own = ("trials", "trial_numbers", "baseline_latency_ms")
        return cls(
            trials=data.get("trials", 0),
            trial_numbers=tuple(data.get("trial_numbers", ())),
            baseline_latency_ms=data.get("baseline_latency_ms"),
            machine={key: value for key, value in data.items() if key not in own},
        )


def worker_summary(
    trials: Iterable[TrialRecord], machines: Mapping[str, dict] | None = None
) -> dict[str, WorkerStats]:
    """Per process that scored trials (a trial's ``worker``, ``hostname:pid``): its machine
    (when ``machines`` has it), its finished trials and the median baseline latency it timed
    them against."""
    numbers: dict[str, list[int]] = {name: [] for name in machines or {}}
    baselines: dict[str, list[float]] = {}
    for trial in trials:
        if trial.worker is None or not trial.finished:
            continue
        numbers.setdefault(trial.worker, []).append(trial.number)
        if trial.baseline_latency_ms:
            baselines.setdefault(trial.worker, []).append(trial.baseline_latency_ms)
    return {
        name: WorkerStats(
            trials=len(done),
            trial_numbers=tuple(done),
            baseline_latency_ms=(statistics.median(baselines[name]) if name in baselines else None),
            machine=dict((machines or {}).get(name, {})),
        )
        for name, done in numbers.items()
    }


def trial_record(trial: Any) -> TrialRecord:
    """An Optuna ``FrozenTrial`` as a :class:`TrialRecord` (its user attributes are the
    :class:`TrialMetrics` the search stored, plus ``worker`` and ``error``)."""
    attrs = dict(trial.user_attrs)
    names = {item.name for item in dataclasses.fields(TrialRecord)} - {"plan", "retry_of"}
    data = {key: value for key, value in attrs.items() if key in names}
    data.update(number=trial.number, state=trial.state.name, reward=trial.value)
    data["plan"] = attrs.get("ratios", {})
    # Queued again after its process died (Optuna's RetryHeartbeatStaleTrialCallback).
    data["retry_of"] = trial.system_attrs.get("failed_trial")
    return TrialRecord.from_json(data)
