"""The current view in PostgreSQL: the `images` table and its tracking row.

The same rows as on SQLite (deleted names stay as tombstones, live=false),
kept the same way: every host's write folds its events into these tables in
its own transaction, so every host reads every committed write.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import ImageName
from imageledger.domain.trusted import unvalidated
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.live_views import (
    Recorded,
    fold_in_batches,
    fold_states,
)
from imageledger.infrastructure.mapper import LedgerMapper, stored_time
from imageledger.infrastructure.postgres_chain import CHECK_TABLE
from imageledger.infrastructure.postgres_datastore import LedgerPostgresDatastore
from imageledger.infrastructure.postgres_indexes import create_index_statement
from imageledger.infrastructure.postgres_recorder import (
    EVENTS_TABLE,
    TRACKING_TABLE,
)
from imageledger.infrastructure.postgres_tracking import (
    lock_events,
    log_head,
    log_page,
    track,
    tracked_position,
)
from imageledger.infrastructure.storage import StoredSnapshot as Snapshot
from imageledger.infrastructure.view_rows import (
    READ_COLUMNS,
    VIEW_READ_COLUMNS,
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
REBUILD_BATCH = 5000
LIST_BATCH = 1000  # rows a streaming list() fetches per round trip


def _image(row: DictRow) -> Image:
    """The image a view row holds; StoreError if the row is damaged."""
    try:
        # Rows were written from validated events: rebuilt without validating.
        return unvalidated(
            Image,
            {
                "namespace": row["namespace"],
                "name": row["name"],
                "target": Descriptor.from_stored(orjson.loads(row["target"])),
                "labels": orjson.loads(row["labels"]),
                "created_at": stored_time(row["created_at"]),
                "updated_at": stored_time(row["updated_at"]),
                "version": row["version"],
                "immutable": row["immutable"],
            },
        )
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise StoreError(
            f"the current view's row of {row['name']!r} in namespace "
            f"{row['namespace']!r} is damaged ({type(e).__name__}: {e}); "
            "rebuild() refolds it from the log"
        ) from e


def _read_state(row: DictRow) -> CurrentImage | StoreError:
    """The fold state a view row holds, or the error when it is damaged."""
    try:
        return CurrentImage(image=_image(row), live=row["live"])
    except StoreError as e:
        return e


def _row_params(state: CurrentImage) -> tuple[Any, ...]:
    image = state.image
    return (
        image.namespace,
        image.name,
        image.target.digest,
        image.target.media_type,
        orjson.dumps(image.target.to_oci()).decode(),
        orjson.dumps(image.labels).decode(),
        image.created_at.isoformat(),
        image.updated_at.isoformat(),
        image.version,
        state.live,
        image.immutable,
    )


class PostgresCurrentView(CurrentView):
    """The current view in one PostgreSQL schema, kept in the writes' transactions."""

    def __init__(self, datastore: LedgerPostgresDatastore, mapper: LedgerMapper):
        self.datastore = datastore
        self.mapper = mapper
        self.schema = Identifier(datastore.schema)
        self._get = self._sql(
            f"SELECT {READ_COLUMNS} FROM {{table}} "
            "WHERE namespace=%s AND name=%s AND live",
        )
        # Each name's view row and its stream's last two events, read in one
        # statement (one moment): a write checks the row against the events.
        self._snapshots = self._sql(
            f"SELECT k.key, {VIEW_READ_COLUMNS}, e.notification_id, "
            "e.originator_id, e.originator_version, e.topic, e.state, "
            "(SELECT notification_id FROM {tracking} WHERE application_name="
            f"'{VIEW_NAME}') AS tracked "
            "FROM unnest(%s::text[], %s::uuid[]) AS k(key, stream) "
            "LEFT JOIN {table} AS v ON v.namespace=%s AND v.name=k.key "
            "LEFT JOIN LATERAL (SELECT notification_id, originator_id, "
            "originator_version, topic, state FROM {events} "
            "WHERE originator_id=k.stream ORDER BY originator_version DESC "
            "LIMIT 2) AS e ON true ORDER BY k.key, e.originator_version DESC"
        )
        self._list = self._sql(
            f"SELECT {READ_COLUMNS} FROM {{table}} WHERE namespace=%s AND live "
            "ORDER BY name"
        )
        self._list_keys = self._sql(  # by names or digests, through the indexes
            f"SELECT {READ_COLUMNS} FROM {{table}} WHERE namespace=%s AND live "
            "AND (name=ANY(%s::text[]) OR digest=ANY(%s::text[])) ORDER BY name"
        )
        # The compare-and-set of the live driver: positions can have gaps, so the
        # view must be at the last position before this write, not first - 1.
        self._advance = self._sql(
            "UPDATE {tracking} SET notification_id=%s "
            "WHERE application_name=%s AND notification_id=(SELECT "
            "COALESCE(MAX(notification_id), 0) FROM {events} "
            "WHERE notification_id < %s) RETURNING 1"
        )

    def _sql(self, text: str, table: str = TABLE) -> Composed:
        """`text` with {table}, {events}, {tracking} and {pkey} named in our schema."""
        # The check table is temporary, private to verify's transaction.
        schema = "pg_temp" if table == CHECK_TABLE else self.datastore.schema
        return SQL(text).format(
            table=Identifier(schema, table),
            events=Identifier(self.datastore.schema, EVENTS_TABLE),
            tracking=Identifier(self.datastore.schema, TRACKING_TABLE),
            pkey=Identifier(f"{table}_pkey"),
        )

    def create_statements(self) -> builtins.list[Composed]:
        """What a new store runs to hold this view (with its tracking row)."""
        return [
            self._create_table(TABLE),
            create_index_statement(self.datastore.schema, TABLE),
            self._sql("INSERT INTO {tracking} VALUES ('__migration__', 1)"),
            self._sql(f"INSERT INTO {{tracking}} VALUES ('{VIEW_NAME}', 0)"),
        ]

    def add_immutable_column(self) -> Composed:
        """The upgrade of schema 1's view to schema 2: write-once names.

        False for every existing row is exact: no event before schema 2 can
        carry the flag.
        """
        return self._sql(
            "ALTER TABLE {table} ADD COLUMN immutable boolean NOT NULL DEFAULT false"
        )

    def _create_table(self, table: str) -> Composed:
        return self._sql(
            "CREATE TABLE {table} ("
            "namespace text NOT NULL, "
            "name text NOT NULL, "
            "digest text NOT NULL, "
            "media_type text NOT NULL, "
            "target text NOT NULL, "  # OCI JSON of the descriptor
            "labels text NOT NULL, "  # JSON object
            "created_at text NOT NULL, "  # RFC 3339, UTC, as the events have it
            "updated_at text NOT NULL, "
            "version bigint NOT NULL, "
            "live boolean NOT NULL, "
            # Last, as the upgrade from schema 1 adds it (add_immutable_column).
            "immutable boolean NOT NULL DEFAULT false, "
            "CONSTRAINT {pkey} PRIMARY KEY (namespace, name))",
            table,
        )

    # Read side.

    def get(self, namespace: str, name: str) -> Image | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._get, (namespace, name), prepare=True).fetchone()
        return None if row is None else _image(row)

    def snapshots(
        self, namespace: str, names: builtins.list[str], streams: builtins.list[UUID]
    ) -> dict[str, Snapshot]:
        """Each name's view row and its stream's last two events, at one moment.

        `streams` are the names' aggregate ids, in the same order.
        """
        found: dict[str, Snapshot] = {}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                self._snapshots, (names, streams, namespace), prepare=True
            ).fetchall()
        for row in rows:
            snapshot = found.get(row["key"])
            if snapshot is None:
                state = None if row["name"] is None else _read_state(row)
                snapshot = found[row["key"]] = Snapshot(state, [], row["tracked"] or 0)
            if row["notification_id"] is not None:
                snapshot.last.append(
                    Notification(
                        id=row["notification_id"],
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    )
                )
        return found

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        # A server-side cursor in one read transaction: a consistent snapshot,
        # fetched LIST_BATCH rows at a time; closing the iterator ends it.
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="imageledger_list") as cursor,
        ):
            cursor.itersize = LIST_BATCH
            if keys is None:
                cursor.execute(self._list, (namespace,))
            else:
                params = (namespace, [*keys.names], [*keys.digests])
                cursor.execute(self._list_keys, params)
            for row in cursor:
                yield _image(row)

    # Live driver: called by the recorder inside the write transaction.

    def apply(self, cursor: Cursor[DictRow], recorded: Recorded) -> None:
        if not recorded:
            return
        first, last = recorded[0][0], recorded[-1][0]
        cursor.execute(self._advance, (last, VIEW_NAME, first), prepare=True)
        if cursor.fetchone() is None:
            # The view is not where these events start (it was created on an
            # existing log, or lost its rows): catch it up first, same transaction.
            before = self._head(cursor, below=first)
            self._catch_up(cursor, TABLE, after=self._position(cursor), upto=before)
            self._set_position(cursor, last)
        self._fold_into(cursor, TABLE, (event for _, event in recorded))

    def catch_up(self) -> int:
        """Fold events the view has not seen yet (after a crash or an upgrade).

        Looks first without the write lock, so opening a current store (the
        usual case) neither waits for nor blocks writers.
        """
        with self.datastore.transaction(commit=False) as c:
            if self._head(c) <= self._position(c):
                return 0
        with self.datastore.transaction(commit=True) as c:
            self._lock_events(c)
            after = self._position(c)
            head = self._head(c)
            if head <= after:
                return 0
            folded = self._catch_up(c, TABLE, after=after, upto=head)
            self._set_position(c, head)
            return folded

    # Rebuild driver.

    def start_rebuild(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", SHADOW_TABLE))
        c.execute(self._create_table(SHADOW_TABLE))

    def fold_rebuild(self, c: Cursor[DictRow], recorded: Recorded) -> None:
        self._fold_into(c, SHADOW_TABLE, (event for _, event in recorded))

    def finish_rebuild(self, c: Cursor[DictRow], position: int) -> None:
        self._swap_in_shadow(c)
        self._set_position(c, position)

    def read_batch(
        self, c: Cursor[DictRow], after: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        """The next batch of the log after `after`, for a rebuild: with the
        events table's write lock, as writers take it, held to the commit."""
        self._lock_events(c)
        return self._notifications(c, after=after, upto=None, limit=REBUILD_BATCH)

    def head(self, c: Cursor[DictRow]) -> int:
        """The position of the log's last event, read in `c`'s transaction."""
        return self._head(c)

    def _swap_in_shadow(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE {table}"))
        c.execute(self._sql(f"ALTER TABLE {{table}} RENAME TO {TABLE}", SHADOW_TABLE))
        c.execute(
            SQL("ALTER INDEX {} RENAME TO {}").format(
                Identifier(self.datastore.schema, f"{SHADOW_TABLE}_pkey"),
                Identifier(f"{TABLE}_pkey"),
            )
        )
        c.execute(create_index_statement(self.datastore.schema, TABLE))

    # Verify driver: the log folded into a temporary table (see postgres_chain).

    def start_check(self, c: Cursor[DictRow]) -> None:
        """Start an empty fold in `c`'s transaction (a table dropped at its end)."""
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", CHECK_TABLE))
        c.execute(self._create_table(CHECK_TABLE) + SQL(" ON COMMIT DROP"))

    def fold_check(self, c: Cursor[DictRow], recorded: Recorded) -> None:
        """Prove that the next events of the log keep their streams' rules,
        and fold them into the check table."""
        self._fold_into(
            c,
            CHECK_TABLE,
            [event for _, event in recorded],
            [position for position, _ in recorded],
        )

    def tracked_position(self, c: Cursor[DictRow]) -> int:
        """The log position the view says it reflects."""
        return self._position(c)

    # Shared by the drivers.

    def _catch_up(
        self, c: Cursor[DictRow], table: str, *, after: int, upto: int
    ) -> int:
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
        c: Cursor[DictRow],
        table: str,
        events: Iterable[ImageName.Event],
        positions: Sequence[int] | None = None,
    ) -> None:
        events = builtins.list(events)
        keys = builtins.list(dict.fromkeys((e.namespace, e.name) for e in events))
        if len(keys) == 1:  # a single write: one prepared statement
            rows = c.execute(
                self._sql(
                    f"SELECT {READ_COLUMNS} FROM {{table}} "
                    "WHERE namespace=%s AND name=%s",
                    table,
                ),
                keys[0],
                prepare=True,
            ).fetchall()
        else:  # a batch, a catch-up or a fold: the rows of all its names at once
            rows = c.execute(
                self._sql(
                    f"SELECT {READ_COLUMNS} FROM {{table}} WHERE (namespace, name) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    table,
                ),
                ([k[0] for k in keys], [k[1] for k in keys]),
            ).fetchall()
        states: dict[tuple[str, str], CurrentImage | None] = dict.fromkeys(keys)
        for row in rows:
            states[(row["namespace"], row["name"])] = CurrentImage(
                _image(row), row["live"]
            )
        fold_states(states, events, positions)
        upsert = self._sql(
            "INSERT INTO {table} (namespace, name, digest, media_type, target, "
            "labels, created_at, updated_at, version, live, immutable) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (namespace, name) DO UPDATE SET digest=excluded.digest, "
            "media_type=excluded.media_type, target=excluded.target, "
            "labels=excluded.labels, created_at=excluded.created_at, "
            "updated_at=excluded.updated_at, version=excluded.version, "
            "live=excluded.live, immutable=excluded.immutable",
            table,
        )
        params = [_row_params(state) for state in states.values() if state is not None]
        if len(params) == 1:
            c.execute(upsert, params[0], prepare=True)
        elif params:
            c.executemany(upsert, params)

    def _notifications(
        self, c: Cursor[DictRow], *, after: int, upto: int | None, limit: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        schema = self.datastore.schema
        return log_page(c, schema, self.mapper, after=after, upto=upto, limit=limit)

    def _lock_events(self, c: Cursor[DictRow]) -> None:
        lock_events(c, self.datastore.schema, self.datastore.lock_timeout_setting)

    def _position(self, c: Cursor[DictRow]) -> int:
        return tracked_position(c, self.datastore.schema, VIEW_NAME)

    def _set_position(self, c: Cursor[DictRow], position: int) -> None:
        track(c, self.datastore.schema, VIEW_NAME, position)

    def _head(self, c: Cursor[DictRow], *, below: int | None = None) -> int:
        return log_head(c, self.datastore.schema, below=below)
