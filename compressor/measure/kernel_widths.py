"""Which channel counts the target's fp32 and INT8 convolution kernels favour, measured.

Pruning to odd widths can make an INT8 model *slower* than the unpruned one: ResNet-56 with
inner widths 7 / 15 / 31 ran 2x slower than unpruned under ONNX Runtime static INT8 on this
machine's AVX-512 VNNI kernels, while widths on multiples of 16 ran faster
(``benchmarks.int8_widths``). The favoured multiple depends on the CPU, the runtime and the
precision, so it is measured once per machine and cached in ``$COMPRESSOR_CACHE``.

The probe: a residual-style pair ``conv3x3(C -> w) -> ReLU -> conv3x3(w -> C)`` on a
16x16 map (what pruning a block's inner channels leaves), exported and run by ONNX Runtime
in fp32 and as static INT8 QDQ (the project's own ``static_ort`` quantizer), for widths
``w`` on and off each multiple. Narrowing a layer from the next multiple of 16 above it,
``W``, to ``w`` should save the share ``1 - w / W`` of its time; the *realised share*
``(1 - t(w) / t(W)) / (1 - w / W)`` says how much of that saving the kernels deliver (1 =
all of it, 0 or less = the narrower layer is no faster or slower). A multiple ``m`` is
favoured when the widths that are exact multiples of ``m`` (not of ``2m``) realise, at their
median, at least ``REALISED`` of their saving; the reported multiple is the smallest
favoured one (16 when none is).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

PROBE_CHANNELS = 64
PROBE_SIZE = 16
# Widths on each multiple of 16, 8, 4 and off all of them (odd), spread over the range.
PROBE_WIDTHS = (17, 20, 24, 28, 31, 32, 36, 40, 44, 47, 48, 52, 56, 60, 63, 64)
MULTIPLES = (1, 2, 4, 8, 16)
REALISED = 0.5  # widths on a favoured multiple deliver at least half their expected saving
PROBE_BATCH = 8  # enough work per call that the kernels, not the call overhead, dominate
MODES = ("none", "static_ort")
CACHE_VERSION = 3


@dataclass(frozen=True)
class KernelWidths:
    """The measured favoured channel multiple per quantization mode, with the evidence.

    Attributes:
        multiples: ``{mode: smallest favoured multiple}`` (``none`` = fp32).
        realised: ``{mode: {width: realised share of the expected saving}}``.
        cpu: the CPU it was measured on (the cache key).
        threads: intra-op threads used.
    """

    multiples: dict[str, int]
    realised: dict[str, dict[int, float]]
    cpu: str
    threads: int

    def round_to(self, quantization: str) -> int:
        """The multiple widths should keep for an artifact quantized as ``quantization``
        (the fp32 kernels' for modes not probed)."""
        return self.multiples.get(quantization, self.multiples.get("none", 1))


class _Probe(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Conv2d(PROBE_CHANNELS, width, 3, padding=1, bias=False)
        self.outer = nn.Conv2d(width, PROBE_CHANNELS, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.relu(self.inner(x)))


def measure_kernel_widths(
    threads: int = 2,
    widths: Sequence[int] = PROBE_WIDTHS,
    runs: int = 30,
    rounds: int = 3,
) -> KernelWidths:
    """Time the probe at every width in fp32 and INT8 (interleaved rounds) and derive the
    favoured multiples. Takes ~10-30 s on 2 cores."""
    from compressor.actions.export import export_onnx
    from compressor.actions.quantize import QuantizeSpec, quantize_onnx
    from compressor.environment import cpu_model
    from compressor.measure.onnx_runtime import open_session

    example = torch.randn(PROBE_BATCH, PROBE_CHANNELS, PROBE_SIZE, PROBE_SIZE)
    feeds = [
        {"input": np.random.default_rng(i).standard_normal(example.shape, np.float32)}
        for i in range(4)
    ]
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="kernel-widths-") as folder:
        for width in widths:
            torch.manual_seed(width)
            fp32 = export_onnx(_Probe(width).eval(), (example,), Path(folder) / f"w{width}.onnx")
            int8 = quantize_onnx(
                fp32, Path(folder) / f"w{width}.int8.onnx", QuantizeSpec("static_ort", feeds)
            )
            for mode, path in (("none", fp32), ("static_ort", int8)):
                sessions[mode, width] = open_session(path, threads=threads, spinning=True)
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in sessions}
        for _ in range(rounds):  # every width once per round: machine noise hits all alike
            for key, session in sessions.items():
                samples[key].append(_median_ms(session, feeds[0], runs))
    realised = {
        mode: realised_savings({w: statistics.median(samples[mode, w]) for w in widths})
        for mode in MODES
    }
    return KernelWidths(
        multiples={mode: favoured_multiple(realised[mode]) for mode in MODES},
        realised=realised,
        cpu=cpu_model(),
        threads=threads,
    )


def realised_savings(times: dict[int, float]) -> dict[int, float]:
    """For each probed width off the multiples of 16: the share of its expected saving
    (against the next multiple of 16 above it, when probed) that the kernels deliver."""
    realised = {}
    for width, time_ms in times.items():
        above = -(-width // 16) * 16
        if width % 16 and above in times:
            expected = 1.0 - width / above
            realised[width] = (1.0 - time_ms / times[above]) / expected
    return realised


def favoured_multiple(realised: dict[int, float]) -> int:
    """The smallest multiple whose exact widths realise ``REALISED`` of their saving (16,
    the largest probed, when none does)."""
    for multiple in MULTIPLES[:-1]:
        exact = [v for w, v in realised.items() if w % multiple == 0 and w % (2 * multiple)]
        if exact and statistics.median(exact) >= REALISED:
            return multiple
    return MULTIPLES[-1]


def _median_ms(session, feed: dict, runs: int) -> float:
    name = session.get_inputs()[0].name
    feed = {name: next(iter(feed.values()))}
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _cache() -> tuple[Path, dict]:
    from compressor.tasks.common import cache_dir

    path = cache_dir() / "kernel-widths.json"
    return path, (json.loads(path.read_text()) if path.is_file() else {})


def _key(threads: int) -> str:
    from compressor.environment import cpu_model

    return f"v{CACHE_VERSION}|{cpu_model()}|{threads}"


def stored_kernel_widths(threads: int) -> KernelWidths | None:
    """This machine's cached measurement, or None (nothing is measured here)."""
    data = _cache()[1].get(_key(threads))
    if data is None:
        return None
    return KernelWidths(
        multiples=data["multiples"],
        realised={m: {int(w): v for w, v in t.items()} for m, t in data["realised"].items()},
        cpu=data["cpu"],
        threads=data["threads"],
    )


def cached_kernel_widths(threads: int = 2, refresh: bool = False) -> KernelWidths:
    """:func:`measure_kernel_widths` once per machine (CPU model + threads), then from
    ``$COMPRESSOR_CACHE/kernel-widths.json``."""
    from compressor.run_folder import write_json

    stored = None if refresh else stored_kernel_widths(threads)
    if stored is not None:
        return stored
    measured = measure_kernel_widths(threads)
    path, table = _cache()
    write_json(path, {**table, _key(threads): asdict(measured)})
    return measured


if __name__ == "__main__":  # python -m compressor.measure.kernel_widths [THREADS]
    import sys

    result = cached_kernel_widths(int(sys.argv[1]) if len(sys.argv) > 1 else 2, refresh=True)
    print(json.dumps(asdict(result), indent=2))
