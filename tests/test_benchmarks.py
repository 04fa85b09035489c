"""The benchmark commands' quick variants: they run, and what they write is complete.

Only structure and sanity are asserted here (timings are never asserted in tests). The
digits runs need no data; the MiniLM one needs ../shared/data and is skipped without it.
"""

from __future__ import annotations

import importlib.util
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


def test_equal_wall_clock_keeps_each_search_to_the_trials_finished_in_time():
    import optuna

    from benchmarks.search_efficiency import best_within, first_trials

    study = optuna.create_study(direction="maximize")
    for value, feasible in ((0.5, True), (0.9, False), (0.7, True), (0.8, True)):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"feasible": feasible}))
    # One more plan still queued when the budget ran out: not a trial.
    study.enqueue_trial({})
    finished = [10.0, 20.0, 30.0, 40.0]
    assert best_within(study, finished, 35.0).value == 0.7  # 0.9 infeasible, 0.8 too late
    assert best_within(study, finished, 45.0).value == 0.8
    assert best_within(study, finished, 5.0) is None
    curve = {"curve": [0.5, 0.5, 0.7, 0.8], "seconds_curve": finished, "seconds": 40.0}
    cut = first_trials(curve, 2)
    assert cut["curve"] == [0.5, 0.5] and cut["seconds"] == 20.0


def test_nsga2_front_row_takes_its_best_r_from_the_pareto_front():
    # B3's nsga2-front row on a fake scorer (no model): NSGA-II on (accuracy, FLOPs ratio),
    # each trial keeping its soft R and its FLOPs constraint as the search's objective does.
    from types import SimpleNamespace

    import optuna

    from benchmarks.searching import ACCURACY_FLOPS, pareto_front, reward_curve, trial_reward
    from compressor.reward import Term, reward
    from compressor.search.samplers import make_sampler

    target = 0.6  # FLOPs ratio budget

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        prune = [trial.suggest_float(f"prune.g{i}", 0.0, 1.0, step=0.05) for i in range(3)]
        metrics = SimpleNamespace(
            flops_ratio=1.0 - 0.25 * sum(prune),
            accuracy=0.95 - sum(w * p**2 for w, p in zip((0.05, 0.2, 0.4), prune, strict=True)),
        )
        r = reward(metrics.accuracy, [Term("flops", metrics.flops_ratio, target)])
        trial.set_user_attr("reward", r)
        trial.set_user_attr("feasible", metrics.flops_ratio <= target)
        trial.set_constraint("budgets", metrics.flops_ratio / target - 1.0)
        return ACCURACY_FLOPS.values(metrics)

    trials = 24
    study = optuna.create_study(
        directions=list(ACCURACY_FLOPS.directions), sampler=make_sampler("nsga2", 0, trials)
    )
    study.optimize(objective, n_trials=trials)
    front = study.best_trials
    feasible = [t for t in study.trials if t.user_attrs["feasible"]]
    assert len(front) > 1 and feasible  # a real trade-off, and plans within the budget
    best = max(feasible, key=trial_reward)
    assert best.number == max(front, key=trial_reward).number  # R chooses from the front
    assert pareto_front(study)["front_size"] == len(front)
    curve = reward_curve(study)
    values = [v for v in curve if v is not None]
    assert len(curve) == trials and values == sorted(values)  # best so far never falls
    assert curve[-1] == trial_reward(best)


