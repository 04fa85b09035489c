"""Typed, validated configuration: what the CLI, YAML files and the Python API all build.

Every user-facing value is checked in ``__post_init__`` and a bad one raises
:class:`UserInputError` naming the field, so the CLI can answer with one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from compressor.actions.importance import IMPORTANCES
from compressor.actions.quantize import QUANTIZATIONS
from compressor.credentials import StorageUrl
from compressor.errors import UserInputError
from compressor.reward import REWARDS
from compressor.search.samplers import SAMPLERS

_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")


@dataclass(frozen=True)
class FlopsTarget:
    """A FLOPs budget: a ratio of the original model (0 < x <= 1) or an absolute count."""

    value: float
    is_ratio: bool

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value <= 0:
            raise UserInputError(f"--target-flops must be > 0, got {self.value:g}")
        if self.is_ratio and self.value > 1:
            raise UserInputError(
                f"--target-flops {self.value:g} is a ratio above 1; use 0 < x <= 1 "
                "or an absolute count with a suffix such as 12M or 1.5G"
            )

    def resolve(self, baseline_flops: int) -> int:
        """The budget in FLOPs for a model whose unpruned count is ``baseline_flops``."""
        return int(round(self.value * baseline_flops)) if self.is_ratio else int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}" if self.is_ratio else f"{self.value:.4g} FLOPs"


def parse_flops_target(text: str | float | int) -> FlopsTarget:
    """Parse ``0.5`` (a ratio), ``12M`` / ``1.5G`` / ``3e7`` (absolute FLOPs).

    A bare number <= 1 is a ratio; a bare number > 1 without suffix is refused as ambiguous
    unless it is at least 1000 (clearly a count).
    """
    if isinstance(text, bool):
        raise UserInputError(f"--target-flops must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        text = repr(float(text))
    match = _COUNT_RE.match(str(text))
    if not match:
        raise UserInputError(
            f"--target-flops {text!r} is not a number; use a ratio like 0.5 or a count like 12M"
        )
    number, suffix = float(match.group(1)), match.group(2).upper()
    if suffix:
        return FlopsTarget(number * _SUFFIXES[suffix], is_ratio=False)
    if number <= 1:
        return FlopsTarget(number, is_ratio=True)
    if number >= 1000:
        return FlopsTarget(number, is_ratio=False)
    raise UserInputError(
        f"--target-flops {text} is a ratio above 1; use 0 < x <= 1 "
        "or an absolute count with a suffix such as 12M or 1.5G"
    )


_STORAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+._-]*://")
_LATENCY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms)?\s*$")


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget: a ratio of the fp32 baseline artifact's latency, or milliseconds."""

    value: float
    is_ratio: bool

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value <= 0:
            raise UserInputError(f"--target-latency must be > 0, got {self.value:g}")
        if self.is_ratio and self.value > 1:
            raise UserInputError(
                f"--target-latency {self.value:g} is a ratio above 1; use "
                "0 < x <= 1 or milliseconds such as 2.5ms"
            )

    def __str__(self) -> str:
        return f"{self.value:g}" if self.is_ratio else f"{self.value:g}ms"


def parse_latency_target(text: str | float | int) -> LatencyTarget:
    """Parse ``0.5`` (a ratio of the baseline's latency) or ``2.5ms`` (milliseconds)."""
    match = None if isinstance(text, bool) else _LATENCY_RE.match(str(text))
    if not match:
        raise UserInputError(
            f"--target-latency {text!r} is not a ratio like 0.5 or a time like 2.5ms"
        )
    return LatencyTarget(float(match.group(1)), is_ratio=match.group(2) is None)


def parse_accuracy_drop(value: Any) -> float:
    """``--max-accuracy-drop``: points of the metric in percent (1 = one point), 0 <= x < 100."""
    problem = (
        "max accuracy drop must be a number of points in [0, 100) (1 = one point of "
        f"accuracy); got {value!r}"
    )
    if isinstance(value, bool):
        raise UserInputError(problem)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserInputError(problem) from None
    if not math.isfinite(number) or not 0.0 <= number < 100.0:
        raise UserInputError(problem)
    return number


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _set(config: Any, **values: Any) -> None:
    """Normalise fields of a frozen config in ``__post_init__`` (lists to tuples, ...)."""
    for name, value in values.items():
        object.__setattr__(config, name, value)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, (int, float)) and low <= value <= high):
        raise UserInputError(f"{name} must be between {low:g} and {high:g}; got {value!r}")


