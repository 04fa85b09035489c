"""Which widths the target's fp32 and INT8 kernels favour, measured per kind of layer:
convolution channels and Linear (MatMul) neurons.

Pruning to odd widths can make an INT8 model *slower* than the unpruned one: ResNet-56 with
inner widths 7 / 15 / 31 ran 2x slower than unpruned under ONNX Runtime static INT8 on this
machine's AVX-512 VNNI kernels, while widths on multiples of 16 ran faster
(``benchmarks.int8_widths``). The favoured multiple depends on the CPU, the runtime, the
precision and the kind of layer, so it is measured once per machine and kind and cached in
``$COMPRESSOR_CACHE``; the search rounds each candidate's widths to the multiple of the mode
its artifact uses (``prune.round_to: auto``): convolution channels for a CNN, MLP neurons for
a transformer. What is timed: :mod:`compressor.measure.kernel_probes`.
Measured here (1 thread, loaded machine): the INT8 conv kernels ran 9, 10 and 12 channels
*slower* than 16, the fp32 ones 17-31 no faster than 32; the Linear (MatMul) kernels, fp32
and both INT8 paths, kept 0.8-1.0 of the saving at every odd width (multiple 1).

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from compressor.measure.kernel_probes import (
    LARGEST,
    MULTIPLES,
    OP_KINDS,
    PROBE_THREADS,
    OpKind,
    Samples,
    fastest_ms,
    probe_sessions,
    time_rounds,
)

REALISED = 0.5  # a favoured multiple's widths deliver at least half their expected saving
NOISY = 0.25  # rounds whose typical time is this much above the fastest: timings are noise
CACHE_VERSION = 6  # 6: one entry per kind of layer (conv, linear)

Times = dict[int, dict[int, float]]  # {W: {w: ms}}, w = W included


@dataclass(frozen=True)
class KernelWidths:
    """The measured favoured multiple per quantization mode for one kind of layer, with the
    evidence.

    Attributes:
        multiples: ``{mode: smallest favoured multiple}`` (``none`` = fp32).
        times_ms: ``{mode: {W: {w: fastest time of the probe, ms}}}``: the evidence.
        noise: ``{mode: how much slower the typical round was than the fastest}``.
        cpu: the CPU it was measured on (the cache key).
        threads: intra-op threads the probe used.
        seconds: how long the measurement took.
        op: the kind of layer probed (``conv`` or ``linear``, see ``OP_KINDS``).
    """

    multiples: dict[str, int]
    times_ms: dict[str, Times]
    noise: dict[str, float]
    cpu: str
    threads: int = PROBE_THREADS
    seconds: float = 0.0
    op: str = "conv"

    def round_to(self, quantization: str) -> int:
        """The multiple widths keep for an artifact quantized as ``quantization``: the
        mode's own where it was timed (fp32 ``none``; ``dynamic`` on Linear layers), else the
        static INT8 kernels' (dynamic convolutions and NNCF graphs run integer kernels too)."""
        return self.multiples.get(quantization, self.multiples["static_ort"])

    def realised(self, mode: str) -> dict[str, float]:
        """Per probed width (``"w/W"``), the share of its expected saving delivered."""
        return {
            f"{w}/{big}": share
            for big, times in self.times_ms[mode].items()
            for w, share in realised_savings(times, big).items()
        }


def measure_kernel_widths(
    op: str = "conv", threads: int = PROBE_THREADS, runs: int = 10, rounds: int = 7
) -> KernelWidths:
    """Time ``op``'s probe at every geometry, width and mode (interleaved rounds) and derive
    the favoured multiples. Takes ~10-30 s."""
    kind = OP_KINDS[op]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"kernel-widths-{op}-") as folder:
        sessions = probe_sessions(kind, Path(folder), threads)
        samples = time_rounds(sessions, lambda key: fastest_ms(*sessions[key], runs), rounds)
    return kernel_widths_of(kind, samples, threads, time.perf_counter() - started)


def kernel_widths_of(
    kind: OpKind, samples: Samples, threads: int = PROBE_THREADS, seconds: float = 0.0
) -> KernelWidths:
    """The favoured multiple of each of ``kind``'s modes from the probe's rounds."""
    from compressor.environment import cpu_model

    return KernelWidths(
        multiples={mode: decide(samples, mode) for mode in kind.modes},
        times_ms={mode: best_times(samples, mode) for mode in kind.modes},
        noise={mode: round(round_noise(samples, mode), 3) for mode in kind.modes},
        cpu=cpu_model(),
        threads=threads,
        seconds=round(seconds, 1),
        op=kind.name,
    )


def decide(samples: Samples, mode: str) -> int:
    """The favoured multiple for ``mode`` from the probe's rounds (``LARGEST`` when the
    rounds disagree too much to trust)."""
    if round_noise(samples, mode) > NOISY:
        return LARGEST
    return favoured_multiple(best_times(samples, mode))


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


def _cache() -> tuple[Path, dict]:
    from compressor.tasks.common import cache_dir

    path = cache_dir() / "kernel-widths.json"
    return path, (json.loads(path.read_text()) if path.is_file() else {})


def _key(op: str) -> str:
    from compressor.environment import cpu_model

    return f"v{CACHE_VERSION}|{op}|{cpu_model()}"


def stored_kernel_widths(op: str = "conv") -> KernelWidths | None:
    """This machine's cached measurement for ``op``, or None (nothing is measured here)."""
    data = _cache()[1].get(_key(op))
    if data is None:
        return None
    times = {
        mode: {int(c): {int(w): t for w, t in row.items()} for c, row in table.items()}
        for mode, table in data["times_ms"].items()
    }
    return KernelWidths(**{**data, "times_ms": times})


def cached_kernel_widths(op: str = "conv", *, refresh: bool = False) -> KernelWidths:
    """:func:`measure_kernel_widths` once per machine (CPU model) and kind of layer ``op``,
    then from ``$COMPRESSOR_CACHE/kernel-widths.json``; a line says so while it measures."""
    from compressor.logs import LOGGER
    from compressor.run_folder import write_json

    stored = None if refresh else stored_kernel_widths(op)
    if stored is not None:
        return stored
    path, table = _cache()
    LOGGER.info(
        f"measuring which {op} widths this machine's fp32 / INT8 kernels favour "
        f"(once per machine, ~20 s; cached in {path}) ..."
    )
    measured = measure_kernel_widths(op)
    LOGGER.info(f"kernel-aligned widths: {describe(measured)} ({measured.seconds:.0f} s)")
    write_json(path, {**table, _key(op): asdict(measured)})
    return measured


def describe(widths: KernelWidths) -> str:
    """One line: the kind of layer and its multiple per mode (``conv: none: multiples of
    16, static_ort: ...``)."""
    modes = ", ".join(f"{mode}: multiples of {m}" for mode, m in widths.multiples.items())
    return f"{widths.op}: {modes}"


def main() -> None:
    """Measure every kind of layer again (refreshing the cache) and print the evidence."""
    for op in OP_KINDS:
        result = cached_kernel_widths(op, refresh=True)
        print(json.dumps(asdict(result), indent=2))
        for mode, multiple in result.multiples.items():
            shares = ", ".join(f"{w}: {v:.2f}" for w, v in result.realised(mode).items())
            print(f"{op} {mode}: multiple {multiple}, noise {result.noise[mode]:.2f}; {shares}")


if __name__ == "__main__":  # python -m compressor.measure.kernel_widths: measure again
    main()
