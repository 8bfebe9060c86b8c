"""What every SQLite view reads and writes of the log and of its tracking row."""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteCursor

from imageledger.domain.image import ImageName
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_recorder import notification_from_row

EVENTS_TABLE = "stored_events"


def tracked_position(c: SQLiteCursor, view: str) -> int:
    """The log position `view` says it reflects (0 when its row is gone: the
    view then catches up from the start, as a view that never ran)."""
    c.execute("SELECT notification_id FROM tracking WHERE application_name=?", (view,))
    row = c.fetchone()
    return 0 if row is None or not isinstance(row[0], int) else row[0]


def track(c: SQLiteCursor, view: str, position: int) -> None:
    """Record that `view` reflects the log up to `position`."""
    c.execute(
        "INSERT INTO tracking (application_name, notification_id) VALUES (?, ?) "
        "ON CONFLICT (application_name) "
        "DO UPDATE SET notification_id=excluded.notification_id",
        (view, position),
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
) -> list[tuple[int, ImageName.Event]]:
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
