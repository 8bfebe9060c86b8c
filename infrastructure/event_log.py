"""The event log: an eventsourcing Application over one store.

It knows how to load an image aggregate cheaply (from the current view's row
as a snapshot, fast-forwarded with any later events), how to save one (events,
live views and their positions in one transaction), and how to read the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    Mapper,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from imageledger.domain.image import Image, image_id
from imageledger.infrastructure.hash_chain import ChainWalk
from imageledger.infrastructure.store_factory import Progress, StoreFactory, StoreView
from imageledger.infrastructure.wakeups import Wakeup
from imageledger.projections.audit import AuditIndex
from imageledger.projections.current_view import CurrentImage

PAGE = 1000


class EventLog(Application[UUID]):
    """Appends image events and reads them back, keeping the views current."""

    name = "imageledger"

    def __init__(self, factory: StoreFactory) -> None:
        self._factory = factory
        super().__init__()

    # eventsourcing wiring: everything comes from our factory, nothing from os.environ.

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, {})

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        # Both our factories are eventsourcing factories (SQLite or PostgreSQL).
        return cast(InfrastructureFactory[Any], self._factory)

    def construct_mapper(self) -> Mapper[UUID]:
        return self._factory.mapper_instance

    def construct_recorder(self) -> ApplicationRecorder:
        return cast(ApplicationRecorder, self._factory.recorder)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # The recorder folds these into the live views inside the write.
        return self.events.put(
            processing_event.events,
            tracking=processing_event.tracking,
            image_events=processing_event.events,
            **processing_event.saved_kwargs,
        )

    # What the image store uses.

    @property
    def current_view(self) -> StoreView:
        return self._factory.current_view

    @property
    def audit_index(self) -> AuditIndex:
        return self._factory.audit_index

    def load(self, namespace: str, name: str) -> Image | None:
        """The aggregate of a name as the log has it now, or None if never seen.

        The current view's row is the snapshot (it commits with the events, so
        it is normally at the stream's head); events after it, if any, are
        replayed onto it. Cost does not grow with the name's history.
        """
        stream = image_id(namespace, name)
        state, head = self._factory.current_view.snapshot(namespace, name, stream)
        image = None if state is None else _restore(stream, state)
        if head > (0 if image is None else image.version):
            gt = 0 if image is None else image.version
            decode = self._factory.mapper_instance.to_domain_event
            for notification in self._factory.recorder.select_stream(stream, gt):
                image = decode(notification).mutate(image)
        return image

    def load_many(
        self, namespace: str, names: Iterable[str]
    ) -> dict[str, Image | None]:
        """`load` of many names of one namespace, in a few reads for them all.

        When the view is at the log's head every row is its stream's head, so
        the rows alone are the aggregates; otherwise each name is loaded alone.
        """
        wanted = list(dict.fromkeys(names))
        states = self._factory.current_view.snapshots(namespace, wanted)
        if states is None:
            return {name: self.load(namespace, name) for name in wanted}
        return {
            name: None
            if (state := states.get(name)) is None
            else _restore(image_id(namespace, name), state)
            for name in wanted
        }

    def append(self, image: Image) -> list[int]:
        """Save the aggregate's pending events; return their log positions.

        What Application.save() does for one aggregate, without its runtime
        protocol checks (a third of a write's CPU time) or snapshot and
        notification hooks, which this application does not use.
        """
        return self.append_events(cast(Sequence[Image.Event], image.collect_events()))

    def append_events(self, events: Sequence[Image.Event]) -> list[int]:
        """Save events of any images, in this order, in one transaction.

        Raises RecordConflictError, and saves none of them, if another writer
        already saved an event at one of their versions.
        """
        # What _record does, without building a Recording per event.
        stored = [self.mapper.to_stored_event(event) for event in events]
        positions = self._factory.recorder.insert_events(stored, image_events=events)
        assert positions is not None and len(positions) == len(stored)
        return list(positions)

    def to_stored(self, events: Iterable[Image.Event]) -> list[StoredEvent]:
        """The events as they would be stored (their state is what the chain
        hashes), each holding no more memory than its bytes need."""
        stored = []
        for event in events:
            record = self.mapper.to_stored_event(event)
            # orjson's result keeps its 4 KiB output buffer: for one write that
            # is nothing, for a million events held until an import commits,
            # gigabytes. A copy is its exact size.
            stored.append(
                StoredEvent(
                    originator_id=record.originator_id,
                    originator_version=record.originator_version,
                    topic=record.topic,
                    state=bytes(bytearray(record.state)),
                )
            )
        return stored

    def append_to_empty(
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[Image.Event]]]
    ) -> int:
        """Save pages of events (each as stored and as domain events), in this
        order, in one transaction, only into an empty log: LogNotEmpty, and
        nothing saved, if another writer got there first. Returns how many.

        One page at a time is in memory; the transaction holds the write lock
        from the first page to the commit.
        """
        return self._factory.recorder.insert_into_empty(pages)

    def stream(self, namespace: str, name: str) -> list[tuple[int, Image.Event]]:
        """Every event of one name, oldest first, with its log position."""
        notifications = self._factory.recorder.select_stream(image_id(namespace, name))
        decode = self._factory.mapper_instance.to_domain_event
        return [(n.id, decode(n)) for n in notifications]

    def read(
        self, *, after: int = 0, until: int | None = None
    ) -> Iterator[tuple[int, Image.Event]]:
        """Events after position `after` up to `until` (inclusive), in log order."""
        decode = self._factory.mapper_instance.to_domain_event
        while True:
            page = self.recorder.select_notifications(
                start=after, limit=PAGE, stop=until, inclusive_of_start=False
            )
            for notification in page:
                yield notification.id, decode(notification)
            if len(page) < PAGE:
                return
            after = page[-1].id

    def rebuild_views(self, progress: Progress | None = None) -> int:
        """Refold every view from the log in one pass (see
        live_views.rebuild_views); return the number of events folded."""
        return self._factory.rebuild(progress)

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """The stored chain links of positions after `after` up to `until`."""
        return self._factory.links(after, until)

    def wakeup(self) -> Wakeup:
        """Something to wait on until another process may have appended."""
        return self._factory.wakeup()

    def checkpoint(self) -> tuple[int, bytes]:
        """The log's last position and its link in the hash chain."""
        return self._factory.checkpoint()

    def verify(self, checkpoint: tuple[int, bytes] | None = None) -> ChainWalk:
        """Check the chain, the checkpoint and the views; see StoreFactory.verify."""
        return self._factory.verify(checkpoint)


def _restore(stream: UUID, state: CurrentImage) -> Image:
    """The aggregate at the state a view row holds."""
    current = state.image
    return Image.restore(
        id=stream,
        namespace=current.namespace,
        name=current.name,
        version=current.version,
        target=current.target,
        labels=current.labels,
        live=state.live,
        created_at=current.created_at,
        updated_at=current.updated_at,
        immutable=current.immutable,
    )