DEVICES = ("cpu", "cuda")
AUTO = "auto"  # prune.round_to: the multiple measured for each candidate's quantization mode


@dataclass(frozen=True)
class PruneConfig:
    """How candidates are pruned (torch-pruning, one ratio per coupled channel group)."""

    importance: str = "magnitude"
    # Channel counts rounded to multiples the kernels like; "auto": per candidate, the
    # multiple measured for its artifact's quantization mode (compressor.measure.kernel_widths).
    round_to: int | str | None = 8
    max_ratio: float = 0.8  # never remove more than this share of a group's channels
    ratio_step: float = 0.05  # granularity of the searched per-group preferences
    ignore_layers: tuple[str, ...] = ()  # module names whose output channels stay intact
    # Issue 17: a group whose pruning breaks the forward is excluded (and listed) unless set.
    strict_groups: bool = False
    # Issue 14: whole residual blocks / encoder layers are removed too (compressor.actions.
    # depth), searched with the widths; `depth_units` is a glob restricting which ones.
    depth: bool = True
    depth_units: str | None = None

    def __post_init__(self) -> None:
        IMPORTANCES.check("prune.importance", self.importance)
        if not isinstance(self.depth, bool):
            raise UserInputError(f"prune.depth must be true or false; got {self.depth!r}")
        if self.depth_units is not None and (
            not isinstance(self.depth_units, str) or not self.depth_units.strip()
        ):
            raise UserInputError(
                f"prune.depth_units must be a glob such as 'layer*.*'; got {self.depth_units!r}"
            )
        if self.round_to not in (None, AUTO) and (
            type(self.round_to) is not int or self.round_to < 1  # not bool, not float
        ):
            raise UserInputError(
                f"prune.round_to must be a positive integer or auto; got {self.round_to!r}"
            )
        _check_range("prune.max_ratio", self.max_ratio, 0.05, 0.99)
        _check_range("prune.ratio_step", self.ratio_step, 0.01, 0.5)
        if (
            isinstance(self.ignore_layers, str)
            or not isinstance(self.ignore_layers, (list, tuple))
            or not all(isinstance(name, str) for name in self.ignore_layers)
        ):
            raise UserInputError(
                f"prune.ignore_layers must be a list of module names; got {self.ignore_layers!r}"
            )
        _set(self, ignore_layers=tuple(self.ignore_layers))
        if not isinstance(self.strict_groups, bool):
            raise UserInputError(
                f"prune.strict_groups must be true or false; got {self.strict_groups!r}"
            )


