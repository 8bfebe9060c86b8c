"""The current view and the audit index of an SQLite store, read with sqlite3
alone.

What the command line's reads use to answer from the stored rows without
loading eventsourcing: one connection, the same file checks and the same
read-only fallbacks as the full open (`sqlite_file`), the same statements
over the same tables. It reads a store only as it is: when opening would
change something first (a new file to create, a schema to upgrade, views
behind the log to catch up, an index to add), `open_reads` says so by
returning None and the caller opens the store in full.

Errors are sqlite3's (and UnicodeDecodeError for text that is not UTF-8):
the caller turns them into StoreError, as it does every driver error.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator
from pathlib import Path
from typing import Any

from imageledger.infrastructure.rows import (
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    AUDIT_VIEW,
    CURRENT_VIEW,
    DIGEST_INDEX,
    EVENTS_TABLE,
    IMAGES_TABLE,
    READ_COLUMNS,
    TRACKING_TABLE,
    audit_row,
)
from imageledger.infrastructure.sqlite_file import (
    FileState,
    inspect_file,
    read_only_query,
    sqlite_uri,
)
from imageledger.projections.audit_rows import AuditRow

# Whether the views have folded every event and the digest index exists: a
# store opened in full would then change nothing before reading.
_READY = (
    f"SELECT (SELECT MAX(rowid) FROM {EVENTS_TABLE}), "
    f"(SELECT notification_id FROM {TRACKING_TABLE} "
    f"WHERE application_name='{CURRENT_VIEW}'), "
    f"(SELECT notification_id FROM {TRACKING_TABLE} "
    f"WHERE application_name='{AUDIT_VIEW}'), "
    f"EXISTS (SELECT 1 FROM sqlite_master WHERE type='index' "
    f"AND name='{DIGEST_INDEX}')"
)
_GET = (
    f"SELECT {READ_COLUMNS} FROM {IMAGES_TABLE} "
    "WHERE namespace=? AND name=? AND live=1"
)
_LIST = (
    f"SELECT {READ_COLUMNS} FROM {IMAGES_TABLE} "
    "WHERE namespace=? AND live=1 ORDER BY name"
)
# A name's audit-index rows, oldest first, each with its event's state.
_HISTORY = (
    f"SELECT a.position, a.version, a.kind, a.digest, a.actor, e.state "
    f"FROM {AUDIT_TABLE} AS a JOIN {EVENTS_TABLE} AS e ON e.rowid = a.position "
    "WHERE a.namespace=? AND a.name=? ORDER BY a.position"
)

# The statements of `where`, named so that tests and the benchmark can show
# their query plans: each is a search of an index, never a scan.
CARRYING = (
    f"SELECT {AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE digest = ? ORDER BY position"
)
CARRYING_IN_NAMESPACE = (
    f"SELECT {AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE digest = ? AND namespace = ? "
    "ORDER BY position"
)
NEXT_ROW = (
    f"SELECT {AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE namespace = ? AND name = ? "
    "AND position > ? ORDER BY position LIMIT 1"
)


class SQLiteReads:
    """Reads of one store's current view, on one connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def close(self) -> None:
        self._connection.close()

    def image_row(self, namespace: str, name: str) -> tuple[Any, ...] | None:
        """The view's row of a live name (READ_COLUMNS), or None."""
        row: tuple[Any, ...] | None = self._connection.execute(
            _GET, (namespace, name)
        ).fetchone()
        return row

    def image_rows(self, namespace: str) -> Generator[tuple[Any, ...], None, None]:
        """The rows of the live names of `namespace`, by name, streamed in one
        read transaction (one consistent snapshot)."""
        self._connection.execute("BEGIN")
        try:
            # Not `yield from`: closing this generator would then close the
            # cursor, which fails once the connection is closed.
            for row in self._connection.execute(_LIST, (namespace,)):  # noqa: UP028
                yield row
        finally:
            # A reader that stopped early (a closed pipe) may have closed the
            # connection first, which ended the transaction already.
            with contextlib.suppress(sqlite3.ProgrammingError):
                self._connection.rollback()

    def history_rows(self, namespace: str, name: str) -> list[tuple[Any, ...]]:
        """The audit index's rows of a name, oldest first: position, version,
        kind, digest and actor, with the state (JSON bytes) of the event."""
        rows: list[tuple[Any, ...]] = self._connection.execute(
            _HISTORY, (namespace, name)
        ).fetchall()
        return rows

    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        """The rows of every registration at `digest`, by position (see
        AuditIndex.carrying), in one read transaction."""
        statement, params = CARRYING, [digest]
        if namespace is not None:
            statement, params = CARRYING_IN_NAMESPACE, [digest, namespace]
        return [audit_row(r) for r in self._connection.execute(statement, params)]

    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        """The name's first row after position `after`."""
        row = self._connection.execute(NEXT_ROW, (namespace, name, after)).fetchone()
        return None if row is None else audit_row(row)


def open_reads(path: Path, lock_timeout: float) -> SQLiteReads | None:
    """Reads of the store at `path`, or None when it must be opened in full
    first (see the module's docstring). StoreError when it is not a store,
    exactly as the full open says it (the same checks, in the same order)."""
    if inspect_file(path) is not FileState.STORE:
        return None
    connection = sqlite3.connect(
        sqlite_uri(path) + read_only_query(path),
        uri=True,
        isolation_level=None,
        timeout=lock_timeout,
    )
    try:
        head, current, audit, indexed = connection.execute(_READY).fetchone()
    except BaseException:
        connection.close()
        raise
    if not indexed or current != (head or 0) or audit != (head or 0):
        connection.close()
        return None
    return SQLiteReads(connection)
