"""Progress output: plain lines off a terminal, a live display on one, nothing when quiet."""

import io

import optuna
import pytest
from rich.console import Console

from compressor.logs import console_output
from compressor.progress import Steps, progress_mode
from compressor.search.trial_progress import TrialProgress


@pytest.fixture(autouse=True)
def _console():
    """Lines are records of the ``compressor`` logger; show them as the CLI does."""
    with console_output(True):
        yield


def test_lines_mode_prints_every_n_steps_and_the_last(capsys):
    steps = Steps("recovery", 7, mode="lines", every=3)
    for step in range(7):
        steps.advance(loss=f"{1 / (step + 1):.2f}")
    steps.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "recovery 3/7",
        "recovery 6/7",
        "recovery 7/7",
    ]
    assert "loss 0.14" in lines[-1]


def test_off_mode_prints_nothing(capsys):
    with Steps("recovery", 3, mode="off", every=1) as steps:
        steps.advance()
        steps.log("a line")
    assert capsys.readouterr().out == ""


def test_progress_mode_follows_the_terminal(monkeypatch):
    assert progress_mode(False) == "off"
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert progress_mode(True) == "lines"


def test_live_mode_draws_a_bar_and_keeps_log_lines(monkeypatch):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr("rich.console.Console", lambda **kwargs: terminal)
    with Steps("search", 4, mode="live") as steps:
        steps.advance(best="R 0.9")
        steps.log("[1/4] a trial")
    text = screen.getvalue()
    assert "[1/4] a trial" in text
    assert "search" in text and "1/4" in text and "best R 0.9" in text


def _objective(trial: optuna.Trial) -> float:
    accuracy = trial.suggest_float("x", 0.5, 1.0)
    feasible = trial.number != 1
    for key, value in {
        "accuracy": accuracy,
        "flops_ratio": 0.5 if feasible else 0.7,
        "latency_ratio": 0.6,
        "feasible": feasible,
    }.items():
        trial.set_user_attr(key, value)
    if trial.number == 2:
        trial.set_user_attr("error", "ValueError: boom")
        raise ValueError("boom")
    return accuracy


def test_trial_lines_show_k_of_n_and_the_best_feasible_so_far(capsys):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    with TrialProgress(study, 3, "lines") as progress:
        study.optimize(_objective, n_trials=3, callbacks=[progress], catch=(ValueError,))
    lines = capsys.readouterr().out.splitlines()
    first = study.trials[0].value
    assert lines[0].startswith("[1/3] acc ") and f"best R {first:.4f} (#0)" in lines[0]
    assert "FLOPs 0.70x!" in lines[1]  # over the budget, marked
    assert f"best R {first:.4f} (#0)" in lines[1]  # an infeasible trial never becomes best
    assert lines[2].startswith("[3/3] failed: ValueError: boom")
