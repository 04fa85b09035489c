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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from compressor.config import MeasureConfig
from compressor.measure.latency import LatencyComparison, LatencyMeter

PHASES = ("prefill", "decode")
# A precise comparison may take this many times ``measure.max_seconds`` per model timed: a
# decode round of SmolLM2 against its fp32 baseline takes ~0.5 s, so the plain cap (2 s)
# allows ~4 rounds, whose ratio moved +-15 % between trials of one plan (B5, 2026-12-01).
PRECISE_TIME_FACTOR = 10


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

    def compare(
        self, model: Path, rounds: int | None = None, precise: bool = False
    ) -> DecoderLatency:
        """Time both phases of ``model`` against the baseline's (alternating rounds).

        ``precise``: go on until the ratio's interval is within ``measure.ratio_halfwidth``
        (up to ``measure.max_rounds``), with a longer time cap; else ``rounds`` rounds within
        ``measure.max_seconds``, a search trial's quick look.
        """
        results = {
            phase: self._compare_phase({"candidate": model}, phase, rounds, precise)["candidate"]
            for phase in PHASES
        }
        return DecoderLatency(results["prefill"], results["decode"], self.prompt_length)

    def compare_decode(self, models: Mapping[str, Path]) -> dict[str, LatencyComparison]:
        """Decode time of several artifacts and the baseline in the same interleaved rounds,
        until every ratio's interval is within ``measure.ratio_halfwidth`` (or a cap): the
        finalists of a search, compared under one load instead of minutes apart."""
        return self._compare_phase(models, "decode", None, precise=True)

    def _compare_phase(
        self, models: Mapping[str, Path], phase: str, rounds: int | None, precise: bool
    ) -> dict[str, LatencyComparison]:
        config = self.config
        rounds = rounds or config.rounds
        baseline = f"baseline-{phase}"
        if self.fresh_baseline and self._baseline_path is not None:
            self._request({"op": "unload", "key": baseline})
            self._load_phase(baseline, self._baseline_path, phase)
        keys = {name: f"candidate-{index}-{phase}" for index, name in enumerate(models)}
        cap = config.max_seconds * (rounds / config.rounds)
        if precise:
            cap *= PRECISE_TIME_FACTOR * len(models)
        try:
            for name, model in models.items():
                self._load_phase(keys[name], Path(model), phase)
            return self._compare_loaded(keys, baseline, rounds, cap, precise)
        finally:
            for key in keys.values():
                self._request({"op": "unload", "key": key})

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
