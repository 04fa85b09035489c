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
                "--results",
                str(tmp_path),
            ]
        )
    )
    (result,) = data["tasks"]
    (run,) = result["runs"]
    for sampler in ("tpe", "random"):
        curve = [v for v in run[sampler]["curve"] if v is not None]
        assert len(run[sampler]["curve"]) == 3
        assert curve == sorted(curve)  # best-so-far never decreases
        assert all(0 < v <= 1 for v in curve)
    assert (tmp_path / result["plot"]).read_text().startswith("<svg")
    assert "TPE trials to reach" in md


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
                "--results",
                str(tmp_path),
            ]
        )
    )
    rows = data["rows"]
    assert len(rows) == 7
    for name, row in rows.items():
        assert 0 <= row["accuracy_after_recovery"] <= 1, name
        assert row["latency_ort"]["1"]["p50_ms"] > 0 and row["latency_ort"]["8"]["p50_ms"] > 0
        if not name.startswith("unpruned"):
            assert row["flops"] <= data["flops_budget"], name
    assert rows["unpruned ORT INT8"]["size_bytes"] < rows["unpruned fp32"]["size_bytes"]
    assert set(data["goals"]) >= {"accuracy_goal_met", "speed_goal_met"}
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
