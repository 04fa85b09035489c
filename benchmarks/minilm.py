"""B2: all-MiniLM-L6-v2 on STS-B test, against the pipelines a user would pick instead.

Rows (every ONNX artifact but Optimum's from the same legacy export of the unpruned
encoder): fp32 PyTorch eager; fp32 ONNX Runtime; ORT transformer fusion (``optimize_model``,
what Optimum's ORTOptimizer O2 runs); ORT dynamic INT8 per-channel (``quantize_dynamic``,
``per_channel=True``, QInt8 weights: the settings of Optimum's ``avx512_vnni`` dynamic
config, called on ORT's quantizer directly); fusion + INT8; the real Optimum pipeline
(optimum-onnx's own export, ``ORTOptimizer`` O2 and ``ORTQuantizer`` dynamic INT8:
:mod:`benchmarks.optimum_row`; skipped, with the reason, without optimum-onnx); NNCF INT8
(``nncf.quantize`` on the ONNX graph); Microsoft Olive with its own search over fusion x
dynamic INT8 settings (:mod:`benchmarks.olive_row`; skipped, with the reason, when
``olive-ai`` is not installed); our full search (heads + FFN neurons + layers x
quantization x fusion) + distillation. "Best Optimum-style pipeline" is the fastest of the
fusion, INT8, fusion + INT8 and Optimum rows at each length.

``--max-accuracy-drop PTS`` (B2b): no FLOPs target; our search takes the fastest measured
variant whose dev Spearman is within PTS points of the baseline's (``compress``'s
``max_accuracy_drop``); results go to ``minilm-dropPTS-<date>``.

Metric: Spearman x100 of cosine similarity vs gold on sts-test. Latency: batch 1 at the
median STS-B sentence length (tokens) and at 128 tokens, every ONNX artifact interleaved
with the fp32 ORT artifact; PyTorch eager in its own worker. Speed-ups between ONNX rows are
ratios of their interleaved per-round ratios to fp32 ORT (as B1's); against eager, of p50s.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.common import latest_result, markdown_table
from benchmarks.olive_row import OliveSearch, run_olive
from benchmarks.optimum_row import run_optimum
from benchmarks.searching import (
    best_model,
    prune_only,
    run_search,
    sensitivity_params,
    settings_for,
)
from benchmarks.tasks import minilm_task, task_config
from benchmarks.timing import TimingPlan, time_eager, time_onnx
from compressor.actions.artifact import calibration_feeds
from compressor.actions.export import export_onnx
from compressor.actions.fuse import fuse_onnx
from compressor.actions.quantize import QuantizeSpec, quantize_onnx
from compressor.measure.flops import count_flops, count_params
from compressor.measure.onnx_runtime import OnnxModule
from compressor.recover import recover_model
from compressor.search.candidate import make_artifact
from compressor.search.context import measuring
from compressor.search.space import (
    FUSION_PARAM,
    KEEP_ENDS_PARAM,
    QUANTIZATION_PARAM,
    spec_from_params,
)

EAGER, ORT, FUSED, INT8 = "fp32 PyTorch eager", "fp32 ORT", "ORT fusion (O2)", "ORT dynamic INT8"
FUSED_INT8, NNCF, OURS = "ORT fusion + dynamic INT8", "NNCF INT8 (ONNX)", "ours: search + distill"
OLIVE, OPTIMUM = "Olive (own search)", "Optimum (ORTOptimizer + ORTQuantizer)"
OURS_EAGER = "ours (pruned, eager)"
OPTIMUM_STYLE = (FUSED, INT8, FUSED_INT8, OPTIMUM)
PEERS = (OLIVE, OPTIMUM)  # rows another tool builds; skipped (with the reason) without it
EAGER_TIMED = (EAGER, OURS_EAGER)  # timed against eager, not against fp32 ORT
DEFAULT_DROP = 1.0  # issue 14's Spearman budget (points) when no --max-accuracy-drop is given
CALIBRATION_SENTENCES = 320


def typical_length(task_model_path: Path, data_root: Path | None) -> int:
    """Median token count (special tokens included) of the sts-test sentences."""
    from transformers import AutoTokenizer

    from compressor.tasks.common import default_data_root
    from compressor.tasks.sentence_similarity import STSB, read_pairs

    tokenizer = AutoTokenizer.from_pretrained(task_model_path, local_files_only=True)
    pairs = read_pairs((data_root or default_data_root()) / STSB["test"])
    return int(statistics.median(len(tokenizer(s)["input_ids"]) for s in pairs.sentences()))


def token_inputs(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 30000, (1, length), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones_like(ids)


def baselines(task, work: Path) -> dict[str, Path]:
    """The Optimum-style and NNCF artifacts of the unpruned encoder."""
    fp32 = export_onnx(task.model, task.example_inputs, work / "fp32.onnx")
    fused = fuse_onnx(fp32, work / "fused.onnx", num_heads=12, hidden_size=384)
    artifacts = {
        ORT: fp32,
        FUSED: fused,
        INT8: quantize_onnx(fp32, work / "int8.onnx", QuantizeSpec("dynamic")),
        FUSED_INT8: quantize_onnx(fused, work / "fused-int8.onnx", QuantizeSpec("dynamic")),
    }
    batches = list(task.train_data)
    # Length-sorted batches: take every k-th so calibration covers short and long sentences.
    step = max(1, len(batches) // max(1, CALIBRATION_SENTENCES // 32))
    feeds = calibration_feeds(batches[::step], CALIBRATION_SENTENCES, batch_size=1)
    artifacts[NNCF] = quantize_onnx(fp32, work / "nncf.onnx", QuantizeSpec("static_nncf", feeds))
    return artifacts


def our_search(task, config, trials: int, work: Path, log) -> tuple:
    # The reference pipelines are this benchmark's own rows (timed and scored outside the
    # study), so the study does not spend its slow (~30 s) trials on them again.
    config = dataclasses.replace(
        config, search=dataclasses.replace(config.search, references=False)
    )
    settings = settings_for(task, config)
    with measuring(settings) as resources:
        log("sensitivity pass ...")
        seeds = sensitivity_params(prune_only(settings))
        study, seconds = run_search(
            settings, resources, trials=trials, sampler="tpe", seeds=seeds, progress=True
        )
        model, best = best_model(settings, study, resources)  # the top trials re-timed
    spec = spec_from_params(best.params)
    facts = {
        "trials": trials,
        "best_trial": best.number,
        "search_seconds": seconds,
        "deploy": dataclasses.asdict(spec),
        "flops_ratio": best.user_attrs["flops_ratio"],
        "removed_units": list(best.user_attrs.get("removed_units") or []),
        "depth_units": [unit.name for unit in settings.depth_units],
        "trial_table": [
            {
                "number": t.number,
                "removed_units": t.user_attrs.get("removed_units"),
                "deploy": f"{t.params.get(QUANTIZATION_PARAM)}/{t.params.get(FUSION_PARAM)}"
                f"/ends fp32 {t.params.get(KEEP_ENDS_PARAM)}",
                "flops_ratio": t.user_attrs.get("flops_ratio"),
                "dev_spearman": t.user_attrs.get("accuracy"),
                "latency_ratio": t.user_attrs.get("latency_ratio"),
                "reward": t.value,
            }
            for t in study.trials
        ],
        "dev_spearman_before_recovery": best.user_attrs["accuracy"],
        "test_spearman_before_recovery_fp32": task.evaluate_test(model),
    }
    log(f"recovering the best plan (#{best.number}, {spec}) ...")
    model = recover_model(task, model, config.recovery, progress=False).model
    facts["test_spearman_after_recovery_fp32"] = task.evaluate_test(model)
    artifact = make_artifact(settings, model, spec, work / "ours.onnx").path
    return model, artifact, facts


def configure(args):
    """B2's config, or B2b's with ``--max-accuracy-drop`` (no FLOPs target: the fastest
    variant within the floor); checked before any data is read. ``--threads`` applies to
    the search's latency measurements too, so it times candidates as the rows are timed."""
    config = task_config("minilm-stsb")
    if getattr(args, "threads", None):
        config = dataclasses.replace(
            config, measure=dataclasses.replace(config.measure, threads=args.threads)
        )
    if getattr(args, "max_accuracy_drop", None) is not None:
        config = dataclasses.replace(
            config, target_flops=None, max_accuracy_drop=args.max_accuracy_drop
        )
    if args.quick:
        config = dataclasses.replace(
            config, recovery=dataclasses.replace(config.recovery, steps=10)
        )
    return config


