"""Issue 19: a password in a ``--storage`` URL reaches no output.

The masking function on its own (URLs with and without a password, other text, SQLite
paths, command lines), then one run on the PostgreSQL server (trust authentication accepts
any password) whose every output, the study's attributes, the re-rendered report and a
worker that joins with the password in ``PGPASSWORD`` are searched for the password.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from scale_out_helpers import CHEAP, STUDY

from compressor.cli import main
from compressor.config import CompressConfig, SearchConfig
from compressor.credentials import MASK, StorageUrl, mask, without_mask

SECRET = "S3cretPassw0rd"
# The scale-out tests' cheap run, cheaper still: one trial with no distilled re-scoring, no
# depth units to measure, a small BatchNorm calibration. Only what is recorded matters here.
FASTEST = {
    **CHEAP,
    "search": {**CHEAP["search"], "promote_fraction": 0.0, "calibration_samples": 32},
    "prune": {"depth": False},
}


@dataclass(frozen=True)
class Case:
    value: str
    recorded: str


CASES = [
    Case("postgresql://u:S3cretPassw0rd@db:5432/c", "postgresql://u:***@db:5432/c"),
    Case("postgresql+psycopg://u:S3cretPassw0rd@db/c", "postgresql+psycopg://u:***@db/c"),
    Case("postgresql://u:S3cret%40Passw0rd@db/c", "postgresql://u:***@db/c"),  # encoded @
    Case("postgresql://u:S3cretPassw0rd@db:noport/c", "postgresql://u:***@db:noport/c"),
    Case("postgresql://u@db:5432/c", "postgresql://u@db:5432/c"),
    Case("sqlite:////abs/runs/x/study.db", "sqlite:////abs/runs/x/study.db"),
    Case("sqlite:///runs/x/study.db", "sqlite:///runs/x/study.db"),
    Case("http://www.w3.org/2000/svg", "http://www.w3.org/2000/svg"),
    Case("runs/x: 3 trials, 0.5x FLOPs", "runs/x: 3 trials, 0.5x FLOPs"),
    Case("", ""),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.value or "empty")
def test_mask_hides_the_password_and_nothing_else(case):
    assert mask(case.value) == case.recorded
    assert (
        mask(f"storage {case.value} cannot be opened")
        == f"storage {case.recorded} cannot be opened"
    )


def test_a_password_in_the_query_string_is_masked_too():
    recorded = mask(f"postgresql://u@db/c?sslmode=require&password={SECRET}")
    assert SECRET not in recorded and "sslmode=require" in recorded


@pytest.mark.parametrize("form", ["--storage URL", "--storage=URL", "joined text"])
def test_the_command_line_is_masked_whichever_way_storage_is_given(form):
    url = f"postgresql://u:{SECRET}@db/c?sslmode=require"  # shlex.join quotes it (the ?)
    storage = [f"--storage={url}"] if form == "--storage=URL" else ["--storage", url]
    argv = ["compress", *storage, "--study", "s"]
    # The argv as a run records it, or a recorded line (an older run's) masked when read.
    recorded = shlex.join(argv if form == "joined text" else mask(argv))
    recorded = mask(recorded) if form == "joined text" else recorded
    assert SECRET not in recorded and f"u:{MASK}@db/c" in recorded
    assert recorded.startswith("compress ") and recorded.endswith(" --study s")
    assert shlex.split(recorded)[1].startswith("--storage")


def test_structures_are_masked_item_by_item_and_other_values_kept():
    url = f"postgresql://u:{SECRET}@db/c"
    data = {"command": ["compress", url], "pair": (url, 3), "n": 1, "none": None, "ok": True}
    masked = mask(data)
    assert SECRET not in json.dumps(masked)
    assert masked["pair"] == ("postgresql://u:***@db/c", 3)
    assert (masked["n"], masked["none"], masked["ok"]) == (1, None, True)
    assert mask(Path("/x")) == Path("/x") and mask(2.5) == 2.5


def test_the_config_connects_with_the_given_url_and_records_the_masked_one():
    url = f"postgresql://u:{SECRET}@db/c"
    config = CompressConfig(search=SearchConfig(storage=url))
    assert config.search.storage.connect == url
    recorded = config.to_dict()
    assert recorded["search"]["storage"] == "postgresql://u:***@db/c"
    assert SECRET not in repr(config) and SECRET not in f"{config.search.storage}"
    # Read back from config.yaml: the masked password is dropped, never sent as "***".
    again = CompressConfig.from_dict(recorded)
    assert again.search.storage.connect == "postgresql://u@db/c"
    assert again.to_dict() == recorded  # a rerun with the same command matches its record
    assert without_mask(f"postgresql://u@db/c?password={MASK}") == "postgresql://u@db/c"
    assert StorageUrl("sqlite:///x.db").connect == "sqlite:///x.db"


def test_an_error_line_masks_the_password(capsys):
    url = f"postgresql://nobody:{SECRET}@127.0.0.1:1/x"  # nothing listens on port 1
    assert main(["worker", "--storage", url, "--wait", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nobody:***@127.0.0.1:1/x" in err and SECRET not in err


def _with_password(url: str, password: str | None) -> str:
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    return URL.create(
        parsed.drivername, parsed.username, password, parsed.host, parsed.port, parsed.database
    ).render_as_string(hide_password=False)


def _files_holding(folder: Path, text: str) -> list[str]:
    return [
        str(path.relative_to(folder))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and text.encode() in path.read_bytes()
    ]


def _database_rows_holding(url: str, text: str) -> list[str]:
    """Every row of every table in the database (the study's attributes of study and trials,
    system and user, included), as text, that holds ``text``."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import text as sql

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [
                f"{table}: {row}"
                for table in inspect(engine).get_table_names()
                for row in connection.execute(sql(f'SELECT * FROM "{table}"'))
                if text in str(row)
            ]
    finally:
        engine.dispose()


