"""The hash chain in PostgreSQL: the `event_chain` table, its writes and checks.

`event_chain` holds one link per event (`position` is the event's
`notification_id`), the same links as on SQLite: the canonical bytes use the
id's 32 hex digits and the state exactly as stored. The recorder appends links
in the transaction that inserts the events, after the insert; the EXCLUSIVE
lock writers hold on `stored_events` until they commit makes the last link it
reads the last one committed. The chain's definition is in `hash_chain`.

Positions can skip numbers here (a rolled-back insert keeps its sequence
numbers): the chain links consecutive events, so the walk is not `dense`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from imageledger.domain.image import ImageName
from imageledger.infrastructure.errors import IntegrityError
from imageledger.infrastructure.hash_chain import (
    FORGED_EVENT,
    GENESIS,
    VIEW_DIFFERS,
    ChainRow,
    ChainWalk,
    chain_links,
    check_tracked,
    proven_event,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.postgres_datastore import LedgerPostgresDatastore
from imageledger.infrastructure.view_rows import (
    ALL_COLUMNS,
    same_column,
    shown_value,
)

if TYPE_CHECKING:  # the views import the recorder, which imports this module
    from imageledger.infrastructure.postgres_audit import PostgresAuditIndex
    from imageledger.infrastructure.postgres_views import PostgresCurrentView

TABLE = "event_chain"
EVENTS_TABLE = "stored_events"
VIEW_TABLE = "images"  # postgres_views.TABLE (that module imports this one)
CHECK_TABLE = "images_check"  # the fold verify compares with: a temporary table
PAGE = 1000
_MIN_POSITION = -(2**63)


def _sql(schema: str, text: str) -> Composed:
    """`text` with {chain}, {events}, {view} and {check} named in `schema`."""
    return SQL(text).format(
        chain=Identifier(schema, TABLE),
        events=Identifier(schema, EVENTS_TABLE),
        view=Identifier(schema, VIEW_TABLE),
        check=Identifier("pg_temp", CHECK_TABLE),
    )


def create_statement(schema: str) -> Composed:
    """What a new store runs to hold the chain."""
    return _sql(
        schema,
        "CREATE TABLE {chain} (position bigint PRIMARY KEY, chain bytea NOT NULL)",
    )


def last_link_statement(schema: str) -> Composed:
    """The chain's last link (no row when the log is empty)."""
    return _sql(schema, "SELECT chain FROM {chain} ORDER BY position DESC LIMIT 1")


def append_links(
    c: Cursor[DictRow],
    schema: str,
    previous: bytes,
    positions: Sequence[int],
    stored_events: Sequence[StoredEvent],
) -> None:
    """Link events just inserted at `positions` after `previous`, the last link.

    The caller read `previous` (last_link_statement) holding the EXCLUSIVE lock
    on `stored_events` that every writer takes before inserting and keeps to
    its commit, so no other link was written since, nor can be before this
    transaction commits.
    """
    links = chain_links(previous, positions, stored_events)
    insert = _sql(schema, "INSERT INTO {chain} (position, chain) VALUES (%s, %s)")
    if len(links) == 1:
        c.execute(insert, links[0], prepare=True)
    else:
        c.executemany(insert, links)


def links(
    datastore: LedgerPostgresDatastore, after: int, until: int
) -> dict[int, bytes]:
    """The stored links of the positions after `after` up to `until`, by position."""
    with datastore.transaction(commit=False) as c:
        c.execute(
            _sql(
                datastore.schema,
                "SELECT position, chain FROM {chain} "
                "WHERE position > %s AND position <= %s ORDER BY position",
            ),
            (after, until),
        )
        return {int(row["position"]): bytes(row["chain"]) for row in c.fetchall()}


def checkpoint(datastore: LedgerPostgresDatastore) -> tuple[int, bytes]:
    """The last log position and its stored link; (0, GENESIS) for an empty log."""
    with datastore.transaction(commit=False) as c:
        # One statement: the position and its link are read at one moment.
        c.execute(
            _sql(
                datastore.schema,
                "SELECT last.position, l.chain FROM (SELECT MAX(notification_id) "
                "AS position FROM {events}) AS last "
                "LEFT JOIN {chain} AS l ON l.position = last.position",
            )
        )
        row = c.fetchone()
    if row is None or row["position"] is None:
        return 0, GENESIS
    position = int(row["position"])
    if row["chain"] is None:
        raise IntegrityError(
            position, FORGED_EVENT, "the last event in the log has no link"
        )
    return position, bytes(row["chain"])


