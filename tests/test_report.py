"""The run report: report.html and summary.md of a real run, checked against result.json."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import wsgiref.util

import numpy as np
import optuna
import pytest

from compressor.cli import main
from compressor.records import Baseline, Target, TrialRecord
from compressor.report import (
    RunData,
    Series,
    markdown_table,
    pareto_front,
    svg_bars,
    svg_plot,
)
from compressor.report.figures import report_figures
from compressor.report.render import TRIAL_COLUMNS, latency_cell, render_html, render_markdown
from compressor.report.summary import environment_lines, target_lines, timing_lines
from compressor.report.tables import format_count, format_ms, format_pct
from compressor.search.budget import DISCARDED


def group_points(html: str, gid: str) -> list[tuple[float, float]]:
    """Pixel positions of the scatter markers in the SVG group ``gid`` (none if absent)."""
    match = re.search(rf'<g id="{re.escape(gid)}">(.*?)</g>\s*</g>', html, re.DOTALL)
    if match is None:
        return []
    uses = re.findall(r'<use [^>]*x="([-\d.]+)" y="([-\d.]+)"', match.group(1))
    return [(float(x), float(y)) for x, y in uses]


def table_rows(html: str, css_class: str) -> list[list[str]]:
    """The cells (header cells too) of each row of the page's table of class ``css_class``."""
    table = re.search(rf'<table class="{css_class}">(.*?)</table>', html, re.DOTALL).group(1)
    rows = [
        re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.DOTALL) for row in table.split("</tr>")
    ]
    return [[html_lib.unescape(cell.strip()) for cell in row] for row in rows if row]


def headline_cells(html: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table_rows(html, "headline")[1:]}


@pytest.fixture(scope="module")
def report(cli_run):
    code, output = cli_run
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    return output, result, (output / "report.html").read_text()


def test_the_run_wrote_a_self_contained_report(report):
    output, _, html = report
    assert (output / "summary.md").is_file()
    # One file: no scripts, no external stylesheets, images or fonts; plots are inline SVG.
    assert "<script" not in html
    assert not re.search(r'(?:src|href)="(?!#|data:)', html), "a resource outside the page"
    assert not re.search(r"url\((?!#)", html)
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "SVG ids clash between figures"
    assert set(re.findall(r'href="#([^"]+)"', html)) <= set(ids)


@pytest.mark.parametrize(
    "figure, key, scale",
    [("pareto-latency", "latency_ratio", np.log), ("pareto-flops", "flops", np.asarray)],
)
def test_pareto_plot_has_one_point_per_finished_trial_and_marks_the_chosen_one(
    report, figure, key, scale
):
    _, result, html = report
    finished = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    feasible = group_points(html, f"{figure}-feasible")
    infeasible = group_points(html, f"{figure}-infeasible")
    assert len(feasible) == sum(bool(t["feasible"]) for t in finished)
    assert len(feasible) + len(infeasible) == len(finished) == 5  # 4 + the INT8 reference
    assert len(group_points(html, f"{figure}-baseline")) == 1
    assert len(group_points(html, f"{figure}-recovered")) == 1
    (chosen,) = group_points(html, f"{figure}-chosen")
    # The star sits where the chosen trial's numbers put it: fit the axes' data -> pixel map
    # (linear in the axis scale: log for latency) on the plotted trials, then place the
    # trial recorded as best.
    plotted = [t for t in finished if t["feasible"]] + [t for t in finished if not t["feasible"]]
    pixels = np.array(feasible + infeasible)
    best = next(t for t in finished if t["number"] == result["best"]["trial"])
    for axis, field, transform in ((0, key, scale), (1, "accuracy", np.asarray)):
        values = transform([t[field] for t in plotted])
        if np.ptp(values) == 0:
            continue  # all trials at one value: no scale to fit on this axis
        slope, offset = np.polyfit(values, pixels[:, axis], 1)
        assert chosen[axis] == pytest.approx(slope * transform(best[field]) + offset, abs=0.5)
    assert f"chosen: trial #{result['best']['trial']}" in html