def _old_run_holding(run: Path, folder: Path, secret_url: str) -> Path:
    """A copy of ``run`` as a run from before issue 19 wrote it: the URL in clear in
    config.yaml and in result.json's command line."""
    shutil.copytree(run, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["search"]["storage"] = secret_url
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    result = json.loads((folder / "result.json").read_text())
    result["environment"]["command"] = f"compress --storage {secret_url}"
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_no_output_of_a_run_on_postgresql_holds_the_password(
    database, digits_task, tmp_path, monkeypatch, capsys
):  # digits_task: the trained model is in the cache the run and the worker load
    from sqlalchemy import event
    from sqlalchemy.engine import Engine, make_url

    from compressor.search.storage import WORKER_KEY, existing_study, worker_id

    secret_url, bare_url = _with_password(database, SECRET), _with_password(database, None)
    (tmp_path / "cheap.yaml").write_text(yaml.safe_dump(FASTEST))
    run = tmp_path / "run"
    argv = ["--config", str(tmp_path / "cheap.yaml"), "--storage", secret_url, "--study", STUDY]
    argv += ["--trials", "1", "--seed", "1", "--output", str(run)]
    # In this process (the digits model is loaded already); argv is what the run records.
    monkeypatch.setattr(sys, "argv", ["compress", *argv])
    assert main(argv) == 0
    assert main(["report", str(run)]) == 0  # re-rendered from the folder
    old = _old_run_holding(run, tmp_path / "old", secret_url)
    assert main(["report", str(old)]) == 0

    # `compress worker` given the URL config.yaml recorded, the password only in PGPASSWORD:
    # it connects without the "***" (the driver takes PGPASSWORD), never with it.
    recorded = yaml.safe_load((run / "config.yaml").read_text())["search"]["storage"]
    passwords: list[str | None] = []
    spy = lambda dialect, record, cargs, cparams: passwords.append(cparams.get("password"))  # noqa: E731
    event.listen(Engine, "do_connect", spy)
    monkeypatch.setenv("PGPASSWORD", SECRET)
    try:
        assert main(["worker", "--storage", recorded, "--study", STUDY, "--wait", "30"]) == 0
    finally:
        event.remove(Engine, "do_connect", spy)
    assert passwords and set(passwords) == {None}
    joined = existing_study(bare_url, STUDY).user_attrs[f"{WORKER_KEY}{worker_id()}"]
    assert joined["role"] == "worker"  # it recorded itself (over this process's compress)

    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err
    assert "best" in printed.out and f"scored 0 trials of study {STUDY!r}" in printed.out
    assert _files_holding(run, SECRET) == []
    assert _files_holding(tmp_path, SECRET) == ["old/config.yaml", "old/result.json"]
    assert _database_rows_holding(bare_url, SECRET) == []
    # What was recorded is there, masked: not left out.
    url = make_url(database)
    assert recorded == f"postgresql://{url.username}:{MASK}@{url.host}:{url.port}/{url.database}"
    command = shlex.split(json.loads((run / "result.json").read_text())["environment"]["command"])
    assert command[command.index("--storage") + 1] == recorded
    for report in (run, old):
        assert recorded in (report / "summary.md").read_text()
        assert recorded in (report / "report.html").read_text()
