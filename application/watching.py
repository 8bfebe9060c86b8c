"""Following the log: each new event as it is appended, by any process.

A watch starts listening before it reads the head, so nothing committed after
that read is missed; then it reads what is new whenever the log may have
grown: on SQLite after polling the head (an indexed MAX(rowid)) every fifth of
a second, on PostgreSQL when the writer's NOTIFY arrives at its commit (with
a poll every two seconds as a fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence

from imageledger.domain.errors import InvalidArgument
from imageledger.domain.filters import parse
from imageledger.domain.image import ImageName
from imageledger.domain.names import validate_namespace
from imageledger.infrastructure.errors import storage_errors
from imageledger.infrastructure.event_log import EventLog
from imageledger.projections.audit import AuditEntry, audit_entry
from imageledger.projections.image_filter import event_fields

Match = Callable[[ImageName.Event], bool]


def validate(
    after: object, namespace: object, filters: Iterable[str], poll_interval: object
) -> tuple[int | None, Match, float | None]:
    """ImageStore.watch's arguments checked: (after, which events, interval)."""
    if after is not None and (
        not isinstance(after, int) or isinstance(after, bool) or after < 0
    ):
        raise InvalidArgument("after", "must be a log position (0 or more)")
    if poll_interval is not None and not (
        isinstance(poll_interval, (int, float))
        and not isinstance(poll_interval, bool)
        and 0 < poll_interval <= 3600
    ):
        raise InvalidArgument("poll_interval", "must be seconds, up to 3600")
    checked = None if namespace is None else validate_namespace(namespace)
    return after, event_filter(checked, list(filters)), poll_interval


def event_filter(namespace: str | None, filters: Sequence[str]) -> Match:
    """Which events a watch shows: of `namespace` (None: every one), and
    matching `filters`."""
    parsed = parse(*filters)  # InvalidArgument (with the position) if malformed

    def matches(event: ImageName.Event) -> bool:
        if namespace is not None and event.namespace != namespace:
            return False
        return parsed.matches_all or parsed.matches(event_fields(event))

    return matches


class Watch(Iterator[AuditEntry]):
    """Audit entries of the events after a position, in log order, as they are
    appended; never ends. It starts at the head when it is made (or after the
    position given); `close()` stops it and releases what it listens with."""

    def __init__(
        self,
        log: EventLog,
        after: int | None,
        match: Match,
        poll_interval: float | None,
    ) -> None:
        with storage_errors():
            self._wakeup = log.wakeup()  # first: an append after the head wakes it
            try:
                self._position = log.head() if after is None else after
            except BaseException:
                self._wakeup.close()
                raise
        self._log = log
        self._match = match
        self._interval = (
            self._wakeup.interval if poll_interval is None else poll_interval
        )
        self._entries = self._follow()

    def __next__(self) -> AuditEntry:
        with storage_errors():
            return next(self._entries)

    def close(self) -> None:
        """Stop watching."""
        self._entries.close()
        self._wakeup.close()

    def _follow(self) -> Generator[AuditEntry, None, None]:
        log = self._log
        while True:
            if log.head() <= self._position:
                self._wakeup.wait(self._interval)
                continue
            for position, event in log.read(after=self._position):
                self._position = position
                if self._match(event):
                    yield audit_entry(position, event)
