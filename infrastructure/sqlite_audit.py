"""The audit index in SQLite: the `audit_index` table and its tracking row.

One row per event, keyed by its log position (the event's rowid), with an
index for each way the audit queries look events up: by name, by digest, by
time and by actor. Entries are read back joined to `stored_events`, so the
index never holds a second copy of an event's payload.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from eventsourcing.sqlite import SQLiteCursor

from imageledger.domain.image import ImageName
from imageledger.infrastructure.audit_driver import AuditIndexDriver
from imageledger.infrastructure.audit_rows import (
    COLUMNS,
    log_conditions,
    until_condition,
)
from imageledger.infrastructure.live_views import Recorded
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_datastore import LedgerSQLiteDatastore
from imageledger.infrastructure.sqlite_recorder import notification_from_row
from imageledger.infrastructure.sqlite_tracking import (
    log_head,
    log_page,
    track,
    tracked_position,
)
from imageledger.projections.audit import AuditRow, Bound, Found, LogQuery

VIEW_NAME = "audit_index"
TABLE = "audit_index"
SHADOW_TABLE = "audit_index_rebuild"
EVENTS_TABLE = "stored_events"
BATCH = 5000
_AS_A = ", ".join(f"a.{column}" for column in COLUMNS.split(", "))
_EVENT = "e.rowid AS rowid, e.originator_id, e.originator_version, e.topic, e.state"

# The statements of `where`, named so that tests and the benchmark can show
# their query plans: each is a search of an index, never a scan.
CARRYING = f"SELECT {COLUMNS} FROM {TABLE} WHERE digest = ? ORDER BY position"
CARRYING_IN_NAMESPACE = (
    f"SELECT {COLUMNS} FROM {TABLE} WHERE digest = ? AND namespace = ? "
    "ORDER BY position"
)
NEXT_ROW = (
    f"SELECT {COLUMNS} FROM {TABLE} WHERE namespace = ? AND name = ? "
    "AND position > ? ORDER BY position LIMIT 1"
)


def _create_table(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "position INTEGER PRIMARY KEY, "  # the event's rowid in stored_events
        "namespace TEXT NOT NULL, "
        "name TEXT NOT NULL, "
        "version INTEGER NOT NULL, "
        "kind TEXT NOT NULL, "  # registered or deleted
        "digest TEXT, "  # the target's digest; NULL for a delete
        "timestamp INTEGER NOT NULL, "  # microseconds since the epoch, UTC
        "actor TEXT NOT NULL, "
        "since INTEGER NOT NULL, "  # when the name's current life began
        "immutable INTEGER NOT NULL)"  # bound to its content after the event
    )


def _index_statements(table: str) -> list[str]:
    # Named after TABLE whatever table they are built on: a rebuilt table is
    # renamed to TABLE, and its indexes are created after the swap.
    return [
        f"CREATE INDEX IF NOT EXISTS {TABLE}_by_name "
        f"ON {table} (namespace, name, position)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_by_digest ON {table} (digest, position)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_by_time ON {table} (timestamp)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_by_actor ON {table} (actor, position)",
    ]


def create_statements() -> list[str]:
    """What a store runs to hold the index (with its tracking row)."""
    return [
        _create_table(TABLE),
        *_index_statements(TABLE),
        f"INSERT OR IGNORE INTO tracking VALUES ('{VIEW_NAME}', 0)",
    ]


def _row(row: Any) -> AuditRow:
    position, namespace, name, version, kind, digest, timestamp, actor, since = row[:9]
    return AuditRow(
        position,
        namespace,
        name,
        version,
        kind,
        digest,
        timestamp,
        actor,
        since,
        bool(row[9]),
    )


class SQLiteAuditIndex(AuditIndexDriver):
    """The audit index on one SQLite file, kept in the writes' transactions."""

    def __init__(self, datastore: LedgerSQLiteDatastore, mapper: LedgerMapper):
        self.datastore = datastore
        self.mapper = mapper

    # Read side.

    def entries(self, query: LogQuery) -> Iterator[Found]:
        conditions, params = log_conditions(query, "?")
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM {TABLE} AS a "
            f"JOIN {EVENTS_TABLE} AS e ON e.rowid = a.position "
            f"WHERE {' AND '.join(conditions) or '1'} ORDER BY a.position"
        )
        if query.limit is not None:
            statement += " LIMIT ?"
            params.append(query.limit)
        return self._found(statement, params)

    def last_events(
        self, namespace: str, until: Bound, name: str | None = None
    ) -> Iterator[Found]:
        bound, params = until_condition(until, "?")
        names = "AND name = ? " if name is not None else ""
        # SQLite's bare columns: with MAX(), the row holding the maximum.
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM (SELECT MAX(position) AS last "
            f"FROM {TABLE} WHERE namespace = ? {names}AND {bound} GROUP BY name) "
            f"JOIN {TABLE} AS a ON a.position = last "
            f"JOIN {EVENTS_TABLE} AS e ON e.rowid = a.position ORDER BY a.name"
        )
        given = [namespace, *([name] if name is not None else []), *params]
        return self._found(statement, given)

    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        statement, params = CARRYING, [digest]
        if namespace is not None:
            statement, params = CARRYING_IN_NAMESPACE, [digest, namespace]
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [_row(row) for row in c.fetchall()]

    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        row = self.datastore.read_one(NEXT_ROW, (namespace, name, after))
        return None if row is None else _row(row)

    def namespaces(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT DISTINCT namespace FROM {TABLE} ORDER BY namespace")
            return [row[0] for row in c.fetchall()]

    def _found(self, statement: str, params: list[Any]) -> Iterator[Found]:
        # One read transaction for the whole iteration: a consistent snapshot.
        decode = self.mapper.to_domain_event
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.execute(statement, params)
            for row in cursor:
                yield Found(_row(row), decode(notification_from_row(row)))

    # Live driver: called by the recorder inside the write transaction.

    def apply(self, cursor: SQLiteCursor, recorded: Recorded) -> None:
        if not recorded:
            return
        first, last = recorded[0][0], recorded[-1][0]
        cursor.execute(
            "UPDATE tracking SET notification_id=? "
            "WHERE application_name=? AND notification_id=? RETURNING 1",
            (last, VIEW_NAME, first - 1),
        )
        if not cursor.fetchall():
            # Not where these events start (a store from before the index,
            # or one whose index lost rows): catch up first, same transaction.
            self._catch_up(cursor, TABLE, upto=first - 1)
            self._set_position(cursor, last)
        self._fold_into(cursor, TABLE, recorded)

    def catch_up(self) -> int:
        """Fold the events the index has not seen yet (after an upgrade or a crash)."""
        with self.datastore.transaction(commit=False) as c:
            if self._head(c) <= self._position(c):
                return 0
        with self.datastore.transaction(commit=True) as c:
            head = self._head(c)
            if head <= self._position(c):
                return 0
            folded = self._catch_up(c, TABLE, upto=head)
            self._set_position(c, head)
            return folded

    # Rebuild driver.

    # The index is rebuilt into a new table with only the index the fold
    # reads; the others are created at the swap, which is faster than keeping
    # them up to date row by row.

    def start_rebuild(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE IF EXISTS {SHADOW_TABLE}")
        c.execute(_create_table(SHADOW_TABLE))
        c.execute(
            f"CREATE INDEX {SHADOW_TABLE}_by_name "
            f"ON {SHADOW_TABLE} (namespace, name, position)"
        )

    def fold_rebuild(self, c: SQLiteCursor, recorded: Recorded) -> None:
        self._fold_into(c, SHADOW_TABLE, recorded)

    def finish_rebuild(self, c: SQLiteCursor, position: int) -> None:
        c.execute(f"DROP TABLE {TABLE}")
        c.execute(f"ALTER TABLE {SHADOW_TABLE} RENAME TO {TABLE}")
        c.execute(f"DROP INDEX {SHADOW_TABLE}_by_name")
        for statement in _index_statements(TABLE):
            c.execute(statement)
        self._set_position(c, position)

    # The statements of the shared drivers (AuditIndexDriver).

    def _rows_between(
        self, c: SQLiteCursor, first: int, last: int
    ) -> dict[int, AuditRow]:
        c.execute(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE position BETWEEN ? AND ?",
            (first, last),
        )
        return {row[0]: _row(row) for row in c.fetchall()}

    def _insert(self, c: SQLiteCursor, table: str, rows: list[AuditRow]) -> None:
        c.executemany(
            f"INSERT INTO {table} ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows
        )

    def _delete_after(self, c: SQLiteCursor, table: str, position: int) -> None:
        c.execute(f"DELETE FROM {table} WHERE position>?", (position,))

    def _row_count(self, c: SQLiteCursor) -> int:
        c.execute(f"SELECT COUNT(*) FROM {TABLE}")
        return int(c.fetchone()[0])

    def _first_row_without_event(self, c: SQLiteCursor) -> int | None:
        c.execute(
            f"SELECT a.position FROM {TABLE} AS a LEFT JOIN {EVENTS_TABLE} AS e "
            "ON e.rowid = a.position WHERE e.rowid IS NULL "
            "ORDER BY a.position LIMIT 1"
        )
        row = c.fetchone()
        return None if row is None else int(row[0])

    def _last_row(
        self,
        c: SQLiteCursor,
        table: str,
        key: tuple[str, str],
        *,
        before: int | None,
    ) -> AuditRow | None:
        statement = f"SELECT {COLUMNS} FROM {table} WHERE namespace=? AND name=? "
        params: list[Any] = list(key)
        if before is not None:
            statement += "AND position<? "
            params.append(before)
        c.execute(statement + "ORDER BY position DESC LIMIT 1", params)
        row = c.fetchone()
        return None if row is None else _row(row)

    def _notifications(
        self, c: SQLiteCursor, *, after: int, upto: int | None
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        return log_page(c, self.mapper, after=after, upto=upto, limit=BATCH)

    def _position(self, c: SQLiteCursor) -> int:
        return tracked_position(c, VIEW_NAME)

    def _set_position(self, c: SQLiteCursor, position: int) -> None:
        track(c, VIEW_NAME, position)

    def _head(self, c: SQLiteCursor) -> int:
        return log_head(c)