def olive_pick(fp32: Path, work: Path, threads: int, log):
    """Olive's own search from the same fp32 export (latency only: see benchmarks.olive_row)."""
    log("Olive's search ...")
    return run_olive(fp32, work, OliveSearch(threads=threads))


def optimum_pick(checkpoint: Path, work: Path, log):
    """The real Optimum pipeline from the checkpoint folder (see benchmarks.optimum_row)."""
    log("Optimum's pipeline (export, ORTOptimizer, ORTQuantizer) ...")
    return run_optimum(checkpoint, work)


def run(args, session) -> tuple[dict, str]:
    from compressor.tasks.sentence_similarity import minilm_path

    config = configure(args)
    cut = dict(test_pairs=100, dev_pairs=100, train_sentences=320) if args.quick else {}
    task = minilm_task(args.data, **cut)
    # 7 seeded plans with a FLOPs target (uniform per quantization mode, width and depth
    # seeds), 9 without (the depth-only seed at three FLOPs levels) + TPE.
    trials = args.trials or (8 if args.quick else 12)
    plan = (
        TimingPlan(session.threads, rounds=3, runs_per_round=6, max_seconds=3)
        if args.quick
        else TimingPlan(session.threads, rounds=8, runs_per_round=20)
    )
    lengths = (typical_length(minilm_path(), Path(args.data) if args.data else None), 128)
    log = print
    with tempfile.TemporaryDirectory(prefix="bench-b2-") as folder:
        work = Path(folder)
        log("building the Optimum-style and NNCF artifacts ...")
        artifacts = baselines(task, work)
        peers = {
            OPTIMUM: optimum_pick(minilm_path(), work, log),
            OLIVE: olive_pick(artifacts[ORT], work, session.threads, log),
        }
        artifacts.update({name: peer.path for name, peer in peers.items() if peer.path})
        student, artifacts[OURS], ours = our_search(task, config, trials, work, log)
        rows = {
            EAGER: {
                "spearman": task.evaluate_test(task.model),
                "size_bytes": _param_bytes(task.model),
            }
        }
        for name, path in artifacts.items():
            rows[name] = {
                "spearman": task.evaluate_test(OnnxModule(path, threads=session.threads)),
                "size_bytes": path.stat().st_size,
            }
        for name, peer in peers.items():  # a skipped row keeps only its settings and why
            rows.setdefault(name, {}).update(peer.facts)
        rows[OURS].update(ours)
        latency = {}
        for length in lengths:
            log(f"timing at {length} tokens ...")
            example = token_inputs(length)
            others = {k: v for k, v in artifacts.items() if k != ORT}
            ort = time_onnx(others, artifacts[ORT], example, (1,), plan)
            eager = time_eager({OURS: student}, task.model, example, (1,), plan)
            latency[length] = {
                **{name: ort[name][1] for name in others},
                ORT: ort["baseline"][1],
                EAGER: eager["baseline"][1],
                OURS_EAGER: eager[OURS][1],
            }
    flops = {
        length: {
            "unpruned": count_flops(task.model, token_inputs(length)),
            "ours": count_flops(student, token_inputs(length)),
        }
        for length in lengths
    }
    rows[OURS]["params"] = count_params(student)
    data = {
        "description": task.description,
        "lengths": lengths,
        "trials": trials,
        "target_flops": str(config.target_flops) if config.target_flops else None,
        "max_accuracy_drop": config.max_accuracy_drop,
        "recovery": dataclasses.asdict(config.recovery),
        "rows": rows,
        "latency": latency,
        "flops": flops,
        "quick": args.quick,
    }
    data["goals"] = goals(data, _drop_of(config))
    data["peak_points"] = peak_points(data)
    return data, markdown(data)


