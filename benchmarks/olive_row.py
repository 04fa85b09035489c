"""B2's Olive row: Microsoft Olive (PyPI ``olive-ai``), the closest peer, with its own search.

Olive searches over ONNX Runtime passes with measured latency. Here it gets what our search
gets: the same fp32 ONNX export of the unpruned encoder, the same validation metric (dev
Spearman on the task's searched sts-dev part, through compressor's ``OnnxModule``), the same
accuracy floor (the baseline's dev Spearman minus ``max_drop`` points) and its own latency
evaluator at the benchmark's thread count. Its passes: ``OrtTransformersOptimization``
(BERT fusion) then ``OnnxDynamicQuantization`` with Olive's default search values (weight
precision int8 / uint8, per-channel, reduce-range, quantization pre-processing: 16 points),
searched jointly by Olive's TPE sampler within a trial and time budget. Objectives in Olive's
own terms: latency p50 first (priority 1), dev Spearman second with a ``max-degradation``
goal, so Olive's pick is its fastest candidate within the floor, as ours is under
``--max-accuracy-drop``.

Left out: ``OrtSessionParamsTuning`` (its result is a set of session options, which the
benchmark's shared timing worker would not apply, so its pick could not be compared fairly);
static quantization (``quantize_static`` on every BERT op is broken on this model,
../shared/STACK.md).

The heavy lifting is ``olive.workflows.run`` (engine, search, passes, evaluators); this
module writes its config and reads its footprint. Olive is an optional extra
(``pip install -c constraints.txt '.[olive]'``): without it the row says so and is skipped.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LATENCY_TOKENS = 128  # Olive's latency objective is one input shape; the longer one is steadier
MINILM_FUSION = {"model_type": "bert", "num_heads": 12, "hidden_size": 384}  # as the fusion row


@dataclass(frozen=True)
class OliveBudget:
    """How long Olive may search: candidates (search points) and wall seconds."""

    max_iter: int = 16  # the whole default dynamic-quantization space
    max_seconds: int = 240

    def text(self) -> str:
        return f"at most {self.max_iter} candidates or {self.max_seconds} s of search"


@dataclass(frozen=True)
class OliveSearch:
    """What Olive is asked: the validation metric in points of an ONNX file (dev Spearman
    x100 for MiniLM), the floor below the input model's (points), the latency evaluator's
    threads, the budget, and the transformer optimizer's model type / heads / hidden size."""

    evaluate: Callable[[Path], float]
    threads: int
    max_drop: float
    budget: OliveBudget = field(default_factory=OliveBudget)
    fusion: dict = field(default_factory=lambda: dict(MINILM_FUSION))


@dataclass(frozen=True)
class OliveOutcome:
    """Olive's chosen model (None when skipped or failed) and what to record about it."""

    path: Path | None
    facts: dict = field(default_factory=dict)


def missing_reason() -> str | None:
    """Why the Olive row cannot run here (None when ``olive`` imports)."""
    # Olive's documented opt-out of its usage telemetry, read when it is first imported.
    os.environ.setdefault("OLIVE_DISABLE_TELEMETRY", "1")
    try:
        olive = importlib.import_module("olive")
    except ImportError as exc:
        return (
            f"olive-ai is not installed ({exc}); install the extra with "
            "`pip install -c constraints.txt '.[olive]'`"
        )
    return None if hasattr(olive, "__version__") else "the installed `olive` is not olive-ai"