def test_headline_numbers_match_result_json(report):
    _, result, html = report
    base, best = result["baseline"], result["best"]
    cells = headline_cells(html)
    assert cells["test accuracy"][:2] == [
        format_pct(base["accuracy"]),
        format_pct(best["accuracy"]),
    ]
    assert cells["FLOPs"] == [
        format_count(base["flops"]),
        format_count(best["flops"]),
        f"{best['flops'] / base['flops']:.2f}×",
    ]
    assert cells["params"][:2] == [format_count(base["params"]), format_count(best["params"])]
    assert cells["latency p50"] == [
        format_ms(base["latency_ms"]),
        format_ms(best["latency_ms"]),
        f"{best['latency_ratio']:.2f}×",
    ]
    assert cells["latency p90"][:2] == [
        format_ms(base["latency_p90_ms"]),
        format_ms(best["latency_p90_ms"]),
    ]
    assert cells["speed-up (p50)"][1] == f"{1 / best['latency_ratio']:.2f}×"
    sizes = result["artifacts"]
    assert cells["artifact size"][2] == (
        f"{sizes['model.onnx']['size_bytes'] / sizes['baseline_fp32.onnx']['size_bytes']:.2f}×"
    )
    assert f"met with {format_count(best['flops'])}" in html
    assert "α = -0.07" in html and f"T_FLOPs = {format_count(result['target']['flops'])}" in html


def test_the_reference_is_retimed_with_the_finalists_and_stated_with_those_figures(report):
    _, result, html = report
    (reference,) = [t for t in result["trials"] if t.get("reference")]
    assert not reference["feasible"]  # the unpruned model is over --target-flops 0.5
    retimed = {r["trial"]: r for r in result["best"]["retimed"]}
    assert not retimed[reference["number"]]["feasible"]
    assert retimed[result["best"]["trial"]]["feasible"]
    ratio = retimed[reference["number"]]["latency_ratio"]
    chosen = retimed[result["best"]["trial"]]["latency_ratio"]
    page = html_lib.unescape(html)
    assert (
        f"{1.0 / ratio:.2f}× the fp32 baseline's speed" in page
        and f"the chosen variant runs at {ratio / chosen:.2f}× its speed (timed again" in page
    )


def test_plan_search_and_environment_sections(report):
    _, result, html = report
    plan = result["best"]["plan"]
    bars = re.findall(r'<g id="plan-ratios-\d+">', html)
    assert len(bars) == len(plan["ratios"]) > 0
    for name, kept in plan["channels"].items():
        assert f"{plan['channels_before'][name]} → {kept}" in html
    assert result["best"]["quantization"] == "static_ort" and ">static_ort<" in html
    finished = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert len(group_points(html, "reward-feasible")) + len(
        group_points(html, "reward-infeasible")
    ) == len(finished)
    assert f'tr class="chosen"><td class="num">#{result["best"]["trial"]}<' in html
    short = [t for t in finished if t["latency_precise"] is False]
    assert ("latency timing" in html) == bool(short)
    env = result["environment"]
    assert env["cpu"] in html and f"torch {env['libraries']['torch']}" in html
    assert "command line" in html and "config.yaml" in html


@pytest.mark.parametrize(
    "widths, shown",
    [
        (
            {"conv": {"none": 16, "static_ort": 16}, "linear": {"none": 8, "dynamic": 4}},
            "conv channels: none multiples of 16, static_ort multiples of 16; "
            "Linear (MatMul) neurons: none multiples of 8, dynamic multiples of 4",
        ),
        ({"none": 16, "static_ort": 8}, "conv channels: none multiples of 16, static_ort"),
    ],
)
def test_the_environment_shows_the_conv_and_linear_kernel_widths(tmp_path, widths, shown):
    # Runs from before Linear layers were measured stored the conv multiples alone.
    lines = dict(environment_lines(RunData(tmp_path, [], environment={"kernel_widths": widths})))
    assert lines["kernel-aligned widths"].startswith(shown)


def test_the_search_section_says_which_latencies_kept_a_short_comparison():
    trials = [
        TrialRecord(number=i, state="COMPLETE", latency_precise=precise)
        for i, precise in enumerate([True, False, False, None])
    ]
    (line,) = timing_lines(trials, {"ratio_halfwidth": 0.05, "rounds": 6})
    assert line[0] == "latency timing"
    assert line[1].startswith("1 trials towards the +-5 % interval; 2 in 6 rounds alone")
    assert timing_lines(trials[:1], {}) == []  # all timed to the interval: nothing to say