def test_recovery_methods_quick_compares_both_on_a_digits_depth_plan(tmp_path):
    data, md = _load(main(["recovery", "--quick", "--results", str(tmp_path)]))
    (row,) = data["rows"].values()
    assert row["teacher"] > 95 and row["fine_tune"] > 90 and row["distill"] > 90
    assert row["auto_regret_pt"] == pytest.approx(
        max(row["fine_tune"], row["distill"]) - row["distill"]
    )
    goal = data["goals"]["auto_regret_pt"]
    assert goal["met"] == (goal["value"] <= goal["target"])
    assert "auto's regret" in md


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
                "nsga2-front",
                "random",
                "compress",
                "--results",
                str(tmp_path),
            ]
        )
    )
    (result,) = data["tasks"]
    (run,) = result["runs"]
    for sampler in ("tpe", "nsga2", "nsga2-front", "random", "compress"):
        curve = [v for v in run[sampler]["curve"] if v is not None]
        assert len(run[sampler]["curve"]) == 3
        assert curve == sorted(curve)  # best-so-far never decreases
        assert all(0 < v <= 1 for v in curve)
    assert (tmp_path / result["plot"]).read_text().startswith("<svg")
    assert 0 < result["summary"]["random"]["median_fraction"] <= 1.0  # random reaches its own best
    # The default search as `compress` runs it pays for its sensitivity pass on its clock.
    seeded = run["compress"]
    assert seeded["sensitivity_seconds"] > 0
    assert seeded["seconds_curve"][0] > seeded["sensitivity_seconds"]
    goal = data["goals"]["digits_default_reaches_random_best_time"]
    assert goal["search"] == "compress" and goal["met"] == (goal["value"] <= 0.5)
    assert result["best_sampler"] in ("tpe", "nsga2", "nsga2-front")
    # The multi-objective row: R's best lies on its (accuracy, FLOPs) front (checked there).
    assert 1 <= run["nsga2-front"]["front_size"] <= 3
    assert set(data["goals"]) == {"digits_default_reaches_random_best_time"}
    assert "fraction of trials to reach random's best" in md
    assert "`nsga2-front`: NSGA-II on (accuracy, FLOPs ratio" in md


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
    goal = data["goals"]["digits_proxy_spearman"]  # every task gets the proxy goal
    assert goal["plans"] == 4 and goal["met"] is False  # under 16 plans cannot meet it
    assert goal["value"] == max(c["spearman"] for c in result["correlations"].values())


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
    optimum = rows["Optimum (ORTOptimizer + ORTQuantizer)"]
    if importlib.util.find_spec("optimum.onnxruntime") is not None:  # the llm extra
        assert optimum["quantized_nodes"]["QAttention"] == 6, optimum
        assert optimum["spearman"] == pytest.approx(rows["fp32 ORT"]["spearman"], abs=0.02)
    else:
        assert "optimum-onnx is not installed" in optimum["skipped"]


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
        out = {"decode_ms": decode_ms, "streamed_mb": 100.0, "perplexity": 10.0}
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


def test_b5_judges_the_speed_up_within_the_perplexity_bound_only_when_ours_keeps_it():
    from benchmarks.smollm import GENAI, INT8_BLOCK, ORT, OURS, add_derived, goals

    def row(perplexity, ratio):
        return {
            "perplexity": perplexity,
            "decode_ratio_to_fp32_ort": ratio,
            "decode_ms": 30 * ratio,
            "streamed_mb": 100.0,
        }

    def judged(ours_perplexity):
        data = {
            "bandwidth_gb_s": 40.0,
            "rows": {
                ORT: row(10.0, 1.0),
                GENAI: row(13.0, 0.25),  # fastest, outside 1.10x
                INT8_BLOCK: row(10.05, 0.5),  # fastest within the bound
                OURS: row(ours_perplexity, 0.3),
            },
        }
        add_derived(data)
        assert data["best_single_tool"] == GENAI
        assert data["best_single_tool_within_perplexity_bound"] == INT8_BLOCK
        return goals(data)

    within = "decode_speedup_vs_best_single_tool_within_perplexity_bound"
    kept = judged(10.9)
    assert kept[within]["value"] == pytest.approx(0.5 / 0.3) and kept[within]["met"]
    assert kept["decode_speedup_vs_best_single_tool"]["value"] == pytest.approx(0.25 / 0.3)
    outside = judged(11.2)
    assert outside[within]["value"] == pytest.approx(0.5 / 0.3) and not outside[within]["met"]
    assert not outside["perplexity_ratio"]["met"]


def test_b5_memory_bandwidth_is_plausible():
    from benchmarks.smollm import memory_bandwidth

    assert 0.5 < memory_bandwidth(threads=1, megabytes=32, runs=2) < 1000  # GB/s


def test_max_accuracy_drop_option_refuses_bad_values(capsys, tmp_path):
    """B1b / B2b: a drop outside [0, 100) points is one line and exit 2, before any data is
    read (minilm needs none to refuse it), and nothing is written."""
    with pytest.raises(SystemExit) as exited:  # not a number: argparse's usage error
        main(["minilm", "--max-accuracy-drop", "x", "--results", str(tmp_path)])
    assert exited.value.code == 2
    assert "--max-accuracy-drop" in capsys.readouterr().err
    runs = [["minilm"], ["resnet56", "--task", "digits"]]
    for run, bad in ((run, bad) for run in runs for bad in ("-1", "100", "nan")):
        with pytest.raises(SystemExit) as exited:
            main([*run, "--max-accuracy-drop", bad, "--results", str(tmp_path)])
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "max accuracy drop must be a number of points" in err[0]
    assert not list(tmp_path.iterdir())


