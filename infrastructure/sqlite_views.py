"""The current view in SQLite: the `images` table and its tracking row.

Rows hold every name the log has seen; deleted ones stay as tombstones
(live=0) so a later write continues the stream without reading its history.
`get` and `list` read live rows only.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from eventsourcing.sqlite import SQLiteCursor

from imageledger.domain.image import ImageName
from imageledger.infrastructure.live_views import (
    Recorded,
    fold_in_batches,
    fold_states,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_datastore import LedgerSQLiteDatastore
from imageledger.infrastructure.sqlite_indexes import (
    create_index_statement,
    list_keys_statement,
)
from imageledger.infrastructure.sqlite_recorder import stream_id
from imageledger.infrastructure.sqlite_tracking import (
    log_head,
    log_page,
    track,
    tracked_position,
)
from imageledger.infrastructure.view_rows import (
    ALL_COLUMNS,
    READ_COLUMNS,
    VIEW_READ_COLUMNS,
    Snapshot,
    image_from_row,
    read_state,
    row_params,
    same_column,
    shown_value,
    state_from_row,
)
from imageledger.projections.current_view import (
    CurrentImage,
    CurrentView,
    Image,
    ListKeys,
)

VIEW_NAME = "current_view"
TABLE = "images"
SHADOW_TABLE = "images_rebuild"
CHECK_TABLE = "temp.images_check"  # the fold verify compares with, per connection
EVENTS_TABLE = "stored_events"
REBUILD_BATCH = 5000
SELECT_CHUNK = 500  # names per SELECT, well below SQLite's limit of variables

Progress = Callable[[int, int], None]
"""Called as progress(events folded so far, events in the log when it started)."""


def create_table_statement(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "namespace TEXT NOT NULL, "
        "name TEXT NOT NULL, "
        "digest TEXT NOT NULL, "
        "media_type TEXT NOT NULL, "
        "target TEXT NOT NULL, "  # OCI JSON of the descriptor
        "labels TEXT NOT NULL, "  # JSON object
        "created_at TEXT NOT NULL, "  # RFC 3339, UTC
        "updated_at TEXT NOT NULL, "
        "version INTEGER NOT NULL, "
        "live INTEGER NOT NULL, "
        # Last, where the upgrade from schema 2 adds it (ADD_IMMUTABLE_COLUMN).
        "immutable INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (namespace, name)) WITHOUT ROWID"
    )


# Schema 3: write-once names. 0 for every existing row is exact: no event
# written before schema 3 can carry the flag.
ADD_IMMUTABLE_COLUMN = (
    f"ALTER TABLE {TABLE} ADD COLUMN immutable INTEGER NOT NULL DEFAULT 0"
)


def _upsert_statement(table: str) -> str:
    return (
        f"INSERT INTO {table} (namespace, name, digest, media_type, target, labels, "
        "created_at, updated_at, version, live, immutable) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (namespace, name) DO UPDATE SET digest=excluded.digest, "
        "media_type=excluded.media_type, target=excluded.target, "
        "labels=excluded.labels, created_at=excluded.created_at, "
        "updated_at=excluded.updated_at, version=excluded.version, "
        "live=excluded.live, immutable=excluded.immutable"
    )


def list_keys_params(namespace: str, keys: ListKeys) -> tuple[str, ...]:
    """The parameters of the view's list by names or digests."""
    names = orjson.dumps(keys.names).decode()
    digests = orjson.dumps(keys.digests).decode()
    return names, namespace, digests, namespace


def _rows(
    c: SQLiteCursor, table: str, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], CurrentImage]:
    """The rows `table` holds for these (namespace, name) keys, in few SELECTs."""
    by_namespace: dict[str, builtins.list[str]] = {}
    for namespace, name in keys:
        by_namespace.setdefault(namespace, []).append(name)
    found: dict[tuple[str, str], CurrentImage] = {}
    for namespace, names in by_namespace.items():
        for start in range(0, len(names), SELECT_CHUNK):
            chunk = names[start : start + SELECT_CHUNK]
            c.execute(
                f"SELECT {READ_COLUMNS} FROM {table} WHERE namespace=? "
                f"AND name IN ({','.join('?' * len(chunk))})",
                [namespace, *chunk],
            )
            for row in c.fetchall():
                found[(namespace, row[1])] = state_from_row(row)
    return found


