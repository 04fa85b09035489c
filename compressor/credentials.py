"""Credentials never reach what a run records.

A ``--storage`` URL may carry a password (``postgresql://user:pw@host/db``, the form
SQLAlchemy, Optuna and every tutorial show). The process keeps the URL it was given, to
connect with (:class:`StorageUrl`); everything that is recorded (``config.yaml``,
``result.json``, the reports, the study's attributes, the command line, log and error
lines, benchmark results) goes through :func:`mask` first, which replaces each password
with ``***``. SQLAlchemy's ``URL.render_as_string(hide_password=True)`` does the masking.

A URL read back from a record holds ``***`` where the password was: :class:`StorageUrl`
connects without it, so the driver takes the password from ``PGPASSWORD`` or ``~/.pgpass``
rather than trying ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

MASK = "***"  # what SQLAlchemy's render_as_string(hide_password=True) writes
# A URL inside free text (a command line, a log line, a YAML file): from its scheme to the
# next space or quote (shlex.join quotes a URL holding ? or &).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
# Where a password sits, for a URL SQLAlchemy cannot parse (e.g. a port that is no number).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^@\s]*@")
# Query parameters that libpq and other drivers take a password from (?password=...).
_SECRET_QUERY = re.compile(r"pass|secret|token", re.IGNORECASE)

T = TypeVar("T")


def mask(value: T) -> T:
    """``value`` with every password in it replaced by ``***``.

    A string (a URL, a command line, a log line, a YAML text) has each URL in it masked;
    lists, tuples and dicts (a command's argv, a config, JSON data) are masked item by
    item; anything else comes back unchanged. Text without a URL holding a password, an
    SQLite path for one, is returned as it was.
    """
    if isinstance(value, str):
        return _mask_text(value) if "://" in value else value  # type: ignore[return-value]
    if isinstance(value, Mapping):
        return {key: mask(item) for key, item in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [mask(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(mask(item) for item in value)  # type: ignore[return-value]
    return value


def _mask_text(text: str) -> str:
    return _URL_IN_TEXT.sub(lambda found: _mask_url(found.group(0)), text)


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: hide what sits where a password would
        return _USERINFO.sub(rf"\g<head>:{MASK}@", url)
    secret_keys = [key for key in parsed.query if _SECRET_QUERY.search(key)]
    if parsed.password is None and not secret_keys:
        return url  # nothing to hide: leave the text exactly as it was
    parsed = parsed.update_query_dict(dict.fromkeys(secret_keys, MASK))
    return parsed.render_as_string(hide_password=True)


def without_mask(url: str) -> str:
    """``url`` to connect with: a password that is the mask (a URL read back from a record)
    is dropped, so the driver takes it from ``PGPASSWORD`` or ``~/.pgpass``."""
    from sqlalchemy.engine import URL, make_url

    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy reports it, masked, when the storage is opened
        return url
    query = {key: value for key, value in parsed.query.items() if value != MASK}
    if parsed.password != MASK and query == dict(parsed.query):
        return url
    # URL.set(password=None) would keep the password (None there means "unchanged").
    password = None if parsed.password == MASK else parsed.password
    bare = URL.create(
        parsed.drivername, parsed.username, password, parsed.host, parsed.port,
        parsed.database, query,
    )  # fmt: skip
    return bare.render_as_string(hide_password=False)


@dataclass(frozen=True)
class StorageUrl:
    """The study's database URL: ``connect`` is what the process was given (the mask
    dropped, see :func:`without_mask`); ``str()``, ``repr()`` and ``recorded`` are masked,
    so formatting one into a record or a message never shows the password."""

    given: str = field(repr=False)

    @property
    def connect(self) -> str:
        return without_mask(self.given)

    @property
    def recorded(self) -> str:
        return mask(self.given)

    def __str__(self) -> str:
        return self.recorded

    def __repr__(self) -> str:
        return f"StorageUrl({self.recorded!r})"