def test_minilm_drop_mode_has_no_flops_target_and_the_same_recovery():
    import argparse

    from benchmarks.minilm import configure

    b2 = configure(argparse.Namespace(quick=False, max_accuracy_drop=None))
    b2b = configure(argparse.Namespace(quick=False, max_accuracy_drop=1.0))
    assert b2.target_flops is not None and b2.max_accuracy_drop is None
    assert b2b.target_flops is None and b2b.max_accuracy_drop == 1.0
    assert b2b.recovery == b2.recovery and b2b.search == b2.search and b2b.prune == b2.prune
    assert b2b.recovery.steps == 150  # B2's stated recovery budget
    # --threads: the search times its candidates at the rows' thread count
    assert b2.measure.threads is None
    one = configure(argparse.Namespace(quick=True, max_accuracy_drop=0.5, threads=1))
    assert one.measure.threads == 1 and one.max_accuracy_drop == 0.5


def _b2_data(
    ours_spearman: float,
    ours_ratio: tuple[float, float],
    olive: dict | None = None,
    optimum: dict | None = None,
):
    """A B2 result as ``minilm.run`` shapes it, with chosen numbers (ms at 12 / 128 tokens);
    ``olive`` / ``optimum``: those peers' row facts (timed when they hold a Spearman)."""
    from benchmarks import minilm

    ratios = {  # interleaved ratio to fp32 ORT per length; p50 = ratio x fp32 ORT's p50
        minilm.ORT: (1.0, 1.0),
        minilm.FUSED: (0.9, 0.95),
        minilm.INT8: (0.7, 0.5),
        minilm.FUSED_INT8: (0.6, 0.45),
        minilm.NNCF: (6.0, 1.5),
        minilm.OURS: ours_ratio,
    }
    if olive is not None and "spearman" in olive:  # Olive ran: timed like every row
        ratios[minilm.OLIVE] = (0.55, 0.44)
    if optimum is not None and "spearman" in optimum:  # the fastest Optimum-style row
        ratios[minilm.OPTIMUM] = (0.5, 0.4)
    ort_ms = {12: 2.0, 128: 14.0}
    latency = {}
    for index, length in enumerate((12, 128)):
        table = {
            name: {
                "p50_ms": ort_ms[length] * r[index] * 1.1,  # p50s taken apart disagree a bit
                "p90_ms": ort_ms[length] * r[index] * 1.5,
                "ratio_to_baseline": r[index],
            }
            for name, r in ratios.items()
        }
        table[minilm.EAGER] = {"p50_ms": 6.0 if length == 12 else 18.0, "p90_ms": 20.0}
        table[minilm.OURS_EAGER] = {"p50_ms": 4.0, "p90_ms": 10.0}
        latency[length] = table
    rows = {minilm.EAGER: {"spearman": 0.8203, "size_bytes": 90e6}}
    rows.update({name: {"spearman": 0.82, "size_bytes": 23e6} for name in ratios})
    rows[minilm.OURS] = {
        "spearman": ours_spearman,
        "size_bytes": 17e6,
        "deploy": {"quantization": "dynamic", "fusion": True, "keep_ends_fp32": False},
        "flops_ratio": 0.83,
        "test_spearman_before_recovery_fp32": 0.815,
        "test_spearman_after_recovery_fp32": ours_spearman,
        "removed_units": ["transformer.encoder.layer.4"],
    }
    for name, facts in ((minilm.OLIVE, olive), (minilm.OPTIMUM, optimum)):
        if facts is not None:
            rows[name] = {**rows.get(name, {}), **facts}
    data = {
        "description": "synthetic",
        "lengths": (12, 128),
        "trials": 10,
        "max_accuracy_drop": 1.0,
        "recovery": {"steps": 150, "epochs": 1, "lr": 1e-4},
        "rows": rows,
        "latency": latency,
        "flops": {n: {"unpruned": 1e9, "ours": 8e8} for n in (12, 128)},
    }
    data["goals"] = minilm.goals(data, 1.0)
    data["peak_points"] = minilm.peak_points(data)
    return data


