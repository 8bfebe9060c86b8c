"""What every SQLite view reads and writes of the log and of its tracking row."""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteCursor

from imageledger.domain.image import Image
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_recorder import notification_from_row

EVENTS_TABLE = "stored_events"


def tracked_position(c: SQLiteCursor, view: str) -> int:
    """The log position `view` says it reflects."""
    c.execute("SELECT notification_id FROM tracking WHERE application_name=?", (view,))
    row = c.fetchone()
    if row is None:
        raise StoreError(f"the {view.replace('_', ' ')} has no tracking row")
    return int(row[0])


def track(c: SQLiteCursor, view: str, position: int) -> None:
    """Record that `view` reflects the log up to `position`."""
    c.execute(
        "UPDATE tracking SET notification_id=? WHERE application_name=?",
        (position, view),
    )


def log_head(c: SQLiteCursor) -> int:
    """The position of the log's last event (0 when empty)."""
    c.execute(f"SELECT MAX(rowid) FROM {EVENTS_TABLE}")
    return int(c.fetchone()[0] or 0)


def log_page(
    c: SQLiteCursor,
    mapper: LedgerMapper,
    *,
    after: int,
    upto: int | None,
    limit: int,
) -> list[tuple[int, Image.Event]]:
    """Up to `limit` events after position `after` (and up to `upto`)."""
    statement = f"SELECT rowid, * FROM {EVENTS_TABLE} WHERE rowid>? "
    params: list[int] = [after]
    if upto is not None:
        statement += "AND rowid<=? "
        params.append(upto)
    c.execute(statement + "ORDER BY rowid LIMIT ?", [*params, limit])
    return [
        (row["rowid"], mapper.to_domain_event(notification_from_row(row)))
        for row in c.fetchall()
    ]
