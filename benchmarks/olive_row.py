"""B2's Olive row: Microsoft Olive (PyPI ``olive-ai``), the closest peer, with its own search.

Olive searches over ONNX Runtime passes with measured latency. Here it starts from the same
fp32 ONNX export of the unpruned encoder as every other row, with its own latency evaluator
(p50, batch 1, 128 tokens) at the benchmark's thread count. Its passes:
``OrtTransformersOptimization`` (BERT fusion) then ``OnnxDynamicQuantization`` with Olive's
default search values (weight precision int8 / uint8, per-channel, reduce-range,
quantization pre-processing: 16 points), searched pass by pass by Olive's TPE sampler,
which scores the whole space (17 candidates); Olive's pick is its fastest candidate. The
benchmark then scores and times that model like every row.

No accuracy objective: Olive 0.13.0 cannot run a ``custom`` metric (the only way to give it
STS-B Spearman) in a workflow here. Its ``Metric`` validates a custom metric's ``backend``
and sub-types' ``metric_config`` to None, and its own pydantic serializers then fail on them
when the engine records or re-validates the config (``PydanticSerializationError: Error
calling function `serialize_backend`: AttributeError: 'NoneType' object has no attribute
'model_dump'``, pydantic 2.14.4). So Olive chooses on latency alone, and its pick's Spearman
is what the table shows.

Left out: ``OrtSessionParamsTuning`` (its result is a set of session options, which the
benchmark's shared timing worker would not apply, so its pick could not be compared fairly);
static quantization (``quantize_static`` on every BERT op is broken on this model,
../shared/STACK.md).

The heavy lifting is ``olive.workflows.run`` (engine, search, passes, evaluator); this
module writes its config and reads its footprint. Olive is an optional extra
(``pip install -c constraints.txt '.[olive]'``): without it the row says so and is skipped.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import RowOutcome

LATENCY_TOKENS = 128  # Olive's latency objective is one input shape; the longer one is steadier
NO_ACCURACY_OBJECTIVE = (
    "none: Olive 0.13.0 fails on its own custom metrics (PydanticSerializationError in "
    "Metric.serialize_backend, backend None), so it picks on latency alone"
)
BUDGET = (
    "Olive's whole default space, pass by pass: the fused model and 16 dynamic-INT8 settings "
    "(no time cap: 0.13.0 ignores max_time in this order)"
)
# OnnxDynamicQuantization's settings with default search values (Olive's own lists)
SEARCHED = ("precision", "per_channel", "reduce_range", "quant_preprocess")
MINILM_FUSION = {"model_type": "bert", "num_heads": 12, "hidden_size": 384}  # as the fusion row


@dataclass(frozen=True)
class OliveSearch:
    """What Olive is asked: its latency evaluator's threads and input length, and the
    transformer optimizer's model type / heads / hidden size."""

    threads: int
    tokens: int = LATENCY_TOKENS  # the latency evaluator's input length
    fusion: dict = field(default_factory=lambda: dict(MINILM_FUSION))


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

    session = {"intra_op_num_threads": search.threads, "inter_op_num_threads": 1}
    names = token_input_names(fp32)
    latency_data = {
        "name": "latency_inputs",
        "type": "DummyDataContainer",  # ones: dense kernels run the same on any token ids
        "load_dataset_config": {
            "input_shapes": [[1, search.tokens]] * len(names),
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
        # an explicit type: with none, Olive 0.13.0's resource scan fails on `type: None`
        "evaluators": {"latency": {"type": "OnnxEvaluator", "metrics": metrics}},
        "passes": {
            "fusion": {"type": "OrtTransformersOptimization", **search.fusion},
            # fusion + dynamic INT8 needs the float default type (../shared/STACK.md)
            "quantization": {
                "type": "OnnxDynamicQuantization",
                **{name: "SEARCHABLE_VALUES" for name in SEARCHED},
                "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT},
            },
        },
        "engine": {
            "host": "local",
            "target": "local",
            "evaluator": "latency",
            "search_strategy": {
                # pass by pass: in joint order Olive 0.13.0 fails every candidate after the
                # first (the shared fusion output is re-recorded through a renamed pydantic
                # field: `"FootprintNode" object has no field "model_config"`). It ignores
                # max_time / max_iter in this order, and scores each pass's whole space (its
                # sampler's max_samples did not bound it either): 1 fusion + 16 settings.
                "execution_order": "pass-by-pass",
                "sampler": "tpe",
                "sampler_config": {"seed": 0},
            },
            "evaluate_input_model": False,
            "cache_dir": str(work / "olive-cache"),
            "output_dir": str(work / "olive-output"),
            "log_severity_level": 3,
        },
    }


def run_olive(fp32: Path, work: Path, search: OliveSearch) -> RowOutcome:
    """Olive's search from ``fp32``; its best candidate, or why there is none."""
    reason = missing_reason()
    base = {
        "budget": BUDGET,
        "latency_objective": f"p50 at batch 1, {search.tokens} tokens",
        "accuracy_objective": NO_ACCURACY_OBJECTIVE,
    }
    if reason:
        return RowOutcome(None, {**base, "skipped": reason})
    import olive
    from olive.workflows import run as olive_run

    base["olive_version"] = olive.__version__
    config = workflow_config(fp32, work, search)
    started = time.perf_counter()
    try:
        output = olive_run(config)
    except Exception as exc:  # any failure of the peer's run is this row's result, said plainly
        logging.getLogger(__name__).warning("Olive failed", exc_info=True)
        return RowOutcome(None, {**base, "failed": f"{type(exc).__name__}: {exc}"})
    seconds = time.perf_counter() - started
    facts = {**base, "search_seconds": seconds, "candidates": candidates(output.footprint)}
    best = output.get_best_candidate() if output is not None else None
    if best is None or not best.model_path:
        return RowOutcome(None, {**facts, "failed": "Olive produced no output model"})
    facts["chosen"] = {
        "model_id": best.model_id,
        "metrics": best.metrics_value,
        "passes": _passes_of(output.footprint, best.model_id),
    }
    return RowOutcome(onnx_file(Path(best.model_path)), facts)


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
    for node_id, settings in footprint.trace_back_run_history(model_id).items():
        if not settings:  # the input model
            continue
        chosen = {k: settings[k] for k in SEARCHED if k in settings}
        chain.append({"type": footprint.nodes[node_id].from_pass, **chosen})
    return list(reversed(chain))