def test_markdown_summary_matches_result_json(report):
    output, result, _ = report
    summary = (output / "summary.md").read_text()
    base, best = result["baseline"], result["best"]
    row = f"| FLOPs               | {format_count(base['flops'])}"
    assert row in summary or re.search(rf"\| FLOPs +\| {format_count(base['flops'])} ", summary)
    assert re.search(
        rf"\| test accuracy +\| {re.escape(format_pct(base['accuracy']))} +\| "
        rf"{re.escape(format_pct(best['accuracy']))} ",
        summary,
    )
    assert f"optuna-dashboard sqlite:///{(output / 'study.db').resolve()}" in summary


def test_report_command_regenerates_and_prints_the_path(report, tmp_path, capsys):
    output, _, html = report
    copy = tmp_path / "run"
    shutil.copytree(output, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str((copy / "report.html").resolve())
    regenerated = (copy / "report.html").read_text()
    # The same page, up to the folder's name and the time it was rendered.
    strip = re.compile(r"generated [\d: -]+|/[^\s<\"]*/run\b")
    assert strip.sub("", regenerated) == strip.sub("", html)


def test_report_open_hands_the_file_to_a_browser(report, tmp_path, monkeypatch, capsys):
    output, _, _ = report
    copy = tmp_path / "run"
    shutil.copytree(output, copy)
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda uri: opened.append(uri) or True)
    assert main(["report", str(copy), "--open"]) == 0
    assert opened == [(copy / "report.html").resolve().as_uri()]


def test_report_of_a_run_that_did_not_finish(report, tmp_path, capsys):
    """No result.json; the study has failed trials and one left running by a dead process."""
    output, result, _ = report
    run = tmp_path / "stopped"
    run.mkdir()
    for name in ("study.db", "config.yaml"):
        shutil.copy(output / name, run / name)
    study = optuna.load_study(study_name="compress", storage=f"sqlite:///{run / 'study.db'}")
    failed = study.ask()
    failed.set_user_attr("error", "RuntimeError: the metric raised")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # failed with no reason
    study.ask()  # RUNNING forever: its process died
    over_budget = study.ask()  # another worker took the last share first: never scored
    over_budget.set_user_attr(DISCARDED, "the budget was taken")
    study.tell(over_budget, state=optuna.trial.TrialState.FAIL)
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    finished = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    best = max((t for t in finished if t["feasible"]), key=lambda t: t["reward"])
    assert "not finished" in html and f"best so far (trial #{best['number']})" in html
    assert len(group_points(html, "pareto-flops-feasible")) + len(
        group_points(html, "pareto-flops-infeasible")
    ) == len(finished)
    assert len(group_points(html, "pareto-flops-chosen")) == 1
    assert len(group_points(html, "pareto-flops-recovered")) == 0  # nothing recovered yet
    assert "RuntimeError: the metric raised" in html and "no reason recorded" in html
    assert len(group_points(html, "reward-failed")) == 2
    assert f"#{failed.number + 2} (the process stopped during them)" in html
    assert (run / "summary.md").read_text().count("Best plan so far") == 1


def test_report_command_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compress: error: ") and "neither result.json nor study.db" in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "report.html").exists()


def test_figures_split_feasible_and_infeasible_trials(tmp_path):
    """Figure logic on three hand-written trials: one over the FLOPs budget, one dominated."""
    trials = [
        _trial(0, accuracy=0.90, flops=40e6, latency=0.6, feasible=True),
        _trial(1, accuracy=0.80, flops=45e6, latency=0.8, feasible=True),  # dominated by #0
        _trial(2, accuracy=0.95, flops=60e6, latency=0.9, feasible=False),
    ]
    run = RunData(
        run_dir=tmp_path,
        trials=[TrialRecord.from_json(trial) for trial in trials],
        baseline=Baseline(accuracy=0.99, val_accuracy=0.99, flops=100e6, params=1000),
        target=Target(flops=50e6, flops_ratio=0.5, spec="0.5", latency=None),
    )
    figures = report_figures(run)
    html = "".join(figures.values())
    assert len(group_points(html, "pareto-flops-feasible")) == 2
    assert len(group_points(html, "pareto-flops-infeasible")) == 1
    assert len(group_points(html, "pareto-latency-chosen")) == 1  # #0: best feasible reward
    front = re.search(r'<g id="pareto-flops-front">\s*<path d="([^"]+)"', html).group(1)
    assert len(re.findall(r"[ML]", front)) == 3  # two front points as a staircase: 3 corners


