"""What the report says, as rows and sentences: one content model for HTML and Markdown.

Every figure comes from the run's stored data (``result.json``, the study); nothing is
recomputed except ratios of stored numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compressor.config import MeasureConfig
from compressor.records import Chosen, Target, TrialRecord
from compressor.report.run_data import RunData
from compressor.report.tables import format_bytes, format_count, format_ms, format_pct
from compressor.reward import REWARDS

Row = tuple[str, ...]


@dataclass(frozen=True)
class Headline:
    """Baseline against the chosen variant: column names, rows, and the lines below."""

    columns: Row
    rows: list[Row]
    targets: list[str]  # one sentence per target, saying whether it was met
    notes: list[str]


def headline(run: RunData) -> Headline:
    """The table a reader looks at first."""
    if run.best is not None:
        return _finished_headline(run)
    return _interrupted_headline(run)


def _finished_headline(run: RunData) -> Headline:
    base, best = run.baseline, run.best
    sizes = {name: entry.size_bytes for name, entry in run.artifacts.items()}
    base_size, best_size = sizes.get("baseline_fp32.onnx"), sizes.get("model.onnx")
    rows = [
        _pct_row("test accuracy", base.accuracy, best.accuracy),
        _pct_row("validation accuracy", base.val_accuracy, best.val_accuracy),
        _count_row("FLOPs", base.flops, best.flops),
        _count_row("params", base.params, best.params),
        _ms_row("latency p50", base.latency_ms, best.latency_ms, best.latency_ratio),
        _ms_row("latency p90", base.latency_p90_ms, best.latency_p90_ms),
        _size_row("artifact size", base_size, best_size),
        _speedup_row(best.latency_ratio),
    ]
    notes = [
        f"Chosen: trial #{best.trial} (reward {best.reward:.4f}), then recovered "
        f"({_recovery_text(best.recovery)}). Test accuracy before recovery "
        f"{format_pct(best.accuracy_before_recovery)}, after "
        f"{format_pct(best.accuracy_fp32 if best.deployed else best.accuracy)} (PyTorch fp32)"
        + (f", {format_pct(best.accuracy)} as model.onnx." if best.deployed else ".")
    ]
    notes += reference_lines(run, best)
    if run.stale:
        notes.append(
            "The study holds trials newer than result.json (a resumed run that has not "
            "finished): the chosen variant is the earlier run's."
        )
    return Headline(
        ("", "baseline", "chosen (model.onnx)", "change"),
        rows,
        target_lines(run, best.flops, best.latency_ratio, best.latency_ms),
        notes,
    )


def reference_lines(run: RunData, best: Chosen) -> list[str]:
    """One sentence per reference pipeline (the unpruned model fp32 / fused / INT8, scored
    as trials): how it compares with the baseline, and, when the targets excluded it,
    how fast the chosen variant is against it: what those targets cost.

    A reference re-timed with the finalists before choosing is stated with those figures,
    and set against the chosen trial's from the same rounds: both were timed under the
    same load, which its search-time ratio and the chosen variant's final one were not.
    """
    retimed = {record.trial: record.latency_ratio for record in best.retimed}
    lines = []
    for trial in run.finished:
        ratio = retimed.get(trial.number, trial.latency_ratio)
        if not trial.reference or ratio is None:
            continue
        drop = 100 * (trial.accuracy - run.baseline.val_accuracy)
        text = (
            f"Reference {trial.reference} (trial #{trial.number}): "
            f"{1.0 / ratio:.2f}× the fp32 baseline's speed at {drop:+.2f} pt "
            f"validation accuracy, FLOPs {trial.flops_ratio:.2f}×"
        )
        together = trial.number in retimed and best.trial in retimed
        chosen = retimed[best.trial] if together else best.latency_ratio
        if not trial.feasible:
            text += ": excluded by the targets"
            if chosen:
                text += f"; the chosen variant runs at {ratio / chosen:.2f}× its speed"
        if trial.number in retimed:
            text += " (timed again with the finalists before choosing)"
        lines.append(text + ".")
    return lines


def _interrupted_headline(run: RunData) -> Headline:
    trial, base = run.chosen_trial, run.baseline
    done, planned = len(run.finished) + len(run.failed), run.planned_trials
    notes = [
        f"The run has not finished (no result.json): {done} of {planned or '?'} trials "
        "done. Nothing was recovered or saved yet; the column shows the best feasible "
        "trial so far, scored on validation data without fine-tuning."
    ]
    if trial is None:
        notes.append("No feasible trial has finished yet.")
        return Headline(("", "baseline"), [], [], notes)
    artifact = trial.artifact
    rows = [
        _pct_row("validation accuracy", base and base.val_accuracy, trial.accuracy),
        _count_row("FLOPs", base and base.flops, trial.flops),
        _count_row("params", base and base.params, trial.params),
        _ms_row(
            "latency p50",
            trial.baseline_latency_ms,
            trial.latency_ms,
            trial.latency_ratio,
        ),
        _ms_row("latency p90", None, trial.latency_p90_ms),
        _size_row("artifact size", None, artifact and artifact.size_bytes),
        _speedup_row(trial.latency_ratio),
    ]
    return Headline(
        ("", "baseline", f"best so far (trial #{trial.number})", "change"),
        rows,
        target_lines(run, trial.flops, trial.latency_ratio, trial.latency_ms),
        notes,
    )


def target_lines(
    run: RunData, flops: float, latency_ratio: float | None, latency_ms: float | None
) -> list[str]:
    """One sentence per target: its value and whether the chosen variant meets it."""
    target = run.target
    if not target:
        return []
    budget = target.flops
    if has_flops_target(target):
        lines = [
            f"FLOPs target: ≤ {format_count(budget)} ({target.flops_ratio:.2f}× the "
            f"baseline) — {_met(flops <= budget)} with {format_count(flops)}."
        ]
    else:
        lines = [f"FLOPs: no target (each trial searched its level); {format_count(flops)}."]
    spec = target.latency
    if spec:
        is_ms = spec.endswith("ms")
        limit = float(spec.removesuffix("ms"))
        value = latency_ms if is_ms else latency_ratio
        shown = f"{value:.3f} ms" if is_ms else f"{value:.2f}×"
        wanted = f"{limit:g} ms" if is_ms else f"{limit:g}× the baseline artifact"
        lines.append(f"Latency target: ≤ {wanted} — {_met(value <= limit)} with {shown}.")
    drop = target.max_accuracy_drop
    if drop is not None and run.best is not None:
        test_drop = 100 * (run.baseline.accuracy - run.best.accuracy)
        lines.append(
            f"Accuracy drop: ≤ {drop:g} pt on validation (the fastest such trial was chosen); "
            f"test drop after recovery {test_drop:+.2f} pt — "
            f"{_met(test_drop <= drop)} on the test split."
        )
    return lines


def has_flops_target(target: Target | None) -> bool:
    """False for a latency-only run, whose FLOPs level is searched."""
    return target is not None and target.has_flops


def reward_formula(target: Target | None) -> str:
    """The reward the search maximised, with its parameters, in words and symbols (the
    formula itself is the registered reward's own, see :data:`compressor.reward.REWARDS`)."""
    if not target:
        return "unknown (the run did not record its targets)"
    if target.reward not in REWARDS:
        return f"{target.reward} (a reward this version does not know)"
    mode = REWARDS.get(target.reward)
    formula = mode.formula(target.alpha, target.beta)
    if not mode.uses_latency:
        return formula
    budget = (
        f"T_FLOPs = {format_count(target.flops)}"
        if has_flops_target(target)
        else "T_FLOPs = each trial's searched level"
    )
    spec = target.latency
    if not spec:
        latency = "latency: measured p50 ÷ baseline artifact's, T = 1 (a preference, soft)"
    elif spec.endswith("ms"):
        latency = f"latency: measured p50, T = {spec} (a budget)"
    else:
        latency = f"latency: measured p50 ÷ baseline artifact's, T = {spec} (a budget)"
    return f"{formula}. {budget}; {latency}"


def plan_rows(run: RunData) -> list[Row]:
    """Per group of the chosen plan: name, ratio, size before and after pruning."""
    trial = run.chosen_trial
    if run.best is not None:
        ratios, kept = run.best.plan.ratios, run.best.plan.channels
    elif trial is not None:
        ratios, kept = trial.plan, trial.channels or {}
    else:
        return []
    rows = []
    for name, ratio in ratios.items():
        before, after = run.channels_before.get(name), kept.get(name)
        arrow = f"{before} → {after}" if before is not None and after is not None else "—"
        rows.append((name, f"{ratio:.2f}", arrow))
    for group in run.excluded_groups:  # never searched: pruning them breaks the forward
        rows.append((group["name"], "excluded", f"kept whole: breaks the forward{group['layer']}"))
    removed = run.best.plan.removed_units if run.best is not None else trial.removed_units
    rows += [(unit, "removed", "whole block / layer") for unit in removed]
    return rows


def deploy_lines(run: RunData) -> list[tuple[str, str]]:
    """How the chosen variant is deployed: quantization, fusion, op counts, parity."""
    if run.best is not None and run.best.quantization is not None:
        best = run.best
        artifact, parity = best.artifact, best.parity
        quantization, fusion = best.quantization, best.fusion
    elif run.best is None and run.chosen_trial and run.chosen_trial.artifact:
        artifact = run.chosen_trial.artifact
        parity = artifact.parity
        quantization, fusion = artifact.quantization, artifact.fusion
    else:
        return [
            ("artifact", "none: the search scored the PyTorch model (--no-export)"),
            *multiple_lines(run),
        ]
    lines = [
        *multiple_lines(run),
        ("quantization", quantization),
        ("fusion", "on (ONNX Runtime optimizer)" if fusion else "off"),
        ("INT8 operators", _op_counts(artifact.int8_ops if artifact else None)),
        ("fused operators", _op_counts(artifact.fused_ops if artifact else None)),
        ("layers kept fp32", ", ".join(artifact.fp32_nodes if artifact else ()) or "none"),
    ]
    if artifact and artifact.keep_sensitive:
        lines.append(
            (
                "most INT8-sensitive kept fp32",
                f"{', '.join(artifact.sensitive_fp32) or 'none left'} (the top "
                f"{artifact.keep_sensitive} measured, ONNX Runtime qdq_loss_debug)",
            )
        )
    if parity:
        lines.append(
            (
                "parity vs PyTorch",
                f"top-1 agreement {format_pct(parity.top1_agreement)}, cosine "
                f"{parity.cosine:.4f}, max |diff| {parity.max_abs_diff:.3g}",
            )
        )
    return lines


def multiple_lines(run: RunData) -> list[tuple[str, str]]:
    """The multiple the chosen plan's kept counts were rounded to, and why."""
    trial = run.chosen_trial
    if run.best is not None:
        multiple, measured = run.best.plan.round_to, run.best.plan.round_to_measured
    elif trial is not None:
        multiple, measured = trial.round_to, False
    else:
        return []
    if multiple is None:
        return [("channel counts", "not rounded")]
    why = (
        " (measured: what this machine's kernels favour for this quantization mode)"
        if measured
        else ""
    )
    return [("channel counts", f"multiples of {multiple}{why}")]


def search_lines(run: RunData) -> list[tuple[str, str]]:
    finished, failed = run.finished, run.failed
    feasible = [t for t in finished if t.feasible]
    running = [t for t in run.trials if t.state == "RUNNING"]
    seconds = sum(t.seconds or 0.0 for t in finished)
    lines = [
        ("trials", f"{len(finished)} finished, {len(failed)} failed of {run.planned_trials}"),
        ("within the FLOPs budget", f"{len(feasible)} of {len(finished)}"),
        ("scoring time", f"{seconds:.0f} s in finished trials"),
    ]
    if running:
        numbers = ", ".join(f"#{t.number}" for t in running)
        lines.append(("left running", f"{numbers} (the process stopped during them)"))
    config = run.config or {}
    lines += timing_lines(finished, config.get("measure", {}))
    search = config.get("search", {})
    if search:
        lines.append(("sampler", f"{search.get('sampler')} (seed {search.get('seed')})"))
    lines += worker_lines(run.workers)
    return lines


def timing_lines(finished: list[TrialRecord], measure: dict[str, Any]) -> list[tuple[str, str]]:
    """How the trials' latencies were timed, when some kept a short comparison (a figure
    that could not change what the search promoted or chose: search/candidate.py)."""
    short = sum(t.latency_precise is False for t in finished)
    if not short:
        return []
    precise = sum(t.latency_precise is True for t in finished)
    default = MeasureConfig()
    width = 100 * measure.get("ratio_halfwidth", default.ratio_halfwidth)
    rounds = measure.get("rounds", default.rounds)
    return [
        (
            "latency timing",
            f"{precise} trials towards the +-{width:g} % interval; {short} in {rounds} rounds "
            "alone (even at their interval's low end they could neither be promoted nor beat "
            "the best)",
        )
    ]


def worker_lines(workers: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """One line per process that scored trials (``result.worker_summary``), when more than
    one did (``compress worker``).

    Milliseconds from different machines do not compare; each worker's baseline, timed on
    its machine, says what its trials' latency ratios are relative to.
    """
    if len(workers) < 2:
        return []
    lines = []
    for name, info in sorted(workers.items()):
        numbers = ", ".join(f"#{number}" for number in info.trial_numbers)
        count = f"{info.trials} trial" + ("s" if info.trials != 1 else "")
        baseline = info.baseline_latency_ms
        on_machine = f"; baseline {format_ms(baseline)} on its machine" if baseline else ""
        lines.append((f"worker {name}", f"{count} ({numbers}){on_machine}"))
    return lines


def environment_lines(run: RunData) -> list[tuple[str, str]]:
    env = run.environment
    if not env:
        return []
    lines = [
        ("task", f"{env.get('task')}: {env.get('task_description', '')}".rstrip(": ")),
        ("CPU", f"{env.get('cpu')} ({env.get('cpu_count')} logical cores)"),
        ("CPU features", ", ".join(env.get("cpu_flags", [])) or "—"),
        ("device / threads", f"{env.get('device')}, {env.get('threads')} intra-op threads"),
    ]
    if env.get("gpu"):
        lines.append(("GPU", env["gpu"]))
    lines.append(("Python / platform", f"{env.get('python')} on {env.get('platform')}"))
    libraries = env.get("libraries", {})
    lines.append(
        ("libraries", ", ".join(f"{name} {v}" for name, v in libraries.items() if v) or "—")
    )
    widths = env.get("kernel_widths")
    if widths:
        lines.append(("kernel-aligned widths", kernel_widths_text(widths)))
    if env.get("command"):
        lines.append(("command line", env["command"]))
    return lines


KERNEL_OPS = {"conv": "conv channels", "linear": "Linear (MatMul) neurons"}


def kernel_widths_text(widths: dict[str, Any]) -> str:
    """The measured multiples per kind of layer and mode (``{op: {mode: multiple}}``; runs
    before Linear layers were measured stored the conv ones alone, ``{mode: multiple}``)."""
    if all(isinstance(m, int) for m in widths.values()):
        widths = {"conv": widths}
    kinds = "; ".join(
        f"{KERNEL_OPS.get(op, op)}: "
        + ", ".join(f"{mode} multiples of {m}" for mode, m in multiples.items())
        for op, multiples in widths.items()
    )
    return f"{kinds} (measured on this machine, python -m compressor.measure.kernel_widths)"


def _op_counts(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "—"
    return ", ".join(f"{count} {op}" for op, count in counts.items()) or "none"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _recovery_text(recovery: dict) -> str:
    if not recovery:
        return "settings not recorded"
    steps, epochs = recovery.get("steps"), recovery.get("epochs")
    budget = f"{steps} steps" if steps else f"{epochs} epoch{'' if epochs == 1 else 's'}"
    method = recovery.get("method", "fine_tune")
    used = recovery.get("used")
    if used and used != method:
        method = f"{method}: {used}"
    raced = recovery.get("raced") or {}
    if len(raced) > 1:
        scores = ", ".join(f"{name} {format_pct(value)}" for name, value in raced.items())
        method += f", the better on validation of {scores}"
    return f"{method}, {budget}, lr {recovery.get('lr')}"


def _pct_row(name: str, base: float | None, value: float | None) -> Row:
    change = "—" if None in (base, value) else f"{(value - base) * 100:+.2f} pt"
    return (name, format_pct(base), format_pct(value), change)


def _count_row(name: str, base: float | None, value: float | None) -> Row:
    change = "—" if not base or value is None else f"{value / base:.2f}×"
    return (name, _count_or_dash(base), _count_or_dash(value), change)


def _ms_row(name: str, base: float | None, value: float | None, ratio: float | None = None) -> Row:
    """``ratio``: the measured ratio (median of per-round ratios), when there is one."""
    if ratio is None and base and value is not None:
        ratio = value / base
    return (name, format_ms(base), format_ms(value), "—" if ratio is None else f"{ratio:.2f}×")


def _size_row(name: str, base: float | None, value: float | None) -> Row:
    change = "—" if not base or value is None else f"{value / base:.2f}×"
    return (name, format_bytes(base), format_bytes(value), change)


def _speedup_row(latency_ratio: float | None) -> Row:
    # From the ratio measured in alternating rounds, as the latency p50 change.
    shown = "—" if not latency_ratio else f"{1 / latency_ratio:.2f}×"
    return ("speed-up (p50)", "1.00×", shown, "")


def _count_or_dash(value: float | None) -> str:
    return "—" if value is None else format_count(value)