def speedup(table: dict, slower: str, faster: str) -> float:
    """How many times faster ``faster`` runs than ``slower`` at one length: the ratio of their
    interleaved ratios to fp32 ORT when both were timed against it, else of p50s."""
    if slower in EAGER_TIMED or faster in EAGER_TIMED:
        return table[slower]["p50_ms"] / table[faster]["p50_ms"]
    return table[slower]["ratio_to_baseline"] / table[faster]["ratio_to_baseline"]


def best_optimum_style(table: dict) -> str:
    """The fastest Optimum-style pipeline timed at one length (lowest ratio to fp32 ORT);
    the Optimum row counts when it ran."""
    timed = [name for name in OPTIMUM_STYLE if name in table]
    return min(timed, key=lambda name: table[name]["ratio_to_baseline"])


def goals(data: dict, max_drop: float = DEFAULT_DROP) -> dict:
    """Issue 14's B2 goals, ``{name: {value, target, met}}``: test Spearman within
    ``max_drop`` points of fp32 eager's, >= 1.5x the best Optimum-style pipeline and >= 3x
    PyTorch eager at each length."""
    fp32 = data["rows"][EAGER]["spearman"]
    measured = {"spearman": (100 * data["rows"][OURS]["spearman"], 100 * fp32 - max_drop)}
    for length, table in data["latency"].items():
        best = best_optimum_style(table)
        measured[f"speedup_vs_eager_{length}tok"] = (speedup(table, EAGER, OURS), 3.0)
        measured[f"speedup_vs_best_optimum_style_{length}tok ({best})"] = (
            speedup(table, best, OURS),
            1.5,
        )
    return {
        name: {"value": value, "target": f">= {target:.2f}", "met": value >= target}
        for name, (value, target) in measured.items()
    }


