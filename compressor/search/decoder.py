"""One Optuna study over a decoder's moves: depth, MLP width, query heads, per-layer weight
precision and fusion, each trial judged as its ONNX Runtime artifact with a KV cache.

A trial samples a :class:`DecoderCandidate`; the structure is pruned and exported once
(graphs are cached by structure, since export dominates a trial's cost), the precision
plan is applied to the graph, and the artifact is scored: per-token likelihood of the
search windows (``1 / perplexity``, the quality term of R), decode and prefill latency in
alternating rounds against the fp32 baseline artifact, weight bytes and FLOPs per token.

The measured priors (:mod:`.decoder_sensitivity`) shape the space: depth removes layers in
Block-Influence order, and ``keep_sensitive = k`` keeps the ``k`` linear families whose
simulated quantization hurt most one step up (INT4 -> INT8, INT8 -> fp32). INT8 layers are
block-wise ``MatMulNBits`` (:mod:`compressor.actions.quantize_decoder`), while the INT8
ranking is simulated with ``quantize_dynamic``'s coarser arithmetic (activations per
tensor): a proxy for which families to keep; every trial's artifact is measured itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import optuna
import torch
from torch import nn

from compressor.actions.build_decoder import build_decoder
from compressor.actions.export_decoder import export_decoder
from compressor.actions.prune_decoder import (
    DecoderPlan,
    head_dim_of,
    head_ratio_steps,
    prune_decoder,
)
from compressor.actions.quantize_decoder import (
    PRECISIONS,
    PrecisionPlan,
    quantize_decoder,
    weight_bytes,
)
from compressor.config import FlopsTarget, LatencyTarget
from compressor.errors import UserInputError
from compressor.measure.decoder import DecoderSession, onnx_likelihood
from compressor.measure.decoder_latency import DecoderLatency, DecoderLatencyMeter
from compressor.measure.flops import count_flops
from compressor.measure.latency import LatencyComparison
from compressor.records import Retimed
from compressor.reward import Term, reward
from compressor.search.decoder_sensitivity import FAMILIES, UNITS, unit_modules
from compressor.search.duplicates import DUPLICATE_ATTR, distinct, reuse_duplicate

log = logging.getLogger(__name__)
MB = 1e6
STEP_UP = {"int4": "int8", "int8": "fp32", "fp32": "fp32"}
SEED_OFFSET_UNITS = 30  # the float-offset seed's unit count (see DecoderSpace.offset_units)


@dataclass(frozen=True)
class DecoderSpace:
    """The choices a trial makes."""

    max_drop_layers: int = 3
    mlp_ratios: tuple[float, ...] = (0.0, 0.125, 0.25)
    # Query heads are not pruned unless a config asks (``decoder.head_ratios``: the first
    # commit set (0.0,) without a recorded reason). Measured since (SmolLM2, the task's test
    # windows, PyTorch, before recovery, 2026-12-02): fp32 15.78; a third of each group's
    # query heads removed 297.8 (6.2 % of the non-embedding weights), two thirds 9,378; one
    # layer removed 17.94. Trials are scored before recovery (only the chosen plan is
    # distilled), so a head-pruned plan reads ~19x the perplexity for ~5 % fewer weights
    # streamed per token (lm_head included) and cannot win R against the precision plans;
    # each such structure costs an export. (MLP -12.5 % measured 5,280 and -25 % 1.0e6
    # the same way: those ratios stay as they were set.)
    head_ratios: tuple[float, ...] = (0.0,)
    weights: tuple[str, ...] = ("int8", "int4")
    lm_head: tuple[str, ...] = ("fp32", "int8", "int4")
    # Not HQQ by default: ORT runs its float zero points on a slow path (B5: 0.27-0.29x the fp32
    # decode speed), so it can only win a size target; ask for it by name. ``rtn-offset``
    # keeps float offsets on the fast kernel instead (compressor.actions.int4_offset).
    int4_methods: tuple[str, ...] = ("rtn", "rtn-asym", "rtn-offset")
    max_keep_sensitive: int = 3
    # How many of the most INT4-sensitive units (a layer's q/k/v, o, gate, up or down; ranked
    # by measured KL) take exact float offsets (rtn-offset) instead of zero points. SmolLM2,
    # lm_head INT4, test perplexity 13.49 / 12.69 / 12.45 / 12.24 for 0 / 20 / 30 / 45 units;
    # each unit adds three small ops to a decode step (30 units: 1.03-1.06x its time).
    offset_units: tuple[int, ...] = (0, 15, 30, 45)
    fusion: tuple[bool, ...] = (False, True)
    # Bias correction (compressor.actions.bias_correction) costs no decode time and lowered
    # SmolLM2's INT4 perplexity in every plan measured, so it is on unless asked otherwise.
    bias_correction: tuple[bool, ...] = (True,)


@dataclass(frozen=True)
class DecoderTargets:
    """The user's budgets: decode latency per token, FLOPs per token, weight size (MB)."""

    latency: LatencyTarget | None = None
    flops: FlopsTarget | None = None  # a ratio of the unpruned model's, or FLOPs per token
    size_mb: float | None = None


