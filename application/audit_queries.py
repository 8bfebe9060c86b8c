"""ImageStore's audit and time-travel queries: log, as_of, where, diff.

The rules they follow are in `time_travel`; these are the store's methods.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator

from imageledger import time_travel
from imageledger.domain.names import validate_namespace
from imageledger.infrastructure.errors import storage_errors
from imageledger.infrastructure.event_log import EventLog
from imageledger.projections.audit import AuditEntry
from imageledger.projections.current_view import Image
from imageledger.projections.image_filter import image_query
from imageledger.time_travel import Diff, Interval, PastStore, When, log_query


class AuditQueries:
    """The audit queries of `ImageStore` (which sets `_log`)."""

    _log: EventLog

    def log(
        self,
        *,
        since: When | None = None,
        until: When | None = None,
        after: int | None = None,
        actor: str | None = None,
        name: str | None = None,
        digest: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEntry]:
        """Events of the whole log, by position, streamed; each argument narrows it.

        `since`/`until` are points of the log (a position, or a datetime,
        naive ones UTC), both inclusive; `after` is an exclusive position;
        `kind` is "registered" or "deleted"; `digest` matches registrations
        at that digest. `namespace=None` means every namespace.
        """
        query = log_query(
            since=since,
            until=until,
            after=after,
            actor=actor,
            name=name,
            digest=digest,
            kind=kind,
            namespace=namespace,
            limit=limit,
        )
        return time_travel.log(self._log.audit_index, query)

    def as_of(self, when: When) -> PastStore:
        """The store as it was at `when` (a log position, or a datetime; naive
        ones are UTC): a read-only view with `get` and `list`.

        It holds the state right after every event at or before `when`, as
        `replay(until=when)` does; position 0 is the empty store.
        """
        return PastStore(self._log.audit_index, when, self._filtered)

    def where(
        self, digest: str, *, namespace: str | None = None
    ) -> builtins.list[Interval]:
        """Every interval in which a name pointed at `digest`, now and in the
        past, by when it began (`until` is None while it still does).
        `namespace=None` means every namespace."""
        return time_travel.where(self._log.audit_index, digest, namespace)

    def diff(self, a: When, b: When, *, namespace: str | None = None) -> Diff:
        """Names added, removed and retargeted between points `a` and `b` of
        the log. `namespace=None` compares every namespace."""
        before, after = self.as_of(a), self.as_of(b)
        if namespace is None:
            with storage_errors():
                namespaces = self._log.audit_index.namespaces()
        else:
            namespaces = [validate_namespace(namespace)]

        def state(past: PastStore) -> Iterator[Image]:
            for each in namespaces:
                yield from past.list(namespace=each)

        return time_travel.diff(state(before), state(after))

    @staticmethod
    def _filtered(images: Iterable[Image], filters: tuple[str, ...]) -> Iterator[Image]:
        return image_query(filters).select(images)