def workflow_config(fp32: Path, work: Path, search: OliveSearch) -> dict:
    """Olive's run config (the JSON a user writes), with the evaluator as a Python callable;
    ``fp32``'s inputs are token ids and attention mask."""
    import onnx

    budget, evaluate = search.budget, search.evaluate
    session = {"intra_op_num_threads": search.threads, "inter_op_num_threads": 1}
    names = token_input_names(fp32)
    latency_data = {
        "name": "latency_inputs",
        "type": "DummyDataContainer",  # ones: dense kernels run the same on any token ids
        "load_dataset_config": {
            "input_shapes": [[1, LATENCY_TOKENS]] * len(names),
            "input_names": names,
            "input_types": ["int64"] * len(names),
        },
    }
    metrics = [
        {
            "name": "latency",
            "type": "latency",
            "sub_types": [{"name": "p50", "priority": 1}],
            "data_config": latency_data,
            "user_config": {"inference_settings": {"onnx": {"session_options": session}}},
        },
        {
            "name": "validation",  # dev Spearman x100 for MiniLM
            "type": "custom",
            "sub_types": [
                {
                    "name": "points",
                    "priority": 2,
                    "higher_is_better": True,
                    "goal": {"type": "max-degradation", "value": search.max_drop},
                }
            ],
            "user_config": {
                "evaluate_func": lambda model, device, providers: evaluate(Path(model.model_path))
            },
        },
    ]
    return {
        "input_model": {"type": "ONNXModel", "model_path": str(fp32)},
        "systems": {
            "local": {
                "type": "LocalSystem",
                "accelerators": [
                    {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}
                ],
            }
        },
        "evaluators": {"stsb": {"metrics": metrics}},
        "passes": {
            "fusion": {"type": "OrtTransformersOptimization", **search.fusion},
            # fusion + dynamic INT8 needs the float default type (../shared/STACK.md)
            "quantization": {
                "type": "OnnxDynamicQuantization",
                "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT},
            },
        },
        "engine": {
            "host": "local",
            "target": "local",
            "evaluator": "stsb",
            "search_strategy": {
                "execution_order": "joint",
                "sampler": "tpe",
                "sampler_config": {"seed": 0, "max_samples": budget.max_iter},
                "max_iter": budget.max_iter,
                "max_time": budget.max_seconds,
            },
            "evaluate_input_model": False,  # the goal's baseline is evaluated anyway
            "cache_dir": str(work / "olive-cache"),
            "output_dir": str(work / "olive-output"),
            "log_severity_level": 3,
        },
    }


def run_olive(fp32: Path, work: Path, search: OliveSearch) -> OliveOutcome:
    """Olive's search from ``fp32``; its best candidate, or why there is none."""
    reason = missing_reason()
    base = {
        "budget": search.budget.text(),
        "latency_objective": f"p50 at batch 1, {LATENCY_TOKENS} tokens",
    }
    if reason:
        return OliveOutcome(None, {**base, "skipped": reason})
    import olive
    from olive.workflows import run as olive_run

    base["olive_version"] = olive.__version__
    config = workflow_config(fp32, work, search)
    started = time.perf_counter()
    try:
        output = olive_run(config)
    except Exception as exc:  # any failure of the peer's run is this row's result, said plainly
        logging.getLogger(__name__).warning("Olive failed", exc_info=True)
        return OliveOutcome(None, {**base, "failed": f"{type(exc).__name__}: {exc}"})
    seconds = time.perf_counter() - started
    facts = {**base, "search_seconds": seconds, "candidates": candidates(output.footprint)}
    best = output.get_best_candidate() if output is not None else None
    if best is None or not best.model_path:
        return OliveOutcome(None, {**facts, "failed": "Olive produced no output model"})
    facts["chosen"] = {
        "model_id": best.model_id,
        "metrics": best.metrics_value,
        "passes": _passes_of(output.footprint, best.model_id),
    }
    return OliveOutcome(onnx_file(Path(best.model_path)), facts)


def token_input_names(path: Path) -> list[str]:
    """The graph inputs of an exported encoder (token ids, attention mask)."""
    import onnx

    return [item.name for item in onnx.load(str(path), load_external_data=False).graph.input]


def onnx_file(path: Path) -> Path:
    """The ``.onnx`` file of an Olive model path (the file, or the folder Olive saved it in)."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.onnx"))
    if len(found) != 1:
        raise ValueError(f"expected one .onnx file in Olive's output {path}, found {found}")
    return found[0]


def candidates(footprint) -> list[dict]:
    """Every model Olive scored in its search: the pass that made it, its settings, metrics."""
    rows = []
    for model_id, node in footprint.nodes.items():
        if node.parent_model_id is None or not node.metrics:
            continue
        rows.append(
            {
                "model_id": model_id,
                "passes": _passes_of(footprint, model_id),
                "metrics": node.metrics.value.to_json(),
                "goals_met": bool(node.metrics.if_goals_met),
            }
        )
    return rows


def _passes_of(footprint, model_id: str) -> list[dict]:
    """The chain of passes (type and searched settings) from the input model to ``model_id``."""
    chain = []
    for config in footprint.trace_back_run_history(model_id).values():
        if not config:
            continue
        settings = config.get("config") or {}
        chosen = ("precision", "per_channel", "reduce_range", "quant_preprocess", "opt_level")
        chain.append(
            {"type": config.get("type"), **{k: settings[k] for k in chosen if k in settings}}
        )
    return list(reversed(chain))