@dataclass(frozen=True)
class DecoderPrior:
    """What was measured before the search (see :mod:`.decoder_sensitivity`)."""

    removal_order: tuple[int, ...]
    sensitive: dict[str, tuple[str, ...]]  # precision -> families, most sensitive first
    # ``layers.<i>.<unit>`` by INT4 sensitivity, most first (decoder_sensitivity.UNITS)
    offset_units: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecoderCandidate:
    structure: DecoderPlan
    precision: PrecisionPlan
    fusion: bool


@dataclass(frozen=True)
class DecoderScore:
    """A candidate artifact, measured."""

    perplexity: float
    quality: float  # per-token likelihood, 1 / perplexity
    latency: DecoderLatency
    size_mb: float
    streamed_mb: float
    flops_per_token: float
    flops_ratio: float
    reward: float
    terms: tuple[Term, ...]  # what R was computed from; the budgets among them decide feasibility
    # R had the decode latency been within its budget: ranks near misses for re-timing
    reward_if_within: float

    @property
    def budget_excess(self) -> float:
        """Max over the budgets of (value / target - 1): <= 0 when within every one."""
        return max((term.ratio - 1.0 for term in self.terms if term.budget), default=-1.0)

    @property
    def feasible(self) -> bool:
        return self.budget_excess <= 0.0

    @property
    def other_budget_excess(self) -> float:
        """As :attr:`budget_excess`, over every budget but the latency one."""
        others = (t.ratio - 1.0 for t in self.terms if t.budget and t.name != "latency")
        return max(others, default=-1.0)

    def as_dict(self) -> dict:
        return {
            "perplexity": self.perplexity,
            "quality": self.quality,
            "prefill_ms": self.latency.prefill.candidate.p50_ms,
            "decode_ms": self.latency.decode.candidate.p50_ms,
            "baseline_prefill_ms": self.latency.prefill.baseline.p50_ms,
            "baseline_decode_ms": self.latency.decode.baseline.p50_ms,
            "prefill_ratio": self.latency.prefill.ratio,
            "decode_ratio": self.latency.decode.ratio,
            "prompt_length": self.latency.prompt_length,
            "size_mb": self.size_mb,
            "streamed_mb": self.streamed_mb,
            "flops_per_token": self.flops_per_token,
            "flops_ratio": self.flops_ratio,
            "reward": self.reward,
            "feasible": self.feasible,
            "budget_excess": self.budget_excess,
            "other_budget_excess": self.other_budget_excess,
            "reward_if_within": self.reward_if_within,
        }


def suggest_candidate(
    trial: optuna.Trial, space: DecoderSpace, prior: DecoderPrior
) -> DecoderCandidate:
    """Ask the sampler for every move of one candidate."""
    depth = trial.suggest_int("decoder.drop_layers", 0, space.max_drop_layers)
    structure = DecoderPlan(
        drop_layers=tuple(sorted(prior.removal_order[:depth])),
        mlp_ratio=trial.suggest_categorical("decoder.mlp_ratio", list(space.mlp_ratios)),
        head_ratio=trial.suggest_categorical("decoder.head_ratio", list(space.head_ratios)),
    )
    weights = trial.suggest_categorical("decoder.weights", list(space.weights))
    keep = prior.sensitive.get(weights, ())[
        : trial.suggest_int("decoder.keep_sensitive", 0, space.max_keep_sensitive)
    ]
    offsets = trial.suggest_categorical("decoder.offset_units", list(space.offset_units))
    precision = precision_plan(
        weights,
        trial.suggest_categorical("decoder.lm_head", list(space.lm_head)),
        trial.suggest_categorical("decoder.int4_method", list(space.int4_methods)),
        keep,
        trial.suggest_categorical("decoder.bias_correction", list(space.bias_correction)),
        offset_modules(prior, offsets, keep, structure.drop_layers) if weights == "int4" else (),
    )
    fusion = trial.suggest_categorical("decoder.fusion", list(space.fusion))
    return DecoderCandidate(structure, precision, fusion)


