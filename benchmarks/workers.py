"""Wall time of one fixed trial budget with 1 and more processes on the same study.

``python -m benchmarks.workers --trials 30 --runs 1 2 1x1 2x1`` runs the embedded default
(`compress --target-flops 0.5 --trials 30`) once per entry: ``N`` is N processes (``compress``
plus N-1 ``compress worker``) with the default threads, ``NxT`` the same with ``--threads T``
for each. The study is SQLite in the run's folder, or a fresh database per run on the
PostgreSQL server given with ``--postgres URL``. For each run: the wall time of the
``compress`` command (baseline, sensitivity, search, recovery), the search phase (first
trial started to last trial finished, from the study) and the trials per process. Runs go
one after another; check that the machine is otherwise idle (the load is recorded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks.common import markdown_table, write_results

STUDY = "compress"


def parse_run(text: str) -> tuple[int, int | None]:
    processes, _, threads = text.partition("x")
    return int(processes), int(threads) if threads else None


def run_once(trials: int, processes: int, threads: int | None, storage: str | None, folder: Path):
    output = folder / "run"
    url = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    common = ["--threads", str(threads)] if threads else []
    compress = [sys.executable, "-m", "compressor.cli", "--target-flops", "0.5", "--seed", "0"]
    compress += ["--trials", str(trials), "--output", str(output), "--quiet", *common]
    if storage:
        compress += ["--storage", storage, "--study", STUDY]
    worker = [sys.executable, "-m", "compressor.cli", "worker", "--storage", url]
    worker += ["--study", STUDY, "--quiet", *common]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    main = subprocess.Popen(compress, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    helpers = [
        subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(processes - 1)
    ]
    out, _ = main.communicate()
    wall = time.perf_counter() - started
    for helper in helpers:
        helper.wait()
    if main.returncode != 0:
        raise SystemExit(f"compress failed:\n{out[-2000:]}")
    finished = [
        t
        for t in optuna.load_study(study_name=STUDY, storage=url).trials
        if t.state == TrialState.COMPLETE
    ]
    search = max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    per_process: dict[str, int] = {}
    for trial in finished:
        per_process[trial.user_attrs["worker"]] = per_process.get(trial.user_attrs["worker"], 0) + 1
    return {
        "processes": processes,
        "threads": threads,
        "trials": len(finished),
        "wall_s": round(wall, 1),
        "search_s": round(search.total_seconds(), 1),
        "median_trial_s": round(statistics.median(t.user_attrs["seconds"] for t in finished), 2),
        "trials_per_process": sorted(per_process.values(), reverse=True),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def fresh_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--runs", nargs="+", default=["1", "2", "1x1", "2x1"])
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        processes, threads = parse_run(spec)
        storage = fresh_database(args.postgres) if args.postgres else None
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
            row = run_once(args.trials, processes, threads, storage, Path(folder))
        row["storage"] = "postgresql" if storage else "sqlite"
        print(row, flush=True)
        rows.append(row)
    table = markdown_table(
        ["processes", "threads", "storage", "trials", "compress wall", "search phase",
         "median trial", "trials per process", "load before / after"],
        [
            [r["processes"], r["threads"] or "default", r["storage"], r["trials"],
             f"{r['wall_s']} s", f"{r['search_s']} s", f"{r['median_trial_s']} s",
             r["trials_per_process"], f"{r['load_before']} / {r['load_after']}"]
            for r in rows
        ],
    )  # fmt: skip
    paths = write_results(
        "workers-postgresql" if args.postgres else "workers-sqlite",
        {"trials": args.trials, "runs": rows},
        table,
    )
    print(table)
    print("written:", *paths)


if __name__ == "__main__":
    main()
