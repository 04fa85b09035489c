import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compressor.cli import main
from compressor.result import read_result
from compressor.saved_model import load_compressed

ROOT = Path(__file__).resolve().parents[1]


def test_cli_run_meets_the_budget_and_keeps_accuracy(cli_run):
    code, output = cli_run
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    baseline, best = result["baseline"], result["best"]
    assert best["flops"] <= 0.5 * baseline["flops"]
    assert best["accuracy"] >= baseline["accuracy"] - 0.02
    assert best["accuracy_before_recovery"] <= best["accuracy"] + 0.01
    assert best["latency_ms"] > 0 and baseline["latency_ms"] > 0
    # 4 searched trials, then the reference pipeline on top: the unpruned model, fused INT8
    # (the only allowed mode; with `none` allowed the fp32 exports would be references too)
    assert len(result["trials"]) == 5
    assert [t.get("reference") for t in result["trials"][4:]] == ["unpruned static_ort + fused"]
    assert all(t["flops_ratio"] == 1.0 and not t["feasible"] for t in result["trials"][4:])
    assert {"number", "state", "reward", "accuracy", "flops", "latency_ms", "params"} <= set(
        result["trials"][0]
    )
    assert result["environment"]["libraries"]["torch"].startswith("2.")
    assert sorted(p.name for p in output.iterdir()) == [
        "config.yaml",
        "model.onnx",
        "model.safetensors",
        "report.html",
        "result.json",
        "study.db",
        "summary.md",
    ]


def test_result_json_reads_back_into_the_records_it_was_written_from(cli_run):
    _, output = cli_run
    data = json.loads((output / "result.json").read_text())
    assert data["schema_version"] == 2
    result = read_result(data, output)
    assert result.to_json() == data  # every key, nothing lost or renamed
    assert result.target.spec == "0.5" and result.target.has_flops
    assert result.best.deployed and result.best.plan.ratios
    finished = [trial for trial in result.trials if trial.finished]
    assert finished and all(trial.accuracy is not None for trial in finished)
    assert result.best.trial in {trial.number for trial in finished}


def test_saved_model_reloads_and_reproduces_the_recorded_accuracy(cli_run, digits_task):
    _, output = cli_run
    result = json.loads((output / "result.json").read_text())
    model = load_compressed(output)
    # the PyTorch weights reproduce the fp32 pruned accuracy (model.onnx is the INT8 artifact)
    assert digits_task.evaluate_test(model) == pytest.approx(result["best"]["accuracy_fp32"])
    channels = result["best"]["plan"]["channels"]
    assert model.layer3[0].conv1.out_channels == channels["layer3.0.conv1"]
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_first_trials_are_the_seeded_plans(cli_run):
    _, output = cli_run
    trials = json.loads((output / "result.json").read_text())["trials"]
    uniform = trials[0]["plan"]
    assert len(set(uniform.values())) == 1  # the same ratio everywhere
    assert trials[1]["accuracy"] >= trials[0]["accuracy"]  # sensitivity beats uniform
    # then the depth seeds: all of the reduction by removing blocks, then half of it
    assert trials[0]["removed_units"] == trials[1]["removed_units"] == []
    assert len(trials[2]["removed_units"]) >= len(trials[3]["removed_units"]) >= 1


def test_depth_units_glob_restricts_the_blocks_a_trial_removes(digits_task):
    """``--depth-units`` as ``compress`` parses it (build_parser, config_from_args) into the
    search's settings: only matching blocks are candidates, and a trial taking its whole
    FLOPs cut from depth removes only those. Not on cli_run: restricted there, that run
    chose another plan (test 96.9 %, under the floor its own test holds it to)."""
    from compressor.cli import build_parser, config_from_args
    from compressor.measure.flops import count_flops
    from compressor.search.candidate import removed_units
    from compressor.search.context import search_settings
    from compressor.search.space import DepthChoice

    base = count_flops(digits_task.model, digits_task.example_inputs)

    def all_from_depth(extra: list[str]) -> tuple[list[str], tuple[str, ...]]:
        args = build_parser().parse_args(["--target-flops", "0.5", *extra])
        settings = search_settings(digits_task, config_from_args(args), base)
        names = [unit.name for unit in settings.depth_units]
        return names, removed_units(
            settings, DepthChoice(1.0, dict.fromkeys(names, 1.0)), base // 2
        )

    names, removed = all_from_depth([])
    assert names == ["layer1.0", "layer1.1", "layer2.1", "layer3.1"]
    assert any(unit.startswith("layer1.") for unit in removed)
    names, removed = all_from_depth(["--depth-units", "layer[23].*"])
    assert names == ["layer2.1", "layer3.1"]
    assert set(removed) == {"layer2.1", "layer3.1"}  # all it may, and nothing of layer1


# A whole run (or several): in `make test-slow`, to keep the default suite under ~8 min.
@pytest.mark.slow
def test_cli_as_a_subprocess_with_a_config_file(tmp_path):
    output = tmp_path / "run"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "compressor.cli",
            "--config",
            str(ROOT / "configs" / "digits.yaml"),
            "--trials",
            "3",
            "--epochs",
            "0",
            "--no-references",  # 3 trials exactly: the progress lines are checked
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "[3/3]" in completed.stdout  # progress lines: plain, stdout is not a terminal
    assert "\r" not in completed.stdout and "\x1b[" not in completed.stdout  # no live display
    assert f"written to {output}" in completed.stdout
    assert f"report: {output / 'report.html'}" in completed.stdout
    assert "test accuracy" in completed.stdout and "latency p50" in completed.stdout
    assert (output / "result.json").is_file()


def test_console_script_help_is_installed():
    script = shutil.which("compress") or str(Path(sys.executable).parent / "compress")
    if not Path(script).exists():
        pytest.skip("package not installed as a console script in this environment")
    completed = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and "--target-flops" in completed.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-flops", "0"], "must be > 0"),
        (["--target-flops", "-1"], "not a number"),
        (["--target-flops", "1.5"], "ratio above 1"),
        (["--target-flops", "abc"], "not a number"),
        (["--target-flops", "1K"], "cannot be reached"),
        (["--config", "missing.yaml"], "does not exist"),
        (["--reward", "fancy"], "invalid choice"),
        (["--device", "tpu"], "invalid choice"),
        (["--trials", "many"], "invalid int value"),
        (["--trials", "0"], "search.trials"),
        (["--task", "imagenet"], "unknown task"),
        (["--ignore-layers", "head"], "not a module"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args, message, tmp_path, capsys, digits_task
):
    output = tmp_path / "out"
    code = main([*args, "--output", str(output), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("compress: error: ")
    assert not output.exists()


def test_non_empty_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["--output", str(tmp_path), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    assert main(["--device", "cuda", "--output", str(tmp_path / "o"), "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