def precision_plan(
    weights: str,
    lm_head: str,
    int4_method: str,
    keep: tuple[str, ...] | list[str],
    bias_correction: bool = False,
    offsets: tuple[str, ...] = (),
) -> PrecisionPlan:
    """Layers at ``weights``, ``lm_head`` as chosen, the families ``keep`` one step up, the
    INT4 families ``offsets`` with float offsets."""
    overrides = {family: STEP_UP[weights] for family in keep if family != "lm_head"}
    return PrecisionPlan(
        default=weights,
        lm_head=lm_head,
        overrides=overrides,
        int4_method=int4_method,
        offsets=offsets,
        bias_correction=bias_correction,
    )


def offset_modules(
    prior: DecoderPrior, count: int, kept: tuple[str, ...], dropped: tuple[int, ...]
) -> tuple[str, ...]:
    """The scoped module names of the ``count`` most INT4-sensitive units still INT4 in a
    candidate: none of a family ``kept`` a step up, none of a ``dropped`` layer, and layer
    indices renumbered as depth pruning renumbers them."""
    chosen: list[str] = []
    for unit in prior.offset_units:
        if len(chosen) == count:
            break
        layer, family = _unit_layer(unit)
        if layer in dropped or set(UNITS[family]) & set(kept):
            continue
        renumbered = f"layers.{layer - sum(d < layer for d in dropped)}.{family}"
        chosen.append(renumbered)
    return tuple(name for unit in chosen for name in unit_modules(unit))


def _unit_layer(unit: str) -> tuple[int, str]:
    _, index, family = unit.split(".")
    return int(index), family


def seed_params(space: DecoderSpace) -> list[dict]:
    """Plans the study measures first, so that what it returns is never worse than them: a
    precision ladder from the fastest one-call plan to the nearly lossless one (perplexity /
    decode time vs the first, SmolLM2's test windows, fused graph, fp32 11.55; 2026-12-01;
    bias correction on, as the space has it by default):

    1. INT4 RTN on every linear, ``lm_head`` included: what ORT GenAI's builder writes in
       one call (``-p int4``; 15.63 as it writes it, 14.07 bias-corrected; the fastest);
    2. INT4 with a zero point per block, ``lm_head`` too (13.49, 1.03x);
    3. the same, with float offsets on the ~30 most INT4-sensitive units (measured; 12.45,
       1.03-1.06x; B5's choice on 2026-12-01);
    4. float offsets on every linear (``rtn-offset``), ``lm_head`` INT8 (11.58, 1.2-1.45x:
       three small ops per linear). Items 3-4 are near-lossless on SmolLM2 only because its
       weights are Q4_1 blocks;
    5. block INT8 on every linear, ``lm_head`` included (11.61, ~1.3x).
    """
    base = {  # the least structure the space allows: the ladder is about precision
        "decoder.drop_layers": 0,
        "decoder.mlp_ratio": min(space.mlp_ratios),
        "decoder.head_ratio": min(space.head_ratios),
        "decoder.fusion": max(space.fusion),
        "decoder.bias_correction": max(space.bias_correction),
        "decoder.keep_sensitive": 0,
        "decoder.offset_units": min(space.offset_units),
    }

    def plan(weights: str, lm_head: str, method: str, **counts: int) -> dict:
        return (
            base
            | {
                "decoder.weights": weights,
                "decoder.lm_head": _nearest(space.lm_head, lm_head),
                "decoder.int4_method": method
                if method in space.int4_methods
                else space.int4_methods[0],
            }
            | {f"decoder.{name}": value for name, value in counts.items()}
        )

    seeds = []
    if "int4" in space.weights:
        seeds.append(plan("int4", "int4", "rtn"))
        seeds.append(plan("int4", "int4", "rtn-asym"))
        seeds.append(
            plan(
                "int4",
                "int4",
                "rtn-asym",
                offset_units=_closest(space.offset_units, SEED_OFFSET_UNITS),
            )
        )
        seeds.append(plan("int4", "int8", "rtn-offset"))
    if "int8" in space.weights:
        seeds.append(plan("int8", "int8", "rtn"))
    # a seed the space cannot tell apart from an earlier one is measured once
    return [seed for i, seed in enumerate(seeds) if seed not in seeds[:i]]