@pytest.mark.parametrize(
    "spec, latency, expected",
    [
        ("0.5", None, ["FLOPs target: ≤ 50.00M (0.50× the baseline) — met with 45.00M."]),
        (
            None,
            "2.5ms",
            [
                "FLOPs: no target (each trial searched its level); 45.00M.",
                "Latency target: ≤ 2.5 ms — NOT met with 2.600 ms.",
            ],
        ),
        (
            "0.5",
            "0.6",
            [
                "FLOPs target: ≤ 50.00M (0.50× the baseline) — met with 45.00M.",
                "Latency target: ≤ 0.6× the baseline artifact — met with 0.55×.",
            ],
        ),
    ],
)
def test_target_lines_say_whether_each_target_was_met(tmp_path, spec, latency, expected):
    target = Target(flops=50e6, flops_ratio=0.5, spec=spec, latency=latency)
    run = RunData(run_dir=tmp_path, trials=[], target=target)
    assert target_lines(run, 45e6, latency_ratio=0.55, latency_ms=2.6) == expected


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.9), (1.5, 0.4), (3.0, 0.9), (0.5, 0.3), (2.0, 0.95)]
    assert pareto_front(points) == [4, 0, 5]
    assert pareto_front([]) == []


def test_markdown_table_and_svg_building_blocks():
    table = markdown_table(("a", "b"), [("x|y", 1), (None, "2.50")])
    assert table.splitlines()[0].startswith("| a ")
    assert "x\\|y" in table and "—" in table and "2.50" in table  # numbers kept as given
    svg = svg_plot(
        [
            Series("points", [1, 2, 3], [0.1, 0.2, 0.3], gid="demo-points"),
            Series("line", [1, 3], [0.1, 0.3], kind="line", gid="demo-line"),
        ],
        xlabel="x",
        ylabel="y",
        name="demo",
        percent_y=True,
    )
    assert svg.startswith("<svg ") and len(group_points(svg, "demo-points")) == 3
    assert "demo-line" in svg and re.search(r">30(\.0)?%<", svg)  # percentages
    bars = svg_bars(["a", "b"], [0.2, 0.4], xlabel="r", name="demo-bars", gid="bar")
    assert re.findall(r'id="(bar-\d+)"', bars) == ["bar-0", "bar-1"]
    with pytest.raises(ValueError, match="3 x values, 2 y"):
        Series("bad", [1, 2, 3], [1, 2])


def test_optuna_dashboard_reads_the_study_unchanged(report):
    dashboard = pytest.importorskip("optuna_dashboard")
    output, result, _ = report
    app = dashboard.wsgi(optuna.storages.RDBStorage(f"sqlite:///{output / 'study.db'}"))

    def get(path: str):
        environ: dict = {}
        wsgiref.util.setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        return status[0], body

    status, body = get("/api/studies")
    assert status.startswith("200")
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "compress"
    status, body = get(f"/api/studies/{summary['study_id']}")
    assert status.startswith("200")
    assert len(json.loads(body)["trials"]) == len(result["trials"])


@pytest.mark.slow
@pytest.mark.browser  # `make test` runs it with the default suite (-m "not slow or browser")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    """Chromium (Debian's package) draws the page; the screenshot is not blank."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from PIL import Image, ImageStat

    output, _, _ = report
    shot = tmp_path / "report.png"
    completed = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            "--hide-scrollbars",
            (output / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), completed.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    assert ImageStat.Stat(image).stddev[0] > 20  # text, tables and plots, not one flat colour
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert 0.005 < dark < 0.5  # ink on a white page


def _trial(number, *, accuracy, flops, latency, feasible) -> dict:
    return {
        "number": number,
        "state": "COMPLETE",
        "reward": accuracy * (0.5 if not feasible else 1.0),
        "accuracy": accuracy,
        "flops": flops,
        "latency_ratio": latency,
        "feasible": feasible,
        "plan": {"conv1": 0.5},
    }


def _markdown_rows(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]


def _scored(number: int, *, ratio: float, fidelity: int, **fields) -> TrialRecord:
    """A finished trial; the promoted one (fidelity 1) feasible, with a latency interval."""
    interval = (0.95 * ratio, 1.06 * ratio) if fidelity else (None, None)
    return TrialRecord(
        number=number,
        state="COMPLETE",
        latency_ratio=ratio,
        latency_ratio_low=interval[0],
        latency_ratio_high=interval[1],
        feasible=bool(fidelity),
        fidelity=fidelity,
        **fields,
    )


