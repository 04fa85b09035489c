"""Per-layer precision chosen by measurement: the unpruned model's layers ranked by how much
INT8 quantization hurts them, once per process, for the search's ``deploy.keep_sensitive``.

The ranking is measured on the unpruned, unfused fp32 export quantized by ``static_ort``
(the seeded mode of conv models; the other INT8 modes quantize the same layers), with the
task's calibration inputs (:func:`compressor.measure.precision.quantization_sensitivity`).
Pruned candidates keep their modules' names, so the same names pick their layers; a block
a candidate removed has no layers left to keep.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from compressor.actions.artifact import calibration_feeds
from compressor.actions.export import export_onnx
from compressor.actions.quantize import QuantizeSpec, quantize_onnx
from compressor.logs import LOGGER
from compressor.measure.precision import LayerSensitivity, quantization_sensitivity
from compressor.search.context import SearchSettings

RANKING = "ranking"


def sensitive_layers(settings: SearchSettings) -> tuple[LayerSensitivity, ...]:
    """The unpruned model's weighted layers, most INT8-sensitive first (measured on first
    use, then remembered in ``settings.precision_cache``)."""
    cache = settings.precision_cache
    if RANKING not in cache:
        cache[RANKING] = tuple(measure_ranking(settings))
        top = ", ".join(f"{s.module} ({s.sqnr_db:.1f} dB)" for s in cache[RANKING][:4])
        LOGGER.info(f"most INT8-sensitive layers (output SQNR vs fp32): {top}")
    return cache[RANKING]


def measure_ranking(settings: SearchSettings) -> list[LayerSensitivity]:
    """Export, quantize (static ORT) and compare the unpruned model layer by layer."""
    feeds = calibration_feeds(settings.calibration, settings.config.deploy.calibration_samples)
    with tempfile.TemporaryDirectory(prefix="precision-") as folder:
        fp32 = export_onnx(settings.model, settings.example_inputs, Path(folder) / "fp32.onnx")
        qdq = quantize_onnx(fp32, Path(folder) / "qdq.onnx", QuantizeSpec("static_ort", feeds))
        return quantization_sensitivity(fp32, qdq, feeds)
