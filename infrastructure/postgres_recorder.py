"""The PostgreSQL event recorder: eventsourcing's, plus live views in the same write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from imageledger.domain.image import ImageName
from imageledger.infrastructure import postgres_chain
from imageledger.infrastructure.errors import LogNotEmpty
from imageledger.infrastructure.hash_chain import GENESIS
from imageledger.infrastructure.live_views import LiveView
from imageledger.infrastructure.postgres_datastore import LedgerPostgresDatastore

EVENTS_TABLE = postgres_chain.EVENTS_TABLE
TRACKING_TABLE = "tracking"


class LedgerPostgresRecorder(PostgresProcessRecorder):
    """Appends events to `stored_events` and folds them into the live views.

    Positions come from the table's `notification_id` sequence. eventsourcing
    takes an EXCLUSIVE lock on the events table before inserting (reads are
    not blocked), so writers take turns from the insert to the commit and
    positions commit in increasing order. A rolled-back insert still uses up
    its sequence numbers, so positions can have gaps.

    Our `insert_events` runs eventsourcing's statements (table lock, NOTIFY,
    INSERT ... RETURNING notification_id) in one transaction, then appends the
    events' links to the hash chain and folds them into the live views, on the
    same cursor: no event commits without its link. eventsourcing's own
    version pipelines its statements and commits even when a step after the
    insert raises a non-database error, which would leave events without
    their links and view rows; ours rolls back on any error. It also does not
    retry a lock timeout ten times: it reports busy.
    """

    def __init__(self, datastore: LedgerPostgresDatastore) -> None:
        super().__init__(
            datastore,
            events_table_name=EVENTS_TABLE,
            tracking_table_name=TRACKING_TABLE,
        )
        self.live_views: list[LiveView] = []
        schema = Identifier(datastore.schema)
        # eventsourcing sets the lock timeout in whole seconds, where 0 means
        # wait forever; ours is in milliseconds (see lock_timeout_setting).
        self.lock_table_statements = [
            SQL("SET LOCAL lock_timeout = {}").format(
                Literal(datastore.lock_timeout_setting)
            ),
            SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                schema, Identifier(EVENTS_TABLE)
            ),
        ]
        # Sent as one simple query: a round trip instead of eventsourcing's
        # three, and the hash chain's last link read under the lock just taken.
        self.lock_notify_and_last_link_statement = SQL("; ").join(
            [
                *self.lock_table_statements,
                SQL("NOTIFY {}").format(Identifier(self.channel_name)),
                postgres_chain.last_link_statement(datastore.schema),
            ]
        )
        self.select_stream_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {}.{} WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version"
        ).format(schema, Identifier(EVENTS_TABLE))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            return self._insert_events(curs, stored_events, **kwargs)

    def insert_into_empty(
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]]
    ) -> int:
        """Insert pages of events in one transaction (an import), only into an
        empty log: LogNotEmpty, and nothing inserted, otherwise."""
        inserted = 0
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            for stored, events in pages:
                if not stored:
                    continue
                positions = self._insert_events(curs, stored, image_events=events)
                if not inserted and self._has_events_before(curs, positions[0]):
                    # Checked under the write lock the first page took.
                    raise LogNotEmpty
                inserted += len(stored)
        return inserted

    def _has_events_before(self, curs: Cursor[DictRow], position: int) -> bool:
        curs.execute(
            SQL("SELECT 1 FROM {}.{} WHERE notification_id < %s LIMIT 1").format(
                Identifier(self.datastore.schema), Identifier(EVENTS_TABLE)
            ),
            (position,),
        )
        return curs.fetchone() is not None

    def _insert_events(  # type: ignore[override]  # returns positions, as on SQLite
        self,
        c: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int]:
        super()._insert_events(c, stored_events, **kwargs)  # tracking, if given
        previous = self._lock_and_read_last_link(c)
        PostgresAggregateRecorder._insert_stored_events(
            self, c, stored_events, **kwargs
        )
        positions = self._fetch_ids_after_insert_events(c, stored_events, **kwargs)
        domain_events = kwargs.get("image_events")
        if domain_events is None or positions is None:
            raise ProgrammingError(
                "imageledger writes pass their domain events, so views stay current"
            )
        postgres_chain.append_links(
            c, self.datastore.schema, previous, positions, stored_events
        )
        recorded = list(zip(positions, domain_events, strict=True))
        for view in self.live_views:
            view.apply(c, recorded)
        return positions

    def _lock_and_read_last_link(self, curs: Cursor[DictRow]) -> bytes:
        """Take the write lock, NOTIFY, and read the chain's last link.

        What eventsourcing's `_insert_stored_events` does before its INSERT,
        plus the read, in one round trip. Under the lock (held to the commit)
        no other writer can append a link before this one's.
        """
        curs.execute(self.lock_notify_and_last_link_statement)
        while curs.nextset():  # to the last statement's result: the link
            pass
        row = curs.fetchone()
        return GENESIS if row is None else bytes(row["chain"])

    def select_stream(self, originator_id: UUID, gt: int = 0) -> list[Notification]:
        """The events of one aggregate after version `gt`, oldest first, with
        their log positions."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_stream_statement, (originator_id, gt))
            return [notification_from_row(row) for row in curs.fetchall()]


def notification_from_row(row: DictRow) -> Notification:
    """A notification from a row of the events table."""
    return Notification(
        id=row["notification_id"],
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
