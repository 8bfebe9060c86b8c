"""The SQLite event recorder: eventsourcing's, plus live views in the same write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, ProgrammingError, StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from imageledger.domain.image import ImageName
from imageledger.infrastructure.errors import LogNotEmpty, StoreError
from imageledger.infrastructure.live_views import LiveView
from imageledger.infrastructure.sqlite_chain import append_links
from imageledger.infrastructure.sqlite_datastore import LedgerSQLiteDatastore

SELECT_STREAM = (
    "SELECT rowid, * FROM stored_events "
    "WHERE originator_id=? AND originator_version>? ORDER BY originator_version"
)
"""One name's events (`history`), a search of the stream's primary key."""


class LedgerSQLiteRecorder(SQLiteProcessRecorder):
    """Appends events to `stored_events`, links them into the hash chain and
    folds them into the live views, all in the write's transaction.

    Positions are SQLite rowids: the write lock is held from BEGIN IMMEDIATE to
    COMMIT, so they increase in commit order and never interleave.
    """

    def __init__(self, datastore: LedgerSQLiteDatastore) -> None:
        super().__init__(datastore)
        self.live_views: list[LiveView] = []
        self.select_stream_statement = SELECT_STREAM

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        domain_events = kwargs.get("image_events")
        if domain_events is None or positions is None:
            raise ProgrammingError(
                "imageledger writes pass their domain events, so views stay current"
            )
        append_links(c, positions, stored_events)
        recorded = list(zip(positions, domain_events, strict=True))
        for view in self.live_views:
            view.apply(c, recorded)
        return positions

    def insert_into_empty(
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]]
    ) -> int:
        """Insert pages of events in one write transaction (an import), only
        into an empty log: LogNotEmpty, and nothing inserted, otherwise."""
        inserted = 0
        with self.datastore.transaction(commit=True) as c:  # the write lock
            c.execute(f"SELECT 1 FROM {self.events_table_name} LIMIT 1")
            if c.fetchone() is not None:
                raise LogNotEmpty
            for stored, events in pages:
                if stored:
                    self._insert_events(c, stored, image_events=events)
                    inserted += len(stored)
        return inserted

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        """eventsourcing's conversion, with a damaged id as a StoreError."""
        return stream_id(originator_id)

    def select_stream(self, originator_id: UUID, gt: int = 0) -> list[Notification]:
        """The events of one aggregate after version `gt`, oldest first, with
        their log positions (so that a damaged one can be named by position).
        """
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_stream_statement, (originator_id.hex, gt))
            return [notification_from_row(row) for row in c.fetchall()]


def notification_from_row(row: Any) -> Notification:
    """A notification from a `SELECT rowid, *` row of the events table."""
    return Notification(
        id=row["rowid"],
        originator_id=stream_id(row["originator_id"], row["rowid"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"],
    )


def stream_id(stored: object, position: int | None = None) -> UUID:
    """The aggregate id of a stored event; StoreError if the column is damaged."""
    try:
        if isinstance(stored, str):
            return UUID(stored)
    except ValueError:
        pass
    where = "an event" if position is None else f"the event at position {position}"
    raise StoreError(f"{where} has a damaged aggregate id {stored!r}")
