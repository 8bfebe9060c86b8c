"""What the event log needs from a store's infrastructure, whatever the database.

The SQLite factory and the PostgreSQL factory both satisfy `StoreFactory`; the
event log and the image store use nothing else of them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from imageledger.domain.image import ImageName
from imageledger.infrastructure.hash_chain import ChainWalk
from imageledger.infrastructure.live_views import LiveView
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.view_rows import Snapshot
from imageledger.infrastructure.wakeups import Wakeup
from imageledger.projections.audit import AuditIndex
from imageledger.projections.current_view import Image, ListKeys

Progress = Callable[[int, int], None]
"""Called as progress(events folded so far, events in the log when it started)."""


class StoreView(LiveView, Protocol):
    """The current view as the event log uses it (and a live view of the writes)."""

    def get(self, namespace: str, name: str) -> Image | None:
        """The live image, or None when the name is absent or deleted."""

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        """Live images of `namespace`, sorted by name, streamed; with `keys`,
        only those with one of its names or digests."""

    def snapshots(
        self, namespace: str, names: builtins.list[str], streams: builtins.list[UUID]
    ) -> dict[str, Snapshot]:
        """Each name's view row and its stream's last two events, at one moment
        (`streams` are the names' aggregate ids, in order)."""

    def catch_up(self) -> int:
        """Fold the events the view has not seen yet; return how many."""


class StoreRecorder(Protocol):
    """The event recorder as the store uses it, beyond eventsourcing's interface."""

    live_views: list[LiveView]
    """Called in each write's transaction with the events and their positions."""

    def select_stream(self, originator_id: UUID, gt: int = 0) -> list[Notification]:
        """The events of one aggregate after version `gt`, oldest first, with
        their log positions."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events in one transaction, calling the live views in it;
        return their positions. `image_events=` passes the domain events."""

    def insert_into_empty(
        self,
        pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]],
    ) -> int:
        """Insert pages of events (stored, domain) in one transaction, calling
        the live views for each page, only into an empty log (else LogNotEmpty,
        and nothing inserted); return how many were inserted."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Events in log order (eventsourcing's ApplicationRecorder method)."""

    def max_notification_id(self) -> int | None:
        """The position of the last event, None when the log is empty."""


class StoreFactory(Protocol):
    """Everything one store needs: mapper, recorder (with live views), view."""

    mapper_instance: LedgerMapper

    @property
    def recorder(self) -> StoreRecorder:
        """The event recorder; it folds each write into the live views."""

    @property
    def current_view(self) -> StoreView:
        """The current view (name -> descriptor)."""

    @property
    def audit_index(self) -> AuditIndex:
        """The audit index (every event by position, name, digest, time, actor)."""

    def checkpoint(self) -> tuple[int, bytes]:
        """The log's last position and its link in the hash chain."""

    def rebuild(self, progress: Progress | None = None) -> int:
        """Refold every view from the log; return the number of events folded."""

    def verify(self, checkpoint: tuple[int, bytes] | None) -> ChainWalk:
        """Walk the hash chain (proving `checkpoint` if given), then check that
        every view equals the fold of the log; raise IntegrityError at the first
        bad position."""

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """The stored chain links of positions after `after` up to `until`."""

    def wakeup(self) -> Wakeup:
        """Something to wait on until another process may have appended."""

    def close(self) -> None:
        """Close every connection the store holds."""
