"""The kernel-width decision on synthetic timings (the probe itself is timed on the target),
the per-kind cache, and the graphs the Linear probe times."""

import json

import numpy as np
import onnx
import pytest
import torch

from compressor.measure import kernel_widths
from compressor.measure.kernel_probes import (
    CONV,
    LARGEST,
    LINEAR,
    OP_KINDS,
    probe_graphs,
    probe_keys,
    probe_widths,
    time_rounds,
)
from compressor.measure.kernel_widths import (
    NOISY,
    KernelWidths,
    cached_kernel_widths,
    decide,
    kernel_widths_of,
    realised_savings,
    round_noise,
    stored_kernel_widths,
)


def _kernel(multiple: int, penalty: float = 2.0):
    """A kernel whose time is linear in the width, ``penalty`` x off ``multiple``."""
    return lambda width: width * (1.0 if width % multiple == 0 else penalty)


def _rounds(kernel, rounds: int, load, rng, kind=CONV) -> dict[tuple, list[float]]:
    """Per (mode, W, w) the fp32 timings of ``rounds`` rounds under ``load(rng)`` (>= 1: load
    only ever slows a call down)."""
    keys = [key for key in probe_keys(kind) if key[0] == "none"]
    return time_rounds(keys, lambda key: kernel(key[2]) * load(rng), rounds)


def _spiky(rng) -> float:
    # A loaded machine: most rounds 0-15 % slow, one in four 2-6x slower (a preempted call).
    return 1.0 + rng.uniform(0, 0.15) + (rng.uniform(1, 5) if rng.random() < 0.25 else 0.0)


def test_probe_widths_are_exact_multiples_of_1_2_4_8_below_the_full_width():
    assert probe_widths(16) == (9, 10, 12, 8)
    assert probe_widths(32) == (17, 18, 20, 24)
    assert probe_widths(64) == (33, 34, 36, 40)


@pytest.mark.parametrize("op", OP_KINDS)
@pytest.mark.parametrize("multiple", [1, 2, 4, 8, 16])
def test_the_decision_finds_the_favoured_multiple_through_load_spikes(op, multiple):
    for seed in range(20):  # 20 noisy measurements, every one decided right
        rng = np.random.default_rng(seed)
        samples = _rounds(_kernel(multiple), 7, _spiky, rng, OP_KINDS[op])
        assert decide(samples, "none") == multiple


def test_a_mild_penalty_that_still_beats_the_full_width_is_not_enough():
    # 9 of 16 at 1.6x costs 0.9 of 16: faster, but it keeps under a quarter of its saving.
    rng = np.random.default_rng(0)
    assert decide(_rounds(_kernel(16, penalty=1.6), 7, lambda r: 1.0, rng), "none") == 16


def test_timings_that_are_only_noise_fall_back_to_the_largest_multiple():
    rng = np.random.default_rng(0)
    # Every round heavily and differently loaded: the rounds disagree, nothing is trusted.
    samples = _rounds(_kernel(1), 7, lambda r: r.uniform(1, 6), rng)
    assert round_noise(samples, "none") > NOISY
    assert decide(samples, "none") == LARGEST


def test_realised_savings_read_against_the_full_width():
    shares = realised_savings({16: 10.0, 8: 5.0, 12: 12.0}, 16)
    assert shares[8] == pytest.approx(1.0)  # half the width, half the time: all of it
    assert shares[12] < 0  # narrower and slower


def test_int8_modes_share_the_static_int8_multiple_and_fp32_has_its_own():
    widths = KernelWidths({"none": 8, "static_ort": 16}, {}, {}, "cpu")
    assert widths.round_to("none") == 8
    assert widths.round_to("static_ort") == widths.round_to("static_nncf") == 16
    assert widths.round_to("dynamic") == 16


LINEAR_KERNELS = {"none": 4, "dynamic": 16, "static_ort": 8}  # injected: one multiple per mode


def test_each_linear_mode_gets_the_multiple_its_timings_favour():
    rng = np.random.default_rng(0)
    kernels = {mode: _kernel(multiple) for mode, multiple in LINEAR_KERNELS.items()}
    samples = time_rounds(probe_keys(LINEAR), lambda key: kernels[key[0]](key[2]) * _spiky(rng), 7)
    widths = kernel_widths_of(LINEAR, samples)
    assert widths.op == "linear" and widths.multiples == LINEAR_KERNELS
    assert widths.round_to("dynamic") == 16  # MatMulInteger: its own measurement
    assert widths.round_to("static_nncf") == widths.round_to("static_ort") == 8
    assert set(widths.times_ms["dynamic"]) == {w for w, _ in LINEAR.geometries}


def _fake_measurement(op: str) -> KernelWidths:
    multiples = LINEAR_KERNELS if op == "linear" else {"none": 8, "static_ort": 16}
    return KernelWidths(
        multiples, {m: {} for m in multiples}, {m: 0.0 for m in multiples}, "cpu", op=op
    )


def test_the_cache_keeps_one_entry_per_kind_of_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    measured = []
    monkeypatch.setattr(
        kernel_widths,
        "measure_kernel_widths",
        lambda op: measured.append(op) or _fake_measurement(op),
    )
    assert stored_kernel_widths("linear") is None
    for _ in range(2):  # measured once per kind, then read back
        assert cached_kernel_widths("conv").multiples == {"none": 8, "static_ort": 16}
        assert cached_kernel_widths("linear").multiples == LINEAR_KERNELS
    assert measured == ["conv", "linear"]
    keys = json.loads((tmp_path / "kernel-widths.json").read_text())
    assert sorted(key.split("|")[1] for key in keys) == ["conv", "linear"]
    assert stored_kernel_widths("linear").op == "linear"


def test_the_module_measures_and_prints_both_kinds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    monkeypatch.setattr(kernel_widths, "measure_kernel_widths", _fake_measurement)
    kernel_widths.main()
    out = capsys.readouterr().out
    assert "conv static_ort: multiple 16" in out and "linear dynamic: multiple 16" in out


def test_the_linear_probe_times_matmul_kernels_int8_in_each_mode(tmp_path):
    # A 3-D input exports MatMul (a 2-D one exports Gemm, which quantize_dynamic skips).
    probe = LINEAR.pair(64, 40).eval()
    shape = LINEAR.input_shape(64, 8)
    feeds = [{"input": torch.randn(shape).numpy()} for _ in range(2)]
    graphs = probe_graphs(probe, feeds, tmp_path / "probe", LINEAR.modes)
    ops = {
        mode: {node.op_type for node in onnx.load(path).graph.node} for mode, path in graphs.items()
    }
    assert "MatMul" in ops["none"] and "Gemm" not in ops["none"]
    assert "MatMulInteger" in ops["dynamic"]
    assert "DequantizeLinear" in ops["static_ort"]
