"""A throwaway PostgreSQL server on loopback for the scale-out tests (standard library only).

``python tests/pg_server.py start`` creates a cluster in a new temporary folder (``initdb``),
starts it on a free port of 127.0.0.1 (``pg_ctl``) and prints the folder and the URL;
``stop FOLDER`` stops it and removes the folder. The tests
start their own unless ``COMPRESSOR_TEST_POSTGRES`` names a running server (``.ci/run`` sets
it). PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

USER = "compressor"  # the cluster's superuser; loopback connections are trusted


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    # Debian keeps the server binaries out of PATH, one folder per major version.
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(folders[-1]) if folders else None


def start() -> tuple[Path, str]:
    """Create and start a cluster; returns its folder and URL (database ``postgres``)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb; apt-get install postgresql)")
    owner = _owner()
    root = Path(tempfile.mkdtemp(prefix="compressor-pg-"))
    root.chmod(0o755)  # the postgres user must reach the data folder inside
    data_dir = root / "data"
    data_dir.mkdir()
    if owner is not None:
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    _run(owner, [bin_dir / "initdb", "-D", data_dir, "-U", USER, "-A", "trust", "-E", "UTF8"])
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    log = data_dir / "server.log"
    _run(owner, [bin_dir / "pg_ctl", "-D", data_dir, "-l", log, "-o", options, "-w", "start"])
    return root, f"postgresql://{USER}@127.0.0.1:{port}/postgres"


def stop(root: Path) -> None:
    """Stop the cluster started in ``root`` and remove the folder."""
    bin_dir, data_dir = binaries(), Path(root) / "data"
    try:
        if bin_dir is not None and (data_dir / "postmaster.pid").exists():
            _run(_owner(), [bin_dir / "pg_ctl", "-D", data_dir, "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _owner() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no postgres user to own the cluster"
        ) from None


def _run(owner: pwd.struct_passwd | None, command: list) -> None:
    command = [str(part) for part in command]
    kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/", **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()}"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    if sys.argv[1:] == ["start"]:
        print(*start())
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop(Path(sys.argv[2]))
    else:
        sys.exit("usage: pg_server.py start | stop FOLDER")
