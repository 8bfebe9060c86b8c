"""Following the log: each new event as it is appended, by any process.

The watcher starts listening before it reads the head, so nothing committed
after that read is missed; then it reads what is new whenever the log may have
grown: on SQLite after polling the head (an indexed MAX(rowid)) every fifth of
a second, on PostgreSQL when the writer's NOTIFY arrives at its commit (with
a poll every two seconds as a fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from imageledger.domain.errors import InvalidArgument
from imageledger.domain.image import Image
from imageledger.infrastructure.event_log import EventLog
from imageledger.projections.audit import AuditEntry, audit_entry

Match = Callable[[Image.Event], bool]


def event_filter(namespace: str | None, filters: Sequence[str]) -> Match:
    """Which events the watcher shows: of `namespace` (None: every one), and
    matching `filters`."""
    # The one place where filters apply to the watched events. containerd's
    # filter syntax comes with `list`; until then filters are refused here.
    if filters:
        raise InvalidArgument(
            "filters", "are not supported by this version; watch without filters"
        )
    if namespace is None:
        return lambda event: True
    return lambda event: event.namespace == namespace


def watch(
    log: EventLog,
    after: int | None,
    match: Match,
    poll_interval: float | None,
) -> Iterator[AuditEntry]:
    """Audit entries of the events after `after` (None: the head now), in log
    order, as they are appended; never ends (close the iterator to stop)."""
    wakeup = log.wakeup()  # first: an append after the head is read wakes it
    try:
        interval = wakeup.interval if poll_interval is None else poll_interval
        position = log.head() if after is None else after
        while True:
            if log.head() > position:
                for recorded, event in log.read(after=position):
                    position = recorded
                    if match(event):
                        yield audit_entry(recorded, event)
            else:
                wakeup.wait(interval)
    finally:
        wakeup.close()
