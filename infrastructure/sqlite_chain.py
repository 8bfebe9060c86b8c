"""The hash chain in SQLite: the `event_chain` table, its writes, upgrade and checks.

`event_chain` holds one link per log position (`position` is the event's rowid
in `stored_events`). The recorder appends links in the transaction that
inserts the events; the write lock (BEGIN IMMEDIATE) makes the previous link
it reads the last one committed. The chain's definition is in `hash_chain`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteCursor

from imageledger.domain.image import ImageName
from imageledger.infrastructure.errors import IntegrityError, StoreError
from imageledger.infrastructure.hash_chain import (
    FORGED_EVENT,
    GENESIS,
    VIEW_DIFFERS,
    ChainRow,
    ChainWalk,
    chain_links,
    check_tracked,
    link,
    proven_event,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_datastore import LedgerSQLiteDatastore

if TYPE_CHECKING:  # the recorder imports this module, and the views the recorder
    from imageledger.infrastructure.sqlite_audit import SQLiteAuditIndex
    from imageledger.infrastructure.sqlite_views import SQLiteCurrentView

TABLE = "event_chain"
EVENTS_TABLE = "stored_events"
PAGE = 1000
_MIN_ROWID = -(2**63)

CREATE_STATEMENT = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(position INTEGER PRIMARY KEY, chain BLOB NOT NULL)"
)
_LAST_LINK = f"SELECT position, chain FROM {TABLE} ORDER BY position DESC LIMIT 1"
_INSERT_LINK = f"INSERT INTO {TABLE} (position, chain) VALUES (?, ?)"
_LINKS_BETWEEN = (
    f"SELECT position, chain FROM {TABLE} WHERE position>? AND position<=? "
    "ORDER BY position"
)
_EVENTS_PAGE = (
    "SELECT rowid, originator_id, originator_version, topic, state "
    f"FROM {EVENTS_TABLE} WHERE rowid>=? ORDER BY rowid LIMIT ?"
)
# Every position that has an event, a link or both, so that a deleted event
# and an event without a link both show up at their place.
_CHAIN_PAGE = (
    "SELECT p.position, e.originator_id, e.originator_version, e.topic, e.state, "
    "l.chain, e.rowid IS NOT NULL FROM ("
    f"SELECT rowid AS position FROM {EVENTS_TABLE} WHERE rowid>=?1 "
    f"UNION SELECT position FROM {TABLE} WHERE position>=?1 "
    "ORDER BY 1 LIMIT ?2) AS p "
    f"LEFT JOIN {EVENTS_TABLE} AS e ON e.rowid=p.position "
    f"LEFT JOIN {TABLE} AS l ON l.position=p.position "
    "ORDER BY p.position"
)


def append_links(
    c: SQLiteCursor, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> None:
    """Link events just inserted at `positions`, in the same transaction."""
    c.execute(_LAST_LINK)
    row = c.fetchone()
    previous = GENESIS if row is None else bytes(row[1])
    c.executemany(_INSERT_LINK, chain_links(previous, positions, stored_events))


def links(datastore: LedgerSQLiteDatastore, after: int, until: int) -> dict[int, bytes]:
    """The stored links of the positions after `after` up to `until`, by position."""
    with datastore.transaction(commit=False) as c:
        c.execute(_LINKS_BETWEEN, (after, until))
        return {int(row[0]): bytes(row[1]) for row in c.fetchall()}


def add_chain(c: SQLiteCursor) -> int:
    """Create `event_chain` and link every event already in the log (schema 1 -> 2).

    Runs in the caller's write transaction, a page of events at a time.
    Returns the number of events linked.
    """
    c.execute(CREATE_STATEMENT)
    previous, after, linked = GENESIS, _MIN_ROWID, 0
    while True:
        c.execute(_EVENTS_PAGE, (after, PAGE))
        rows = c.fetchall()
        links = []
        for position, *columns in rows:
            canonical = ChainRow(position, *columns).canonical()
            if canonical is None:
                raise StoreError(
                    f"cannot upgrade the store: the event at position {position} "
                    "is damaged"
                )
            previous = link(previous, canonical)
            links.append((position, previous))
        c.executemany(_INSERT_LINK, links)
        linked += len(rows)
        if len(rows) < PAGE:
            return linked
        after = rows[-1][0] + 1


def checkpoint(datastore: LedgerSQLiteDatastore) -> tuple[int, bytes]:
    """The last log position and its stored link; (0, GENESIS) for an empty log."""
    with datastore.transaction(commit=False) as c:
        c.execute(f"SELECT MAX(rowid) FROM {EVENTS_TABLE}")
        position = c.fetchone()[0]
        if position is None:
            return 0, GENESIS
        c.execute(f"SELECT chain FROM {TABLE} WHERE position=?", (position,))
        row = c.fetchone()
    if row is None or not isinstance(row[0], bytes):
        raise IntegrityError(
            position, FORGED_EVENT, "the last event in the log has no link"
        )
    return int(position), bytes(row[0])


def verify(
    datastore: LedgerSQLiteDatastore,
    mapper: LedgerMapper,
    view: SQLiteCurrentView,
    audit: SQLiteAuditIndex,
    checkpoint: tuple[int, bytes] | None = None,
) -> ChainWalk:
    """Check the chain (and the checkpoint), then that the views equal the fold.

    All in one read transaction, so the log and the view are seen at one
    moment; the fold goes to a temporary table, a page of events at a time.
    Returns the finished walk (events checked, last position, head); raises
    IntegrityError at the first bad position.
    """
    with datastore.transaction(commit=False) as c:
        walk = ChainWalk(lambda after: _rows(c, after), checkpoint)
        view.start_check(c)
        batch: list[tuple[int, ImageName.Event]] = []
        for row in walk.walk():
            batch.append((row.position, proven_event(mapper.to_checked_event, row)))
            if len(batch) >= PAGE:
                _check_page(view, audit, c, batch)
                batch = []
        _check_page(view, audit, c, batch)
        _compare_view(view, c, walk.position)
        audit.finish_check(c, walk.position, walk.events)
    return walk


def _check_page(
    view: SQLiteCurrentView,
    audit: SQLiteAuditIndex,
    c: SQLiteCursor,
    batch: list[tuple[int, ImageName.Event]],
) -> None:
    view.fold_check(c, batch)
    audit.check(c, batch)


def _compare_view(view: SQLiteCurrentView, c: SQLiteCursor, head: int) -> None:
    check_tracked(view.tracked_position(c), head)
    difference = view.check_difference(c)
    if difference is not None:
        where, detail = difference
        raise IntegrityError(_last_position(c, where) or head, VIEW_DIFFERS, detail)


def _rows(c: SQLiteCursor, after: int | None) -> Iterator[ChainRow]:
    start = _MIN_ROWID if after is None else after + 1
    while True:
        c.execute(_CHAIN_PAGE, (start, PAGE))
        page = [_chain_row(row) for row in c.fetchall()]
        yield from page
        if len(page) < PAGE:
            return
        start = page[-1].position + 1


def _chain_row(row: Any) -> ChainRow:
    position, stream, version, topic, state, chain, has_event = row
    return ChainRow(
        position, stream, version, topic, state, chain, has_event=bool(has_event)
    )


def _last_position(c: SQLiteCursor, where: tuple[Any, Any]) -> int | None:
    """The position of the last event of (namespace, name), if it has any."""
    if not all(isinstance(part, str) for part in where):
        return None
    stream = ImageName.create_id(*where)
    c.execute(
        f"SELECT MAX(rowid) FROM {EVENTS_TABLE} WHERE originator_id=?", (stream.hex,)
    )
    position = c.fetchone()[0]
    return None if position is None else int(position)