def test_b2b_goals_use_the_drop_budget_and_the_interleaved_ratios():
    data = _b2_data(ours_spearman=0.8110, ours_ratio=(0.36, 0.30))
    goals = data["goals"]
    assert goals["spearman"]["value"] == pytest.approx(81.10)
    assert goals["spearman"]["target"] == ">= 81.03" and goals["spearman"]["met"]
    # the fastest Optimum-style pipeline by ratio is fusion + INT8 at both lengths: 0.6 / 0.36
    best12 = goals["speedup_vs_best_optimum_style_12tok (ORT fusion + dynamic INT8)"]
    best128 = goals["speedup_vs_best_optimum_style_128tok (ORT fusion + dynamic INT8)"]
    assert best12["value"] == pytest.approx(0.6 / 0.36) and best12["met"]
    assert best128["value"] == pytest.approx(0.45 / 0.30) and best128["met"]
    # eager was timed in its own worker: p50 over p50
    eager12 = goals["speedup_vs_eager_12tok"]
    assert eager12["value"] == pytest.approx(6.0 / (2.0 * 0.36 * 1.1)) and eager12["met"]
    worse = _b2_data(ours_spearman=0.8100, ours_ratio=(0.5, 0.30))["goals"]
    assert not worse["spearman"]["met"]  # 81.00 < 82.03 - 1
    assert not worse["speedup_vs_best_optimum_style_12tok (ORT fusion + dynamic INT8)"]["met"]


