"""Building and scoring one candidate: prune -> re-calibrate BatchNorm -> (artifact) ->
measure -> reward.

With a deployment spec the candidate is scored as its deployable artifact, because the
artifact is what ships: the user's ``evaluate`` runs the ONNX Runtime session (quantization
error counts), and latency is timed on the same file against the fp32 ONNX export of the
unpruned model.

Latency is timed to its stated interval (``measure.ratio_halfwidth``) only where the figure
can change a decision: a caller may pass ``matters``, which says whether a trial whose cheap
reward could reach a given value might still be promoted or chosen; a plan that cannot even
at the favourable end of a short comparison's interval keeps that short comparison (the
demo's trials ran 30 rounds each, most of them plans far below the best).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

from torch import nn

from compressor.actions.artifact import Artifact, DeploySpec, build_artifact, calibration_feeds
from compressor.actions.artifact import model_inputs as real_inputs
from compressor.actions.depth import remove_units
from compressor.actions.pruner import Pruner
from compressor.config import LatencyTarget
from compressor.errors import CompressorError
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.measure.onnx_runtime import OnnxModule
from compressor.measure.parity import measure_parity
from compressor.measure.precision import ranked_modules
from compressor.records import ArtifactInfo, Parity, TrialMetrics
from compressor.recover import recalibrate_batchnorm
from compressor.reward import Term, reward
from compressor.search.context import Resources, SearchSettings
from compressor.search.precision import sensitive_layers
from compressor.search.space import DepthChoice, fit_to_budget, units_to_remove

# Whether a trial whose cheap reward could reach the given value might still be promoted or
# chosen (``fidelity.worth_timing``); what decides how precisely its latency is timed.
Matters = Callable[[float], bool]
# Given the candidate's accuracy and a short comparison, whether to time it precisely.
WorthPrecision = Callable[[float, LatencyComparison], bool]


def round_to_for(settings: SearchSettings, deploy: DeploySpec | None) -> int | None:
    """The channel / neuron multiple a candidate's widths keep: ``prune.round_to``, or under
    ``auto`` the multiple this machine's kernels (conv or Linear, as measured for the model)
    favour for the quantization mode of the candidate's artifact (the fp32 kernels' when it
    has none). A pruner that cannot be re-aligned (no ``aligned_to``) keeps its own
    rounding."""
    widths = settings.kernel_widths
    if widths is None or not hasattr(settings.pruner, "aligned_to"):
        return getattr(settings.pruner, "round_to", None)
    return widths.round_to(deploy.quantization if deploy is not None else "none")


def pruner_for(settings: SearchSettings, multiple: int | None) -> Pruner:
    """The settings' pruner rounding to the measured ``multiple`` (as configured without
    ``prune.round_to: auto``, or with ``multiple`` None)."""
    pruner = settings.pruner
    if multiple is None or settings.kernel_widths is None or not hasattr(pruner, "aligned_to"):
        return pruner
    return pruner.aligned_to(multiple)


def prune_plan(
    settings: SearchSettings,
    ratios: Mapping[str, float],
    removed: Sequence[str] = (),
    multiple: int | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """The pruned copy for ``ratios`` less the ``removed`` units (no BatchNorm work), kept
    counts rounded to ``multiple`` (None: the pruner's own rounding).

    Widths first: group names (and the units) are paths in the unpruned numbering, which
    removing units would shift. A depth-only plan skips the pruner (no dependency graph).
    """
    if not any(ratio > 0 for ratio in ratios.values()):
        kept = {group.name: group.channels for group in settings.groups}
        return remove_units(settings.model, removed), kept
    model, kept = pruner_for(settings, multiple).prune(settings.model, ratios)
    return remove_units(model, removed, inplace=True), kept


def build_candidate(
    settings: SearchSettings,
    ratios: Mapping[str, float],
    removed: Sequence[str] = (),
    multiple: int | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """The pruned copy for ``ratios`` (less the ``removed`` units, counts rounded to
    ``multiple``) with BatchNorm statistics re-estimated (adaptive BN)."""
    model, kept = prune_plan(settings, ratios, removed, multiple)
    recalibrate_batchnorm(model, settings.calibration, settings.config.search.calibration_samples)
    return model, kept


def flops_of_plan(
    settings: SearchSettings,
    ratios: Mapping[str, float],
    removed: Sequence[str] = (),
    multiple: int | None = None,
) -> int:
    """FLOPs of the model pruned by ``ratios`` less the ``removed`` units, counts rounded to
    ``multiple`` (no BatchNorm work; used to fit the budget), memoised by the plan's shape
    (see :func:`plan_shape`)."""
    # The kept counts already reflect the multiple: plans keeping the same counts under
    # different multiples have the same FLOPs and share one entry.
    key = (plan_shape(settings, ratios, pruner_for(settings, multiple)), tuple(sorted(removed)))
    if key not in settings.flops_cache:
        pruned, _ = prune_plan(settings, ratios, removed, multiple)
        settings.flops_cache[key] = count_flops(pruned, settings.example_inputs)
    return settings.flops_cache[key]


def plan_shape(
    settings: SearchSettings, ratios: Mapping[str, float], pruner: Pruner | None = None
) -> Hashable:
    """What the FLOPs of a plan depend on.

    A pruner that can say how many units each group keeps (torch-pruning's channel groups:
    ``kept_counts``) makes plans with the same counts share one count: FLOPs depend only on
    how many channels are kept, not on which. Any other pruner is keyed by its ratios.
    """
    kept_counts = getattr(pruner or settings.pruner, "kept_counts", None)
    if kept_counts is not None:
        return kept_counts(settings.groups, ratios)
    return tuple(sorted(ratios.items()))


def plan_for(
    settings: SearchSettings,
    preferences: Mapping[str, float],
    flops_budget: int | None = None,
    removed: Sequence[str] = (),
    multiple: int | None = None,
) -> tuple[dict[str, float], bool]:
    """Per-group ratios along ``preferences`` that, with the ``removed`` units gone and
    counts rounded to ``multiple``, just fit the FLOPs budget."""
    return fit_to_budget(
        preferences,
        lambda ratios: flops_of_plan(settings, ratios, removed, multiple),
        settings.flops_budget if flops_budget is None else flops_budget,
        settings.config.prune.max_ratio,
    )


def removed_units(
    settings: SearchSettings, depth: DepthChoice | None, flops_budget: int
) -> tuple[str, ...]:
    """The units a trial's depth move removes (none without one)."""
    if depth is None or not settings.depth_units:
        return ()
    return units_to_remove(settings.depth_units, depth, settings.baseline_flops - flops_budget)


def score_candidate(
    settings: SearchSettings,
    resources: Resources,
    preferences: Mapping[str, float],
    deploy: DeploySpec | None = None,
    flops_budget: int | None = None,
    depth: DepthChoice | None = None,
    matters: Matters | None = None,
) -> TrialMetrics:
    """Fit, build, measure and reward one plan.

    With ``deploy`` the candidate is scored as its ONNX artifact (accuracy and latency in
    ONNX Runtime); without, as the pruned PyTorch model. ``flops_budget`` overrides the
    settings' budget (a trial that samples its own FLOPs level). ``depth`` removes units
    first and the widths are fitted to what is left of the budget. ``matters``: see the
    module docstring (None: every latency timed to its interval).
    """
    started = time.perf_counter()
    budget = settings.flops_budget if flops_budget is None else flops_budget
    removed = removed_units(settings, depth, budget)
    multiple = round_to_for(settings, deploy)  # the widths its artifact's kernels favour
    ratios, _ = plan_for(settings, preferences, budget, removed, multiple)
    model, kept = build_candidate(settings, ratios, removed, multiple)
    flops = count_flops(model, settings.example_inputs)
    worth = worth_precision(settings, flops, budget, matters)
    artifact = None
    if deploy is not None:
        accuracy, latency, artifact = score_artifact(settings, resources, model, deploy, worth)
    else:
        accuracy = checked_metric(settings.evaluate(model))
        latency = timed(resources, model, accuracy, worth)
    terms = complexity_terms(settings, flops, budget, latency)
    return TrialMetrics(
        flops=flops,
        flops_ratio=flops / settings.baseline_flops,
        params=count_params(model),
        ratios=dict(ratios),
        channels=kept,
        accuracy=accuracy,
        reward=reward_of(settings, accuracy, terms),
        budget_excess=max(term.ratio - 1.0 for term in terms if term.budget),
        seconds=time.perf_counter() - started,
        latency_ms=latency.candidate.p50_ms if latency else None,
        latency_p90_ms=latency.candidate.p90_ms if latency else None,
        baseline_latency_ms=latency.baseline.p50_ms if latency else None,
        latency_ratio=latency.ratio if latency else None,
        latency_ratio_low=latency.ratio_low if latency else None,
        latency_ratio_high=latency.ratio_high if latency else None,
        latency_rounds=latency.rounds if latency else None,
        latency_precise=latency.precise if latency else None,
        artifact=artifact,
        removed_units=removed,
        round_to=multiple,
        accuracy_floor=settings.accuracy_floor,
    )


def worth_precision(
    settings: SearchSettings, flops: int, budget: int, matters: Matters | None
) -> WorthPrecision | None:
    """Whether a candidate is worth a precise latency: its reward at the favourable end of a
    short comparison's interval (the reward falls as the ratio grows) still matters."""
    if matters is None:
        return None

    def worth(accuracy: float, short: LatencyComparison) -> bool:
        if short.ratio_low is None:  # no interval to judge by
            return True
        terms = complexity_terms(settings, flops, budget, favourable_end(short))
        return matters(reward_of(settings, accuracy, terms))

    return worth


def favourable_end(latency: LatencyComparison) -> LatencyComparison:
    """``latency`` at the low end of its interval (the candidate's median scaled alike)."""
    scale = latency.ratio_low / latency.ratio
    candidate = dataclasses.replace(latency.candidate, p50_ms=latency.candidate.p50_ms * scale)
    return dataclasses.replace(latency, candidate=candidate, ratio=latency.ratio_low)


def timed(
    resources: Resources, model, accuracy: float, worth: WorthPrecision | None
) -> LatencyComparison | None:
    """``model`` (module or artifact path) timed against the baseline: to the stated interval,
    or, when ``worth`` says the figure cannot matter, in the short comparison alone
    (``measure.rounds``; a precise one continues it, its rounds counted)."""
    meter = resources.meter
    if meter is None:
        return None
    if worth is None:
        return meter.compare(model)
    return meter.compare(model, refine=lambda short: worth(accuracy, short))


def complexity_terms(
    settings: SearchSettings, flops: int, budget: int, latency: LatencyComparison | None
) -> list[Term]:
    """The reward's complexity terms: the FLOPs budget, and the latency when measured."""
    terms = [Term("flops", flops, budget, budget=True)]
    if latency is not None:
        terms.append(latency_term(latency, settings.config.target_latency))
    return terms


def reward_of(settings: SearchSettings, accuracy: float, terms: list[Term]) -> float:
    search = settings.config.search
    return reward(accuracy, terms, search.reward, search.alpha, search.beta)


def measured_latency(metrics: TrialMetrics) -> LatencyComparison | None:
    """The latency comparison a trial stored, rebuilt from its metrics (None: not timed)."""
    if metrics.latency_ratio is None:
        return None
    return LatencyComparison(
        candidate=LatencyStats(metrics.latency_ms, metrics.latency_p90_ms, 0),
        baseline=LatencyStats(metrics.baseline_latency_ms, metrics.baseline_latency_ms, 0),
        ratio=metrics.latency_ratio,
        ratio_low=metrics.latency_ratio_low,
        ratio_high=metrics.latency_ratio_high,
        rounds=metrics.latency_rounds or 0,
        precise=metrics.latency_precise is not False,
    )


def latency_term(latency: LatencyComparison, target: LatencyTarget | None) -> Term:
    """The reward's latency term: a budget when the user set a target, else a preference.

    A ratio target is compared with the measured ratio to the baseline (stable under load);
    a millisecond target with the candidate's median.
    """
    if target is None:
        return Term("latency", latency.ratio, 1.0, budget=False)
    if target.is_ratio:
        return Term("latency", latency.ratio, target.value, budget=True)
    return Term("latency", latency.candidate.p50_ms, target.value, budget=True)


def make_artifact(
    settings: SearchSettings, model: nn.Module, spec: DeploySpec, path: Path
) -> Artifact:
    """``model``'s artifact for ``spec``, calibrated on the task's training inputs."""
    deploy = settings.config.deploy
    feeds = (
        calibration_feeds(settings.calibration, deploy.calibration_samples)
        if spec.quantization.startswith("static")
        else []
    )
    sensitive = ()
    if spec.keep_sensitive and spec.quantization != "none":
        sensitive = ranked_modules(sensitive_layers(settings))
    return build_artifact(
        model,
        settings.example_inputs,
        spec,
        path,
        calibration=feeds,
        keep_fp32=deploy.keep_fp32,
        sensitive=sensitive,
    )


def runnable(settings: SearchSettings, path: Path) -> OnnxModule:
    """The artifact at ``path`` as a module the user's ``evaluate`` can call."""
    measure = settings.config.measure
    return OnnxModule(path, device=measure.device, threads=measure.threads)


def parity_of(settings: SearchSettings, model: nn.Module, artifact_module: OnnxModule) -> Parity:
    """Artifact vs PyTorch model on real (training) inputs."""
    samples = real_inputs(settings.calibration, settings.config.deploy.parity_samples)
    return Parity(**measure_parity(model, artifact_module, samples))


def artifact_info(artifact: Artifact, parity: Parity | None = None) -> ArtifactInfo:
    return ArtifactInfo(
        quantization=artifact.spec.quantization,
        fusion=artifact.spec.fusion,
        size_bytes=artifact.size_bytes,
        int8_ops=artifact.int8_ops,
        fused_ops=artifact.fused_ops,
        fp32_nodes=artifact.fp32_nodes,
        parity=parity,
        keep_ends=artifact.spec.keep_ends,
        keep_sensitive=artifact.spec.keep_sensitive,
        sensitive_fp32=artifact.sensitive_fp32,
    )


def score_artifact(
    settings: SearchSettings,
    resources: Resources,
    model: nn.Module,
    spec: DeploySpec,
    worth: WorthPrecision | None = None,
) -> tuple[float, LatencyComparison | None, ArtifactInfo]:
    """Build the artifact in a scratch folder; return the user's metric on it, its latency
    against the baseline artifact (see :func:`timed`), and its description with parity."""
    with tempfile.TemporaryDirectory(prefix="candidate-", dir=resources.workdir) as scratch:
        artifact = make_artifact(settings, model, spec, Path(scratch) / "candidate.onnx")
        module = runnable(settings, artifact.path)
        accuracy = checked_metric(settings.evaluate(module))
        info = artifact_info(artifact, parity_of(settings, model, module))
        latency = timed(resources, artifact.path, accuracy, worth)
    return accuracy, latency, info


def checked_metric(value) -> float:
    """The user's metric as a float in [0, 1]; anything else is an error, not a score."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CompressorError(f"evaluate() returned {value!r}, not a number") from None
    if not math.isfinite(number):
        raise CompressorError(f"evaluate() returned {number}, not a finite number")
    if not 0.0 <= number <= 1.0:
        raise CompressorError(f"evaluate() returned {number:g}; an accuracy in [0, 1] is expected")
    return number
