"""Which channel counts the target's fp32 and INT8 convolution kernels favour, measured.

Pruning to odd widths can make an INT8 model *slower* than the unpruned one: ResNet-56 with
inner widths 7 / 15 / 31 ran 2x slower than unpruned under ONNX Runtime static INT8 on this
machine's AVX-512 VNNI kernels, while widths on multiples of 16 ran faster
(``benchmarks.int8_widths``). The favoured multiple depends on the CPU, the runtime and the
precision, so it is measured once per machine and cached in ``$COMPRESSOR_CACHE``; the
search rounds each candidate's widths to the multiple of the mode its artifact uses
(``prune.round_to: auto``).

The probe: a residual-style pair ``conv3x3(W -> w) -> ReLU -> conv3x3(w -> W)`` (what
pruning a block's inner channels from ``W`` to ``w`` leaves), at the three stage geometries
of a CIFAR ResNet (``W`` = 16, 32, 64 on 32x32, 16x16, 8x8 maps: equal work each), exported
and run by ONNX Runtime in fp32 and as static INT8 QDQ (the project's own ``static_ort``
quantizer). The widths are ``W/2 + m`` for ``m`` in 1, 2, 4, 8 (9, 10, 12, 8 for ``W`` =
16): each is an exact multiple of ``m`` and not of ``2m``, and narrowing to it should save
a large share ``1 - w / W`` of the pair's time, so the saving stands out of timing noise.
Measured here (1 thread, loaded machine): the INT8 kernels ran 9, 10 and 12 channels *slower*
than 16, the fp32 kernels 17-31 no faster than 32.

The decision is built to survive a loaded machine (a first version, judging each width's
median alone, read shares of -227 and 11.7 from widths whose expected saving was 1/64):

* one intra-op thread: a two-thread call on two busy cores is nearly always preempted
  somewhere, a one-thread call often is not; kernel alignment is a property of the
  microkernel's register blocking, not of the thread count;
* each width's time is the *fastest* call over interleaved rounds of runs (load only ever
  adds time, so the fastest call is the least disturbed);
* a multiple ``m`` is favoured when its widths together (saving pooled, so no single small
  saving is amplified) deliver at least ``REALISED`` of their expected saving *and* every
  one of them is faster than its ``W``: consistent evidence, not an average;
* when the rounds disagree (the typical round is more than ``NOISY`` slower than the
  fastest), the timings are noise and the answer is the safe one, the largest multiple
  (16), as it is when no ``m`` passes.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

LARGEST = 16  # the coarsest multiple probed: the safe answer when the evidence is unclear
MULTIPLES = (1, 2, 4, 8, LARGEST)
# (channels W, map size): a CIFAR ResNet's three stages, the same work each.
GEOMETRIES = ((16, 32), (32, 16), (64, 8))
REALISED = 0.5  # a favoured multiple's widths deliver at least half their expected saving
NOISY = 0.25  # rounds whose typical time is this much above the fastest: timings are noise
PROBE_BATCH = 16  # enough work per call that the kernels, not the call overhead, dominate
PROBE_THREADS = 1
MODES = ("none", "static_ort")
CACHE_VERSION = 5

Times = dict[int, dict[int, float]]  # {W: {w: ms}}, w = W included


@dataclass(frozen=True)
class KernelWidths:
    """The measured favoured channel multiple per quantization mode, with the evidence.

    Attributes:
        multiples: ``{mode: smallest favoured multiple}`` (``none`` = fp32).
        times_ms: ``{mode: {W: {w: fastest time of the probe, ms}}}``: the evidence.
        noise: ``{mode: how much slower the typical round was than the fastest}``.
        cpu: the CPU it was measured on (the cache key).
        threads: intra-op threads the probe used.
        seconds: how long the measurement took.
    """

    multiples: dict[str, int]
    times_ms: dict[str, Times]
    noise: dict[str, float]
    cpu: str
    threads: int = PROBE_THREADS
    seconds: float = 0.0

    def round_to(self, quantization: str) -> int:
        """The multiple widths keep for an artifact quantized as ``quantization``: the fp32
        kernels' for ``none``, the INT8 kernels' (measured on ``static_ort``) for any INT8
        mode (dynamic and NNCF graphs run integer convolutions too)."""
        if quantization == "none":
            return self.multiples["none"]
        return self.multiples.get(quantization, self.multiples["static_ort"])

    def realised(self, mode: str) -> dict[str, float]:
        """Per probed width (``"w/W"``), the share of its expected saving delivered."""
        return {
            f"{w}/{big}": share
            for big, times in self.times_ms[mode].items()
            for w, share in realised_savings(times, big).items()
        }


def probe_widths(channels: int) -> tuple[int, ...]:
    """``W/2 + m`` for ``m`` in 1, 2, 4 and 8 (``W/2`` itself where that reaches ``W``)."""
    half = channels // 2
    return tuple(half + m if half + m < channels else half for m in MULTIPLES[:-1])


class _Probe(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.inner = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.outer = nn.Conv2d(width, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.relu(self.inner(x)))


def measure_kernel_widths(
    threads: int = PROBE_THREADS, runs: int = 10, rounds: int = 7
) -> KernelWidths:
    """Time the probe at every geometry and width in fp32 and INT8 (interleaved rounds) and
    derive the favoured multiples. Takes ~15-30 s."""
    from compressor.environment import cpu_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kernel-widths-") as folder:
        sessions = {}
        for channels, size in GEOMETRIES:
            sessions.update(_sessions(Path(folder), channels, size, threads))
        samples: dict[tuple, list[float]] = {key: [] for key in sessions}
        for _ in range(rounds):  # every width once per round: machine noise hits all alike
            for key, (session, feed) in sessions.items():
                samples[key].append(_fastest_ms(session, feed, runs))
    return KernelWidths(
        multiples={mode: decide(samples, mode) for mode in MODES},
        times_ms={mode: best_times(samples, mode) for mode in MODES},
        noise={mode: round(round_noise(samples, mode), 3) for mode in MODES},
        cpu=cpu_model(),
        threads=threads,
        seconds=round(time.perf_counter() - started, 1),
    )


Samples = Mapping[tuple[str, int, int], Sequence[float]]  # {(mode, W, w): per-round ms}


def decide(samples: Samples, mode: str) -> int:
    """The favoured multiple for ``mode`` from the probe's rounds (``LARGEST`` when the
    rounds disagree too much to trust)."""
    if round_noise(samples, mode) > NOISY:
        return LARGEST
    return favoured_multiple(best_times(samples, mode))


def _sessions(folder: Path, channels: int, size: int, threads: int) -> dict:
    """``{(mode, W, w): (ONNX Runtime session, feed)}`` for one geometry: the probe exported
    (``torch.onnx``) and quantized by the project's ``static_ort`` mode (``quantize_static``)."""
    from compressor.actions.export import export_onnx
    from compressor.actions.quantize import QuantizeSpec, quantize_onnx
    from compressor.measure.onnx_runtime import open_session

    shape = (PROBE_BATCH, channels, size, size)
    feeds = [
        {"input": np.random.default_rng(i).standard_normal(shape, np.float32)} for i in range(4)
    ]
    example = torch.from_numpy(feeds[0]["input"])
    sessions = {}
    for width in (*probe_widths(channels), channels):
        torch.manual_seed(width)
        stem = folder / f"c{channels}-w{width}"
        fp32 = export_onnx(_Probe(channels, width).eval(), (example,), stem.with_suffix(".onnx"))
        int8 = quantize_onnx(
            fp32, stem.with_suffix(".int8.onnx"), QuantizeSpec("static_ort", feeds)
        )
        for mode, path in (("none", fp32), ("static_ort", int8)):
            session = open_session(path, threads=threads, spinning=True)
            sessions[mode, channels, width] = (session, feeds[0])
    return sessions