def peak_points(data: dict) -> list[dict]:
    points = []
    for length, table in data["latency"].items():
        for name in (ORT, FUSED, INT8, FUSED_INT8, OPTIMUM, NNCF, OLIVE, OURS):
            if name not in table:  # a peer's row skipped
                continue
            quantized = (
                "INT8" in name
                or name in PEERS
                or (name == OURS and data["rows"][OURS]["deploy"]["quantization"] != "none")
            )
            flops = data["flops"][length]["ours" if name == OURS else "unpruned"]
            points.append(
                {
                    "name": name,
                    "setting": f"batch 1, {length} tokens",
                    "flops_per_call": flops,
                    "p50_ms": table[name]["p50_ms"],
                    "precision": "int8" if quantized else "fp32",
                }
            )
    return points


def markdown(data: dict) -> str:
    rows, lengths = data["rows"], data["lengths"]
    best = {n: best_optimum_style(data["latency"][n]) for n in lengths}
    table = [_table_row(data, name, best) for name in rows]
    ours, goal = rows[OURS], data["goals"]
    a, b = lengths
    drop = data.get("max_accuracy_drop")
    title = (
        f"# B2b: all-MiniLM-L6-v2 on STS-B test, fastest within {drop:g} pt\n\n"
        "No FLOPs target: our search takes the fastest measured variant whose dev Spearman "
        f"is within {drop:g} pt of the baseline's (`--max-accuracy-drop {drop:g}`).\n\n"
        if drop is not None
        else "# B2: all-MiniLM-L6-v2 on STS-B test\n\n"
    )
    text = (
        title + f"{data['description']}. Spearman x100 of cosine similarity vs gold (sts-test). "
        f"Latency: batch 1, ms p50 / p90, at {a} tokens (median STS-B test sentence) and {b} "
        "tokens. Speed-ups: between ONNX rows, ratios of their interleaved ratios to fp32 ORT; "
        f"against eager, of p50s. 'best Optimum-style' = the fastest of "
        f"{', '.join(OPTIMUM_STYLE)} at that length ({best[a]} at {a}, {best[b]} at {b}).\n\n"
        + markdown_table(
            [
                "pipeline",
                "Spearman",
                f"{a} tok ms",
                f"{b} tok ms",
                f"vs eager / vs best Optimum-style ({a} tok)",
                f"(… {b} tok)",
                "size",
            ],
            table,
        )
        + f"\nOurs: {data['trials']} search trials (uniform seed per quantization mode, "
        f"width and depth sensitivity seeds, TPE), chose {ours['deploy']['quantization']}"
        f"{' + fusion' if ours['deploy']['fusion'] else ''} at {ours['flops_ratio']:.2f}x FLOPs; "
        f"test Spearman fp32 pruned {100 * ours['test_spearman_before_recovery_fp32']:.2f} before, "
        f"{100 * ours['test_spearman_after_recovery_fp32']:.2f} after recovery "
        f"({_recovery_text(data['recovery'])}). The pruned model in PyTorch eager: "
        + ", ".join(
            f"{data['latency'][n][OURS_EAGER]['p50_ms']:.2f} ms at {n} tokens" for n in lengths
        )
        + f". Removed layers: {', '.join(ours.get('removed_units') or []) or 'none'}.\n\n"
        + _optimum_text(rows.get(OPTIMUM, {}))
        + _olive_text(rows.get(OLIVE, {}))
        + "Goals:\n"
        + "".join(
            f"- {name}: {g['value']:.2f} (goal {g['target']}: {'met' if g['met'] else 'NOT met'})\n"
            for name, g in goal.items()
        )
    )
    peak = latest_result("peak")
    if peak:
        from benchmarks.peak import achieved

        text += (
            "\nFraction of the B4 peak: "
            + "; ".join(
                f"{p['name']} {p['setting']}: {achieved(p, peak['peak_gops']):.1%}"
                for p in data["peak_points"]
            )
            + ".\n"
        )
    return text