def verify(
    datastore: LedgerPostgresDatastore,
    mapper: LedgerMapper,
    view: PostgresCurrentView,
    audit: PostgresAuditIndex,
    checkpoint: tuple[int, bytes] | None = None,
) -> ChainWalk:
    """Check the chain (and the checkpoint), then that the views equal the fold.

    All in one REPEATABLE READ transaction, so the log and the view are seen
    at one moment whatever writers do meanwhile (it takes no lock that blocks
    them); the fold goes to a temporary table, a page of events at a time, and
    the transaction is rolled back. Returns the finished walk; raises
    IntegrityError at the first bad position.
    """
    schema = datastore.schema
    with datastore.transaction(commit=False) as c:
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        walk = ChainWalk(lambda after: _rows(c, schema, after), checkpoint, dense=False)
        view.start_check(c)
        batch: list[tuple[int, ImageName.Event]] = []
        for row in walk.walk():
            batch.append((row.position, proven_event(mapper.to_checked_event, row)))
            if len(batch) >= PAGE:
                view.fold_check(c, batch)
                audit.check(c, batch)
                batch = []
        view.fold_check(c, batch)
        audit.check(c, batch)
        _compare_view(view, c, schema, walk.position)
        audit.finish_check(c, walk.position, walk.events)
    return walk


def _rows(c: Cursor[DictRow], schema: str, after: int | None) -> Iterator[ChainRow]:
    # Every position that has an event, a link or both, so that a deleted event
    # and an event without a link both show up at their place.
    page = _sql(
        schema,
        "SELECT p.position, e.originator_id, e.originator_version, e.topic, "
        "e.state, l.chain, e.notification_id IS NOT NULL AS has_event FROM ("
        "SELECT notification_id AS position FROM {events} "
        "WHERE notification_id >= %(start)s "
        "UNION SELECT position FROM {chain} WHERE position >= %(start)s "
        "ORDER BY 1 LIMIT %(limit)s) AS p "
        "LEFT JOIN {events} AS e ON e.notification_id = p.position "
        "LEFT JOIN {chain} AS l ON l.position = p.position "
        "ORDER BY p.position",
    )
    start = _MIN_POSITION if after is None else after + 1
    while True:
        c.execute(page, {"start": start, "limit": PAGE}, prepare=True)
        rows = [_chain_row(row) for row in c.fetchall()]
        yield from rows
        if len(rows) < PAGE:
            return
        start = rows[-1].position + 1


def _chain_row(row: DictRow) -> ChainRow:
    stream, state, chain = row["originator_id"], row["state"], row["chain"]
    return ChainRow(
        row["position"],
        # The canonical bytes hold the id as SQLite stores it: 32 hex digits.
        stream.hex if isinstance(stream, UUID) else stream,
        row["originator_version"],
        row["topic"],
        None if state is None else bytes(state),
        None if chain is None else bytes(chain),
        has_event=row["has_event"],
    )


def _compare_view(
    view: PostgresCurrentView, c: Cursor[DictRow], schema: str, head: int
) -> None:
    check_tracked(view.tracked_position(c), head)
    difference = _difference(c, schema)
    if difference is not None:
        (namespace, name), detail = difference
        position = _last_position(c, schema, namespace, name)
        raise IntegrityError(position or head, VIEW_DIFFERS, detail)


def _difference(c: Cursor[DictRow], schema: str) -> tuple[tuple[str, str], str] | None:
    """The first view row that differs from the check fold, and how; None if none.

    JSON columns are compared as JSON: a row written with its labels in
    another key order is equal.
    """
    columns = ", ".join(ALL_COLUMNS)
    c.execute(
        _sql(
            schema,
            f"SELECT namespace, name FROM (SELECT {columns} FROM {{view}} "
            f"EXCEPT SELECT {columns} FROM {{check}}) AS extra UNION "
            f"SELECT namespace, name FROM (SELECT {columns} FROM {{check}} "
            f"EXCEPT SELECT {columns} FROM {{view}}) AS lacking ORDER BY 1, 2",
        )
    )
    for key in c.fetchall():
        namespace, name = key["namespace"], key["name"]
        what = _compare(c, schema, namespace, name)
        if what:
            return (
                namespace,
                name,
            ), f"image {name!r} in namespace {namespace!r}: {what}"
    return None


def _compare(c: Cursor[DictRow], schema: str, namespace: str, name: str) -> str:
    select = f"SELECT {', '.join(ALL_COLUMNS)} FROM {{}} WHERE namespace=%s AND name=%s"
    c.execute(_sql(schema, select.format("{view}")), (namespace, name))
    viewed = c.fetchone()
    c.execute(_sql(schema, select.format("{check}")), (namespace, name))
    folded = c.fetchone()
    if folded is None:
        return "it is in the view, but no event in the log made it"
    if viewed is None:
        return "the log made it, but it is missing from the view"
    return "; ".join(
        f"{column} is {shown_value(viewed[column])} in the view, "
        f"{shown_value(folded[column])} in the log"
        for column in ALL_COLUMNS
        if not same_column(column, viewed[column], folded[column])
    )


def _last_position(c: Cursor[DictRow], schema: str, namespace: str, name: str) -> int:
    """The position of the last event of (namespace, name), 0 if it has none."""
    c.execute(
        _sql(
            schema,
            "SELECT MAX(notification_id) AS last FROM {events} "
            "WHERE originator_id = %s",
        ),
        (ImageName.create_id(namespace, name),),
    )
    row = c.fetchone()
    return 0 if row is None or row["last"] is None else int(row["last"])