def _closest(choices: tuple[int, ...], wanted: int) -> int:
    return min(choices, key=lambda choice: abs(choice - wanted))


def _nearest(choices: tuple[str, ...], wanted: str) -> str:
    """``wanted`` if the space allows it, else the allowed precision closest to it."""
    if wanted in choices:
        return wanted
    return min(choices, key=lambda p: abs(PRECISIONS.index(p) - PRECISIONS.index(wanted)))


def budget_terms(
    targets: DecoderTargets,
    decode: LatencyComparison,
    size_mb: float,
    flops: float,
    baseline_flops: float,
) -> list[Term]:
    """R's complexity terms: decode latency always (a budget when targeted, as a ratio of the
    fp32 artifact's or in ms), FLOPs per token (a ratio of ``baseline_flops`` or a count)
    and weight MB when targeted."""
    latency = targets.latency
    if latency is None:
        terms = [Term("latency", decode.ratio, 1.0, budget=False)]
    else:
        measured = decode.ratio if latency.is_ratio else decode.candidate.p50_ms
        terms = [Term("latency", measured, latency.value)]
    if targets.flops is not None:
        measured = flops / baseline_flops if targets.flops.is_ratio else flops
        terms.append(Term("flops", measured, targets.flops.value))
    if targets.size_mb is not None:
        terms.append(Term("size", size_mb, targets.size_mb))
    return terms