def best_times(samples: Samples, mode: str) -> Times:
    """Each width's least disturbed time: the fastest over rounds (load only adds time)."""
    table: Times = {}
    for (key_mode, channels, width), times in samples.items():
        if key_mode == mode:
            table.setdefault(channels, {})[width] = min(times)
    return table


def round_noise(samples: Samples, mode: str) -> float:
    """How much slower a typical round was than the fastest (median over widths): near 0 on
    a quiet machine, large when load decided the timings."""
    spreads = [
        statistics.median(times) / min(times) - 1.0
        for (key_mode, *_), times in samples.items()
        if key_mode == mode
    ]
    return statistics.median(spreads)


def multiple_of(width: int) -> int:
    """The largest probed multiple ``width`` is an exact multiple of."""
    return max(m for m in MULTIPLES if width % m == 0)


def realised_savings(times: Mapping[int, float], channels: int) -> dict[int, float]:
    """For each probed width below ``channels``: the share of its expected saving (against
    the full width) that the kernels deliver (1 = all, 0 or less = no faster or slower)."""
    full = times[channels]
    return {w: (1.0 - t / full) / (1.0 - w / channels) for w, t in times.items() if w < channels}


def favoured_multiple(times: Times) -> int:
    """The smallest multiple whose widths consistently deliver their saving (see the
    module's docstring); ``LARGEST`` when none does."""
    for multiple in MULTIPLES[:-1]:
        if _favours(times, multiple):
            return multiple
    return LARGEST


