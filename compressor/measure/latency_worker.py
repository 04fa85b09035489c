"""The measurement process: loads artifacts and times them, nothing else.

Run as ``python -m compressor.measure.latency_worker THREADS DEVICE``; it reads one JSON
request per line on stdin and answers one JSON line on its own copy of stdout. Timing
happens here, in a process that does no search work, because timing inside the search
process let its thread pools (and ONNX Runtime's) spin-wait against the timed model and
distorted medians by up to 7x on 2 cores.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from compressor.measure.confidence import precise_enough
from compressor.registry import Registry

Runner = Callable[[], object]
# How each artifact format is loaded into a zero-argument runner.
LOADERS: Registry[Callable[[str, str, str], Runner]] = Registry("artifact format")


@LOADERS.register("torchscript", "a TorchScript file, run with torch")
def _load_torchscript(path: str, inputs_path: str, device: str) -> Runner:
    module = torch.jit.load(path, map_location=device).eval()
    inputs = [t.to(device) for t in torch.load(inputs_path, weights_only=True)]

    def run():
        with torch.inference_mode():
            return module(*inputs)

    return run


@LOADERS.register("eager", "a pickled PyTorch module, run eagerly")
def _load_eager(path: str, inputs_path: str, device: str) -> Runner:
    # A module pickled by the meter's own process moments ago (a trusted file): eager
    # PyTorch, as a user runs it, for "speed-up over PyTorch" comparisons.
    module = torch.load(path, map_location=device, weights_only=False).eval()
    inputs = [t.to(device) for t in torch.load(inputs_path, weights_only=True)]

    def run():
        with torch.inference_mode():
            return module(*inputs)

    return run


@LOADERS.register("onnx", "an ONNX file, run in ONNX Runtime")
def _load_onnx(path: str, inputs_path: str, device: str) -> Runner:
    from compressor.measure.onnx_runtime import open_session

    # Spinning on: this process does nothing else, as a deployed inference server would.
    session = open_session(path, device=device, threads=torch.get_num_threads(), spinning=True)
    names = [item.name for item in session.get_inputs()]
    inputs = torch.load(inputs_path, weights_only=True)
    feed = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}

    def run():
        return session.run(None, feed)

    return run


@LOADERS.register("onnx-prefill", "a KV-cache decoder graph: one prompt pass, empty cache")
def _load_onnx_prefill(path: str, inputs_path: str, device: str) -> Runner:
    # A decoder's time to first token: the whole prompt through the graph, empty KV cache.
    from compressor.measure.decoder import DecoderSession

    session = DecoderSession(path, threads=torch.get_num_threads(), spinning=True)
    prompt = torch.load(inputs_path, weights_only=True)[0].numpy()
    cache = session.empty_cache(prompt.shape[0])
    return lambda: session.run(prompt, cache)


@LOADERS.register("onnx-decode", "a KV-cache decoder graph: one token after the prompt")
def _load_onnx_decode(path: str, inputs_path: str, device: str) -> Runner:
    # One generated token with the prompt's KV cache as context (time per output token).
    from compressor.measure.decoder import DecoderSession

    session = DecoderSession(path, threads=torch.get_num_threads(), spinning=True)
    prompt = torch.load(inputs_path, weights_only=True)[0].numpy()
    _, cache = session.prefill(prompt)
    token = prompt[:, -1:]
    return lambda: session.run(token, cache)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_once(run: Runner, device: str) -> float:
    """Seconds for one call, CUDA synchronised before reading either timer."""
    _synchronize(device)
    start = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - start


def compare(
    runners: dict[str, Runner],
    keys: list[str],
    device: str,
    rounds: int,
    runs_per_round: int,
    warmup: int,
    max_seconds: float,
    max_rounds: int | None = None,
    halfwidth: float | None = None,
    prior: dict | None = None,
) -> dict:
    """Time ``keys`` in alternating rounds; per-model samples plus, for every key but the
    last (the reference), its per-round ratio of medians to the reference.

    At least ``rounds`` rounds (two when ``max_seconds`` runs out first). With ``halfwidth``
    the rounds go on, up to ``max_rounds`` and ``max_seconds``, until every ratio's
    confidence interval is within that relative half-width (``confidence.precise_enough``).
    ``prior``: an earlier reply for the same keys, whose rounds count as this call's first
    ones (a short comparison continued, not timed again).
    """
    if prior is None:
        for key in keys:
            for _ in range(warmup):
                runners[key]()
    _synchronize(device)
    prior = prior or {"samples": {}, "ratios": {}}
    samples = {key: list(prior["samples"].get(key, [])) for key in keys}
    reference, compared = keys[-1], keys[:-1]
    ratios = {key: list(prior["ratios"].get(key, [])) for key in compared}
    done = min((len(r) for r in ratios.values()), default=0)
    limit = max(rounds, max_rounds or rounds) if halfwidth else rounds

    def settled() -> bool:
        """Every ratio's interval within ``halfwidth`` after at least ``rounds`` rounds."""
        return bool(halfwidth and compared) and all(
            precise_enough(r, halfwidth, rounds) for r in ratios.values()
        )

    if settled():  # the prior rounds already meet the rule
        limit = done
    started = time.perf_counter()
    for index in range(done, limit):
        order = keys if index % 2 == 0 else list(reversed(keys))
        medians = {}
        for key in order:
            times = [time_once(runners[key], device) for _ in range(runs_per_round)]
            samples[key].extend(times)
            medians[key] = statistics.median(times)
        for key in compared:
            ratios[key].append(medians[key] / medians[reference])
        if index >= max(1, done) and time.perf_counter() - started > max_seconds:
            break
        if index + 1 >= rounds and settled():
            break
    return {"samples": samples, "ratios": ratios}


def serve(threads: int, device: str) -> None:
    reply_stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr, not into the protocol
    torch.set_num_threads(threads)
    runners: dict[str, Runner] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = _handle(request, runners, device)
        except Exception as exc:  # reported to the caller, which decides what it means
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply_stream.write(json.dumps(reply) + "\n")
        if request.get("op") == "quit":
            return


def _handle(request: dict, runners: dict[str, Runner], device: str) -> dict:
    op = request["op"]
    if op == "load":
        runners[request["key"]] = LOADERS.get(request["format"])(
            request["path"], request["inputs"], device
        )
        return {"ok": True}
    if op == "unload":
        runners.pop(request["key"], None)
        return {"ok": True}
    if op == "compare":
        arguments = {k: v for k, v in request.items() if k != "op"}
        return {"ok": True, **compare(runners, device=device, **arguments)}
    if op == "quit":
        return {"ok": True}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
