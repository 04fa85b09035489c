"""A decoder's latency is two numbers: prefill (time to first token for a prompt of stated
length) and decode (time per generated token, with that prompt as KV-cache context) -- what
ONNX Runtime GenAI's ``benchmark_e2e.py``, vLLM (TTFT / TPOT) and llama.cpp report.

:class:`DecoderLatencyMeter` reuses the measurement subprocess of
:class:`~compressor.measure.latency.LatencyMeter` (its ``onnx-prefill`` and ``onnx-decode``
loaders run :class:`~compressor.measure.decoder.DecoderSession`), and times each phase of a
candidate in alternating rounds against the same phase of the baseline artifact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from compressor.config import MeasureConfig
from compressor.measure.confidence import ratio_interval
from compressor.measure.latency import LatencyComparison, LatencyMeter, LatencyStats

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class DecoderLatency:
    """Prefill and decode latency of a candidate, each against the baseline."""

    prefill: LatencyComparison
    decode: LatencyComparison
    prompt_length: int


class DecoderLatencyMeter(LatencyMeter):
    """Times KV-cache decoder artifacts (``.onnx`` paths) phase by phase, batch 1.

    Use as a context manager, like :class:`LatencyMeter`::

        with DecoderLatencyMeter(config, prompt) as meter:
            meter.set_baseline(fp32_graph)
            latency = meter.compare(candidate_graph)
    """

    def __init__(
        self, config: MeasureConfig, prompt: torch.Tensor, fresh_baseline: bool = True
    ) -> None:
        super().__init__(dataclasses.replace(config, batch_size=1), (prompt.reshape(1, -1),))
        self.prompt_length = int(prompt.numel())
        # A baseline session kept alive for a whole search slowed down by itself here (fp32
        # SmolLM2 decode 38 -> 56 ms per token over ~10 min, while fresh sessions did not;
        # fp32 against itself read 0.92), which flatters every later candidate. So each
        # comparison reloads the baseline unless told not to: ~1 s per phase.
        self.fresh_baseline = fresh_baseline
        self._baseline_path: Path | None = None

    def set_baseline(self, model: Path) -> None:
        self._baseline_format = "onnx"
        self._baseline_path = Path(model)
        for phase in PHASES:
            self._load_phase(f"baseline-{phase}", model, phase)

    def compare(self, model: Path, rounds: int | None = None) -> DecoderLatency:
        """Time both phases of ``model`` against the baseline's (alternating rounds)."""
        rounds = rounds or self.config.rounds
        results = {}
        for phase in PHASES:
            if self.fresh_baseline and self._baseline_path is not None:
                self._request({"op": "unload", "key": f"baseline-{phase}"})
                self._load_phase(f"baseline-{phase}", self._baseline_path, phase)
            key = f"candidate-{phase}"
            self._load_phase(key, model, phase)
            try:
                reply = self._request(
                    {
                        "op": "compare",
                        "keys": [key, f"baseline-{phase}"],
                        "rounds": rounds,
                        "runs_per_round": self.config.runs_per_round,
                        "warmup": max(3, self.config.runs_per_round // 2),
                        "max_seconds": self.config.max_seconds * (rounds / self.config.rounds),
                    }
                )
            finally:
                self._request({"op": "unload", "key": key})
            # The same ratio rule as every other comparison: geometric mean of the per-round
            # ratios with its interval (compressor.measure.confidence).
            interval = ratio_interval(reply["ratios"][key])
            results[phase] = LatencyComparison(
                candidate=LatencyStats.from_seconds(reply["samples"][key]),
                baseline=LatencyStats.from_seconds(reply["samples"][f"baseline-{phase}"]),
                ratio=interval.ratio,
                ratio_low=interval.low if interval.rounds > 1 else None,
                ratio_high=interval.high if interval.rounds > 1 else None,
                rounds=interval.rounds,
            )
        return DecoderLatency(results["prefill"], results["decode"], self.prompt_length)

    def _load_phase(self, key: str, model: Path, phase: str) -> None:
        self._request(
            {
                "op": "load",
                "key": key,
                "format": f"onnx-{phase}",
                "path": str(model),
                "inputs": str(self._inputs_path),
            }
        )