def test_trial_table_shows_each_trials_fidelity_and_latency_interval(tmp_path, monkeypatch):
    """Hand-written trials: promoted with an interval, cheap without one, failed."""
    monkeypatch.setattr("compressor.report.render.report_figures", lambda run: {})  # 3 s
    trials = [
        _scored(0, reward=0.5, accuracy=0.9, flops=60e6, ratio=0.8, fidelity=0, seconds=1.24),
        _scored(1, reward=0.9712, accuracy=0.955, flops=40e6, ratio=0.54, fidelity=1, seconds=3.0),
        TrialRecord(number=2, state="FAIL"),
    ]
    run = RunData(run_dir=tmp_path, trials=trials)
    html = render_html(run)
    expected = [
        list(TRIAL_COLUMNS),
        ["#0", "over budget", "90.00%", "60.00M", "0.80×", "—", "adaptive BN", "0.5000", "1.2"],
        [
            "#1",
            "complete",
            "95.50%",
            "40.00M",
            "0.54× (0.51–0.57)",
            "—",
            "distilled",
            "0.9712",
            "3.0",
        ],
        ["#2", "fail", "—", "—", "—", "—", "—", "—", "—"],
    ]
    assert table_rows(html, "trials") == expected
    assert '<tr class="chosen"><td class="num">#1<' in html  # the best feasible so far
    # The summary lists the finished trials best first, in the same columns.
    markdown = render_markdown(run)
    table = markdown.split("Best 2 trials by reward:\n\n")[1].split("\n\n")[0]
    rows = _markdown_rows(table)
    assert rows[0] == list(TRIAL_COLUMNS) and set("".join(rows[1])) <= {"-", ":"}
    assert rows[2:] == [expected[2], expected[1]]
    assert latency_cell(None, 0.5, 0.6) == "—"


def test_worker_lines_say_who_scored_what_against_which_baseline():
    from compressor.records import worker_summary
    from compressor.report.summary import worker_lines

    done = "COMPLETE"
    trials = [
        {"number": 0, "state": done, "worker": "a:1", "baseline_latency_ms": 0.30},
        {"number": 1, "state": done, "worker": "b:2", "baseline_latency_ms": 0.50},
        {"number": 2, "state": done, "worker": "a:1", "baseline_latency_ms": 0.32},
        {"number": 3, "state": "FAIL"},  # a trial that never got a worker
        {"number": 4, "state": "FAIL", "worker": "b:2"},  # killed mid-trial: not finished
    ]
    trials = [TrialRecord.from_json(trial) for trial in trials]
    workers = worker_summary(trials, {"a:1": {"cpu": "EPYC"}, "c:3": {"cpu": "Xeon"}})
    assert workers["a:1"].to_json() == {
        "cpu": "EPYC",
        "trials": 2,
        "trial_numbers": [0, 2],
        "baseline_latency_ms": pytest.approx(0.31),
    }
    assert workers["c:3"].trials == 0  # joined, finished nothing
    assert worker_lines(worker_summary(trials)) == [
        ("worker a:1", "2 trials (#0, #2); baseline 0.310 ms on its machine"),
        ("worker b:2", "1 trial (#1); baseline 0.500 ms on its machine"),
    ]
    one_process = worker_summary(trials[:1] + trials[2:4])
    assert worker_lines(one_process) == []  # nothing to tell apart


def _chosen(*, accuracy: float, latency_ratio: float, removed=()):
    from compressor.records import Chosen

    plan = {
        "ratios": {"layer1.0.conv1": 0.5},
        "channels": {"layer1.0.conv1": 8},
        "channels_before": {"layer1.0.conv1": 16},
        "importance": "magnitude",
        "removed_units": list(removed),
    }
    return Chosen.from_json(
        {
            **dict.fromkeys(("accuracy", "accuracy_before_recovery"), accuracy),
            **dict.fromkeys(("val_accuracy", "val_accuracy_before_recovery"), accuracy),
            "flops": 45e6,
            "params": 900,
            "latency_ms": 0.5,
            "latency_p90_ms": 0.6,
            "latency_ratio": latency_ratio,
            "reward": 0.9,
            "trial": 0,
            "plan": plan,
        }
    )


