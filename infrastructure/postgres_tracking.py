"""What every PostgreSQL view reads and writes of the log and of its tracking
row, in the store's schema."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from imageledger.domain.image import ImageName
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.postgres_recorder import (
    EVENTS_TABLE,
    TRACKING_TABLE,
    notification_from_row,
)


def _sql(schema: str, text: str) -> Composed:
    return SQL(text).format(
        events=Identifier(schema, EVENTS_TABLE),
        tracking=Identifier(schema, TRACKING_TABLE),
    )


def tracked_position(c: Cursor[DictRow], schema: str, view: str) -> int:
    """The log position `view` says it reflects (0 when its row is gone: the
    view then catches up from the start, as a view that never ran)."""
    c.execute(
        _sql(
            schema, "SELECT notification_id FROM {tracking} WHERE application_name=%s"
        ),
        (view,),
    )
    row = c.fetchone()
    return (
        0
        if row is None or row["notification_id"] is None
        else int(row["notification_id"])
    )


def track(c: Cursor[DictRow], schema: str, view: str, position: int) -> None:
    """Record that `view` reflects the log up to `position`."""
    c.execute(
        _sql(
            schema,
            "INSERT INTO {tracking} (application_name, notification_id) "
            "VALUES (%s, %s) ON CONFLICT (application_name) "
            "DO UPDATE SET notification_id=excluded.notification_id",
        ),
        (view, position),
    )


def log_head(c: Cursor[DictRow], schema: str, *, below: int | None = None) -> int:
    """The position of the log's last event (before `below`, if given)."""
    statement = "SELECT MAX(notification_id) AS head FROM {events}"
    params: tuple[int, ...] = ()
    if below is not None:
        statement += " WHERE notification_id < %s"
        params = (below,)
    c.execute(_sql(schema, statement), params)
    row = c.fetchone()
    return int(row["head"] or 0) if row is not None else 0


def log_page(
    c: Cursor[DictRow],
    schema: str,
    mapper: LedgerMapper,
    *,
    after: int,
    upto: int | None,
    limit: int,
) -> list[tuple[int, ImageName.Event]]:
    """Up to `limit` events after position `after` (and up to `upto`)."""
    statement = (
        "SELECT notification_id, originator_id, originator_version, topic, "
        "state FROM {events} WHERE notification_id > %s "
    )
    params: list[int] = [after]
    if upto is not None:
        statement += "AND notification_id <= %s "
        params.append(upto)
    statement += "ORDER BY notification_id LIMIT %s"
    c.execute(_sql(schema, statement), [*params, limit])
    return [
        (row["notification_id"], mapper.to_domain_event(notification))
        for row in c.fetchall()
        for notification in [notification_from_row(row)]
    ]


def lock_events(c: Cursor[DictRow], schema: str, lock_timeout: str) -> None:
    """Take the lock writers take (see LedgerPostgresRecorder), waiting at most
    `lock_timeout`: while it is held no other write is between its insert and
    its commit."""
    c.execute(SQL("SET LOCAL lock_timeout = {}").format(Literal(lock_timeout)))
    c.execute(_sql(schema, "LOCK TABLE {events} IN EXCLUSIVE MODE"))
