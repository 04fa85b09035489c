"""Writing a run's report: ``report.html`` (self-contained) and ``summary.md``.

The HTML page is a Jinja2 template with the figures inlined as SVG and the styles in the
page, so it is one file that opens anywhere, offline, with no network request. Both files
are rendered from the run folder alone (:func:`compressor.report.run_data.load_run`), so
``compress report RUN_DIR`` reproduces what the run wrote, and reports runs that stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from compressor.credentials import mask
from compressor.records import TrialRecord
from compressor.report.figures import report_figures
from compressor.report.run_data import STUDY_FILE, RunData, load_run
from compressor.report.summary import (
    deploy_lines,
    environment_lines,
    headline,
    plan_rows,
    reward_formula,
    search_lines,
)
from compressor.report.tables import format_count, format_pct, markdown_table
from compressor.run_folder import atomic_path

HTML_FILE, MARKDOWN_FILE = "report.html", "summary.md"
TRIAL_COLUMNS = (
    "#",
    "state",
    "val accuracy",
    "FLOPs",
    "latency (95 % interval)",
    "artifact",
    "fidelity",
    "R",
    "seconds",
)
FIDELITIES = {0: "adaptive BN", 1: "distilled"}
TOP_TRIALS = 10  # the Markdown summary lists the best trials; the HTML page lists all


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path


def write_report(run_dir: str | Path) -> ReportFiles:
    """Render ``report.html`` and ``summary.md`` into ``run_dir`` from what it holds.

    Raises :class:`~compressor.errors.UserInputError` when the folder holds no run.
    """
    run = load_run(run_dir)
    files = ReportFiles(run.run_dir / HTML_FILE, run.run_dir / MARKDOWN_FILE)
    with atomic_path(files.html) as tmp:
        tmp.write_text(render_html(run), encoding="utf-8")
    with atomic_path(files.markdown) as tmp:
        tmp.write_text(render_markdown(run), encoding="utf-8")
    return files


def render_html(run: RunData) -> str:
    environment = Environment(
        loader=PackageLoader("compressor.report"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    config_file = run.run_dir / "config.yaml"
    return template.render(
        title=_title(run),
        run_dir=str(run.run_dir.resolve()),
        complete=run.complete,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        headline=headline(run),
        formula=reward_formula(run.target),
        figures=report_figures(run),
        plan_rows=plan_rows(run),
        deploy_lines=deploy_lines(run),
        search_lines=search_lines(run),
        failed=run.failed,
        trial_columns=TRIAL_COLUMNS,
        trial_rows=[_trial_row(run, t) for t in run.trials],
        environment_lines=environment_lines(run),
        config_text=mask(config_file.read_text()) if config_file.is_file() else "",
        dashboard_command=dashboard_command(run.run_dir),
    )


def render_markdown(run: RunData) -> str:
    top = headline(run)
    parts = [f"# compress report: {_title(run)}", ""]
    parts.append(f"Run folder `{run.run_dir}`: {'complete' if run.complete else 'not finished'}.")
    parts.append("Plots and every trial: `report.html` beside this file.")
    if top.rows:
        parts += ["", markdown_table(top.columns, top.rows)]
    parts += [""] + [f"- {line}" for line in top.targets]
    parts += [""] + top.notes + ["", f"Reward: {reward_formula(run.target)}"]
    rows = plan_rows(run)
    if rows:
        parts += ["", "## Chosen plan" if run.complete else "## Best plan so far", ""]
        parts.append(markdown_table(("group", "ratio", "channels / heads / neurons"), rows))
    parts += ["", markdown_table(("deployment", ""), deploy_lines(run))]
    parts += ["", "## Search", "", markdown_table(("", ""), search_lines(run))]
    best = sorted(run.finished, key=lambda t: t.reward, reverse=True)[:TOP_TRIALS]
    if best:
        parts += ["", f"Best {len(best)} trials by reward:", ""]
        parts.append(markdown_table(TRIAL_COLUMNS, [_trial_row(run, t)["cells"] for t in best]))
    if run.failed:
        parts += ["", "Failed trials:", ""]
        parts += [f"- #{t.number}: {t.error or 'no reason recorded'}" for t in run.failed]
    environment = environment_lines(run)
    if environment:
        parts += ["", "## Environment", "", markdown_table(("", ""), environment)]
    parts += ["", f"Browse the study: `{dashboard_command(run.run_dir)}`", ""]
    return "\n".join(parts)


def dashboard_command(run_dir: Path) -> str:
    """The optuna-dashboard command line that opens this run's study unchanged."""
    return f"optuna-dashboard sqlite:///{(run_dir / STUDY_FILE).resolve()}"


def _title(run: RunData) -> str:
    task = run.environment.get("task") or (run.config or {}).get("task") or "run"
    return f"{task} — {run.run_dir.name}"


def latency_cell(ratio: float | None, low: float | None, high: float | None) -> str:
    """``0.54× (0.51–0.57)``: the ratio to the baseline and its interval when measured."""
    if ratio is None:
        return "—"
    if low is None or high is None:
        return f"{ratio:.2f}×"
    return f"{ratio:.2f}× ({low:.2f}–{high:.2f})"


def _status(trial: TrialRecord) -> str:
    finished = trial.state == "COMPLETE"
    status = trial.state.lower() if not finished or trial.feasible else "over budget"
    return status if trial.duplicate_of is None else f"{status}, same as #{trial.duplicate_of}"


def _trial_row(run: RunData, trial: dict) -> dict:
    chosen = run.chosen_trial
    artifact = trial.artifact
    deploy = f"{artifact.quantization}{' + fused' if artifact.fusion else ''}" if artifact else "—"
    finished = trial.state == "COMPLETE"
    cells = (
        f"#{trial.number}",
        _status(trial),
        format_pct(trial.accuracy),
        format_count(trial.flops) if trial.flops is not None else "—",
        latency_cell(trial.latency_ratio, trial.latency_ratio_low, trial.latency_ratio_high),
        deploy,
        FIDELITIES.get(trial.fidelity, "—") if trial.fidelity is not None else "—",
        f"{trial.reward:.4f}" if trial.reward is not None else "—",
        f"{trial.seconds:.1f}" if trial.seconds is not None else "—",
    )
    css = (
        "chosen"
        if chosen is not None and trial.number == chosen.number
        else "failed"
        if not finished
        else ""
        if trial.feasible
        else "infeasible"
    )
    return {"cells": cells, "css": css}