@dataclass
class DecoderStudy:
    """The live state of a decoder search: model, windows, meter, scratch folder, caches."""

    model: nn.Module
    search_windows: tuple[torch.Tensor, ...]
    prompt: torch.Tensor
    meter: DecoderLatencyMeter
    workdir: Path
    baseline_graph: Path  # the fp32 export of the unpruned model (unpruned plans reuse it)
    baseline_flops_per_token: float
    targets: DecoderTargets = field(default_factory=DecoderTargets)
    reward_mode: str = "soft"
    alpha: float = -0.07
    beta: float = -0.07
    threads: int | None = None
    tokenizer: object | None = None  # the fused graphs' builder saves it beside them
    calibration: tuple[torch.Tensor, ...] = ()  # windows for bias correction
    _graphs: dict[tuple, Path] = field(default_factory=dict)
    _flops: dict[DecoderPlan, float] = field(default_factory=dict)
    # The best trial's artifact is kept (the others deleted): an unpruned winner needs no
    # recovery, so it ships as scored instead of being quantized again (HQQ: minutes).
    best: tuple[float, int, Path] | None = None

    def structure_graph(self, structure: DecoderPlan, fusion: bool) -> Path:
        """The fp32 graph of ``structure``, built once per (structure, fusion).

        Unfused: optimum's export. Fused: ORT GenAI's model builder (attention, rotary
        embedding and norms fused; :mod:`compressor.actions.build_decoder`).
        """
        key = (structure, fusion)
        if key not in self._graphs:
            folder = self.workdir / f"structure-{len(self._graphs)}"
            if structure.is_identity and not fusion:
                self._graphs[key] = self.baseline_graph
            else:
                model = self.model if structure.is_identity else self._pruned(structure)
                self._graphs[key] = (
                    build_decoder(model, self.tokenizer, folder)
                    if fusion
                    else export_decoder(model, folder)
                )
        return self._graphs[key]

    def _pruned(self, structure: DecoderPlan) -> nn.Module:
        pruned = prune_decoder(self.model, structure)
        if structure not in self._flops:
            self._flops[structure] = count_flops(pruned, (self.prompt,)) / self.prompt.shape[-1]
        return pruned

    def build(self, candidate: DecoderCandidate, path: Path) -> Path:
        """The candidate's artifact at ``path``."""
        graph = self.structure_graph(candidate.structure, candidate.fusion)
        return quantize_decoder(graph, path, candidate.precision, self.calibration)

    def score(
        self, candidate: DecoderCandidate, graph: Path, precise: bool = False
    ) -> DecoderScore:
        """``graph`` measured; ``precise``: its latency timed to the meter's stated interval."""
        likelihood = onnx_likelihood(
            DecoderSession(graph, threads=self.threads), self.search_windows
        )
        latency = self.meter.compare(graph, precise=precise)
        sizes = weight_bytes(graph)
        flops = self._flops.get(candidate.structure, self.baseline_flops_per_token)
        terms = self.terms(latency.decode, sizes["total"] / MB, flops)
        return DecoderScore(
            perplexity=likelihood.perplexity,
            quality=likelihood.per_token,
            latency=latency,
            size_mb=sizes["total"] / MB,
            streamed_mb=sizes["streamed"] / MB,
            flops_per_token=flops,
            flops_ratio=flops / self.baseline_flops_per_token,
            reward=self.reward(likelihood.per_token, terms),
            terms=tuple(terms),
            reward_if_within=self.reward(likelihood.per_token, _latency_within(terms)),
        )

    def reward(self, quality: float, terms: list[Term]) -> float:
        return reward(quality, terms, self.reward_mode, self.alpha, self.beta)

    def retimed(self, trial: optuna.trial.FrozenTrial, decode: LatencyComparison) -> Retimed:
        """``trial`` judged again with a decode comparison timed with the other finalists."""
        attrs = trial.user_attrs
        terms = self.terms(decode, attrs["size_mb"], attrs["flops_per_token"])
        return Retimed(
            trial=trial.number,
            reward_before=trial.value,
            reward=self.reward(attrs["quality"], terms),
            latency_ratio=decode.ratio,
            latency_ms=decode.candidate.p50_ms,
            rounds=decode.rounds,
            latency_ratio_low=decode.ratio_low,
            latency_ratio_high=decode.ratio_high,
            feasible=all(term.within for term in terms if term.budget),
        )

    def terms(self, decode: LatencyComparison, size_mb: float, flops: float) -> list[Term]:
        return budget_terms(self.targets, decode, size_mb, flops, self.baseline_flops_per_token)

    def _keep_if_best(self, value: float, number: int, graph: Path) -> None:
        if self.best is None or value > self.best[0]:
            if self.best is not None:
                self.best[2].unlink(missing_ok=True)
            self.best = (value, number, graph)
        else:
            graph.unlink(missing_ok=True)

    def kept_artifact(self, number: int) -> Path | None:
        """Trial ``number``'s artifact, if this process scored it and kept it."""
        return self.best[2] if self.best is not None and self.best[1] == number else None

    def objective(self, space: DecoderSpace, prior: DecoderPrior):
        """The Optuna objective: build, score, record the measurements as user attributes;
        a plan an earlier trial scored is not built again (search/duplicates.py)."""

        def run(trial: optuna.Trial) -> float:
            started = time.perf_counter()
            candidate = suggest_candidate(trial, space, prior)
            reused = reuse_duplicate(trial)
            if reused is not None:
                log.info(
                    "trial %d: the plan of trial %d, not measured again",
                    trial.number,
                    trial.user_attrs[DUPLICATE_ATTR],
                )
                return reused
            graph = self.build(candidate, self.workdir / f"trial-{trial.number}.onnx")
            try:
                score = self.score(candidate, graph)
            except BaseException:
                graph.unlink(missing_ok=True)
                raise
            self._keep_if_best(score.reward, trial.number, graph)
            for key, value in score.as_dict().items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("seconds", time.perf_counter() - started)
            # TPE reads this to tell feasible candidates apart: <= 0 means within every budget.
            trial.set_constraint("budgets", score.budget_excess)
            log.info(
                "trial %d: ppl %.2f, decode %.2fx of fp32, %.0f MB, R %.4f",
                trial.number,
                score.perplexity,
                score.latency.decode.ratio,
                score.size_mb,
                score.reward,
            )
            return score.reward

        return run


def _latency_within(terms: list[Term]) -> list[Term]:
    return [
        dataclasses.replace(t, value=min(t.value, t.target)) if t.name == "latency" else t
        for t in terms
    ]


