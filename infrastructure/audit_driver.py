"""The audit index's drivers, whatever the database: live fold, catch-up and
verify's check. Each backend gives the few statements they run.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from imageledger.infrastructure.audit_rows import difference, fold_row
from imageledger.infrastructure.errors import IntegrityError
from imageledger.infrastructure.hash_chain import VIEW_DIFFERS, check_tracked
from imageledger.infrastructure.live_views import Recorded, check_not_beyond
from imageledger.projections.audit import AuditIndex, AuditRow

TABLE = "audit_index"


class AuditIndexDriver(AuditIndex):
    """What both backends' audit indexes do alike, over their own statements.

    `c` is the backend's cursor in an open transaction.
    """

    # The statements each backend runs.

    @abstractmethod
    def _last_row(
        self, c: Any, table: str, key: tuple[str, str], *, before: int | None
    ) -> AuditRow | None:
        """The name's last row in `table` (before position `before`, if given)."""

    @abstractmethod
    def _rows_between(self, c: Any, first: int, last: int) -> dict[int, AuditRow]:
        """The index's rows from position `first` to `last`, by position."""

    @abstractmethod
    def _insert(self, c: Any, table: str, rows: list[AuditRow]) -> None:
        """Insert rows into `table`."""

    @abstractmethod
    def _delete_after(self, c: Any, table: str, position: int) -> None:
        """Delete the rows of `table` after log position `position`."""

    @abstractmethod
    def _row_count(self, c: Any) -> int:
        """How many rows the index holds."""

    @abstractmethod
    def _first_row_without_event(self, c: Any) -> int | None:
        """The position of the first index row whose event is not in the log."""

    @abstractmethod
    def _notifications(self, c: Any, *, after: int, upto: int | None) -> Recorded:
        """The next batch of the log after `after`, up to `upto` if given."""

    @abstractmethod
    def _position(self, c: Any) -> int:
        """The log position the index says it reflects."""

    # Verify driver: each row must be the fold of its event and of the row
    # before it of the same name, which the check has already proved.

    def check(self, c: Any, recorded: Recorded) -> None:
        """Check the index rows of a page of events, read in `c`'s transaction."""
        if not recorded:
            return
        stored = self._rows_between(c, recorded[0][0], recorded[-1][0])
        previous: dict[tuple[str, str], AuditRow | None] = {}
        for position, event in recorded:
            key = (event.namespace, event.name)
            if key not in previous:
                previous[key] = self._last_row(c, TABLE, key, before=position)
            expected = fold_row(previous[key], position, event)
            found = stored.get(position)
            if found != expected:
                raise IntegrityError(
                    position, VIEW_DIFFERS, difference(found, expected)
                )
            previous[key] = expected

    def finish_check(self, c: Any, head: int, events: int) -> None:
        """After the last page: no rows without events, and tracking at `head`."""
        check_tracked(self._position(c), head)
        if self._row_count(c) != events:
            extra = self._first_row_without_event(c)
            position = head if extra is None else extra
            raise IntegrityError(
                position,
                VIEW_DIFFERS,
                f"the audit index has a row at position {position}, "
                "but the log has no event there",
            )

    # Shared by the live, catch-up and rebuild drivers.

    def _catch_up(self, c: Any, table: str, *, upto: int) -> int:
        after = self._position(c)
        check_not_beyond("audit index", after, upto)
        # Rows past the tracked position (its tracking row was moved back, or
        # lost) are folded again from the log, not trusted.
        self._delete_after(c, table, after)
        folded = 0
        while after < upto:
            batch = self._notifications(c, after=after, upto=upto)
            if not batch:
                break
            self._fold_into(c, table, batch)
            after = batch[-1][0]
            folded += len(batch)
        return folded

    def _fold_into(self, c: Any, table: str, recorded: Recorded) -> None:
        previous: dict[tuple[str, str], AuditRow | None] = {}
        rows = []
        for position, event in recorded:
            key = (event.namespace, event.name)
            if key not in previous:
                previous[key] = self._last_row(c, table, key, before=None)
            row = fold_row(previous[key], position, event)
            previous[key] = row
            rows.append(row)
        self._insert(c, table, rows)
