"""`compress` and `compress worker` as processes on one study, for the tests that use the
PostgreSQL server (the ``postgres_server`` and ``database`` fixtures of conftest.py).

The processes run the embedded digits task with the cheapest settings (one deploy mode, no
recovery epochs, short latency comparisons): those tests are about who runs which trial and
what is recorded, not about accuracy.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

STUDY = "digits-shared"
CHEAP = {
    "search": {"references": False},  # the budget counted here is the searched trials
    "recovery": {"epochs": 0},
    "deploy": {"quantization": ["none"], "fusion": [False]},
    "measure": {"rounds": 2, "runs_per_round": 5, "threads": 1},
}


def start_compress(folder: Path, storage: str, trials: int) -> subprocess.Popen:
    """``compress`` on the study, writing ``folder/run``; its output in ``compress.log``."""
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(CHEAP))
    command = [sys.executable, "-m", "compressor.cli", "--config", str(config)]
    command += ["--storage", storage, "--study", STUDY, "--trials", str(trials), "--seed", "1"]
    command += ["--output", str(folder / "run"), "--quiet"]
    return _start(command, folder / "compress.log")


def start_worker(
    folder: Path, storage: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """``compress worker`` joining the study (``env``: its environment, default ours); its
    output in ``worker.log``."""
    command = [sys.executable, "-m", "compressor.cli", "worker", "--storage", storage]
    command += ["--study", STUDY, "--wait", "300"]
    return _start(command, folder / "worker.log", env)


def _start(command, log_path, env=None):
    log = open(log_path, "w")  # noqa: SIM115 -- the process writes to it until it ends
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, log_path: Path, timeout: float = 900) -> None:
    """Wait for ``process``; it must exit 0 (else its log's end is the failure message)."""
    code = process.wait(timeout=timeout)
    assert code == 0, log_path.read_text()[-3000:]


def process_name(process: subprocess.Popen) -> str:
    """The worker id (``hostname:pid``) the process records on its trials."""
    return f"{socket.gethostname()}:{process.pid}"
