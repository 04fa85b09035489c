"""compressor: reward-guided model compression.

``compress(model, example_inputs, evaluate, *, train_data, target_flops=0.5, ...)`` searches
per-layer pruning plans with Optuna, scores each by accuracy x delta(FLOPs, measured
latency), recovers the best by fine-tuning and returns a :class:`CompressionResult`.
"""

from compressor.config import CompressConfig, parse_flops_target
from compressor.errors import CompressorError, UserInputError

__all__ = [
    "CompressConfig",
    "CompressionResult",
    "CompressorError",
    "UserInputError",
    "compress",
    "load_compressed",
    "parse_flops_target",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Heavy imports (torch, optuna) only when the API is used, so `compress --help` is instant.
    if name == "compress":
        from compressor.api import compress

        return compress
    if name == "CompressionResult":
        from compressor.result import CompressionResult

        return CompressionResult
    if name == "load_compressed":
        from compressor.saved_model import load_compressed

        return load_compressed
    raise AttributeError(f"module 'compressor' has no attribute {name!r}")
