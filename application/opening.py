"""Where a store lives: its location (SQLite path or PostgreSQL URL) and lock
timeout, checked and turned into the factory that opens it."""

from __future__ import annotations

import os
from pathlib import Path

from imageledger.domain.errors import InvalidArgument, shown
from imageledger.infrastructure.errors import StoreError, storage_errors
from imageledger.infrastructure.redaction import redact_url
from imageledger.infrastructure.sqlite import DEFAULT_LOCK_TIMEOUT, LedgerSQLiteFactory
from imageledger.infrastructure.storage import StoreFactory

DEFAULT_DB = "imageledger.db"
# SQLite keeps the busy timeout as an int of milliseconds; a day is plenty.
MAX_LOCK_TIMEOUT = 86_400


def open_factory(
    location: str | os.PathLike[str] | None, lock_timeout: float | None
) -> StoreFactory:
    """The factory of the store at `location` (see ImageStore.open)."""
    if location is None:
        location = os.environ.get("IMAGELEDGER_DB") or DEFAULT_DB
    text = location_text(location)
    postgres = is_postgres_url(text)
    if "://" in text and not postgres:
        raise StoreError(
            f"cannot open {redact_url(text)!r}: only SQLite file paths and "
            "postgresql:// URLs are supported"
        )
    timeout = lock_timeout_seconds(lock_timeout)
    with storage_errors():
        if postgres:
            return _postgres_factory(text, timeout)
        return LedgerSQLiteFactory(Path(text), lock_timeout=timeout)


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


def _postgres_factory(url: str, lock_timeout: float) -> StoreFactory:
    # Imported here: SQLite users and the command line's start-up never load
    # psycopg, and the base install works without the postgres extra.
    try:
        from imageledger.infrastructure.postgres import LedgerPostgresFactory
    except ImportError as e:
        raise StoreError(
            f"cannot open {redact_url(url)!r}: PostgreSQL support is not installed "
            f"({e}); install it with: pip install 'imageledger[postgres]'"
        ) from e
    return LedgerPostgresFactory(url, lock_timeout=lock_timeout)
