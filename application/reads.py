"""The image store's views as stored rows, for the command line.

`get` and `list` print what the current view's rows hold, `history` and
`where` what the audit index's rows hold (with each event's time and reason,
read from its stored state). Those rows were validated when their events were
written, so the command line prints them without building the `Image`,
`AuditEntry` or `Interval` models, and without loading eventsourcing or
pydantic. `open_reads` gives these reads for an SQLite store that can be read
as it is; it returns None for a PostgreSQL URL and for a store that opening
would change first, and the caller then opens an `ImageStore`. The arguments
are checked by the same rules as `ImageStore`'s, and every error is the one
`ImageStore` raises.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

import orjson

from imageledger.domain.digests import valid_digest
from imageledger.domain.errors import ImageNotFound
from imageledger.domain.names import validate_name, validate_namespace
from imageledger.errors import describe
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.rows import (
    DECODING_ERRORS,
    damaged,
    image_fields,
    stored_time,
)
from imageledger.infrastructure.sqlite_reads import SQLiteReads
from imageledger.infrastructure.sqlite_reads import open_reads as open_sqlite
from imageledger.location import is_postgres_url, location_of, lock_timeout_seconds
from imageledger.projections.audit_rows import AuditRow, from_micros

StoredImage = dict[str, Any]
"""An image as `rows.image_fields` decodes it: `Image`'s fields by name, the
target as its OCI JSON object."""


class StoredInterval(NamedTuple):
    """An `Interval` (see ImageStore.where) as the audit index holds it: the
    same fields."""

    namespace: str
    name: str
    since: datetime
    until: datetime | None
    since_position: int
    until_position: int | None
    immutable: bool


StoredEntry = dict[str, Any]
"""An audit entry as `history` reads it: `AuditEntry`'s fields by name, but
the target's digest (None for a delete) for the target."""


class StoredReads:
    """`get`, `list`, `history` and `where` of an image store, answered from
    its rows."""

    def __init__(self, reads: SQLiteReads) -> None:
        self._reads = reads

    def close(self) -> None:
        self._reads.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, name: str, *, namespace: str) -> StoredImage:
        """What `ImageStore.get` returns, as a stored image."""
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        with _driver_errors():
            row = self._reads.image_row(namespace, name)
        if row is None:
            raise ImageNotFound(name, namespace)
        return _decoded(row)

    def list(self, *, namespace: str) -> Iterator[StoredImage]:
        """What `ImageStore.list()` (no filters) streams, as stored images."""
        namespace = validate_namespace(namespace)
        with closing(self._reads.image_rows(namespace)) as rows, _driver_errors():
            for row in rows:
                yield _decoded(row)

    def history(self, name: str, *, namespace: str) -> builtins.list[StoredEntry]:
        """What `ImageStore.history` returns, as stored entries."""
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        with _driver_errors():
            rows = self._reads.history_rows(namespace, name)
        if not rows:
            raise ImageNotFound(name, namespace, "it has no history")
        return [_entry(row) for row in rows]

    def where(
        self, digest: str, *, namespace: str | None
    ) -> builtins.list[StoredInterval]:
        """What `ImageStore.where` returns, as stored intervals."""
        digest = valid_digest("digest", digest)
        if namespace is not None:
            namespace = validate_namespace(namespace)
        with _driver_errors():
            found = self._reads.carrying(digest, namespace)
            return intervals(found, self._reads.next_row, digest)


def intervals(
    carrying: Iterable[AuditRow],
    next_row: Callable[[str, str, int], AuditRow | None],
    digest: str,
) -> list[StoredInterval]:
    """The intervals of `where`, from the index rows of the registrations at
    `digest` (by position) and a way to read the row that follows one."""
    found: list[StoredInterval] = []
    # A registration at the digest that follows one at the same digest
    # (a change of labels) continues its interval rather than starting one.
    continued: dict[tuple[str, str], AuditRow] = {}
    for row in carrying:
        key = (row.namespace, row.name)
        start = continued.pop(key, row)
        end = next_row(row.namespace, row.name, row.position)
        if end is not None and end.kind == "registered" and end.digest == digest:
            continued[key] = start
            continue
        found.append(
            StoredInterval(
                namespace=start.namespace,
                name=start.name,
                since=index_moment(start, start.timestamp),
                until=None if end is None else index_moment(end, end.timestamp),
                since_position=start.position,
                until_position=None if end is None else end.position,
                immutable=row.immutable,
            )
        )
    return found


def index_moment(row: AuditRow, micros: int) -> datetime:
    """A time the audit index holds (in `row`), as a datetime; StoreError
    naming the position when no datetime can hold it."""
    try:
        return from_micros(micros)
    except OverflowError:
        raise StoreError(
            f"the audit index's row at log position {row.position} holds a time "
            "out of range; verify() says what is wrong there"
        ) from None


def open_reads(location: str | os.PathLike[str] | None) -> StoredReads | None:
    """The stored reads of the store at `location` (as `ImageStore.open`
    takes it), or None when it is to be opened as an `ImageStore`."""
    text = location_of(location)
    if "://" in text or is_postgres_url(text):
        return None  # ImageStore.open takes it, or says what is wrong with it
    timeout = lock_timeout_seconds(None)
    with _driver_errors():
        reads = open_sqlite(Path(text), timeout)
    return None if reads is None else StoredReads(reads)


def _decoded(row: tuple[Any, ...]) -> StoredImage:
    try:
        image = image_fields(row)
        target = image["target"]
        target["mediaType"], target["digest"], target["size"]  # what is shown
    except DECODING_ERRORS as e:
        raise damaged(row, e) from e
    return image


def _entry(row: tuple[Any, ...]) -> StoredEntry:
    """An audit entry from its index row and its event's state: the flags as
    `audit_entry` takes them (a delete's `forced` is also its `immutable`)."""
    position, version, kind, digest, actor, state = row
    try:
        event = orjson.loads(state)
        deleted = kind == "deleted"
        flag = event.get("forced" if deleted else "immutable", False) is True
        return {
            "position": position,
            "version": version,
            "kind": kind,
            "digest": digest,
            "timestamp": stored_time(event["timestamp"]),
            "actor": actor,
            "reason": event["reason"],
            "immutable": flag,
            "forced": flag and deleted,
        }
    except DECODING_ERRORS as e:
        raise StoreError(f"the event at position {position} is damaged: {e}") from e


@contextmanager
def _driver_errors() -> Iterator[None]:
    """sqlite3's errors as StoreError, with the message `storage_errors` gives."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(describe(e)) from e
    except UnicodeDecodeError as e:  # text in the file that is not UTF-8
        raise StoreError(describe(e)) from e
