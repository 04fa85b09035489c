"""B5: SmolLM2-135M (a real GPT-style decoder) through prune x quantize x fuse.

Rows: fp32 PyTorch; fp32 ONNX Runtime with KV cache (optimum-onnx export, the baseline
every row is timed against); ORT dynamic INT8 with the most sensitive linear family kept
fp32 (measured, not named); ORT INT8 block-wise (``MatMulNBitsQuantizer`` at 8 bits, every
MatMul, ``lm_head`` too); ORT INT4 block-wise (``MatMulNBits``, block 32) with RTN and
with HQQ scales, ``lm_head`` fp32; ORT GenAI's model builder at INT4 (its own fused graph:
GroupQueryAttention, packed qkv; every MatMul INT4 with INT8 compute, ``lm_head`` too: the
one-call pipeline for decoders on ONNX Runtime); torch-pruning uniform width 0.5x (half of
every MLP: ``MetaPruner``, group L2 magnitude, ``round_to=32``, embeddings and attention
ignored, as STACK.md found works) + the same INT8, distilled with the same recovery budget
as ours; ours: one study over depth, MLP, heads, per-family precision (INT4 with zero
points or float offsets, INT8 blocks, bias correction) and fusion, decode-latency target 1/3
of fp32 (hard reward), then distillation.

Columns: held-out perplexity (test windows of ``pydoc_data.topics``), prefill ms at a
128-token prompt, decode ms per token with that prompt as context, weight MB, speed-ups
of decode vs fp32 ORT and vs the fastest other row, and the fraction of the memory
bandwidth limit a decode step reaches (weight bytes read per token / p50 / measured
bandwidth). SmolLM2's weights come from a 4-bit GGUF unpacked to fp32: INT4 rows look
better on it than they would on an original fp16 model.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import fmt, markdown_table
from compressor.actions.build_decoder import build_decoder
from compressor.actions.export_decoder import export_decoder
from compressor.actions.quantize_decoder import quantize_decoder, weight_bytes
from compressor.config import MeasureConfig, RecoveryConfig, parse_latency_target
from compressor.decoder_pipeline import DecoderSettings, compress_decoder, measure_prior
from compressor.measure.decoder import DecoderSession, onnx_likelihood, torch_likelihood
from compressor.measure.decoder_latency import DecoderLatencyMeter
from compressor.search.decoder import DecoderTargets, precision_plan
from compressor.search.decoder_sensitivity import offset_units_of
from compressor.tasks.causal_lm import (
    WindowCounts,
    causal_lm_task,
    default_text,
    load_causal_lm,
    smollm2_location,
    tokenize,
)

TORCH, ORT = "fp32 PyTorch", "fp32 ORT + KV cache"
INT8, RTN, HQQ = "ORT INT8 dynamic (sensitive fp32)", "ORT INT4 RTN b32", "ORT INT4 HQQ b32"
UNIFORM, OURS = "torch-pruning MLP 0.5x + INT8 + distill", "ours: search + distill"
GENAI = "ORT GenAI builder INT4 b32 (lm_head too)"
INT8_BLOCK = "ORT INT8 block-wise b32 (MatMulNBits, lm_head too)"
PERPLEXITY_BOUND = 1.10  # the bound on held-out perplexity, times the fp32 model's
INT4_CAVEAT = (
    "SmolLM2's weights come from a 4-bit GGUF (Q4_1) unpacked to fp32, so INT4 rows lose "
    "less here than they would on an original fp16 model."
)


def run(args, session) -> tuple[dict, str]:
    quick = args.quick
    torch.set_num_threads(session.threads)
    counts = (
        WindowCounts(length=256, search=1, calibration=1, recovery=8, test=2)
        if quick
        else WindowCounts(length=512, search=2, calibration=1, recovery=32, test=4)
    )
    folder, gguf = smollm2_location()
    model, tokenizer = load_causal_lm(folder, gguf)
    task = causal_lm_task(
        model,
        tokenize(tokenizer, default_text()),
        counts,
        f"{gguf} on pydoc_data.topics",
        tokenizer,  # the fused graphs' builder saves it beside them
    )
    recovery_steps = 4 if quick else 30
    timing = MeasureConfig(
        threads=session.threads,
        rounds=2 if quick else 6,
        runs_per_round=3 if quick else 8,
        max_seconds=6.0 if quick else 20.0,
    )
    with tempfile.TemporaryDirectory(prefix="b5-") as scratch:
        work = Path(scratch)
        artifacts, notes = build_rows(task, work, recovery_steps, quick, args.trials, timing)
        rows = measure_rows(task, artifacts, timing)
    rows[TORCH] = torch_row(task)
    data = {
        "description": task.description,
        "quick": quick,
        "windows": counts.__dict__,
        "prompt_length": int(task.example_inputs[0].shape[-1]),
        "bandwidth_gb_s": memory_bandwidth(session.threads),
        "rows": rows,
        "notes": notes,
        "caveat": INT4_CAVEAT,
    }
    add_derived(data)
    data["goals"] = goals(data)
    return data, markdown(data)


def build_rows(task, work: Path, recovery_steps: int, quick: bool, trials, timing):
    """Every ORT row's artifact (and ours' search record)."""
    windows = task.windows
    started = time.perf_counter()
    baseline = export_decoder(task.model, work / "fp32")
    prior = measure_prior(task.model, windows.search[0])
    keep_int8 = prior.sensitive["int8"][:1]
    # ORT's one-call INT8 (quantize_dynamic), as a user reaches for it; ours and the block
    # row use MatMulNBits at 8 bits.
    int8 = replace(precision_plan("int8", "fp32", "rtn", keep_int8), int8_method="dynamic")
    artifacts = {
        ORT: baseline,
        INT8: quantize_decoder(baseline, work / "int8.onnx", int8),
        INT8_BLOCK: quantize_decoder(
            baseline, work / "int8-block.onnx", precision_plan("int8", "int8", "rtn", ())
        ),
        RTN: quantize_decoder(
            baseline, work / "rtn.onnx", precision_plan("int4", "fp32", "rtn", ())
        ),
        HQQ: quantize_decoder(
            baseline, work / "hqq.onnx", precision_plan("int4", "fp32", "hqq", ())
        ),
    }
    artifacts[GENAI] = build_decoder(
        task.model,
        task.tokenizer,
        work / "genai-int4",
        precision="int4",
        int4_accuracy_level=4,
        int4_block_size=32,
    )
    uniform = torch_pruning_mlp(task.model, 0.5)
    recovery = RecoveryConfig(epochs=1, steps=recovery_steps, lr=5e-5, method="distill")
    uniform = task.recover(uniform, task.model, recovery, True)
    artifacts[UNIFORM] = quantize_decoder(
        export_decoder(uniform, work / "uniform"), work / "uniform-int8.onnx", int8
    )
    settings = DecoderSettings(
        trials=trials or (3 if quick else 8),
        targets=DecoderTargets(latency=parse_latency_target("0.33")),
        reward="hard",
        recovery_steps=recovery_steps,
        measure=timing,
    )
    ours = compress_decoder(task, work / "ours", settings, baseline_graph=baseline, prior=prior)
    artifacts[OURS] = ours.artifact
    notes = {
        "sensitive_int8_family_kept_fp32": list(keep_int8),
        "block_influence_order": list(prior.removal_order),
        "sensitivity": {k: list(v) for k, v in prior.sensitive.items()},
        "offset_units_ranked": list(prior.offset_units),
        "recovery_steps": recovery_steps,
        "ours": ours.as_dict(),
        # every trial's plan, perplexity and decode ratio, as the run's report.md shows them
        "ours_report": (work / "ours" / "report.md").read_text(),
        "build_seconds": time.perf_counter() - started,
    }
    return artifacts, notes


def torch_pruning_mlp(model, ratio: float, round_to: int = 32):
    """Half of every MLP removed by torch-pruning (``MetaPruner``, one uniform ratio)."""
    import copy
    import warnings

    import torch_pruning as tp

    model = copy.deepcopy(model)
    ids = torch.randint(0, model.config.vocab_size, (1, 16))
    ignored = [model.lm_head, model.model.embed_tokens]
    for layer in model.model.layers:
        attention = layer.self_attn
        ignored += [attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RMSNorm weights it is told to leave alone
        tp.pruner.MetaPruner(
            model,
            ids,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            ignored_layers=ignored,
            round_to=round_to,
            output_transform=lambda output: output.logits,  # not the KV cache, if any
        ).step()
    model.config.intermediate_size = model.model.layers[0].mlp.gate_proj.out_features
    return model.eval()


def measure_rows(task, artifacts: dict[str, Path], timing: MeasureConfig) -> dict:
    windows, prompt = task.windows, task.example_inputs[0]
    rows = {}
    # The meter reloads the baseline for every row (fresh_baseline, its default): in the
    # 2026-11-30 run one long-lived session drifted 38 -> 56 ms per token over the table.
    with DecoderLatencyMeter(timing, prompt, fresh_baseline=True) as meter:
        meter.set_baseline(artifacts[ORT])
        # Decode, the goals' measure: every row in the same interleaved rounds (until each
        # ratio's interval is within +-5 %), so the rows are compared under one load. Timed
        # one row at a time against fp32, the builder's INT4 read 2.83x / 3.38x / 3.82x in
        # three runs of 2026-12-01 and ours moved from 0.72x to 1.15x of it.
        together = meter.compare_decode(artifacts)
        for name, graph in artifacts.items():
            latency = meter.compare(graph)
            sizes = weight_bytes(graph)
            rows[name] = {
                "perplexity": onnx_likelihood(
                    DecoderSession(graph, threads=timing.threads), windows.test
                ).perplexity,
                "prefill_ms": latency.prefill.candidate.p50_ms,
                "prefill_p90_ms": latency.prefill.candidate.p90_ms,
                "decode_ms": latency.decode.candidate.p50_ms,
                "decode_p90_ms": latency.decode.candidate.p90_ms,
                "decode_ratio_to_fp32_ort": together[name].ratio,
                "decode_ratio_low": together[name].ratio_low,
                "decode_ratio_high": together[name].ratio_high,
                "decode_rounds": together[name].rounds,
                "decode_ratio_alone": latency.decode.ratio,  # this row and fp32 only
                "prefill_ratio_to_fp32_ort": latency.prefill.ratio,
                "baseline_decode_ms": latency.decode.baseline.p50_ms,
                "size_mb": sizes["total"] / 1e6,
                "streamed_mb": sizes["streamed"] / 1e6,
            }
    return rows


@torch.no_grad()
def torch_row(task, runs: int = 5) -> dict:
    """fp32 PyTorch eager: perplexity, and prefill / decode timed in this process (after
    every ORT session is closed), the decode cache cropped back after every step."""
    model, prompt = task.model, task.example_inputs[0]
    ppl = torch_likelihood(model, task.windows.test).perplexity
    prefill, decode = [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        prefill.append(time.perf_counter() - start)
        cache, token = out.past_key_values, prompt[:, -1:]
        for _ in range(3):
            start = time.perf_counter()
            model(input_ids=token, past_key_values=cache, use_cache=True)
            decode.append(time.perf_counter() - start)
            cache.crop(prompt.shape[-1])
    params = sum(p.numel() for p in model.parameters())
    return {
        "perplexity": ppl,
        "prefill_ms": 1e3 * float(np.median(prefill)),
        "decode_ms": 1e3 * float(np.median(decode)),
        "size_mb": 4 * params / 1e6,
        "streamed_mb": 4 * params / 1e6,
    }


def memory_bandwidth(threads: int, megabytes: int = 256, runs: int = 5) -> float:
    """Read bandwidth in GB/s: torch summing a 256 MB tensor with ``threads`` threads (the
    rows' own), best of 5. One numpy thread read 12.4 GB/s here, less than the fp32 decode
    itself streamed (15.4 GB/s with 2 threads), so the rows' fractions came out above 100 %."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tensor = torch.ones(megabytes * 2**20 // 4)
        best = min(_timed(tensor.sum) for _ in range(runs))
    finally:
        torch.set_num_threads(previous)
    return tensor.numel() * 4 / best / 1e9


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def add_derived(data: dict) -> None:
    """Speed-ups from each ORT row's interleaved ratio to the fp32 ORT artifact (the rule
    of every comparison in the project; the rows' p50s were taken minutes apart, and the
    baseline's own p50 moved by up to 1.5x between rows). PyTorch, timed in-process, is
    compared by p50 with the fp32 ORT row's."""
    rows, bandwidth = data["rows"], data["bandwidth_gb_s"]
    ratio = {
        name: row.get("decode_ratio_to_fp32_ort", row["decode_ms"] / rows[ORT]["decode_ms"])
        for name, row in rows.items()
    }
    others = [n for n in rows if n not in (TORCH, ORT, OURS)]
    best = min(others, key=lambda n: ratio[n])
    data["best_single_tool"] = best
    # The bar is speed at a perplexity within the bound: the fastest single-tool
    # row that keeps it, when one does.
    bound = PERPLEXITY_BOUND * rows[ORT]["perplexity"]
    within = [n for n in others if rows[n]["perplexity"] <= bound]
    best_within = min(within, key=lambda n: ratio[n]) if within else None
    data["best_single_tool_within_perplexity_bound"] = best_within
    for name, row in rows.items():
        row["decode_speedup_vs_fp32_ort"] = 1 / ratio[name]
        row["decode_speedup_vs_best_single_tool"] = ratio[best] / ratio[name]
        if best_within is not None:
            row["decode_speedup_vs_best_within_bound"] = ratio[best_within] / ratio[name]
        row["bandwidth_fraction"] = row["streamed_mb"] / 1e3 / (row["decode_ms"] / 1e3) / bandwidth


def goals(data: dict) -> dict:
    rows = data["rows"]
    ours, fp32_ppl = rows[OURS], rows[ORT]["perplexity"]
    out = {
        "decode_speedup_vs_fp32_ort": ours["decode_speedup_vs_fp32_ort"],
        "decode_speedup_vs_best_single_tool": ours["decode_speedup_vs_best_single_tool"],
        "perplexity_ratio": ours["perplexity"] / fp32_ppl,
    }
    targets = {
        "decode_speedup_vs_fp32_ort": (3.0, True),
        "decode_speedup_vs_best_single_tool": (1.3, True),
        "perplexity_ratio": (PERPLEXITY_BOUND, False),
    }
    within = "decode_speedup_vs_best_single_tool_within_perplexity_bound"
    if "decode_speedup_vs_best_within_bound" in ours:
        # Not one of the goals: the same 1.3x against the rows that keep its bound.
        out[within] = ours["decode_speedup_vs_best_within_bound"]
        targets[within] = (1.3, True)
    judged = {
        name: {
            "value": out[name],
            "target": target,
            "met": out[name] >= target if higher else out[name] <= target,
        }
        for name, (target, higher) in targets.items()
    }
    if within in judged:  # a speed-up within the bound counts only if ours keeps it too
        judged[within]["met"] &= judged["perplexity_ratio"]["met"]
    return judged


def markdown(data: dict) -> str:
    rows, best = data["rows"], data["best_single_tool"]
    order = [TORCH, ORT, INT8, INT8_BLOCK, RTN, HQQ, GENAI, UNIFORM, OURS]
    table = markdown_table(
        [
            "pipeline",
            "test ppl",
            f"prefill ms ({data['prompt_length']} tok)",
            "decode ms/token",
            "weights MB",
            "decode vs fp32 ORT",
            "vs best other row",
            "bandwidth used",
        ],
        [
            [
                name,
                fmt(rows[name]["perplexity"]),
                fmt(rows[name]["prefill_ms"], ".1f"),
                fmt(rows[name]["decode_ms"], ".2f"),
                fmt(rows[name]["size_mb"], ".0f"),
                f"{rows[name]['decode_speedup_vs_fp32_ort']:.2f}x",
                f"{rows[name]['decode_speedup_vs_best_single_tool']:.2f}x",
                f"{rows[name]['bandwidth_fraction']:.0%}",
            ]
            for name in order
            if name in rows
        ],
    )
    outside = data["goals"]["perplexity_ratio"]
    why = {  # the within-bound speed-up is not met while ours is outside the bound itself
        "decode_speedup_vs_best_single_tool_within_perplexity_bound": ""
        if outside["met"]
        else f" (ours is outside the bound: {outside['value']:.3f}x)"
    }
    goal_lines = "\n".join(
        f"- {name}: {g['value']:.3f} (target {g['target']}) — {'met' if g['met'] else 'NOT met'}"
        f"{'' if g['met'] else why.get(name, '')}"
        for name, g in data["goals"].items()
    )
    ours = data["notes"]["ours"]["candidate"]
    offsets = ours["precision"].get("offsets") or ()
    if offsets:  # one line: the units, most sensitive first (the JSON keeps every name)
        precision = {**ours["precision"], "offsets": offset_units_of(offsets)}
        ours = {**ours, "precision": precision}
    return (
        f"# B5: SmolLM2-135M{' (quick: not the benchmark numbers)' if data['quick'] else ''}\n\n"
        f"{data['description']}; test windows {data['windows']}. Decode: one token with the "
        f"{data['prompt_length']}-token prompt as KV cache; every ORT row's decode timed "
        "together in the same interleaved rounds with the fp32 ORT artifact (until each "
        "ratio's 95 % interval is within +-5 % or 30 rounds); speed-ups are the geometric "
        "mean of the per-round ratios (PyTorch: p50 against the fp32 ORT row's); prefill and "
        "the ms columns: each row against a fresh fp32 session. "
        f"'best other row' = {best}; the fastest other row within {PERPLEXITY_BOUND}x the fp32 "
        f"perplexity: {data.get('best_single_tool_within_perplexity_bound')}. "
        f"Bandwidth: {data['bandwidth_gb_s']:.1f} GB/s (torch "
        "sum of 256 MB, the rows' threads); 'bandwidth used' = weight "
        f"bytes read per token / decode p50 / that. PyTorch timed in-process after ORT.\n\n"
        f"**{INT4_CAVEAT}**\n\n{table}\nOurs chose: {ours}\n\nGoals:\n{goal_lines}\n"
    )
