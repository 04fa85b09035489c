"""Compressing a causal language model: baseline -> prior -> search -> recover -> deploy -> write.

The steps a ``compress --task causal-lm`` run takes, each a function the benchmark can
call too:

1. **baseline**: the fp32 KV-cache graph of the unpruned model (the latency baseline every
   candidate is timed against) and its perplexity;
2. **prior**: Block Influence of each layer (depth order) and the simulated quantization
   sensitivity of each linear family (:mod:`compressor.search.decoder_sensitivity`);
3. **search**: one Optuna study over depth, MLP width, query heads, per-layer precision
   and fusion (:mod:`compressor.search.decoder`); then its finalists (the best few, and
   those measured just over the latency budget) are timed again side by side, to the
   meter's stated interval, and the choice uses those figures;
4. **recover**: logit distillation of the chosen structure from the unpruned model on the
   recovery windows (skipped when nothing was pruned);
5. **deploy**: the chosen artifact built again from the recovered model and placed in the
   run folder, ``model.onnx`` with the tokenizer and configs beside it, all or nothing;
   then scored on the held-out test windows, logits parity with the PyTorch model
   recorded, latency re-timed;
6. **write**: ``result.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch

from compressor.actions.build_decoder import build_decoder
from compressor.actions.export_decoder import GRAPH_NAME, export_decoder
from compressor.actions.prune_decoder import prune_decoder
from compressor.actions.quantize_decoder import quantize_decoder, weight_bytes
from compressor.config import MeasureConfig, RecoveryConfig
from compressor.measure.decoder import (
    DecoderSession,
    logits_parity,
    onnx_likelihood,
    torch_likelihood,
)
from compressor.measure.decoder_latency import DecoderLatencyMeter
from compressor.measure.flops import count_flops
from compressor.measure.graph_ops import GraphOps, graph_ops
from compressor.records import Retimed, to_json
from compressor.reward import Term
from compressor.run_folder import (
    DECODER_RUN_FILES,
    atomic_folder,
    atomic_path,
    check_output_dir,
    clear_run_files,
    write_config,
    write_json,
)
from compressor.search.decoder import (
    MB,
    DecoderCandidate,
    DecoderPrior,
    DecoderScore,
    DecoderSpace,
    DecoderStudy,
    DecoderTargets,
    candidate_from_params,
    finalists,
    fit_space,
    fusion_unsupported,
    seed_params,
)
from compressor.search.decoder_sensitivity import (
    layer_influence,
    most_sensitive,
    offset_units_of,
    precision_sensitivity,
    removal_order,
    unit_sensitivity,
)
from compressor.search.duplicates import DUPLICATE_ATTR, distinct
from compressor.search.loop import best_feasible_trial
from compressor.search.samplers import SEEDED_ATTR, startup_trials
from compressor.search.storage import fail_dead_trials, open_storage
from compressor.tasks.causal_lm import CausalLMTask

log = logging.getLogger(__name__)
DEFAULT_TRIALS = 8  # ~3-4 min each on SmolLM2 on the shared 2-core machine (export + INT4)
SENSITIVITY_TOKENS = 256
RETIMED = 4  # finalists timed again side by side before choosing
# A search trial's decode ratio is one quick comparison (~4 rounds in measure.max_seconds):
# on SmolLM2 one plan read 0.32 and 0.37 of fp32 in two B5 runs, another 0.35 in both and
# then 0.29 / 0.37 side by side; so a plan measured up to 25 % over a latency budget is a
# finalist too (with 10 %, B5's second run of 2026-12-01 left its best plan out).
NEAR_BUDGET = 0.25


@dataclass(frozen=True)
class DecoderSettings:
    """A causal-LM compression run."""

    trials: int = DEFAULT_TRIALS
    seed: int = 0
    targets: DecoderTargets = field(default_factory=DecoderTargets)
    space: DecoderSpace = field(default_factory=DecoderSpace)
    reward: str = "soft"
    alpha: float = -0.07
    beta: float = -0.07
    recovery_steps: int = 30
    recovery_lr: float = 5e-5
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    progress: bool = True


@dataclass(frozen=True)
class DecoderResult:
    """The chosen variant and how it measured."""

    candidate: DecoderCandidate
    search_score: dict  # the chosen trial's measurements during the search
    baseline_perplexity: float
    baseline_size_mb: float
    test_perplexity: float
    torch_test_perplexity: float
    parity: dict
    final: DecoderScore
    targets: tuple[Term, ...]  # the user's budgets, judged on the final artifact
    artifact: Path
    graph: GraphOps  # the artifact's nodes: what fusion and quantization actually wrote
    trials: int
    seconds: float
    retimed: tuple[Retimed, ...] = ()  # the finalists timed again together before choosing

    def as_dict(self) -> dict:
        return {
            "candidate": {
                "structure": dataclasses.asdict(self.candidate.structure),
                "precision": dataclasses.asdict(self.candidate.precision),
                "fusion": self.candidate.fusion,
            },
            "search": self.search_score,
            "baseline_test_perplexity": self.baseline_perplexity,
            "baseline_size_mb": self.baseline_size_mb,
            "test_perplexity": self.test_perplexity,
            "torch_test_perplexity": self.torch_test_perplexity,
            "parity": self.parity,
            "final": self.final.as_dict(),
            "targets": [{**dataclasses.asdict(term), "met": term.within} for term in self.targets],
            "artifact": str(self.artifact),
            "graph": self.graph.as_dict(),
            "trials": self.trials,
            "seconds": self.seconds,
            "retimed": [to_json(record) for record in self.retimed],
        }


def measure_prior(
    model: torch.nn.Module, window: torch.Tensor, space: DecoderSpace | None = None
) -> DecoderPrior:
    """Depth order and sensitive linear families, measured on one short window; the units
    for float offsets only when ``space`` can give INT4 layers offsets (one forward per
    unit: ~90 s on SmolLM2)."""
    space = space or DecoderSpace()
    window = window[:, :SENSITIVITY_TOKENS]
    # Minutes on a 2-core machine with nothing else printed: say what is running.
    log.info("measuring the prior: layer influence and per-family INT8 / INT4 sensitivity ...")
    order = removal_order(layer_influence(model, window))
    sensitive = {
        precision: tuple(most_sensitive(precision_sensitivity(model, [window], precision)))
        for precision in ("int8", "int4")
    }
    offsets = "int4" in space.weights and max(space.offset_units) > 0
    if offsets:
        log.info("measuring the INT4 sensitivity of every unit (one forward each) ...")
    units = tuple(most_sensitive(unit_sensitivity(model, window))) if offsets else ()
    log.info("layers by Block Influence, least first: %s", order)
    log.info("sensitive families: %s", sensitive)
    log.info("INT4-sensitive units, most first: %s", ", ".join(units[:10]))
    return DecoderPrior(tuple(order), sensitive, units)


def search(
    study: DecoderStudy, settings: DecoderSettings, prior: DecoderPrior, storage: str | None
) -> optuna.Study:
    """Run (or continue) the study until it holds ``settings.trials`` finished trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = seed_params(settings.space)[: settings.trials]
    # The random start-up comes after the seeded plans, by the pruning search's rule
    # (TPE fitted on the seeds alone only searches around them).
    sampler = optuna.samplers.TPESampler(
        seed=settings.seed, n_startup_trials=startup_trials(settings.trials, len(seeds))
    )
    optuna_study = optuna.create_study(
        study_name="causal-lm",
        storage=open_storage(storage) if storage is not None else None,
        direction="maximize",
        sampler=sampler,
        load_if_exists=True,
    )
    # A trial whose process died (an interrupted run) is failed and queued again with the
    # same parameters by the storage's retry callback, seeded plans included: the rerun
    # scores the plan the interrupted run was scoring.
    fail_dead_trials(optuna_study)
    done = [t for t in optuna_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not optuna_study.trials:
        for params in seeds:
            optuna_study.enqueue_trial(params, user_attrs={SEEDED_ATTR: True})
    remaining = settings.trials - len(done)
    if remaining > 0:
        optuna_study.optimize(
            study.objective(settings.space, prior), n_trials=remaining, catch=(RuntimeError,)
        )
    return optuna_study


def choose(optuna_study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best-R trial within every budget, as for every other task; when none is within,
    the best-R trial, and the report says the targets were missed."""
    best = best_feasible_trial(optuna_study)
    if best is None:  # (Study.best_trial would raise: it too reads the trials' constraints)
        finished = distinct(optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        best = max(finished, key=lambda trial: trial.value)
        log.warning(
            "no trial met every target; the best-R trial #%d ships (see the report's targets)",
            best.number,
        )
    return best


def choose_retimed(
    optuna_study: optuna.Study, study: DecoderStudy, prior: DecoderPrior
) -> tuple[optuna.trial.FrozenTrial, tuple[Retimed, ...], Path | None]:
    """The best trial once the finalists (:func:`finalists`, plus the best trial within the
    budgets as first measured) are timed again together; their records, and the chosen
    trial's artifact when one was built for this. Within every budget as re-timed, the
    highest R wins; when none is, the choice falls back to :func:`choose`."""
    trials = optuna_study.get_trials(deepcopy=False)
    top = finalists(trials, RETIMED, NEAR_BUDGET)
    first = best_feasible_trial(optuna_study)
    if first is not None and all(t.number != first.number for t in top):
        top.append(first)
    if len(top) < 2:
        return choose(optuna_study), (), None
    artifacts = {str(t.number): _artifact(study, prior, t) for t in top}
    log.info("timing trials %s again, side by side", ", ".join(artifacts))
    timed = study.meter.compare_decode(artifacts)
    retimed = tuple(study.retimed(t, timed[str(t.number)]) for t in top)
    for record in retimed:
        log.info(
            "trial %d: decode %.3fx of fp32 (%.3f-%.3f, %d rounds), R %.4f -> %.4f",
            record.trial,
            record.latency_ratio,
            record.latency_ratio_low or float("nan"),
            record.latency_ratio_high or float("nan"),
            record.rounds,
            record.reward_before,
            record.reward,
        )
    within = [record for record in retimed if record.feasible]
    if not within:
        best = choose(optuna_study)
        path = artifacts.get(str(best.number))
        return best, retimed, Path(path) if path is not None else None
    winner = max(within, key=lambda record: record.reward)
    best = next(t for t in top if t.number == winner.trial)
    return best, retimed, Path(artifacts[str(best.number)])


def _artifact(study: DecoderStudy, prior: DecoderPrior, trial: optuna.trial.FrozenTrial) -> Path:
    """``trial``'s artifact: kept from the search, or built again from the cached graphs."""
    kept = study.kept_artifact(trial.number)
    if kept is not None:
        return kept
    candidate = candidate_from_params(trial.params, prior)
    return study.build(candidate, study.workdir / f"retime-{trial.number}.onnx")


def recover(task: CausalLMTask, candidate: DecoderCandidate, settings: DecoderSettings):
    """The chosen structure, distilled from the unpruned model (unchanged when unpruned)."""
    student = prune_decoder(task.model, candidate.structure)
    if candidate.structure.is_identity or settings.recovery_steps <= 0 or task.recover is None:
        return student
    config = RecoveryConfig(
        epochs=1, steps=settings.recovery_steps, lr=settings.recovery_lr, method="distill"
    )
    return task.recover(student, task.model, config, settings.progress)


def fitted_to_model(settings: DecoderSettings, task: CausalLMTask) -> DecoderSettings:
    """``settings`` with its space checked against the model (:func:`fit_space`)."""
    return dataclasses.replace(settings, space=fit_space(settings.space, task.model.config))


def without_unsupported_fusion(settings: DecoderSettings, task: CausalLMTask) -> DecoderSettings:
    """``settings`` with fusion left out of the space when the fused graph cannot be built."""
    longest = max(window.shape[-1] for window in task.windows.search + task.windows.test)
    reason = fusion_unsupported(task.model, task.tokenizer, longest)
    if reason is None or True not in settings.space.fusion:
        return settings
    log.warning("fused graphs are left out of the search: %s", reason)
    space = dataclasses.replace(settings.space, fusion=(False,))
    return dataclasses.replace(settings, space=space)


def compress_decoder(
    task: CausalLMTask,
    out_dir: str | Path,
    settings: DecoderSettings,
    *,
    baseline_graph: Path | None = None,
    prior: DecoderPrior | None = None,
) -> DecoderResult:
    """Search, recover and deploy ``task``'s causal LM; writes into ``out_dir``.

    ``baseline_graph`` (the fp32 export of ``task.model``) and ``prior`` are measured here
    unless a caller that already has them (the benchmark) passes them in.
    """
    started = time.perf_counter()
    settings = fitted_to_model(settings, task)
    out_dir = Path(out_dir)
    workdir = out_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    windows = task.windows
    prompt = task.example_inputs[0]
    threads = settings.measure.threads
    baseline_graph = baseline_graph or export_decoder(task.model, workdir / "baseline")
    baseline_test = onnx_likelihood(DecoderSession(baseline_graph, threads=threads), windows.test)
    log.info("fp32 baseline: test perplexity %.2f", baseline_test.perplexity)
    prior = prior or measure_prior(task.model, windows.search[0], settings.space)
    settings = without_unsupported_fusion(settings, task)
    with DecoderLatencyMeter(settings.measure, prompt) as meter:
        meter.set_baseline(baseline_graph)
        study = DecoderStudy(
            model=task.model,
            search_windows=windows.search,
            prompt=prompt,
            meter=meter,
            workdir=workdir,
            baseline_graph=baseline_graph,
            baseline_flops_per_token=count_flops(task.model, (prompt,)) / prompt.shape[-1],
            targets=settings.targets,
            reward_mode=settings.reward,
            alpha=settings.alpha,
            beta=settings.beta,
            threads=threads,
            tokenizer=task.tokenizer,
            calibration=windows.calibration,
        )
        optuna_study = search(study, settings, prior, f"sqlite:///{out_dir / 'study.db'}")
        best, retimed, scored = choose_retimed(optuna_study, study, prior)
        candidate = candidate_from_params(best.params, prior)
        model = recover(task, candidate, settings)
        scored = scored or study.kept_artifact(best.number)
        artifact = deploy(study, model, candidate, out_dir, scored)
        final = study.score(candidate, artifact, precise=True)
    test = onnx_likelihood(DecoderSession(artifact, threads=threads), windows.test)
    torch_test = torch_likelihood(model, windows.test)
    parity = logits_parity(model, DecoderSession(artifact, threads=threads), windows.test[0])
    parity["perplexity_difference"] = test.perplexity - torch_test.perplexity
    result = DecoderResult(
        candidate=candidate,
        search_score=dict(best.user_attrs),
        baseline_perplexity=baseline_test.perplexity,
        baseline_size_mb=weight_bytes(baseline_graph)["total"] / MB,
        test_perplexity=test.perplexity,
        torch_test_perplexity=torch_test.perplexity,
        parity=parity,
        final=final,
        targets=tuple(term for term in final.terms if term.budget),
        artifact=artifact,
        graph=graph_ops(artifact),
        trials=len(optuna_study.trials),
        seconds=time.perf_counter() - started,
        retimed=retimed,
    )
    write(result, task, out_dir)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def deploy(
    study: DecoderStudy,
    model: torch.nn.Module,
    candidate: DecoderCandidate,
    out_dir: Path,
    scored: Path | None = None,
) -> Path:
    """Export the (recovered) model, apply the chosen fusion and precision, and place
    ``model.onnx`` in ``out_dir`` with the configs and tokenizer ORT GenAI reads beside it.

    An unpruned candidate needs no recovery: its artifact as scored in the search
    (``scored``) ships, or is built again from the cached graphs. The files are written to a
    staging folder and moved in together, ``model.onnx`` last (:func:`atomic_folder`): an
    interrupted run leaves no artifact rather than a half-written one that looks complete.
    """
    graph = _fp32_graph(study, model, candidate)
    with atomic_folder(out_dir, last=GRAPH_NAME) as staging:
        _copy_configs(graph.parent, staging)
        if study.tokenizer is not None:
            study.tokenizer.save_pretrained(staging)
        if candidate.structure.is_identity and scored is not None:
            shutil.copyfile(scored, staging / GRAPH_NAME)
        else:
            quantize_decoder(graph, staging / GRAPH_NAME, candidate.precision, study.calibration)
    return out_dir / GRAPH_NAME


def _fp32_graph(study: DecoderStudy, model: torch.nn.Module, candidate: DecoderCandidate) -> Path:
    """The chosen structure's fp32 graph, its model configs beside it."""
    if candidate.structure.is_identity:  # the search's cached graph: ``model`` is unchanged
        return study.structure_graph(candidate.structure, candidate.fusion)
    if candidate.fusion:
        return build_decoder(model, study.tokenizer, study.workdir / "final")
    return export_decoder(model, study.workdir / "final")


def _copy_configs(folder: Path, dst: Path) -> None:
    # genai_config.json (fused graphs only) lets onnxruntime-genai's generate() run the model.
    for name in ("config.json", "generation_config.json", "genai_config.json"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dst / name)


def write(result: DecoderResult, task: CausalLMTask, out_dir: Path) -> None:
    """``result.json`` and ``report.md`` (:func:`deploy` placed the artifact)."""
    write_json(out_dir / "result.json", result.as_dict())
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(
            f"# causal-lm: {task.description}\n\n{summary(result)}\n\n## Trials\n\n"
            + trials_markdown(trials_table(out_dir))
            + "\n"
            + retimed_markdown(result.retimed)
        )


def retimed_markdown(retimed: tuple[Retimed, ...]) -> str:
    """The finalists' joint re-timing, as the choice used it (empty when none was done)."""
    from compressor.report import markdown_table

    if not retimed:
        return ""

    def interval(record: Retimed) -> str:
        if record.latency_ratio_low is None:
            return ""
        return f"{record.latency_ratio_low:.3f}-{record.latency_ratio_high:.3f}"

    rows = [
        [
            str(r.trial),
            f"{r.latency_ratio:.3f}",
            interval(r),
            str(r.rounds),
            f"{r.latency_ms:.2f}",
            "yes" if r.feasible else "no",
            f"{r.reward_before:.4f}",
            f"{r.reward:.4f}",
        ]
        for r in retimed
    ]
    headers = ["#", "decode x", "95 % interval", "rounds", "decode ms", "within", "R before", "R"]
    return (
        "\n## Finalists, timed again side by side\n\n"
        "The choice used these decode ratios (one interleaved comparison of every finalist "
        "and the fp32 baseline), not the search's quick ones.\n\n"
        + markdown_table(headers, rows)
        + "\n"
    )


def trials_markdown(trials: list[dict]) -> str:
    from compressor.report import markdown_table

    columns = [
        ("#", "number", "d"),
        ("layers -", "decoder.drop_layers", "d"),
        ("MLP -", "decoder.mlp_ratio", ".3f"),
        ("heads -", "decoder.head_ratio", ".2f"),
        ("weights", "decoder.weights", "s"),
        ("kept up", "decoder.keep_sensitive", "d"),
        ("offset units", "decoder.offset_units", "d"),
        ("lm_head", "decoder.lm_head", "s"),
        ("int4", "decoder.int4_method", "s"),
        ("bias corr.", "decoder.bias_correction", ""),
        ("fused", "decoder.fusion", ""),
        ("ppl", "perplexity", ".2f"),
        ("decode x", "decode_ratio", ".2f"),
        ("MB", "size_mb", ".0f"),
        ("R", "reward", ".4f"),
        ("same as #", DUPLICATE_ATTR, ""),  # a repeated plan, not measured again
    ]
    rows = [[format(t.get(key, ""), spec) for _, key, spec in columns] for t in trials]
    return markdown_table([name for name, _, _ in columns], rows)


def trials_table(out_dir: Path) -> list[dict]:
    """Every finished trial of the run's study: its moves and measurements."""
    storage = f"sqlite:///{Path(out_dir) / 'study.db'}"
    study = optuna.load_study(study_name="causal-lm", storage=storage)
    return [
        {"number": t.number, **t.params, **t.user_attrs}
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ]


def summary(result: DecoderResult) -> str:
    """The table a user wants to see at the end of a run (perplexity, not likelihood)."""
    from compressor.report import markdown_table

    final, structure = result.final, result.candidate.structure
    precision = result.candidate.precision
    rows = [
        ["test perplexity", f"{result.baseline_perplexity:.2f}", f"{result.test_perplexity:.2f}"],
        [
            f"prefill ms ({final.latency.prompt_length} tokens)",
            f"{final.latency.prefill.baseline.p50_ms:.1f}",
            f"{final.latency.prefill.candidate.p50_ms:.1f}",
        ],
        [
            "decode ms / token",
            f"{final.latency.decode.baseline.p50_ms:.2f}",
            f"{final.latency.decode.candidate.p50_ms:.2f} (ratio {final.latency.decode.ratio:.2f})",
        ],
        ["weights MB", f"{result.baseline_size_mb:.0f}", f"{final.size_mb:.0f}"],
        ["FLOPs / token", "1.00x", f"{final.flops_ratio:.2f}x"],
    ]
    moves = (
        f"layers removed {list(structure.drop_layers)}, MLP -{structure.mlp_ratio:.0%}, "
        f"query heads -{structure.head_ratio:.0%}; weights {precision.default} "
        f"(kept {dict(precision.overrides)}), lm_head {precision.lm_head}"
        + (f", INT4 {precision.int4_method}" if "int4" in _precisions(precision) else "")
        + (f", INT8 {precision.int8_method}" if "int8" in _precisions(precision) else "")
        + (f", float offsets on {_units_line(precision.offsets)}" if precision.offsets else "")
        + (", bias-corrected" if precision.bias_correction else "")
        + (
            "; fused (ORT GenAI builder graph)"
            if result.candidate.fusion
            else "; unfused (optimum export)"
        )
    )
    return (
        markdown_table(["", "fp32 ORT", "compressed"], rows)
        + f"\n\nchosen: {moves}\nparity (PyTorch vs artifact): logits cosine >= "
        f"{result.parity['cosine_min']:.4f}, perplexity difference "
        f"{result.parity['perplexity_difference']:+.3f}\n"
        f"{targets_line(result.targets)}\n"
        f"artifact graph: {result.graph}\n"
        f"{result.trials} trials, {result.seconds / 60:.1f} min; artifact {result.artifact}"
    )


TARGET_NAMES = {"latency": "decode latency", "flops": "FLOPs / token", "size": "weights MB"}


def targets_line(targets: tuple[Term, ...]) -> str:
    """Each budget the user set, measured on the shipped artifact: met or not, plainly."""
    if not targets:
        return "targets: none (the best R)"
    return "targets: " + "; ".join(
        f"{TARGET_NAMES.get(t.name, t.name)} {t.value:.4g} <= {t.target:.4g}: "
        + ("met" if t.within else "NOT met")
        for t in targets
    )


def _units_line(offsets: tuple[str, ...], shown: int = 4) -> str:
    units = offset_units_of(offsets)
    more = ", ..." if len(units) > shown else ""
    return f"{len(units)} units ({', '.join(units[:shown])}{more})"


def _precisions(precision) -> set[str]:
    return {precision.default, precision.lm_head, *precision.overrides.values()}


def settings_from_config(config, trials: int | None, verbose: bool) -> DecoderSettings:
    """The causal-lm settings a ``compress`` config describes (see :func:`run_causal_lm`)."""
    search = config.search
    return DecoderSettings(
        trials=trials or DEFAULT_TRIALS,
        seed=search.seed,
        targets=DecoderTargets(
            latency=config.target_latency, flops=config.target_flops, size_mb=config.target_size
        ),
        space=DecoderSpace(**config.decoder.space_options()),
        reward=search.reward if search.reward != "amc" else "soft",
        alpha=search.alpha,
        beta=search.beta,
        recovery_steps=config.recovery.steps if config.recovery.steps is not None else 30,
        recovery_lr=config.recovery.lr,
        measure=config.measure,
        progress=verbose,
    )


def run_causal_lm(
    config, *, trials: int | None = None, verbose: bool = True, existing: str = "auto"
) -> str:
    """``compress --task causal-lm``: build the task, run the pipeline, return the summary.

    ``--target-latency`` is decode time per token (a ratio of the fp32 artifact's, or ms),
    ``--target-flops`` FLOPs per token, ``--target-size`` weight megabytes. The trial
    budget defaults to :data:`DEFAULT_TRIALS`. The output folder follows the pruning
    runs' rule (:mod:`compressor.run_folder`): a rerun of the same command continues the
    study (its ``study.db``), another config is refused unless ``existing`` is ``resume``
    (continue with it) or ``overwrite`` (start over), and a folder holding anything but a
    run is refused, all before the model is loaded.
    """
    from compressor.logs import console_output
    from compressor.tasks import get_task

    settings = settings_from_config(config, trials, verbose)
    output, resuming = check_output_dir(config.output, config, existing, DECODER_RUN_FILES)
    with console_output(verbose):
        task = get_task("causal-lm", model=config.model, data=config.data)
        fitted_to_model(settings, task)  # a space the model refuses: before the folder is written
        if existing == "overwrite":
            clear_run_files(output, DECODER_RUN_FILES)
        elif resuming:
            log.info("continuing the run in %s", output)
        write_config(output, config)
        return summary(compress_decoder(task, output, settings))
