"""Where a store lives: its location (an SQLite path or a PostgreSQL URL) and
the lock timeout its writes wait, as given, checked.

Kept apart from the ledger, which imports eventsourcing: the command line's
reads check the same location and timeout with the same rules before they
open a store without it.
"""

from __future__ import annotations

import os

from imageledger.domain.errors import InvalidArgument, shown
from imageledger.infrastructure.sqlite_file import DEFAULT_LOCK_TIMEOUT

DEFAULT_DB = "imageledger.db"
# SQLite keeps the busy timeout as an int of milliseconds; a day is plenty.
MAX_LOCK_TIMEOUT = 86_400


def location_of(location: str | os.PathLike[str] | None) -> str:
    """The location asked for, else $IMAGELEDGER_DB, else ./imageledger.db,
    as checked text (see location_text)."""
    if location is None:
        location = os.environ.get("IMAGELEDGER_DB") or DEFAULT_DB
    return location_text(location)


def lock_timeout_seconds(value: float | None) -> float:
    if value is None:
        text = os.environ.get("IMAGELEDGER_LOCK_TIMEOUT")
        if not text:
            return DEFAULT_LOCK_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            raise InvalidArgument(
                "IMAGELEDGER_LOCK_TIMEOUT", f"{shown(text)} is not a number of seconds"
            ) from None
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 <= value <= MAX_LOCK_TIMEOUT  # also refuses nan
    ):
        raise InvalidArgument(
            "lock_timeout", f"must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT}"
        )
    return float(value)


def location_text(location: object) -> str:
    if not isinstance(location, (str, os.PathLike)):
        raise InvalidArgument(
            "location", f"must be a path, not {type(location).__name__}"
        )
    text = os.fspath(location)
    if not isinstance(text, str) or not text:
        raise InvalidArgument("location", "must be a non-empty text path")
    if "\x00" in text:
        raise InvalidArgument("location", "must not contain NUL characters")
    try:
        os.fsencode(text)  # lone surrogates other than undecodable bytes
    except UnicodeEncodeError:
        raise InvalidArgument(
            "location", "is not a file name this system can encode"
        ) from None
    return text


def is_postgres_url(location: str) -> bool:
    """Whether `location` is meant as a PostgreSQL URL: `postgresql:` or
    `postgres:` and anything after (a URL missing a slash is refused as a URL,
    not created as a file of that name)."""
    scheme, sep, _ = location.partition(":")
    return bool(sep) and scheme.lower() in ("postgresql", "postgres")