@dataclass(frozen=True)
class SearchConfig:
    """The Optuna study: budget, sampler, reward."""

    trials: int = 30
    time_budget: float | None = None  # seconds; the study stops at whichever comes first
    seed: int = 0
    sampler: str = "tpe"
    reward: str = "soft"
    alpha: float = -0.07  # MnasNet exponent when the complexity is within its target
    beta: float = -0.07  # ... and when it is over (the "hard" reward uses a steep one)
    calibration_samples: int = 256  # images used to re-estimate BatchNorm statistics
    trial_timeout: float | None = None  # seconds; a slower trial fails with that reason
    max_consecutive_failures: int = 5  # the run stops (with a summary) after this many
    # Issue 9: where the study lives. None = SQLite in the output folder; any Optuna RDB URL
    # (postgresql://user@host/db) lets `compress worker` processes join the same study.
    # Given as a string; held as a StorageUrl, which records itself with the password masked.
    storage: StorageUrl | None = None
    study: str = "compress"
    # Issue 14: the unpruned model's fp32 / fused / INT8 pipelines are seeded trials too.
    references: bool = True
    # Issue 15, multi-fidelity (search/fidelity.py): trials whose cheap reward is in the top
    # promote_fraction so far are re-scored after promote_steps steps of distillation from
    # the unpruned model (0 = every trial on the cheap score alone).
    promote_fraction: float = 0.25
    promote_steps: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.references, bool):
            raise UserInputError(
                f"search.references must be true or false; got {self.references!r}"
            )
        if isinstance(self.storage, str) and _STORAGE_RE.match(self.storage):
            _set(self, storage=StorageUrl(self.storage))
        elif self.storage is not None and not isinstance(self.storage, StorageUrl):
            raise UserInputError(
                "search.storage must be a database URL such as sqlite:///runs/x/study.db or "
                f"postgresql://user@host/db; got {self.storage!r}"
            )
        if not isinstance(self.study, str) or not self.study.strip():
            raise UserInputError(f"search.study must be a non-empty name; got {self.study!r}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise UserInputError(f"search.trials must be a positive integer; got {self.trials!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UserInputError(
                f"search.time_budget must be > 0 seconds; got {self.time_budget!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise UserInputError(f"search.seed must be an integer; got {self.seed!r}")
        SAMPLERS.check("search.sampler", self.sampler)
        REWARDS.check("search.reward", self.reward)
        _check_range("search.promote_fraction", self.promote_fraction, 0.0, 1.0)
        if not isinstance(self.promote_steps, int) or self.promote_steps < 1:
            raise UserInputError(
                f"search.promote_steps must be a positive integer; got {self.promote_steps!r}"
            )
        if self.trial_timeout is not None and not self.trial_timeout > 0:
            raise UserInputError(
                f"search.trial_timeout must be > 0 seconds; got {self.trial_timeout!r}"
            )
        if not isinstance(self.max_consecutive_failures, int) or self.max_consecutive_failures < 1:
            raise UserInputError(
                "search.max_consecutive_failures must be a positive integer; "
                f"got {self.max_consecutive_failures!r}"
            )
        if not isinstance(self.calibration_samples, int) or self.calibration_samples < 1:
            raise UserInputError(
                "search.calibration_samples must be a positive integer; "
                f"got {self.calibration_samples!r}"
            )


@dataclass(frozen=True)
class MeasureConfig:
    """Latency measurement on the target device."""

    device: str = "cpu"
    threads: int | None = None  # intra-op threads; None = all cores, at most 4
    batch_size: int = 1
    rounds: int = 6  # candidate and baseline alternate at least this many times ...
    runs_per_round: int = 15
    max_seconds: float = 2.0  # cap per comparison, after at least two rounds
    # ... and go on until the ratio's 95 % interval is within +-ratio_halfwidth (0 = never),
    # up to max_rounds: on a loaded machine 6 rounds left small models' ratios +-30 % apart.
    ratio_halfwidth: float = 0.05
    max_rounds: int = 30

    def __post_init__(self) -> None:
        _check_choice("measure.device", self.device, DEVICES)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise UserInputError(
                f"measure.threads must be a positive integer; got {self.threads!r}"
            )
        _check_range("measure.ratio_halfwidth", self.ratio_halfwidth, 0.0, 1.0)
        for name in ("batch_size", "rounds", "runs_per_round", "max_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"measure.{name} must be a positive integer; got {value!r}")


@dataclass(frozen=True)
class RecoveryConfig:
    """Recovery of the chosen variant. The batches are the task's (their size is the task's).

    ``method``: a registered recovery (``fine_tune``; ``distill`` learns from the
    uncompressed model, logits KL + labels; ``auto``, the default, fine-tunes, and on a plan
    that removed whole blocks runs both and keeps the better on validation: neither wins on
    every depth plan, and the race costs a second recovery on those plans only); tasks with
    their own recovery (sentence encoders: embedding distillation) ignore it. ``steps``, when
    set, replaces ``epochs`` as the budget, for every method.
    """

    epochs: int = 3
    lr: float = 0.01
    method: str = "auto"
    steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise UserInputError(f"recovery.epochs must be an integer >= 0; got {self.epochs!r}")
        _check_range("recovery.lr", self.lr, 1e-7, 10.0)
        # Imported here: the recovery methods need torch, and a config need not load it
        # (``compress --help`` builds none); compressor.recover imports no config.
        from compressor.recover import RECOVERIES

        RECOVERIES.check("recovery.method", self.method)
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 0):
            raise UserInputError(f"recovery.steps must be an integer >= 0; got {self.steps!r}")


@dataclass(frozen=True)
class DeployConfig:
    """The deployable artifact: every candidate is exported to ONNX, optionally fused and
    INT8-quantized, and scored (accuracy and latency) as that artifact in ONNX Runtime."""

    export: bool = True  # False: score the PyTorch model instead (no ONNX artifact)
    # Modes the search chooses among (default: every registered one).
    quantization: tuple[str, ...] = field(default_factory=lambda: QUANTIZATIONS.names())
    fusion: tuple[bool, ...] = (False, True)  # layer fusion off / on, chosen by the search
    keep_fp32: tuple[str, ...] = ()  # module names never quantized (first conv, classifier)
    # How many of the measured most INT8-sensitive layers may stay fp32: the search picks
    # one of these per trial (compressor.measure.precision ranks the layers).
    keep_sensitive: tuple[int, ...] = (0, 1, 2, 4)
    calibration_samples: int = 64  # training inputs for static INT8 calibration
    parity_samples: int = 128  # training inputs on which artifact and model are compared

    def __post_init__(self) -> None:
        _set(
            self,
            quantization=tuple(self.quantization),
            fusion=tuple(self.fusion),
            keep_fp32=tuple(self.keep_fp32),
            keep_sensitive=tuple(self.keep_sensitive),
        )
        if not self.keep_sensitive or any(type(n) is not int or n < 0 for n in self.keep_sensitive):
            raise UserInputError(
                "deploy.keep_sensitive must list counts of layers (integers >= 0); "
                f"got {self.keep_sensitive!r}"
            )
        if not self.quantization:
            raise UserInputError("deploy.quantization needs at least one mode")
        for mode in self.quantization:
            QUANTIZATIONS.check("deploy.quantization", mode)
        _set(self, fusion=_fusion_choices("deploy.fusion", self.fusion))
        for name in ("calibration_samples", "parity_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"deploy.{name} must be a positive integer; got {value!r}")


def _fusion_choices(name: str, values: Any) -> tuple[bool, ...]:
    if (
        not isinstance(values, (list, tuple))
        or not values
        or any(not isinstance(value, bool) for value in values)
    ):
        raise UserInputError(f"{name} must list true and/or false; got {values!r}")
    return tuple(values)


def _fraction(value: Any) -> float | None:
    """A number, or a fraction written as text (``1/3``: YAML has no exact thirds)."""
    if isinstance(value, bool):
        return None
    try:
        return float(Fraction(value) if isinstance(value, str) else value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _ratios(name: str, values: Any) -> tuple[float, ...] | None:
    """``decoder.<name>``: a non-empty list of fractions in [0, 1), as a tuple of floats."""
    if values is None:
        return None
    listed = isinstance(values, (list, tuple)) and len(values) > 0
    numbers = [_fraction(v) for v in values] if listed else []
    if not listed or any(n is None or not 0.0 <= n < 1.0 for n in numbers):
        raise UserInputError(
            f"decoder.{name} must list fractions in [0, 1) such as 0, 0.25 or 1/3; got {values!r}"
        )
    return tuple(dict.fromkeys(numbers))


@dataclass(frozen=True)
class DecoderConfig:
    """The structural moves of the causal-lm study (issue 16), each ``None`` = the default
    of :class:`compressor.search.decoder.DecoderSpace`, which says why it is what it is.

    ``head_ratios`` must also remove whole query heads from each key/value group of the
    model (9 heads over 3 groups: multiples of 1/3); that is checked once the model loads.
    """

    max_drop_layers: int | None = None  # decoder layers the study may remove (0..n)
    mlp_ratios: tuple[float, ...] | None = None  # shares of MLP neurons removed, one per trial
    head_ratios: tuple[float, ...] | None = None  # shares of each group's query heads removed
    fusion: tuple[bool, ...] | None = None  # fused (ORT GenAI builder) graphs, unfused, both

    def __post_init__(self) -> None:
        if self.fusion is not None:
            _set(self, fusion=_fusion_choices("decoder.fusion", self.fusion))
        if self.max_drop_layers is not None and (
            type(self.max_drop_layers) is not int or self.max_drop_layers < 0
        ):
            raise UserInputError(
                f"decoder.max_drop_layers must be an integer >= 0; got {self.max_drop_layers!r}"
            )
        _set(
            self,
            mlp_ratios=_ratios("mlp_ratios", self.mlp_ratios),
            head_ratios=_ratios("head_ratios", self.head_ratios),
        )

    def space_options(self) -> dict[str, Any]:
        """The :class:`DecoderSpace` keywords the user set."""
        return {
            name: value for name, value in dataclasses.asdict(self).items() if value is not None
        }


# Training-batch augmentations of image folders: "crop" is a random crop after 4-pixel zero
# padding, "flip" a random horizontal flip (wrong for digits, text, many medical images).
AUGMENTATIONS = ("none", "flip", "crop", "crop+flip")


@dataclass(frozen=True)
class ImagesConfig:
    """How an image folder becomes model inputs (issue 17). ``None`` = the task's default:
    channels from the model's first convolution (1 or 3), each split resized to the first
    train image's size, ImageNet mean / std, and ``crop+flip`` augmentation for the CIFAR
    task but ``none`` for your own data (flips corrupt digits, text, many medical images)."""

    channels: int | None = None
    size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: str | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in (1, 3):
            raise UserInputError(
                f"images.channels (--channels) must be 1 (grayscale) or 3 (RGB); "
                f"got {self.channels!r}"
            )
        if self.size is not None and (not isinstance(self.size, int) or self.size < 1):
            raise UserInputError(
                f"images.size (--image-size) must be a positive integer; got {self.size!r}"
            )
        for name in ("mean", "std"):
            _set(self, **{name: _statistics(name, getattr(self, name))})
        if self.augment is not None:
            _check_choice("images.augment (--augment)", self.augment, AUGMENTATIONS)

    def task_options(self) -> dict[str, Any]:
        """The task builder's keywords; unset ones are left out by the task registry."""
        return {
            "channels": self.channels,
            "image_size": self.size,
            "mean": self.mean,
            "std": self.std,
            "augment": self.augment,
        }


def _statistics(name: str, values: Any) -> tuple[float, ...] | None:
    """``images.mean`` / ``images.std``: 1 or 3 finite numbers (std > 0), as a tuple."""
    if values is None:
        return None
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if (
        isinstance(values, str)
        or not isinstance(values, (list, tuple))
        or len(values) not in (1, 3)
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    ):
        raise UserInputError(f"images.{name} (--{name}) must be 1 or 3 numbers; got {values!r}")
    if name == "std" and min(values) <= 0:
        raise UserInputError(f"images.std (--std) must be > 0; got {list(values)}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class CompressConfig:
    """Everything one ``compress`` run needs; YAML files map onto it key for key."""

    # None (only with a latency target): the search samples the FLOPs level per trial.
    target_flops: FlopsTarget | None = field(default_factory=lambda: FlopsTarget(0.5, True))
    # None: inferred from ``model`` and ``data`` (compressor.infer_task); digits without them.
    task: str | None = None
    output: Path | None = None
    # Task inputs (issue 5): the data folder / file, a user model (``pkg.module:factory`` or
    # ``hf:PATH``) and its weights. None = the task's default; see compressor/tasks.
    data: Path | None = None
    model: str | None = None
    weights: Path | None = None
    # Unpickling a whole model (--model model.pt) runs code from the file: opt-in only.
    trust_pickle: bool = False
    prune: PruneConfig = field(default_factory=PruneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    target_latency: LatencyTarget | None = None
    images: ImagesConfig = field(default_factory=ImagesConfig)
    # Issue 14: the fastest variant whose validation accuracy is within this many points of
    # the baseline's (with or without FLOPs / latency targets).
    max_accuracy_drop: float | None = None
    # Issue 16: a weight-size budget in MB (decoder language models, task causal-lm).
    target_size: float | None = None
    decoder: DecoderConfig = field(default_factory=DecoderConfig)  # causal-lm's moves

    def __post_init__(self) -> None:
        if self.target_latency is not None and not isinstance(self.target_latency, LatencyTarget):
            _set(self, target_latency=parse_latency_target(self.target_latency))
        if self.target_size is not None:
            try:
                _set(self, target_size=float(self.target_size))
            except (TypeError, ValueError):
                raise UserInputError(
                    f"--target-size must be megabytes (a number); got {self.target_size!r}"
                ) from None
            if not math.isfinite(self.target_size) or self.target_size <= 0:
                raise UserInputError(f"--target-size must be > 0 MB; got {self.target_size:g}")
        if self.max_accuracy_drop is not None:
            _set(self, max_accuracy_drop=parse_accuracy_drop(self.max_accuracy_drop))
        if (
            self.target_flops is None
            and self.target_latency is None
            and self.max_accuracy_drop is None
            and self.target_size is None
        ):
            raise UserInputError(
                "give --target-flops, --target-latency or --max-accuracy-drop (or several)"
            )
        if self.target_flops is not None and not isinstance(self.target_flops, FlopsTarget):
            _set(self, target_flops=parse_flops_target(self.target_flops))
        if self.output is not None:
            _set(self, output=Path(self.output))
        _set(
            self,
            data=Path(self.data) if self.data is not None else None,
            weights=Path(self.weights) if self.weights is not None else None,
        )
        if not isinstance(self.trust_pickle, bool):
            raise UserInputError(f"trust_pickle must be true or false; got {self.trust_pickle!r}")
        if self.model is not None and not isinstance(self.model, str):
            raise UserInputError(
                f"model must be a string like pkg.module:factory or hf:PATH; got {self.model!r}"
            )
        if self.task is None:
            from compressor.infer_task import infer_task

            _set(self, task=infer_task(self.model, self.data))

    def task_options(self) -> dict[str, Any]:
        """The options handed to the task builder (``None`` = the task's default)."""
        return {
            "data": self.data,
            "model": self.model,
            "weights": self.weights,
            "trust_pickle": self.trust_pickle or None,  # only tasks that load files take it
            **self.images.task_options(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressConfig:
        """Build from nested plain data (a parsed YAML file); unknown keys are errors."""
        sections = {
            "prune": PruneConfig,
            "search": SearchConfig,
            "measure": MeasureConfig,
            "recovery": RecoveryConfig,
            "deploy": DeployConfig,
            "images": ImagesConfig,
            "decoder": DecoderConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise UserInputError(f"config section {key!r} must be a mapping")
                kwargs[key] = _build_section(sections[key], key, value)
            elif key in (
                "target_flops",
                "target_latency",
                "target_size",
                "max_accuracy_drop",
                "task",
                "output",
                "data",
                "model",
                "weights",
                "trust_pickle",
            ):
                kwargs[key] = value
            else:
                raise UserInputError(f"unknown config key {key!r}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, suitable for YAML / JSON; round-trips through :meth:`from_dict`.

        It is what a run records: a password in ``search.storage`` is masked (``***``).
        """
        data = dataclasses.asdict(self)
        data["target_flops"] = (
            None
            if self.target_flops is None
            else self.target_flops.value
            if self.target_flops.is_ratio
            else f"{self.target_flops.value:g}"
        )
        data["output"] = str(self.output) if self.output is not None else None
        storage = self.search.storage
        data["search"]["storage"] = storage.recorded if storage is not None else None
        for key in ("data", "weights"):
            data[key] = str(getattr(self, key)) if getattr(self, key) is not None else None
        data["prune"]["ignore_layers"] = list(self.prune.ignore_layers)
        for key in ("mean", "std"):
            value = getattr(self.images, key)
            data["images"][key] = list(value) if value is not None else None
        data["target_latency"] = str(self.target_latency) if self.target_latency else None
        for section in ("deploy", "decoder"):  # YAML has lists, not tuples
            data[section] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in data[section].items()
            }
        return data


def _build_section(section_type: type, name: str, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(
            f"unknown key {name}.{unknown[0]}; known keys: {', '.join(sorted(known))}"
        )
    try:
        return section_type(**values)
    except TypeError as exc:  # a value of a type the section's own checks did not expect
        raise UserInputError(
            f"config section {name!r} has a value of the wrong type: {exc}"
        ) from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into plain data (validated by :meth:`CompressConfig.from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(f"config file {path} could not be read: {first_line}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}"
        )
    return data