class SQLiteCurrentView(CurrentView):
    """The current view on one SQLite file, kept in the writes' transactions."""

    def __init__(self, datastore: LedgerSQLiteDatastore, mapper: LedgerMapper):
        self.datastore = datastore
        self.mapper = mapper
        self._get = (
            f"SELECT {READ_COLUMNS} FROM {TABLE} "
            "WHERE namespace=? AND name=? AND live=1"
        )
        # Each name's view row and its stream's last two events, read in one
        # statement (one moment): a write checks the row against the events.
        self._snapshots = (
            f"SELECT k.key, {VIEW_READ_COLUMNS}, e.rowid, e.originator_id, "
            "e.originator_version, e.topic, e.state, (SELECT notification_id "
            f"FROM tracking WHERE application_name='{VIEW_NAME}') FROM (SELECT "
            "json_extract(value, '$[0]') AS key, json_extract(value, '$[1]') "
            "AS stream FROM json_each(?)) AS k "
            f"LEFT JOIN {TABLE} AS v ON v.namespace=? AND v.name=k.key "
            f"LEFT JOIN {EVENTS_TABLE} AS e ON e.originator_id=k.stream "
            "AND e.originator_version>=(SELECT MAX(originator_version) "
            f"FROM {EVENTS_TABLE} WHERE originator_id=k.stream)-1 "
            "ORDER BY k.key, e.originator_version DESC"
        )
        self._list = (
            f"SELECT {READ_COLUMNS} FROM {TABLE} "
            "WHERE namespace=? AND live=1 ORDER BY name"
        )

    def create_statements(self) -> list[str]:
        """What a new store runs to hold this view (with its tracking row)."""
        return [
            create_table_statement(TABLE),
            create_index_statement(TABLE),
            f"INSERT OR IGNORE INTO tracking VALUES ('{VIEW_NAME}', 0)",
        ]

    # Read side.

    def get(self, namespace: str, name: str) -> Image | None:
        row = self.datastore.read_one(self._get, (namespace, name))
        return None if row is None else image_from_row(row)

    def snapshots(
        self, namespace: str, names: builtins.list[str], streams: builtins.list[UUID]
    ) -> dict[str, Snapshot]:
        """Each name's view row and its stream's last two events, each name's
        read at one moment (one statement per chunk of names).

        `streams` are the names' aggregate ids, in the same order.
        """
        found: dict[str, Snapshot] = {}
        for start in range(0, len(names), SELECT_CHUNK):
            keys = [
                [name, stream.hex]
                for name, stream in zip(
                    names[start : start + SELECT_CHUNK],
                    streams[start : start + SELECT_CHUNK],
                    strict=True,
                )
            ]
            params = (orjson.dumps(keys).decode(), namespace)
            for row in self.datastore.read_all(self._snapshots, params):
                name = row[0]
                snapshot = found.get(name)
                if snapshot is None:
                    state = None if row[2] is None else read_state(row[1:10])
                    snapshot = found[name] = Snapshot(state, [], row[15] or 0)
                if row[10] is not None:
                    snapshot.last.append(
                        Notification(
                            id=row[10],
                            originator_id=stream_id(row[11], row[10]),
                            originator_version=row[12],
                            topic=row[13],
                            state=row[14],
                        )
                    )
        return found

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        # One read transaction for the whole iteration: a consistent snapshot,
        # streamed row by row; closing the iterator ends it.
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples: no Row object per row
            if keys is None:
                cursor.execute(self._list, (namespace,))
            else:
                statement = list_keys_statement(c, READ_COLUMNS, TABLE)
                cursor.execute(statement, list_keys_params(namespace, keys))
            for row in cursor:
                yield image_from_row(row)

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
            # The view is not where these events start (it was created on an
            # existing log, or lost its rows): catch it up first, same transaction.
            self._catch_up(cursor, TABLE, after=self._position(cursor), upto=first - 1)
            self._set_position(cursor, last)
        self._fold_into(cursor, TABLE, (event for _, event in recorded))

    def catch_up(self) -> int:
        """Fold events the view has not seen yet (after a crash or an upgrade).

        Looks first in a read transaction, so opening a current store (the
        usual case) neither waits for nor takes the write lock.
        """
        with self.datastore.transaction(commit=False) as c:
            if self._head(c) <= self._position(c):
                return 0
        with self.datastore.transaction(commit=True) as c:
            after = self._position(c)
            head = self._head(c)
            if head <= after:
                return 0
            folded = self._catch_up(c, TABLE, after=after, upto=head)
            self._set_position(c, head)
            return folded

    # Rebuild driver.

    def start_rebuild(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE IF EXISTS {SHADOW_TABLE}")
        c.execute(create_table_statement(SHADOW_TABLE))

    def fold_rebuild(self, c: SQLiteCursor, recorded: Recorded) -> None:
        self._fold_into(c, SHADOW_TABLE, (event for _, event in recorded))

    def finish_rebuild(self, c: SQLiteCursor, position: int) -> None:
        c.execute(f"DROP TABLE {TABLE}")
        c.execute(f"ALTER TABLE {SHADOW_TABLE} RENAME TO {TABLE}")
        c.execute(create_index_statement(TABLE))
        self._set_position(c, position)

    def read_batch(
        self, c: SQLiteCursor, after: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        """The next batch of the log after position `after`, for a rebuild."""
        return self._notifications(c, after=after, upto=None, limit=REBUILD_BATCH)

    def head(self, c: SQLiteCursor) -> int:
        """The position of the log's last event, read in `c`'s transaction."""
        return self._head(c)

    # Verify driver: the log folded into a temporary table, compared with the view.

    def start_check(self, c: SQLiteCursor) -> None:
        """Start an empty fold in `c`'s connection (a temporary table)."""
        c.execute(f"DROP TABLE IF EXISTS {CHECK_TABLE}")
        c.execute(create_table_statement(CHECK_TABLE))

    def fold_check(self, c: SQLiteCursor, recorded: Recorded) -> None:
        """Prove that the next events of the log keep their streams' rules,
        and fold them into the check table."""
        self._fold_into(
            c,
            CHECK_TABLE,
            [event for _, event in recorded],
            [position for position, _ in recorded],
        )

    def check_difference(self, c: SQLiteCursor) -> tuple[tuple[Any, Any], str] | None:
        """Compare the view's rows with the check fold.

        Returns None when they are equal, else the (namespace, name) of the
        first row that differs and what differs. JSON columns are compared as
        JSON: a view row written with its labels in another key order is equal.
        """
        columns = ", ".join(ALL_COLUMNS)
        differing = (
            f"SELECT namespace, name FROM (SELECT {columns} FROM {TABLE} "
            f"EXCEPT SELECT {columns} FROM {CHECK_TABLE}) UNION "
            f"SELECT namespace, name FROM (SELECT {columns} FROM {CHECK_TABLE} "
            f"EXCEPT SELECT {columns} FROM {TABLE}) "
        )
        # Streamed on a second cursor of the same connection (and transaction),
        # while `c` reads each candidate's two rows.
        keys = c.sqlite_cursor.connection.execute(differing + "ORDER BY 1, 2")
        try:
            for row in keys:
                key = (row[0], row[1])
                what = self._compare(c, key)
                if what:
                    return key, f"image {key[1]!r} in namespace {key[0]!r}: {what}"
        finally:
            keys.close()
        return None

    def tracked_position(self, c: SQLiteCursor) -> int:
        """The log position the view says it reflects."""
        return self._position(c)

    def _compare(self, c: SQLiteCursor, key: tuple[Any, Any]) -> str:
        columns = ", ".join(ALL_COLUMNS)
        select = f"SELECT {columns} FROM {{}} WHERE namespace IS ? AND name IS ?"
        c.execute(select.format(TABLE), key)
        viewed = c.fetchone()
        c.execute(select.format(CHECK_TABLE), key)
        folded = c.fetchone()
        if folded is None:
            return "it is in the view, but no event in the log made it"
        if viewed is None:
            return "the log made it, but it is missing from the view"
        return "; ".join(
            f"{column} is {shown_value(viewed[i])} in the view, "
            f"{shown_value(folded[i])} in the log"
            for i, column in enumerate(ALL_COLUMNS)
            if not same_column(column, viewed[i], folded[i])
        )

    # Shared by the drivers.

    def _catch_up(self, c: SQLiteCursor, table: str, *, after: int, upto: int) -> int:
        return fold_in_batches(
            lambda start: self._notifications(
                c, after=start, upto=upto, limit=REBUILD_BATCH
            ),
            lambda events: self._fold_into(c, table, events),
            after=after,
            upto=upto,
        )

    def _fold_into(
        self,
        c: SQLiteCursor,
        table: str,
        events: Iterable[ImageName.Event],
        positions: Sequence[int] | None = None,
    ) -> None:
        events = builtins.list(events)
        states: dict[tuple[str, str], CurrentImage | None] = dict(
            _rows(c, table, {(event.namespace, event.name) for event in events})
        )
        fold_states(states, events, positions)
        c.executemany(
            _upsert_statement(table),
            [row_params(state) for state in states.values() if state is not None],
        )

    def _notifications(
        self, c: SQLiteCursor, *, after: int, upto: int | None, limit: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        return log_page(c, self.mapper, after=after, upto=upto, limit=limit)

    def _position(self, c: SQLiteCursor) -> int:
        return tracked_position(c, VIEW_NAME)

    def _set_position(self, c: SQLiteCursor, position: int) -> None:
        track(c, VIEW_NAME, position)

    def _head(self, c: SQLiteCursor) -> int:
        return log_head(c)
