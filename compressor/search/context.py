"""What every trial needs, in two parts: the frozen :class:`SearchSettings` (model, groups,
budget, calibration batches, config) and the live :class:`Resources` (the latency meter with
the baseline artifact timed on *this* machine, a scratch folder) that exist only while
:func:`measuring` holds them. ``compress`` and ``compress worker`` build both the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from compressor.actions.depth import DepthUnit, declared_units, find_units
from compressor.actions.export import export_onnx
from compressor.actions.prune import ChannelGroup
from compressor.actions.pruner import ChannelPruner, ExcludedGroup, Pruner, usable_groups
from compressor.actions.quantize import preferred_mode
from compressor.config import AUTO, CompressConfig
from compressor.errors import UserInputError
from compressor.measure.kernel_widths import KernelWidths, cached_kernel_widths
from compressor.measure.latency import LatencyMeter
from compressor.recover import first_batches
from compressor.tasks import Task

DISTILL_SAMPLES = 1024  # training inputs the promoted trials' short distillation cycles over


@dataclass(frozen=True)
class SearchSettings:
    """The fixed part of every trial, the same in every process that runs trials.

    ``flops_cache`` memoises FLOPs by plan shape (see ``candidate.flops_of_plan``): the
    budget fit asks for the same shapes again and again. It is a cache, not a setting.
    """

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]
    calibration: tuple  # fixed training batches for BatchNorm and INT8 calibration
    groups: tuple[ChannelGroup, ...]
    config: CompressConfig
    ignored_layers: tuple[str, ...]
    flops_budget: int
    baseline_flops: int
    pruner: Pruner
    # Groups left whole because pruning them breaks the forward (issue 17).
    excluded_groups: tuple[ExcludedGroup, ...] = ()
    flops_cache: dict = field(default_factory=dict, compare=False, repr=False)
    depth_units: tuple[DepthUnit, ...] = ()  # removable blocks / layers (issue 14)
    # --max-accuracy-drop: the lowest validation accuracy a feasible trial may have.
    accuracy_floor: float | None = None
    # Multi-fidelity (search/fidelity.py): fixed training batches for the promoted trials'
    # short distillation, and the task's own recovery when it has one (sentence encoders).
    distill_batches: tuple = ()
    recover: Callable | None = None
    # prune.round_to auto: this machine's measured favoured multiples for the model's kind
    # of layer, conv or linear (None: a fixed multiple).
    kernel_widths: KernelWidths | None = None
    # The measured INT8 sensitivity ranking (search/precision.py), filled on first use.
    precision_cache: dict = field(default_factory=dict, compare=False, repr=False)
    # The unpruned model's accuracy after a short distillation (search/fidelity.py).
    fidelity_cache: dict = field(default_factory=dict, compare=False, repr=False)
    # The quantization mode of the seeded plans (``seeded_mode``).
    seed_mode: str = "none"


@dataclass(frozen=True)
class Resources:
    """What scoring needs besides the settings, alive only inside :func:`measuring`.

    ``meter`` is None when latency is not measured (a benchmark scoring plain PyTorch models).
    """

    workdir: Path  # scratch folder for candidate artifacts
    meter: LatencyMeter | None = None
    baseline_artifact: Path | None = None  # the fp32 export of the unpruned model


def search_settings(
    task: Task,
    config: CompressConfig,
    baseline_flops: int,
    flops_budget: int | None = None,
    baseline_accuracy: float | None = None,
) -> SearchSettings:
    """The settings for ``task`` under ``config``. Raises :class:`UserInputError` when
    nothing can be pruned. ``baseline_accuracy`` (validation) sets the
    ``--max-accuracy-drop`` floor."""
    model = task.model.eval()
    if flops_budget is None:
        flops_budget = flops_budget_of(config, baseline_flops)
    ignored = tuple(task.ignored_layers) + tuple(config.prune.ignore_layers)
    pruner = task.pruner or ChannelPruner.from_config(
        model, task.example_inputs, config.prune, ignored
    )
    widths = kernel_widths_for(model) if config.prune.round_to == AUTO else None
    seed_mode = seeded_mode(config, model)
    if widths is not None and hasattr(pruner, "aligned_to"):
        # Plans built without a deployment (sensitivity, the budget check) round as the
        # seeded plans' artifacts do; each candidate is re-aligned to its own mode.
        pruner = pruner.aligned_to(widths.round_to(seed_mode))
    groups, excluded = usable_groups(
        pruner, model, task.example_inputs, pruner.groups(), config.prune.strict_groups
    )
    if not groups:
        raise UserInputError("the model has no prunable convolution or linear layers")
    return SearchSettings(
        model=model,
        example_inputs=task.example_inputs,
        evaluate=task.evaluate,
        calibration=tuple(
            first_batches(
                task.calibration_data or task.train_data, config.search.calibration_samples
            )
        ),
        groups=tuple(groups),
        excluded_groups=excluded,
        config=config,
        ignored_layers=ignored,
        flops_budget=flops_budget,
        baseline_flops=baseline_flops,
        pruner=pruner,
        depth_units=tuple(depth_units(task, config)),
        accuracy_floor=accuracy_floor(config, baseline_accuracy),
        distill_batches=tuple(
            first_batches(task.train_data, DISTILL_SAMPLES)
            if config.search.promote_fraction > 0 and task.recover is None
            else ()
        ),
        recover=task.recover,
        kernel_widths=widths,
        seed_mode=seed_mode,
    )


def seeded_mode(config: CompressConfig, model: nn.Module) -> str:
    """The quantization mode of the seeded plans' artifacts (``none`` without export): the
    allowed mode measured fastest for ``model``'s kind of layers."""
    if not config.deploy.export:
        return "none"
    return preferred_mode(config.deploy.quantization, linear=mostly_linear(model))