def _table_row(data: dict, name: str, best: dict) -> list[str]:
    row, lengths = data["rows"][name], data["lengths"]
    if "spearman" not in row:  # a peer's row that could not run (not installed / failed)
        why = row.get("skipped") or row.get("failed") or "not run"
        return [name, f"not run: {why}", "-", "-", "-", "-", "-"]
    cells = [name, f"{100 * row['spearman']:.2f}"]
    for length in lengths:
        lat = data["latency"][length][name]
        cells.append(f"{lat['p50_ms']:.2f} / {lat['p90_ms']:.2f}")
    for length in lengths:
        table = data["latency"][length]
        eager, optimum = speedup(table, EAGER, name), speedup(table, best[length], name)
        cells.append(f"{eager:.2f}x / {optimum:.2f}x")
    cells.append(f"{row['size_bytes'] / 1e6:.1f} MB")
    return cells


def _olive_text(row: dict) -> str:
    if not row:
        return ""
    head = f"Olive ({row.get('olive_version', 'olive-ai')}; search: {row['budget']}; "
    head += f"latency objective {row['latency_objective']}): "
    if "spearman" not in row:
        return head + f"not run — {row.get('skipped') or row.get('failed')}.\n\n"
    chosen = " -> ".join(
        p["type"] + "".join(f" {k}={v}" for k, v in p.items() if k != "type")
        for p in row["chosen"]["passes"]
    )
    return (
        head + f"{len(row['candidates'])} candidates timed in {row['search_seconds']:.0f} s; "
        f"accuracy objective {row['accuracy_objective']}; it chose {chosen}.\n\n"
    )


def _optimum_text(row: dict) -> str:
    if not row:
        return ""
    head = f"Optimum ({row['pipeline']}; CPU flags {', '.join(row['cpu_flags']) or 'none'}): "
    if "spearman" not in row:
        return head + f"not run — {row.get('skipped') or row.get('failed')}.\n\n"
    nodes = ", ".join(f"{n} {op}" for op, n in row["optimized_nodes"].items() if n)
    quantized = ", ".join(f"{n} {op}" for op, n in row["quantized_nodes"].items() if n)
    text = (
        f"opset {row['opset']}; ORTOptimizer's graph: {nodes}; quantized: {quantized}. "
        "ORTQuantizer needs ONNX Runtime's `DefaultTensorType` option after ORTOptimizer, "
        "which it cannot pass (huggingface/optimum#1959, unmerged): added here"
    )
    if not row["optimized_nodes"]["SkipLayerNormalization"]:
        text += (
            "; ORTOptimizer skipped SkipLayerNormalization fusion (ONNX Runtime's symbolic "
            "shape inference fails on the Normalize module's opset-18 ReduceL2), which ONNX "
            "Runtime's session optimizer does at load"
        )
    return head + text + " (benchmarks/optimum_row.py).\n\n"


def _drop_of(config) -> float:
    return DEFAULT_DROP if config.max_accuracy_drop is None else config.max_accuracy_drop


def _recovery_text(recovery: dict) -> str:
    budget = (
        f"{recovery['steps']} steps" if recovery.get("steps") else f"{recovery['epochs']} epoch(s)"
    )
    return f"embedding distillation, {budget} at lr {recovery['lr']}"


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