def test_olive_row_is_skipped_with_the_reason_when_olive_is_absent(monkeypatch, tmp_path):
    import sys

    from benchmarks import minilm
    from benchmarks.olive_row import OliveSearch, run_olive

    monkeypatch.setitem(sys.modules, "olive", None)  # `import olive` raises ImportError

    search = OliveSearch(threads=1)
    outcome = run_olive(tmp_path / "fp32.onnx", tmp_path, search)
    assert outcome.path is None
    assert "olive-ai is not installed" in outcome.facts["skipped"]
    assert "16 dynamic-INT8 settings" in outcome.facts["budget"]
    data = _b2_data(0.8110, (0.36, 0.30), olive=outcome.facts)
    assert minilm.OLIVE not in {p["name"] for p in data["peak_points"]}
    md = minilm.markdown(data)
    (line,) = [row for row in md.splitlines() if row.startswith(f"| {minilm.OLIVE}")]
    assert "not run: olive-ai is not installed" in line
    assert "Olive (olive-ai; search: Olive's whole default space" in md
    assert md.startswith("# B2b: all-MiniLM-L6-v2 on STS-B test, fastest within 1 pt")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("olive") is None, reason="olive-ai not installed ('.[olive]')"
)
def test_olive_scores_its_whole_space_on_a_tiny_bert_and_returns_the_fastest(tmp_path):
    """Olive's own search (fusion, then dynamic INT8 settings; latency only) on a tiny BERT:
    every setting scored, its fastest candidate returned, close to the fp32 export."""
    import onnx
    import torch

    from benchmarks.olive_row import OliveSearch, run_olive
    from compressor.actions.export import export_onnx
    from compressor.measure.onnx_runtime import OnnxModule
    from tests._tiny_transformers import tiny_bert

    class Hidden(torch.nn.Module):  # one output: the hidden states
        def __init__(self):
            super().__init__()
            self.bert = tiny_bert()

        def forward(self, ids, mask):
            return self.bert(ids, mask).last_hidden_state

    ids = torch.randint(1, 20, (4, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    fp32 = export_onnx(Hidden().eval(), (ids[:1], mask[:1]), tmp_path / "fp32.onnx")
    reference = OnnxModule(fp32)(ids, mask)

    def fidelity(path):
        out = OnnxModule(path)(ids, mask)
        return (
            100
            * torch.nn.functional.cosine_similarity(out.flatten(1), reference.flatten(1))
            .min()
            .item()
        )

    search = OliveSearch(
        threads=1,
        tokens=16,  # the tiny BERT has 64 positions
        fusion={"model_type": "bert", "num_heads": 4, "hidden_size": 32},
    )
    outcome = run_olive(fp32, tmp_path, search)
    assert outcome.path is not None, outcome.facts
    # Olive's pick: its fastest candidate (on a tiny BERT the fused fp32 model can win)
    candidates = outcome.facts["candidates"]
    assert len(candidates) == 17  # the fused model + 16 INT8 settings, pass by pass
    chosen = outcome.facts["chosen"]
    fastest = min(c["metrics"]["latency-p50"]["value"] for c in candidates)
    assert chosen["metrics"]["latency-p50"]["value"] == fastest
    assert chosen["passes"][0]["type"].lower() == "orttransformersoptimization"
    quantized = [c for c in candidates if len(c["passes"]) == 2]
    assert {c["passes"][1]["precision"] for c in quantized} == {"int8", "uint8"}
    ops = {node.op_type for node in onnx.load(str(outcome.path)).graph.node}
    assert ops & {"Attention", "QAttention"}, ops  # Olive's fusion ran
    assert fidelity(outcome.path) >= 90.0  # cosine x100 of the hidden states vs fp32


def _optimum_facts(**extra) -> dict:
    """The facts ``run_optimum`` records for MiniLM (node counts as measured 2026-12-02)."""
    fused = {"Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 0, "LayerNormalization": 13}
    return {
        "pipeline": "main_export -> ORTOptimizer O2 -> ORTQuantizer avx512_vnni(is_static=False)",
        "cpu_flags": ["avx2", "avx512f", "avx512_vnni"],
        "opset": 18,
        "optimized_nodes": fused,
        "quantized_nodes": {**fused, "Attention": 0, "QAttention": 6, "MatMulInteger": 18},
        **extra,
    }


def test_optimum_row_counts_as_an_optimum_style_pipeline_and_explains_itself():
    from benchmarks import minilm

    data = _b2_data(0.8110, (0.36, 0.30), optimum=_optimum_facts(spearman=0.817))
    # the real Optimum pipeline is the fastest Optimum-style row here: 0.5 / 0.36, 0.4 / 0.30
    best12 = data["goals"][f"speedup_vs_best_optimum_style_12tok ({minilm.OPTIMUM})"]
    assert best12["value"] == pytest.approx(0.5 / 0.36)
    assert f"speedup_vs_best_optimum_style_128tok ({minilm.OPTIMUM})" in data["goals"]
    assert {"name": minilm.OPTIMUM, "precision": "int8"}.items() <= next(
        p for p in data["peak_points"] if p["name"] == minilm.OPTIMUM
    ).items()
    md = minilm.markdown(data)
    assert "avx512_vnni(is_static=False)" in md and "6 QAttention, 18 MatMulInteger" in md
    assert "huggingface/optimum#1959" in md and "skipped SkipLayerNormalization fusion" in md


def test_optimum_row_is_skipped_with_the_reason_without_optimum_onnx(monkeypatch, tmp_path):
    import sys

    from benchmarks import minilm
    from benchmarks.optimum_row import quantization_choice, run_optimum

    assert quantization_choice(["avx2", "avx512f", "avx512_vnni"]) == "avx512_vnni"
    assert quantization_choice(["avx2"]) == "avx2"
    monkeypatch.setitem(sys.modules, "optimum.onnxruntime", None)  # the import raises
    outcome = run_optimum(tmp_path / "checkpoint", tmp_path)
    assert outcome.path is None
    assert "optimum-onnx is not installed" in outcome.facts["skipped"]
    data = _b2_data(0.8110, (0.36, 0.30), optimum=outcome.facts)
    # without the row, the best Optimum-style pipeline is among the ORT rows again
    assert "speedup_vs_best_optimum_style_12tok (ORT fusion + dynamic INT8)" in data["goals"]
    assert minilm.OPTIMUM not in {p["name"] for p in data["peak_points"]}
    md = minilm.markdown(data)
    (line,) = [row for row in md.splitlines() if row.startswith(f"| {minilm.OPTIMUM}")]
    assert "not run: optimum-onnx is not installed" in line


@pytest.mark.skipif(
    importlib.util.find_spec("optimum") is None
    or importlib.util.find_spec("optimum.onnxruntime") is None,
    reason="optimum-onnx not installed ('.[llm]')",
)
def test_optimum_pipeline_quantizes_a_tiny_sentence_encoder_close_to_fp32(tmp_path):
    """Optimum's export, ORTOptimizer O2 and ORTQuantizer on a tiny sentence-transformers
    folder: fused and INT8 nodes in the graph, one pooled output close to fp32's."""
    import torch
    from transformers import AutoModel

    from benchmarks.optimum_row import OUTPUT, run_optimum
    from compressor.measure.onnx_runtime import OnnxModule
    from compressor.tasks.sentence_similarity import SentenceEncoder
    from tests._tiny_transformers import save_tiny_sentence_folder

    folder = save_tiny_sentence_folder(tmp_path / "encoder")
    outcome = run_optimum(folder, tmp_path)
    assert outcome.path is not None, outcome.facts
    assert outcome.facts["optimized_nodes"]["Attention"] == 2  # one per layer, fused
    quantized = outcome.facts["quantized_nodes"]
    assert quantized["QAttention"] == 2 and quantized["Attention"] == 0
    assert quantized["MatMulInteger"] > 0 and quantized["DynamicQuantizeLinear"] > 0
    artifact = OnnxModule(outcome.path)
    assert [o.name for o in artifact.session.get_outputs()] == [OUTPUT]
    ids = torch.randint(5, 26, (8, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        fp32 = SentenceEncoder(AutoModel.from_pretrained(folder).eval())(ids, mask)
    fp32 = torch.nn.functional.normalize(fp32)
    # A random tiny encoder's embeddings share one direction (cosine ~0.9 between inputs):
    # compare them centred on their mean, where only what tells inputs apart remains.
    centre = fp32.mean(0)
    cosine = torch.nn.functional.cosine_similarity(artifact(ids, mask) - centre, fp32 - centre)
    assert cosine.min() >= 0.98  # measured 0.9994


def test_standing_lists_the_goals_of_each_benchmarks_latest_full_run(tmp_path):
    from benchmarks import standing

    def write(name, goals):
        (tmp_path / name).write_text(json.dumps({"goals": goals}))

    old = {"speed": {"value": 1.2, "target": 1.5, "met": False}}
    write("minilm-2026-11-30.json", old)
    write("minilm-2026-12-01.json", {"speed": {"value": 1.6, "target": 1.5, "met": True}})
    write("minilm-2026-12-01b.json", {"speed": {"value": 1.4, "target": 1.5, "met": False}})
    write("minilm-quick-2026-12-02.json", {"speed": {"value": 9.0, "target": 1.5, "met": True}})
    write("peak-2026-11-23.json", {"old_form": 3.0})  # before {value, target, met}: no goal
    goals = standing.standing(tmp_path)
    assert [(g.benchmark, g.value, g.met, g.file) for g in goals] == [
        ("minilm", 1.4, False, "minilm-2026-12-01b.json")  # the day's rerun is the latest
    ]
    table = standing.markdown(goals)
    assert "0 of 1 goals met" in table and "| minilm | speed | 1.4 | 1.5 | **no** |" in table
    readme = f"intro\n{standing.START}\nold table\n{standing.END}\nrest\n"
    assert standing.replace_block(readme, table) == (
        f"intro\n{standing.START}\n{table}\n{standing.END}\nrest\n"
    )
    with pytest.raises(ValueError, match="no <!-- standing:start -->"):
        standing.replace_block("no markers", table)


def test_stability_max_deviation_is_from_the_median():
    from benchmarks.stability import max_deviation

    assert max_deviation([0.9, 1.0, 1.2]) == pytest.approx(0.2)
    assert max_deviation([0.5, 0.5, 0.5]) == 0.0


def test_stability_retimes_every_run_against_one_baseline(tmp_path):
    """Two runs that shipped the fp32 model itself: each ratio to the baseline is near 1."""
    from benchmarks.stability import DEMO_TASK, retime_together
    from compressor.actions.export import export_onnx
    from compressor.config import MeasureConfig
    from compressor.tasks import get_task

    task = get_task(DEMO_TASK, verbose=False)
    for index in range(2):
        (tmp_path / f"run{index}").mkdir()
        export_onnx(task.model.eval(), task.example_inputs, tmp_path / f"run{index}" / "model.onnx")
    config = MeasureConfig(rounds=4, runs_per_round=10, ratio_halfwidth=0.0)
    together = retime_together(tmp_path, 2, config)
    assert len(together) == 2
    # One baseline, timed in the same rounds as both runs. (No bound on the ratio itself:
    # on a loaded machine 4 short rounds put the same graph at 2.1x its own baseline.)
    assert together[0]["baseline_p50_ms"] == together[1]["baseline_p50_ms"]
    assert together[0]["rounds"] == together[1]["rounds"] >= 4
    for timed in together:
        assert 0 < timed["low"] <= timed["ratio"] <= timed["high"]