def kernel_widths_for(model: nn.Module) -> KernelWidths:
    """The measured multiples of the kind of layer ``model``'s pruning narrows: Linear
    (MatMul) neurons for a transformer's MLPs, convolution channels for a CNN."""
    return cached_kernel_widths("linear" if mostly_linear(model) else "conv")


def mostly_linear(model: nn.Module) -> bool:
    """Whether most of ``model``'s layer weights are in ``nn.Linear`` layers rather than
    convolutions (a transformer, not a CNN)."""
    linear = conv = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            linear += module.weight.numel()
        elif isinstance(module, nn.modules.conv._ConvNd):
            conv += module.weight.numel()
    return linear > conv


def excluded_records(settings: SearchSettings) -> tuple[dict[str, str], ...]:
    """The excluded groups as plain records (``result.json``, the study's run info)."""
    return tuple(dataclasses.asdict(group) for group in settings.excluded_groups)


def accuracy_floor(config: CompressConfig, baseline_accuracy: float | None) -> float | None:
    """The lowest feasible validation accuracy under ``--max-accuracy-drop`` (points / 100:
    metrics are fractions in [0, 1])."""
    if config.max_accuracy_drop is None:
        return None
    if baseline_accuracy is None:
        raise ValueError("--max-accuracy-drop needs the baseline's validation accuracy")
    return baseline_accuracy - config.max_accuracy_drop / 100.0


def depth_units(task: Task, config: CompressConfig) -> list[DepthUnit]:
    """The task's declared depth units, else those found in its model; none with
    ``prune.depth`` off. ``prune.depth_units`` (a glob) restricts either."""
    if not config.prune.depth:
        return []
    model, pattern = task.model.eval(), config.prune.depth_units
    if task.depth_units is not None:
        return declared_units(model, task.example_inputs, task.depth_units, pattern)
    return find_units(model, task.example_inputs, pattern)


def flops_budget_of(config: CompressConfig, baseline_flops: int) -> int:
    """The FLOPs budget; without a FLOPs target, the whole model (each trial samples a level)."""
    return config.target_flops.resolve(baseline_flops) if config.target_flops else baseline_flops


@contextlib.contextmanager
def measuring(settings: SearchSettings, *, meter: bool = True) -> Iterator[Resources]:
    """The live resources: a scratch folder and (with ``meter``) a latency meter whose
    baseline (the fp32 ONNX export of the unpruned model; the PyTorch model with
    ``deploy.export`` off) is timed here.

    With ``measure.threads`` set, this process's own torch work uses that many threads too,
    so N processes on one machine can each be given their share of the cores.
    """
    config = settings.config
    previous_threads = torch.get_num_threads()
    if config.measure.threads:
        torch.set_num_threads(config.measure.threads)
    try:
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compressor-")))
            if not meter:
                yield Resources(workdir)
                return
            latency = stack.enter_context(LatencyMeter(config.measure, settings.example_inputs))
            baseline = (
                export_onnx(settings.model, settings.example_inputs, workdir / "baseline.onnx")
                if config.deploy.export
                else None
            )
            latency.set_baseline(baseline or settings.model)
            yield Resources(workdir, latency, baseline)
    finally:
        torch.set_num_threads(previous_threads)