def finalists(
    trials: list[optuna.trial.FrozenTrial], count: int, near: float
) -> list[optuna.trial.FrozenTrial]:
    """The trials worth timing again side by side before choosing: the ``count`` best by
    R-had-the-latency-been-within, among those within every budget but latency and within
    ``near`` (0.1: 10 %) of the latency budget as measured during the search.

    A plan measured 2 % over a hard latency target (one quick comparison, +-15 % between
    trials of one plan on this machine) is as likely within it as a plan measured 2 % under:
    both are re-timed, and the joint figures decide.
    """
    eligible = [
        t
        for t in distinct(trials)  # a plan timed twice side by side would take a finalist's place
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.user_attrs.get("other_budget_excess", -1.0) <= 0.0
        and t.user_attrs.get("budget_excess", -1.0) <= near
    ]
    ranked = sorted(eligible, key=lambda t: t.user_attrs.get("reward_if_within", t.value))
    return ranked[::-1][:count]


def candidate_from_params(params: dict, prior: DecoderPrior) -> DecoderCandidate:
    """Rebuild a finished trial's candidate from its parameters."""
    weights = params["decoder.weights"]
    keep = prior.sensitive.get(weights, ())[: params["decoder.keep_sensitive"]]
    drop = tuple(sorted(prior.removal_order[: params["decoder.drop_layers"]]))
    return DecoderCandidate(
        DecoderPlan(
            drop_layers=drop,
            mlp_ratio=params["decoder.mlp_ratio"],
            head_ratio=params["decoder.head_ratio"],
        ),
        precision_plan(
            weights,
            params["decoder.lm_head"],
            params["decoder.int4_method"],
            keep,
            params.get("decoder.bias_correction", False),
            offset_modules(prior, params.get("decoder.offset_units", 0), keep, drop)
            if weights == "int4"
            else (),
        ),
        params["decoder.fusion"],
    )


HEAD_TOLERANCE = 0.02  # in heads per group: a YAML 0.333 or 0.33 of 3 heads is one head


def fit_space(space: DecoderSpace, model_config) -> DecoderSpace:
    """``space`` checked against the model (a Hugging Face config): head ratios snapped to
    whole query heads per key/value group (0.333 -> 1/3), and refused with one line when
    not within :data:`HEAD_TOLERANCE` heads of one; layers left after the deepest removal."""
    layers = model_config.num_hidden_layers
    if space.max_drop_layers >= layers:
        raise UserInputError(
            f"decoder.max_drop_layers {space.max_drop_layers} would leave none of the "
            f"model's {layers} decoder layers"
        )
    steps = head_ratio_steps(model_config)
    heads = tuple(dict.fromkeys(_whole_heads(ratio, steps) for ratio in space.head_ratios))
    return dataclasses.replace(space, head_ratios=heads)


def _whole_heads(ratio: float, steps: tuple[Fraction, ...]) -> float:
    nearest = min(steps, key=lambda step: abs(step - Fraction(ratio)))
    if abs(nearest - Fraction(ratio)) * len(steps) > HEAD_TOLERANCE:  # len: heads per group
        raise UserInputError(
            f"decoder.head_ratios {ratio:g} does not remove whole query heads: the model has "
            f"{len(steps)} per key/value group; use {', '.join(map(str, steps))}"
        )
    return float(nearest)


def fusion_unsupported(model: nn.Module, tokenizer, tokens: int = 0) -> str | None:
    """Why the fused graph cannot be built for ``model`` and run on ``tokens``-long
    sequences, or None when it can."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return "onnxruntime-genai is not installed (pip install 'compressor[llm]')"
    if tokenizer is None:
        return "the model has no tokenizer, which ORT GenAI's builder saves beside the graph"
    head_dim = head_dim_of(model.config)
    if head_dim % 16:
        # ORT's CPU GroupQueryAttention kernel rejects other sizes at run time.
        return f"ORT's GroupQueryAttention needs a head size divisible by 16, not {head_dim}"
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and tokens > positions:
        # The builder stores the rotary cos / sin tables for that many positions only.
        return (
            f"the windows ({tokens} tokens) are longer than the model's "
            f"max_position_embeddings ({positions})"
        )
    return None


__all__ = [
    "FAMILIES",
    "DecoderCandidate",
    "DecoderPrior",
    "DecoderScore",
    "DecoderSpace",
    "DecoderStudy",
    "DecoderTargets",
    "budget_terms",
    "candidate_from_params",
    "fit_space",
    "fusion_unsupported",
    "precision_plan",
    "seed_params",
    "suggest_candidate",
]
