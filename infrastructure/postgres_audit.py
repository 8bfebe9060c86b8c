"""The audit index in PostgreSQL: the same table, rows and drivers as on SQLite.

Positions are `notification_id`s, which can skip numbers (a rolled-back
insert keeps its sequence numbers), so the live driver's compare-and-set
checks "at the last position before this write", as the current view does.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from imageledger.domain.image import ImageName
from imageledger.infrastructure.audit_driver import AuditIndexDriver
from imageledger.infrastructure.audit_rows import (
    COLUMNS,
    log_conditions,
    until_condition,
)
from imageledger.infrastructure.live_views import Recorded
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.postgres_datastore import LedgerPostgresDatastore
from imageledger.infrastructure.postgres_recorder import (
    EVENTS_TABLE,
    TRACKING_TABLE,
    notification_from_row,
)
from imageledger.infrastructure.postgres_tracking import (
    lock_events,
    log_head,
    log_page,
    track,
    tracked_position,
)
from imageledger.projections.audit import AuditRow, Bound, Found, LogQuery

VIEW_NAME = "audit_index"
TABLE = "audit_index"
SHADOW_TABLE = "audit_index_rebuild"
BATCH = 5000
FETCH = 1000  # rows a streaming query fetches per round trip
_AS_A = ", ".join(f"a.{column}" for column in COLUMNS.split(", "))
_EVENT = "e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
_INDEXES = {
    "by_name": "namespace, name, position",
    "by_digest": "digest, position",
    "by_time": "timestamp",
    "by_actor": "actor, position",
}


def _row(row: DictRow) -> AuditRow:
    return AuditRow(*(row[field] for field in AuditRow._fields))


class PostgresAuditIndex(AuditIndexDriver):
    """The audit index in one PostgreSQL schema, kept in the writes' transactions."""

    def __init__(self, datastore: LedgerPostgresDatastore, mapper: LedgerMapper):
        self.datastore = datastore
        self.mapper = mapper
        self._advance = self._sql(
            "UPDATE {tracking} SET notification_id=%s "
            "WHERE application_name=%s AND notification_id=(SELECT "
            "COALESCE(MAX(notification_id), 0) FROM {events} "
            "WHERE notification_id < %s) RETURNING 1"
        )

    def _sql(self, text: str, table: str = TABLE) -> Composed:
        """`text` with {table}, {events} and {tracking} named in our schema."""
        return SQL(text).format(
            table=Identifier(self.datastore.schema, table),
            events=Identifier(self.datastore.schema, EVENTS_TABLE),
            tracking=Identifier(self.datastore.schema, TRACKING_TABLE),
        )

    def create_statements(self) -> builtins.list[Composed]:
        """What a store runs to hold the index (with its tracking row)."""
        return [
            self._create_table(TABLE),
            *self._index_statements(TABLE, _INDEXES),
            self._sql(f"INSERT INTO {{tracking}} VALUES ('{VIEW_NAME}', 0)"),
        ]

    def _create_table(self, table: str) -> Composed:
        return self._sql(
            "CREATE TABLE {table} ("
            "position bigint PRIMARY KEY, "  # the event's notification_id
            "namespace text NOT NULL, "
            "name text NOT NULL, "
            "version bigint NOT NULL, "
            "kind text NOT NULL, "  # registered or deleted
            "digest text, "  # the target's digest; NULL for a delete
            "timestamp bigint NOT NULL, "  # microseconds since the epoch, UTC
            "actor text NOT NULL, "
            "since bigint NOT NULL, "  # when the name's current life began
            "immutable boolean NOT NULL)",  # bound to its content after the event
            table,
        )

    def _index_statements(
        self, table: str, indexes: dict[str, str]
    ) -> builtins.list[Composed]:
        return [
            SQL("CREATE INDEX {} ON {} ({})").format(
                Identifier(f"{table}_{suffix}"),
                Identifier(self.datastore.schema, table),
                SQL(columns),
            )
            for suffix, columns in indexes.items()
        ]

    # Read side.

    def entries(self, query: LogQuery) -> Iterator[Found]:
        conditions, params = log_conditions(query, "%s")
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM {{table}} AS a "
            "JOIN {events} AS e ON e.notification_id = a.position "
            f"WHERE {' AND '.join(conditions) or 'true'} ORDER BY a.position"
        )
        if query.limit is not None:
            statement += " LIMIT %s"
            params.append(query.limit)
        return self._found(self._sql(statement), params)

    def last_events(
        self, namespace: str, until: Bound, name: str | None = None
    ) -> Iterator[Found]:
        bound, params = until_condition(until, "%s")
        names = "AND name = %s " if name is not None else ""
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM (SELECT DISTINCT ON (name) position "
            f"FROM {{table}} WHERE namespace = %s {names}AND {bound} "
            "ORDER BY name, position DESC) AS last "
            "JOIN {table} AS a ON a.position = last.position "
            "JOIN {events} AS e ON e.notification_id = a.position ORDER BY a.name"
        )
        given = [namespace, *([name] if name is not None else []), *params]
        return self._found(self._sql(statement), given)

    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        statement = f"SELECT {COLUMNS} FROM {{table}} WHERE digest = %s"
        params: list[Any] = [digest]
        if namespace is not None:
            statement += " AND namespace = %s"
            params.append(namespace)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql(statement + " ORDER BY position"), params)
            return [_row(row) for row in c.fetchall()]

    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    f"SELECT {COLUMNS} FROM {{table}} WHERE namespace = %s "
                    "AND name = %s AND position > %s ORDER BY position LIMIT 1"
                ),
                (namespace, name, after),
            )
            row = c.fetchone()
        return None if row is None else _row(row)

    def namespaces(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql("SELECT DISTINCT namespace FROM {table} ORDER BY namespace")
            )
            return [row["namespace"] for row in c.fetchall()]

    def _found(self, statement: Composed, params: list[Any]) -> Iterator[Found]:
        # A server-side cursor in one read transaction: a consistent snapshot.
        decode = self.mapper.to_domain_event
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="imageledger_audit") as cursor,
        ):
            cursor.itersize = FETCH
            cursor.execute(statement, params)
            for row in cursor:
                yield Found(_row(row), decode(notification_from_row(row)))

    # Live driver: called by the recorder inside the write transaction.

    def apply(self, cursor: Cursor[DictRow], recorded: Recorded) -> None:
        if not recorded:
            return
        first, last = recorded[0][0], recorded[-1][0]
        cursor.execute(self._advance, (last, VIEW_NAME, first), prepare=True)
        if cursor.fetchone() is None:
            # Not where these events start: catch up first, same transaction.
            self._catch_up(cursor, TABLE, upto=self._head(cursor, below=first))
            self._set_position(cursor, last)
        self._fold_into(cursor, TABLE, recorded)

    def catch_up(self) -> int:
        """Fold the events the index has not seen yet (after an upgrade)."""
        with self.datastore.transaction(commit=False) as c:
            if self._head(c) <= self._position(c):
                return 0
        with self.datastore.transaction(commit=True) as c:
            self._lock_events(c)
            head = self._head(c)
            if head <= self._position(c):
                return 0
            folded = self._catch_up(c, TABLE, upto=head)
            self._set_position(c, head)
            return folded

    # Rebuild driver.

    # As on SQLite: only the index the fold reads is kept while folding.

    def start_rebuild(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", SHADOW_TABLE))
        c.execute(self._create_table(SHADOW_TABLE))
        by_name = {"by_name": _INDEXES["by_name"]}
        for statement in self._index_statements(SHADOW_TABLE, by_name):
            c.execute(statement)

    def fold_rebuild(self, c: Cursor[DictRow], recorded: Recorded) -> None:
        self._fold_into(c, SHADOW_TABLE, recorded)

    def finish_rebuild(self, c: Cursor[DictRow], position: int) -> None:
        self._swap_in_shadow(c)
        self._set_position(c, position)

    def _swap_in_shadow(self, c: Cursor[DictRow]) -> None:
        schema = self.datastore.schema
        c.execute(self._sql("DROP TABLE {table}"))
        c.execute(self._sql(f"ALTER TABLE {{table}} RENAME TO {TABLE}", SHADOW_TABLE))
        for old, new in (
            (f"{SHADOW_TABLE}_pkey", f"{TABLE}_pkey"),
            (f"{SHADOW_TABLE}_by_name", f"{TABLE}_by_name"),
        ):
            c.execute(
                SQL("ALTER INDEX {} RENAME TO {}").format(
                    Identifier(schema, old), Identifier(new)
                )
            )
        others = {k: v for k, v in _INDEXES.items() if k != "by_name"}
        for statement in self._index_statements(TABLE, others):
            c.execute(statement)

    # The statements of the shared drivers (AuditIndexDriver).

    def _rows_between(
        self, c: Cursor[DictRow], first: int, last: int
    ) -> dict[int, AuditRow]:
        c.execute(
            self._sql(
                f"SELECT {COLUMNS} FROM {{table}} WHERE position BETWEEN %s AND %s"
            ),
            (first, last),
        )
        return {row["position"]: _row(row) for row in c.fetchall()}

    def _insert(self, c: Cursor[DictRow], table: str, rows: list[AuditRow]) -> None:
        insert = self._sql(
            f"INSERT INTO {{table}} ({COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            table,
        )
        if len(rows) == 1:
            c.execute(insert, rows[0], prepare=True)
        else:
            c.executemany(insert, rows)

    def _delete_after(self, c: Cursor[DictRow], table: str, position: int) -> None:
        c.execute(
            self._sql("DELETE FROM {table} WHERE position>%s", table), (position,)
        )

    def _row_count(self, c: Cursor[DictRow]) -> int:
        c.execute(self._sql("SELECT COUNT(*) AS n FROM {table}"))
        row = c.fetchone()
        return 0 if row is None else int(row["n"])

    def _first_row_without_event(self, c: Cursor[DictRow]) -> int | None:
        c.execute(
            self._sql(
                "SELECT a.position FROM {table} AS a LEFT JOIN {events} AS e "
                "ON e.notification_id = a.position WHERE e.notification_id IS NULL "
                "ORDER BY a.position LIMIT 1"
            )
        )
        row = c.fetchone()
        return None if row is None else int(row["position"])

    def _last_row(
        self,
        c: Cursor[DictRow],
        table: str,
        key: tuple[str, str],
        *,
        before: int | None,
    ) -> AuditRow | None:
        statement = f"SELECT {COLUMNS} FROM {{table}} WHERE namespace=%s AND name=%s "
        params: list[Any] = list(key)
        if before is not None:
            statement += "AND position<%s "
            params.append(before)
        statement += "ORDER BY position DESC LIMIT 1"
        c.execute(self._sql(statement, table), params, prepare=True)
        row = c.fetchone()
        return None if row is None else _row(row)

    def _notifications(
        self, c: Cursor[DictRow], *, after: int, upto: int | None
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        schema = self.datastore.schema
        return log_page(c, schema, self.mapper, after=after, upto=upto, limit=BATCH)

    def _lock_events(self, c: Cursor[DictRow]) -> None:
        lock_events(c, self.datastore.schema, self.datastore.lock_timeout_setting)

    def _position(self, c: Cursor[DictRow]) -> int:
        return tracked_position(c, self.datastore.schema, VIEW_NAME)

    def _set_position(self, c: Cursor[DictRow], position: int) -> None:
        track(c, self.datastore.schema, VIEW_NAME, position)

    def _head(self, c: Cursor[DictRow], *, below: int | None = None) -> int:
        return log_head(c, self.datastore.schema, below=below)
