"""Latency on the target device, always measured side by side with the baseline.

The machine is shared and noisy, so a candidate's latency alone drifts with the load;
its *ratio* to the baseline timed in alternating rounds within the same seconds does not.
:class:`LatencyMeter` owns one measurement subprocess (see ``latency_worker``) for the whole
search; models travel to it as TorchScript files, ONNX artifacts as their ``.onnx`` path
(timed by ONNX Runtime), and the search process simply waits (no compute of its own) while
the worker times them. One meter times one backend: torch and ONNX Runtime thread pools
timed in one process spin-wait against each other (measured 7x distortion), so the baseline
of an ONNX comparison is an ONNX artifact too (the fp32 export of the unpruned model).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressor.config import MeasureConfig
from compressor.errors import CompressorError
from compressor.measure.confidence import ratio_interval

BASELINE = "baseline"
CANDIDATE = "candidate"


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency of one model: median, 90th percentile, number of timed runs."""

    p50_ms: float
    p90_ms: float
    runs: int

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        ordered = sorted(samples)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return cls(statistics.median(ordered) * 1e3, p90 * 1e3, len(ordered))


@dataclass(frozen=True)
class LatencyComparison:
    """A candidate timed against the baseline in interleaved rounds.

    ``ratio`` is the geometric mean of the per-round ratios of medians; ``ratio_low`` /
    ``ratio_high`` its 95 % confidence interval (``confidence.ratio_interval``) over
    ``rounds`` rounds (None when not measured, as in records built by hand).
    """

    candidate: LatencyStats
    baseline: LatencyStats
    ratio: float
    ratio_low: float | None = None
    ratio_high: float | None = None
    rounds: int = 0
    precise: bool = True  # the rounds went on towards the stated interval (False: a short one)

    @property
    def halfwidth(self) -> float | None:
        """Relative half-width of the interval (0.05: the ratio is known within +-5 %)."""
        return None if self.ratio_high is None else self.ratio_high / self.ratio - 1.0


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class LatencyMeter:
    """Times models in a dedicated subprocess, each candidate interleaved with the baseline.

    Use as a context manager::

        with LatencyMeter(config, example_inputs) as meter:
            meter.set_baseline(model)
            comparison = meter.compare(pruned)
    """

    def __init__(
        self,
        config: MeasureConfig,
        example_inputs: Sequence[torch.Tensor],
        *,
        eager: bool = False,
    ) -> None:
        """``eager=True`` times modules as PyTorch eager code (pickled with ``torch.save``;
        their classes must be importable) instead of as TorchScript traces."""
        self.config = config
        self.eager = eager
        self.threads = config.threads or default_threads()
        self._tmp = tempfile.TemporaryDirectory(prefix="compressor-latency-")
        self._inputs_path = Path(self._tmp.name) / "inputs.pt"
        batch = [_batched(t, config.batch_size) for t in example_inputs]
        torch.save(batch, self._inputs_path)
        self._example_inputs = tuple(batch)
        self._process: subprocess.Popen | None = None
        self._counter = 0
        self._baseline_format: str | None = None

    def __enter__(self) -> LatencyMeter:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "compressor.measure.latency_worker",
                str(self.threads),
                self.config.device,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(CompressorError):  # already gone: nothing to stop
                self._request({"op": "quit"})
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a loaded machine: stop it, and reap it
                self._process.kill()
                self._process.wait()
        self._process = None
        self._tmp.cleanup()

    def set_baseline(self, model: nn.Module | Path) -> None:
        """Load the model (or ``.onnx`` artifact) every later :meth:`compare` is timed against."""
        self._baseline_format = _format_of(model)
        self._load(BASELINE, model)

    def compare(
        self,
        model: nn.Module | Path,
        rounds: int | None = None,
        precise: bool = True,
        refine: Callable[[LatencyComparison], bool] | None = None,
    ) -> LatencyComparison:
        """Time ``model`` (a module or an ``.onnx`` path) and the baseline in alternating
        rounds, at least ``rounds`` (default ``measure.rounds``) and, when ``precise``, more
        until the ratio's confidence interval is within ``measure.ratio_halfwidth`` (or a cap
        is hit). ``refine``: see :meth:`compare_many`."""
        asked = None if refine is None else (lambda short: refine(short[CANDIDATE]))
        return self.compare_many({CANDIDATE: model}, rounds, precise, asked)[CANDIDATE]

    def compare_many(
        self,
        models: Mapping[str, nn.Module | Path],
        rounds: int | None = None,
        precise: bool = True,
        refine: Callable[[dict[str, LatencyComparison]], bool] | None = None,
    ) -> dict[str, LatencyComparison]:
        """Time several models and the baseline together, in the same interleaved rounds.

        Re-timing the top candidates side by side before choosing compares them under the
        same load, which separately measured ratios (seconds or minutes apart) are not.
        Rounds continue (when ``precise``) until every ratio's interval is within
        ``measure.ratio_halfwidth``. With ``refine``, only the first ``rounds`` are timed
        before ``refine`` sees them; the rounds then continue, those already timed counted,
        only where it says the figures are worth the precision.
        """
        for model in models.values():
            if _format_of(model) != self._baseline_format:
                raise CompressorError(
                    f"a {_format_of(model)} model cannot be timed against a "
                    f"{self._baseline_format or 'missing'} baseline"
                )
        config = self.config
        minimum = rounds or config.rounds
        keys = {name: f"{CANDIDATE}-{index}" for index, name in enumerate(models)}
        try:
            for name, model in models.items():
                self._load(keys[name], model)
            # The time cap grows with the rounds asked for and the models in each round.
            cap = config.max_seconds * (minimum / config.rounds) * (len(models) + 1) / 2
            if refine is None:
                return self._compare_loaded(keys, BASELINE, minimum, cap, precise)
            reply = self._timed_rounds(keys, BASELINE, minimum, cap, precise=False)
            short = self._comparisons(keys, BASELINE, reply, precise=False)
            if not refine(short):
                return short
            reply = self._timed_rounds(keys, BASELINE, minimum, cap, precise=True, prior=reply)
            return self._comparisons(keys, BASELINE, reply, precise=True)
        finally:
            for key in keys.values():
                self._request({"op": "unload", "key": key})

    def _compare_loaded(
        self, keys: Mapping[str, str], reference: str, rounds: int, cap: float, precise: bool
    ) -> dict[str, LatencyComparison]:
        """Time the loaded ``keys`` (name -> worker key) against ``reference`` in the same
        interleaved rounds; ``precise``: until every ratio's interval is within
        ``measure.ratio_halfwidth`` (up to ``measure.max_rounds``), else ``rounds`` rounds."""
        reply = self._timed_rounds(keys, reference, rounds, cap, precise)
        return self._comparisons(keys, reference, reply, precise)

    def _timed_rounds(
        self,
        keys: Mapping[str, str],
        reference: str,
        rounds: int,
        cap: float,
        precise: bool,
        prior: dict | None = None,
    ) -> dict:
        """The worker's reply (per-key samples and per-round ratios); ``prior``: an earlier
        reply for the same keys, continued rather than timed again."""
        config = self.config
        return self._request(
            {
                "op": "compare",
                "keys": [*keys.values(), reference],
                "rounds": rounds,
                "runs_per_round": config.runs_per_round,
                "warmup": max(3, config.runs_per_round // 2),
                "max_seconds": cap,
                "max_rounds": max(rounds, config.max_rounds) if precise else None,
                "halfwidth": (config.ratio_halfwidth or None) if precise else None,
                "prior": prior and {"samples": prior["samples"], "ratios": prior["ratios"]},
            }
        )

    def _comparisons(
        self, keys: Mapping[str, str], reference: str, reply: dict, precise: bool
    ) -> dict[str, LatencyComparison]:
        baseline = LatencyStats.from_seconds(reply["samples"][reference])
        comparisons = {}
        for name, key in keys.items():
            interval = ratio_interval(reply["ratios"][key])
            comparisons[name] = LatencyComparison(
                candidate=LatencyStats.from_seconds(reply["samples"][key]),
                baseline=baseline,
                ratio=interval.ratio,
                # One round has no spread to estimate: no interval (never an infinite one).
                ratio_low=interval.low if interval.rounds > 1 else None,
                ratio_high=interval.high if interval.rounds > 1 else None,
                rounds=interval.rounds,
                precise=precise,
            )
        return comparisons

    def _load(self, key: str, model: nn.Module | Path) -> None:
        if _format_of(model) == "onnx":  # already an artifact on disk: time it as it is
            self._request(
                {
                    "op": "load",
                    "key": key,
                    "format": "onnx",
                    "path": str(model),
                    "inputs": str(self._inputs_path),
                }
            )
            return
        self._counter += 1
        path = Path(self._tmp.name) / f"{key}-{self._counter}.pt"
        if self.eager:
            torch.save(model.eval(), path)
        else:
            _save_torchscript(model, self._example_inputs, path)
        try:
            self._request(
                {
                    "op": "load",
                    "key": key,
                    "format": "eager" if self.eager else "torchscript",
                    "path": str(path),
                    "inputs": str(self._inputs_path),
                }
            )
        finally:
            path.unlink(missing_ok=True)

    def _request(self, request: dict) -> dict:
        if self._process is None or self._process.poll() is not None:
            raise CompressorError("the latency measurement process is not running")
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise CompressorError("the latency measurement process exited unexpectedly")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise CompressorError(f"latency measurement failed: {reply.get('error')}")
        return reply


def _format_of(model: nn.Module | Path) -> str:
    return "onnx" if isinstance(model, (str, Path)) else "torchscript"


def _batched(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    if batch_size == tensor.shape[0]:
        return tensor
    return tensor[:1].expand(batch_size, *tensor.shape[1:]).contiguous()


def _save_torchscript(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path
) -> None:
    # TorchScript tracing is the cheapest way to hand an arbitrary nn.Module (even one
    # defined in a user's __main__) to another process without pickling its class.
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jit.trace is deprecated, still apt
        traced = torch.jit.trace(model, example_inputs, check_trace=False, strict=False)
    traced.save(str(path))
