"""The output folder of a run: new, continued (resume) or started over, decided up front.

A run's folder holds ``config.yaml`` (written first), ``study.db`` (the Optuna study, the
search's whole state), and at the end ``model.safetensors`` and ``result.json``. Rerunning
the same command on the same folder continues the study; a different config is refused
unless the caller says ``resume`` (continue with the new settings, e.g. more trials) or
``overwrite`` (start over). Nothing is deleted or written before the decision is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from compressor.config import CompressConfig
from compressor.credentials import mask
from compressor.errors import UserInputError

CONFIG_FILE = "config.yaml"
RUN_FILES = (
    CONFIG_FILE,
    "study.db",
    "model.safetensors",
    "result.json",
    "model.onnx",
    "report.html",
    "summary.md",
)
# What a causal-lm run writes besides: its report, the tokenizer and the model's configs
# beside model.onnx (onnxruntime-genai reads them), and its scratch folder while it runs.
DECODER_RUN_FILES = (
    *RUN_FILES,
    "report.md",
    "config.json",
    "generation_config.json",
    "genai_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "work",
)
EXISTING_POLICIES = ("auto", "resume", "overwrite")


def default_output_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def check_output_dir(
    output: Path | None,
    config: CompressConfig,
    existing: str = "auto",
    run_files: tuple[str, ...] = RUN_FILES,
) -> tuple[Path, bool]:
    """Validate the output folder; returns it and whether the run continues an earlier one.

    ``run_files``: the names a run of this kind writes (``--overwrite`` replaces only those).
    Raises :class:`UserInputError` (and touches nothing) when the folder cannot be used.
    """
    if existing not in EXISTING_POLICIES:
        raise ValueError(f"existing must be one of {EXISTING_POLICIES}, got {existing!r}")
    path = Path(output) if output is not None else default_output_dir()
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path, False
    if not path.is_dir():
        raise UserInputError(f"output {path} exists and is not a folder; choose another --output")
    if not (path / CONFIG_FILE).is_file():
        raise UserInputError(
            f"output folder {path} is not empty and holds no compress run; choose a new --output"
        )
    foreign = sorted(
        p.name for p in path.iterdir() if p.name not in run_files and not p.name.startswith(".")
    )
    if existing == "overwrite" and foreign:
        raise UserInputError(
            f"output folder {path} holds files compress did not write "
            f"({foreign[0]}); refusing to overwrite it"
        )
    if existing == "overwrite":
        return path, False
    difference = config_difference(_saved_config(path), config)
    if difference and existing != "resume":
        raise UserInputError(
            f"output folder {path} holds a run with a different config ({difference}); pass "
            "--resume to continue it with the new settings or --overwrite to start over"
        )
    return path, True


def clear_run_files(path: Path, run_files: tuple[str, ...] = RUN_FILES) -> None:
    """Remove an earlier run's files (``--overwrite``), once the new run is about to start."""
    for name in run_files:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def write_config(path: Path, config: CompressConfig) -> None:
    """Create the run folder and write ``config.yaml`` first: what a rerun compares with."""
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _saved_config(path: Path) -> dict:
    try:
        return CompressConfig.from_dict(yaml.safe_load((path / CONFIG_FILE).read_text())).to_dict()
    except (OSError, yaml.YAMLError, UserInputError, TypeError) as exc:
        raise UserInputError(
            f"{path / CONFIG_FILE} is unreadable ({exc}); pass --overwrite to start over"
        ) from None


def config_difference(saved: dict, config: CompressConfig) -> str:
    current = config.to_dict()
    for key in sorted(set(saved) | set(current)):
        if key == "output":
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            for sub in sorted(set(old) | set(new)):
                if old.get(sub) != new.get(sub):
                    return f"{key}.{sub}: {old.get(sub)!r} -> {new.get(sub)!r}"
        elif old != new:
            return f"{key}: {old!r} -> {new!r}"
    return ""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A crash leaves either the old file or no file, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would, so
        # a serving process running as another user can read the artifact.
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


STAGING_PREFIX = ".staging-"  # atomic_folder's staging folders inside a run folder


@contextlib.contextmanager
def atomic_folder(path: str | Path, last: str) -> Iterator[Path]:
    """Yield a staging folder inside ``path``; move its files into ``path`` only if the block
    succeeds, ``last`` after all the others.

    :func:`atomic_path` for a group of files that is only usable whole (a graph, its configs
    and its tokenizer): a crash while they are written leaves none of them in ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # A killed run leaves its staging folder (a partial graph can be hundreds of MB); one
    # writer per run folder, so any found now is stale.
    for stale in path.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    # Inside ``path``, so each move is a rename on one file system; hidden, so the run
    # folder checks ignore it.
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=path) as staging:
        yield Path(staging)
        _move_files(Path(staging), path, last)


def _move_files(staging: Path, path: Path, last: str) -> None:
    if not (staging / last).is_file():  # checked before anything moves: no group without it
        raise FileNotFoundError(f"{last} was not written; nothing moved into {path}")
    # An earlier run's ``last`` goes first: it must never stand beside this run's files
    # (a pruned graph with the unpruned config.json), and it is what marks the group whole.
    (path / last).unlink(missing_ok=True)
    names = sorted(p.name for p in staging.iterdir() if p.name != last)
    for name in [*names, last]:
        os.replace(staging / name, path / name)


def _umask() -> int:
    # Read, not set-and-restore: os.umask() is process-wide and the heartbeat thread writes.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON, any password in it masked."""
    text = json.dumps(mask(data), indent=2, sort_keys=False, default=_json_default)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