def _favours(times: Times, multiple: int) -> bool:
    """Whether the probed widths that are exact multiples of ``multiple`` (and not of twice
    it) pooled realise ``REALISED`` of their saving, and each is faster than its ``W``."""
    pairs = [
        (t, table[channels], 1.0 - w / channels)
        for channels, table in times.items()
        for w, t in table.items()
        if w < channels and multiple_of(w) == multiple
    ]
    if not pairs:
        return False
    saved = sum(full - t for t, full, _ in pairs)
    expected = sum(full * share for _, full, share in pairs)
    return saved >= REALISED * expected and all(t < full for t, full, _ in pairs)


def _fastest_ms(session, feed: dict, runs: int) -> float:
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


def _cache() -> tuple[Path, dict]:
    from compressor.tasks.common import cache_dir

    path = cache_dir() / "kernel-widths.json"
    return path, (json.loads(path.read_text()) if path.is_file() else {})


def _key() -> str:
    from compressor.environment import cpu_model

    return f"v{CACHE_VERSION}|{cpu_model()}"


def stored_kernel_widths() -> KernelWidths | None:
    """This machine's cached measurement, or None (nothing is measured here)."""
    data = _cache()[1].get(_key())
    if data is None:
        return None
    times = {
        mode: {int(c): {int(w): t for w, t in row.items()} for c, row in table.items()}
        for mode, table in data["times_ms"].items()
    }
    return KernelWidths(**{**data, "times_ms": times})


def cached_kernel_widths(refresh: bool = False) -> KernelWidths:
    """:func:`measure_kernel_widths` once per machine (CPU model), then from
    ``$COMPRESSOR_CACHE/kernel-widths.json``; a line says so while it measures."""
    from compressor.logs import LOGGER
    from compressor.run_folder import write_json

    stored = None if refresh else stored_kernel_widths()
    if stored is not None:
        return stored
    path, table = _cache()
    LOGGER.info(
        "measuring which channel multiples this machine's fp32 / INT8 kernels favour "
        f"(once per machine, ~10 s; cached in {path}) ..."
    )
    measured = measure_kernel_widths()
    LOGGER.info(f"kernel-aligned widths: {describe(measured)} ({measured.seconds:.0f} s)")
    write_json(path, {**table, _key(): asdict(measured)})
    return measured


def describe(widths: KernelWidths) -> str:
    """One line: the multiple per mode (``none: multiples of 16, static_ort: ...``)."""
    return ", ".join(f"{mode}: multiples of {m}" for mode, m in widths.multiples.items())


if __name__ == "__main__":  # python -m compressor.measure.kernel_widths: measure again
    result = cached_kernel_widths(refresh=True)
    print(json.dumps(asdict(result), indent=2))
    for mode in MODES:
        shares = ", ".join(f"{w}: {v:.2f}" for w, v in result.realised(mode).items())
        print(
            f"{mode}: multiple {result.multiples[mode]}, noise {result.noise[mode]:.2f}; {shares}"
        )