def _synthetic_run(tmp_path, *, best=None, trials=(), drop=None) -> RunData:
    return RunData(
        run_dir=tmp_path,
        trials=[TrialRecord.from_json(trial) for trial in trials],
        baseline=Baseline(accuracy=0.96, val_accuracy=0.95, flops=100e6, params=1000),
        target=Target(flops=50e6, flops_ratio=0.5, spec="0.5", max_accuracy_drop=drop),
        best=best,
        channels_before={"layer1.0.conv1": 16},
    )


def test_plan_table_lists_the_removed_blocks_of_a_finished_and_an_unfinished_run(tmp_path):
    from compressor.report.summary import plan_rows

    removed = ("layer2.1", "layer3.1")
    best = _chosen(accuracy=0.95, latency_ratio=0.5, removed=removed)
    rows = plan_rows(_synthetic_run(tmp_path, best=best))
    assert rows == [
        ("layer1.0.conv1", "0.50", "16 → 8"),
        ("layer2.1", "removed", "whole block / layer"),
        ("layer3.1", "removed", "whole block / layer"),
    ]
    # before the run finishes the table is the best feasible trial's, its removals included
    trial = {**_trial(3, accuracy=0.9, flops=45e6, latency=0.5, feasible=True)}
    trial.update(channels={"conv1": 8}, removed_units=["layer1.1"])
    unfinished = plan_rows(_synthetic_run(tmp_path, trials=[trial]))
    assert unfinished[-1] == ("layer1.1", "removed", "whole block / layer")


def test_reference_sentences_say_what_the_targets_cost(tmp_path):
    from compressor.report.summary import reference_lines

    def reference(number, name, *, accuracy, latency, flops_ratio, feasible):
        trial = _trial(
            number, accuracy=accuracy, flops=flops_ratio * 100e6, latency=latency, feasible=feasible
        )
        return {**trial, "reference": name, "flops_ratio": flops_ratio}

    trials = [
        _trial(0, accuracy=0.94, flops=45e6, latency=0.4, feasible=True),  # not a reference
        reference(1, "unpruned fp32", accuracy=0.95, latency=1.0, flops_ratio=1.0, feasible=False),
        reference(
            2,
            "unpruned static_ort + fused",
            accuracy=0.949,
            latency=0.52,
            flops_ratio=1.0,
            feasible=False,
        ),
        reference(
            3, "unpruned dynamic", accuracy=0.93, latency=0.8, flops_ratio=0.45, feasible=True
        ),  # within the targets: nothing to excuse
    ]
    run = _synthetic_run(tmp_path, trials=trials)
    best = _chosen(accuracy=0.94, latency_ratio=0.4)
    assert reference_lines(run, best) == [
        "Reference unpruned fp32 (trial #1): 1.00× the fp32 baseline's speed at +0.00 pt "
        "validation accuracy, FLOPs 1.00×: excluded by the targets; the chosen variant runs "
        "at 2.50× its speed.",
        "Reference unpruned static_ort + fused (trial #2): 1.92× the fp32 baseline's speed at "
        "-0.10 pt validation accuracy, FLOPs 1.00×: excluded by the targets; the chosen "
        "variant runs at 1.30× its speed.",
        "Reference unpruned dynamic (trial #3): 1.25× the fp32 baseline's speed at -2.00 pt "
        "validation accuracy, FLOPs 0.45×.",
    ]


@pytest.mark.parametrize(
    "test_accuracy, drop, verdict",
    [
        (0.955, 1.0, "+0.50 pt — met"),
        (0.94, 1.0, "+2.00 pt — NOT met"),
        (0.97, 0.5, "-1.00 pt — met"),
    ],
)
def test_accuracy_drop_line_reports_the_test_drop_after_recovery(
    tmp_path, test_accuracy, drop, verdict
):
    best = _chosen(accuracy=test_accuracy, latency_ratio=0.5)
    run = _synthetic_run(tmp_path, best=best, drop=drop)
    line = target_lines(run, 45e6, latency_ratio=0.5, latency_ms=0.5)[-1]
    assert line == (
        f"Accuracy drop: ≤ {drop:g} pt on validation (the fastest such trial was chosen); "
        f"test drop after recovery {verdict} on the test split."
    )
    # without --max-accuracy-drop there is no such line
    no_drop = _synthetic_run(tmp_path, best=best)
    assert not any("Accuracy drop" in text for text in target_lines(no_drop, 45e6, 0.5, 0.5))
