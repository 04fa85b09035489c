"""The microbenchmark behind :mod:`compressor.measure.kernel_widths`: per kind of layer, the
pair of layers that pruning one group's width leaves, run by ONNX Runtime at a few widths.

=======  ===================================================================================
kind     probe
=======  ===================================================================================
conv     ``conv3x3(W -> w) -> ReLU -> conv3x3(w -> W)``, a residual block's inner channels
         pruned from ``W`` to ``w``, at the three stage geometries of a CIFAR ResNet (``W`` =
         16, 32, 64 on 32x32, 16x16, 8x8 maps: equal work each); fp32 and static INT8 QDQ
         (``static_ort``). ``dynamic`` is not timed: on convolutions it runs ConvInteger,
         which the search measures as slow anyway.
linear   ``Linear(H -> w) -> ReLU -> Linear(w -> H)``, a transformer MLP's neurons pruned
         from ``W`` to ``w`` (``H = W / 4``, the BERT ratio; ``W`` = 512, 1024, 1536 on 256,
         64, 32 tokens: equal work each); fp32, dynamic INT8 (``quantize_dynamic``: the
         MatMulInteger path) and static INT8 QDQ. The input is ``(1, tokens, H)`` so the
         layers export as MatMul, as a transformer's do (a 2-D input exports as Gemm, which
         ``quantize_dynamic`` leaves in fp32).
=======  ===================================================================================

The probed widths are ``W/2 + m`` for ``m`` in 1, 2, 4, 8 (9, 10, 12, 8 for ``W`` = 16):
each is an exact multiple of ``m`` and not of ``2m``, and narrowing to it should save a large
share ``1 - w / W`` of the pair's time, so the saving stands out of timing noise. Every graph
is built by the project's own export and quantizers, so what is timed is what ships.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

LARGEST = 16  # the coarsest multiple probed: the safe answer when the evidence is unclear
MULTIPLES = (1, 2, 4, 8, LARGEST)
PROBE_BATCH = 16  # conv: enough work per call that the kernels, not the call overhead, dominate
PROBE_THREADS = 1

Key = tuple[str, int, int]  # (mode, full width W, probed width w)
Samples = Mapping[Key, list[float]]  # per key, the ms of each round


class _ConvPair(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.inner = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.outer = nn.Conv2d(width, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.relu(self.inner(x)))


class _LinearPair(nn.Module):
    def __init__(self, neurons: int, width: int) -> None:
        super().__init__()
        hidden = neurons // 4
        self.inner = nn.Linear(hidden, width, bias=False)
        self.outer = nn.Linear(width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.relu(self.inner(x)))


@dataclass(frozen=True)
class OpKind:
    """A kind of layer whose kernels' favoured widths are measured (see the module docstring).

    Attributes:
        name: ``conv`` or ``linear``: the cache key and the report's label.
        modes: the quantization modes timed (``none`` = fp32).
        geometries: ``(W, size)`` per geometry: the full width and the map size / tokens.
        pair: ``pair(W, w)``: the probe with its width pruned from ``W`` to ``w``.
        input_shape: ``input_shape(W, size)``: the shape of the probe's input.
    """

    name: str
    modes: tuple[str, ...]
    geometries: tuple[tuple[int, int], ...]
    pair: Callable[[int, int], nn.Module]
    input_shape: Callable[[int, int], tuple[int, ...]]


CONV = OpKind(
    "conv",
    ("none", "static_ort"),
    ((16, 32), (32, 16), (64, 8)),
    _ConvPair,
    lambda channels, size: (PROBE_BATCH, channels, size, size),
)
LINEAR = OpKind(
    "linear",
    ("none", "dynamic", "static_ort"),
    ((512, 256), (1024, 64), (1536, 32)),
    _LinearPair,
    lambda neurons, tokens: (1, tokens, neurons // 4),
)
OP_KINDS = {kind.name: kind for kind in (CONV, LINEAR)}


def probe_widths(channels: int) -> tuple[int, ...]:
    """``W/2 + m`` for ``m`` in 1, 2, 4 and 8 (``W/2`` itself where that reaches ``W``)."""
    half = channels // 2
    return tuple(half + m if half + m < channels else half for m in MULTIPLES[:-1])


def probe_keys(kind: OpKind) -> list[Key]:
    """Every ``(mode, W, w)`` the probe times for ``kind``: the probed widths and ``W``."""
    return [
        (mode, channels, width)
        for channels, _ in kind.geometries
        for width in (*probe_widths(channels), channels)
        for mode in kind.modes
    ]


def time_rounds(keys: Iterable[Key], time_one: Callable[[Key], float], rounds: int) -> Samples:
    """``time_one(key)`` for every key once per round, ``rounds`` times: interleaved, so
    machine noise hits every width alike."""
    samples: dict[Key, list[float]] = {key: [] for key in keys}
    for _ in range(rounds):
        for key, times in samples.items():
            times.append(time_one(key))
    return samples


def probe_sessions(kind: OpKind, folder: Path, threads: int) -> dict[Key, tuple]:
    """``{(mode, W, w): (ONNX Runtime session, feed)}`` for every probed width of ``kind``:
    the probe exported (``torch.onnx``) and quantized by the project's own modes."""
    from compressor.measure.onnx_runtime import open_session

    sessions = {}
    for channels, size in kind.geometries:
        shape = kind.input_shape(channels, size)
        feeds = [
            {"input": np.random.default_rng(i).standard_normal(shape, np.float32)} for i in range(4)
        ]
        for width in (*probe_widths(channels), channels):
            torch.manual_seed(width)
            probe = kind.pair(channels, width).eval()
            stem = folder / f"{kind.name}-c{channels}-w{width}"
            for mode, path in probe_graphs(probe, feeds, stem, kind.modes).items():
                session = open_session(path, threads=threads, spinning=True)
                sessions[mode, channels, width] = (session, feeds[0])
    return sessions


def probe_graphs(probe: nn.Module, feeds: list[dict], stem: Path, modes: Iterable[str]) -> dict:
    """``{mode: path}``: ``probe`` exported, and quantized in every INT8 mode of ``modes``
    (calibrated on ``feeds`` where the mode needs it)."""
    from compressor.actions.export import export_onnx
    from compressor.actions.quantize import QuantizeSpec, needs_calibration, quantize_onnx

    fp32 = export_onnx(probe, (torch.from_numpy(feeds[0]["input"]),), stem.with_suffix(".onnx"))
    graphs = {"none": fp32}
    for mode in (m for m in modes if m != "none"):
        calibration = feeds if needs_calibration(mode) else ()
        spec = QuantizeSpec(mode, calibration)
        graphs[mode] = quantize_onnx(fp32, stem.with_suffix(f".{mode}.onnx"), spec)
    return graphs


def fastest_ms(session, feed: dict, runs: int) -> float:
    """The fastest of ``runs`` calls: on a loaded machine most calls are preempted somewhere,
    the fastest is the one closest to what the kernel itself costs."""
    name = session.get_inputs()[0].name
    feed = {name: next(iter(feed.values()))}
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return min(times) * 1e3
