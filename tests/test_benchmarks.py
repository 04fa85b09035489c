"""The benchmark commands' quick variants: they run, and what they write is complete.

Only structure and sanity are asserted here (timings are never asserted in tests). The
digits runs need no data; the MiniLM one needs ../shared/data and is skipped without it.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from compressor.tasks.common import default_data_root


def _load(paths):
    json_path, md_path = paths
    return json.loads(json_path.read_text()), md_path.read_text()


def test_peak_quick_measures_both_precisions(tmp_path):
    data, md = _load(main(["peak", "--quick", "--results", str(tmp_path)]))
    kernels = {p["kernel"] for p in data["points"]}
    assert kernels == {"MatMul fp32", "MatMulInteger u8s8", "QLinearMatMul u8s8"}
    assert all(p["p50_ms"] > 0 and p["gops"] > 0 for p in data["points"])
    assert data["peak_gops"]["fp32"] == max(
        p["gops"] for p in data["points"] if p["kernel"] == "MatMul fp32"
    )
    assert data["run"]["machine"]["threads"] >= 1 and data["run"]["seconds"] > 0
    assert "GFLOP/s" in md


def test_search_efficiency_quick_on_digits(tmp_path):
    data, md = _load(
        main(
            [
                "search-efficiency",
                "--quick",
                "--task",
                "digits",
                "--trials",
                "3",
                "--seeds",
                "0",
                "--samplers",
                "tpe",
                "nsga2",
                "random",
                "--results",
                str(tmp_path),
            ]
        )
    )
    (result,) = data["tasks"]
    (run,) = result["runs"]
    for sampler in ("tpe", "nsga2", "random"):
        curve = [v for v in run[sampler]["curve"] if v is not None]
        assert len(run[sampler]["curve"]) == 3
        assert curve == sorted(curve)  # best-so-far never decreases
        assert all(0 < v <= 1 for v in curve)
    assert (tmp_path / result["plot"]).read_text().startswith("<svg")
    assert 0 < result["summary"]["random"]["median_fraction"] <= 1.0  # random reaches its own best
    assert result["best_sampler"] in ("tpe", "nsga2")
    assert set(data["goals"]) == {"digits_default_reaches_random_best"}
    assert "fraction of trials to reach random's best" in md


@pytest.mark.slow
def test_proxy_quick_on_digits(tmp_path):
    data, md = _load(
        main(["proxy", "--quick", "--task", "digits", "--plans", "4", "--results", str(tmp_path)])
    )
    (result,) = data["tasks"]
    assert len(result["rows"]) == 4
    for proxy in result["proxies"]:
        assert -1 <= result["correlations"][proxy]["spearman"] <= 1
        assert result["correlations"][proxy]["seconds_per_candidate"] > 0
    assert all(0 <= row["after_recovery"] <= 1 for row in result["rows"])
    assert "Spearman" in md


@pytest.mark.slow
def test_resnet56_benchmark_quick_on_digits(tmp_path):
    data, md = _load(
        main(
            [
                "resnet56",
                "--quick",
                "--task",
                "digits",
                "--trials",
                "3",
                "--large-batch",
                "8",
                "--round-to",
                "auto",
                "--results",
                str(tmp_path),
            ]
        )
    )
    assert data["prune_round_to"] == "auto"
    rows = data["rows"]
    assert len(rows) == 7
    for name, row in rows.items():
        assert 0 <= row["accuracy_after_recovery"] <= 1, name
        assert row["latency_ort"]["1"]["p50_ms"] > 0 and row["latency_ort"]["8"]["p50_ms"] > 0
        if not name.startswith("unpruned"):
            assert row["flops"] <= data["flops_budget"], name
    assert rows["unpruned ORT INT8"]["size_bytes"] < rows["unpruned fp32"]["size_bytes"]
    # Kernel-aligned widths: the full search's pick kept a measured multiple (an int).
    assert isinstance(rows["search, full"]["round_to"], int)
    assert {"accuracy_vs_unpruned_int8_pt", "speedup_vs_unpruned_int8_batch1"} <= set(data["goals"])
    assert all(isinstance(goal["met"], bool) for goal in data["goals"].values())
    assert len(data["peak_points"]) == 14
    assert "DepGraph" in md


@pytest.mark.slow
@pytest.mark.skipif(
    not (default_data_root() / "stsb" / "sts-test.csv").is_file(), reason="no ../shared/data"
)
def test_minilm_benchmark_quick(tmp_path):
    data, _ = _load(main(["minilm", "--quick", "--trials", "2", "--results", str(tmp_path)]))
    rows = data["rows"]
    assert rows["fp32 ORT"]["spearman"] == pytest.approx(
        rows["fp32 PyTorch eager"]["spearman"], abs=0.01
    )
    assert rows["ORT dynamic INT8"]["size_bytes"] < rows["fp32 ORT"]["size_bytes"] / 3
    assert rows["ours: search + distill"]["flops_ratio"] <= 0.5 + 1e-6
    assert data["lengths"][1] == 128 and 4 <= data["lengths"][0] <= 64


def test_round_to_option_takes_auto_or_a_positive_multiple(capsys, tmp_path):
    from benchmarks.__main__ import parse_args

    assert parse_args(["resnet56", "--round-to", "auto"]).round_to == "auto"
    assert parse_args(["resnet56", "--round-to", "16"]).round_to == 16
    assert parse_args(["resnet56"]).round_to is None  # the task's own rounding
    for bad in ("x", "1.5"):  # not a number: argparse's usage error
        with pytest.raises(SystemExit) as exited:
            parse_args(["resnet56", "--round-to", bad])
        assert exited.value.code == 2
        assert "--round-to" in capsys.readouterr().err
    for bad in ("0", "-8"):  # a number out of range: PruneConfig's one line, nothing written
        with pytest.raises(SystemExit) as exited:
            main(["resnet56", "--task", "digits", "--round-to", bad, "--results", str(tmp_path)])
        assert exited.value.code == 2
        assert "prune.round_to must be a positive integer or auto" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_proxy_recovery_steps_name_the_result_and_must_be_positive(capsys, tmp_path):
    argv = ["proxy", "--task", "digits", "--results", str(tmp_path), "--recovery-steps"]
    for bad in ("0", "-5"):  # one line, exit 2, before any model is loaded; nothing written
        with pytest.raises(SystemExit) as exited:
            main([*argv, bad])
        assert exited.value.code == 2
        assert capsys.readouterr().err.strip().endswith(f"positive step count, not {bad}")
    assert not list(tmp_path.iterdir())


def test_b5_speedups_come_from_the_interleaved_ratios_not_the_p50s():
    from benchmarks import smollm

    def row(decode_ms, ratio=None):
        out = {"decode_ms": decode_ms, "streamed_mb": 100.0}
        if ratio is not None:
            out["decode_ratio_to_fp32_ort"] = ratio
        return out

    # p50s taken minutes apart disagree with the ratios each row was timed at.
    data = {
        "bandwidth_gb_s": 10.0,
        "rows": {
            smollm.TORCH: row(80.0),
            smollm.ORT: row(40.0, 1.0),
            smollm.INT8: row(20.0, 0.8),  # fastest p50, slower ratio
            smollm.RTN: row(30.0, 0.5),
            smollm.OURS: row(25.0, 0.25),
        },
    }
    smollm.add_derived(data)
    rows = data["rows"]
    assert data["best_single_tool"] == smollm.RTN
    assert rows[smollm.OURS]["decode_speedup_vs_fp32_ort"] == pytest.approx(4.0)
    assert rows[smollm.OURS]["decode_speedup_vs_best_single_tool"] == pytest.approx(2.0)
    assert rows[smollm.TORCH]["decode_speedup_vs_fp32_ort"] == pytest.approx(0.5)  # p50s
    assert rows[smollm.RTN]["bandwidth_fraction"] == pytest.approx(100e-3 / 30e-3 / 10.0)


def test_b5_memory_bandwidth_is_plausible():
    from benchmarks.smollm import memory_bandwidth

    assert 0.5 < memory_bandwidth(threads=1, megabytes=32, runs=2) < 1000  # GB/s
