"""The ledger: the eventsourcing Application that is ImageStore's engine.

ImageStore validates a call and turns it into a decision; the ledger loads
what the decision needs from the log (each name's last events, checked
against the current view's row), saves the events it makes (with the live
views and their positions, in one transaction), and reads the log. It also
knows where a store lives: a location (SQLite path or PostgreSQL URL) and a
lock timeout, checked and turned into the infrastructure factory that opens it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
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

from imageledger.domain.errors import (
    BrokenRule,
    ImmutableImage,
    InvalidArgument,
    shown,
    shown_repr,
)
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import storage_errors
from imageledger.infrastructure.errors import IntegrityError, StoreError
from imageledger.infrastructure.hash_chain import RULE_BROKEN, VIEW_DIFFERS, ChainWalk
from imageledger.infrastructure.redaction import redact_url
from imageledger.infrastructure.sqlite import DEFAULT_LOCK_TIMEOUT, LedgerSQLiteFactory
from imageledger.infrastructure.storage import (
    Progress,
    Snapshot,
    StoreFactory,
    StoreView,
    Wakeup,
)
from imageledger.projections.audit import AuditIndex
from imageledger.projections.current_view import CurrentImage

PAGE = 1000


class Ledger(Application[UUID]):
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

    def write(
        self,
        namespace: str,
        names: Iterable[str],
        decide: Callable[[dict[str, ImageName | None]], Sequence[ImageName.Event]],
    ) -> list[int]:
        """One write: the aggregates of `names` as the log has them now, given
        to `decide`, whose events are appended in the same transaction; return
        their log positions.

        What a write decides against comes from the log: each stream's last
        two events say everything the rules and the commands need (version,
        life, target, labels, binding, time), whatever the name's history.
        The view's row, read at the same moment, must say the same: one that
        does not (a row changed or lost outside imageledger) raises
        IntegrityError and nothing is written, so a damaged view is never
        laundered into the log. Only `created_at` of a name whose life began
        before its last event is taken from the row. The backend reads and
        appends in one transaction: this is the write's one call into it.
        Raises RecordConflictError when another writer got in first (retry).
        """
        wanted = list(dict.fromkeys(names))

        def from_snapshots(snapshots: dict[str, Snapshot]) -> Sequence[ImageName.Event]:
            return decide(
                {
                    name: self._resume(namespace, name, snapshots.get(name, _NONE))
                    for name in wanted
                }
            )

        return self._factory.write(namespace, wanted, from_snapshots)

    def load(self, namespace: str, name: str) -> ImageName | None:
        """The aggregate of a name as the log has it now, or None if never
        seen (a write that decides nothing)."""
        loaded: list[ImageName | None] = []

        def keep(images: dict[str, ImageName | None]) -> list[ImageName.Event]:
            loaded.append(images[name])
            return []

        self.write(namespace, [name], keep)
        return loaded[0]

    def _resume(
        self, namespace: str, name: str, snapshot: Snapshot
    ) -> ImageName | None:
        what = f"image {name!r} in namespace {namespace!r}"
        row, last, view_position = snapshot.row, snapshot.last, snapshot.view_position
        if last and view_position < last[0][0]:
            # The view has not folded the stream's last event (it was created
            # on an existing log, or lost its position): the whole stream says.
            return self._replay(namespace, name)
        if not last:
            if row is None:
                return None
            raise IntegrityError(
                0,
                VIEW_DIFFERS,
                f"the current view has a row of {what}, but the log has no event "
                f"of it; {REPAIR}",
            )
        position = last[0][0]
        if isinstance(row, StoreError):
            raise IntegrityError(position, VIEW_DIFFERS, str(row)) from row
        if row is None:
            raise IntegrityError(
                position,
                VIEW_DIFFERS,
                f"the log has events of {what}, but the current view has no row "
                f"of it; {REPAIR}",
            )
        before = last[1][1] if len(last) > 1 else None
        try:
            image = ImageName.resume(last[0][1], before, row.image.created_at)
        except (BrokenRule, ImmutableImage) as e:
            raise IntegrityError(position, RULE_BROKEN, f"{what}: {e}") from e
        differences = _differences(row, image)
        if differences:
            raise IntegrityError(
                position,
                VIEW_DIFFERS,
                f"the current view's row of {what} is not what its last event "
                f"left: {differences}; {REPAIR}",
            )
        return image

    def _replay(self, namespace: str, name: str) -> ImageName | None:
        """The aggregate of a name from every event of its stream."""
        image = None
        for position, event in self.stream(namespace, name):
            try:
                image = event.mutate(image)
            except (BrokenRule, ImmutableImage) as e:
                raise IntegrityError(
                    position,
                    RULE_BROKEN,
                    f"image {name!r} in namespace " f"{namespace!r}: {e}",
                ) from e
        return image

    def append(self, image: ImageName) -> list[int]:
        """Save the aggregate's pending events; return their log positions.

        What Application.save() does for one aggregate, without its runtime
        protocol checks (costly on the hot path) or snapshot and
        notification hooks, which this application does not use.
        """
        return self.append_events(
            cast(Sequence[ImageName.Event], image.collect_events())
        )

    def append_events(self, events: Sequence[ImageName.Event]) -> list[int]:
        """Save events of any images, in this order, in one transaction.

        Raises RecordConflictError, and saves none of them, if another writer
        already saved an event at one of their versions.
        """
        # What _record does, without building a Recording per event.
        stored = [self.mapper.to_stored_event(event) for event in events]
        positions = self._factory.recorder.insert_events(stored, image_events=events)
        assert positions is not None and len(positions) == len(stored)
        return list(positions)

    def to_stored(self, events: Iterable[ImageName.Event]) -> list[StoredEvent]:
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
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]]
    ) -> int:
        """Save pages of events (each as stored and as domain events), in this
        order, in one transaction, only into an empty log: LogNotEmpty, and
        nothing saved, if another writer got there first. Returns how many.

        One page at a time is in memory; the transaction holds the write lock
        from the first page to the commit.
        """
        return self._factory.recorder.insert_into_empty(pages)

    def stream(self, namespace: str, name: str) -> list[tuple[int, ImageName.Event]]:
        """Every event of one name, oldest first, with its log position."""
        notifications = self._factory.recorder.select_stream(image_id(namespace, name))
        decode = self._factory.mapper_instance.to_domain_event
        return [(n.id, decode(n)) for n in notifications]

    def read(
        self, *, after: int = 0, until: int | None = None
    ) -> Iterator[tuple[int, ImageName.Event]]:
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
        storage.rebuild_views); return the number of events folded."""
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


REPAIR = "`imageledger rebuild` refolds the views from the log"
_NONE = Snapshot(None, [], 0)  # a name the backend found nothing of


def _differences(row: CurrentImage, image: ImageName) -> str:
    """What the view's row says otherwise than the log's aggregate."""
    viewed = row.image
    pairs = (
        ("live", row.live, image.live),
        ("version", viewed.version, image.version),
        ("target", viewed.target, image.target),
        ("labels", viewed.labels, image.labels),
        ("immutable", viewed.immutable, image.immutable),
        ("updated_at", viewed.updated_at, image.modified_on),
        ("created_at", viewed.created_at, image.created_at),
    )
    return "; ".join(
        f"{field} is {shown_repr(in_view)} in the view, "
        f"{shown_repr(in_log)} in the log"
        for field, in_view, in_log in pairs
        if in_view != in_log
    )


# Where a store lives: its location (SQLite path or PostgreSQL URL) and lock
# timeout, checked and turned into the factory that opens it.

DEFAULT_DB = "imageledger.db"
# SQLite keeps the busy timeout as an int of milliseconds; a day is plenty.
MAX_LOCK_TIMEOUT = 86_400


def open_factory(
    location: str | os.PathLike[str] | None, lock_timeout: float | None
) -> StoreFactory:
    """The factory of the store at `location` (see ImageStore.open)."""
    if location is None:
        location = os.environ.get("IMAGELEDGER_DB") or DEFAULT_DB
    text = location_text(location)
    postgres = is_postgres_url(text)
    if "://" in text and not postgres:
        raise StoreError(
            f"cannot open {redact_url(text)!r}: only SQLite file paths and "
            "postgresql:// URLs are supported"
        )
    timeout = lock_timeout_seconds(lock_timeout)
    with storage_errors():
        if postgres:
            return _postgres_factory(text, timeout)
        return LedgerSQLiteFactory(Path(text), lock_timeout=timeout)


def lock_timeout_seconds(value: float | None) -> float:
    if value is None:
        text = os.environ.get("IMAGELEDGER_LOCK_TIMEOUT")
        if not text:
            return DEFAULT_LOCK_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            raise InvalidArgument(
                "IMAGELEDGER_LOCK_TIMEOUT", f"{shown(text)} is not a number of seconds"
            ) from None
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 <= value <= MAX_LOCK_TIMEOUT  # also refuses nan
    ):
        raise InvalidArgument(
            "lock_timeout", f"must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT}"
        )
    return float(value)


def location_text(location: object) -> str:
    if not isinstance(location, (str, os.PathLike)):
        raise InvalidArgument(
            "location", f"must be a path, not {type(location).__name__}"
        )
    text = os.fspath(location)
    if not isinstance(text, str) or not text:
        raise InvalidArgument("location", "must be a non-empty text path")
    if "\x00" in text:
        raise InvalidArgument("location", "must not contain NUL characters")
    try:
        os.fsencode(text)  # lone surrogates other than undecodable bytes
    except UnicodeEncodeError:
        raise InvalidArgument(
            "location", "is not a file name this system can encode"
        ) from None
    return text


def is_postgres_url(location: str) -> bool:
    """Whether `location` is meant as a PostgreSQL URL: `postgresql:` or
    `postgres:` and anything after (a URL missing a slash is refused as a URL,
    not created as a file of that name)."""
    scheme, sep, _ = location.partition(":")
    return bool(sep) and scheme.lower() in ("postgresql", "postgres")


def _postgres_factory(url: str, lock_timeout: float) -> StoreFactory:
    # Imported here: SQLite users and the command line's start-up never load
    # psycopg, and the base install works without the postgres extra.
    try:
        from imageledger.infrastructure.postgres import LedgerPostgresFactory
    except ImportError as e:
        raise StoreError(
            f"cannot open {redact_url(url)!r}: PostgreSQL support is not installed "
            f"({e}); install it with: pip install 'imageledger[postgres]'"
        ) from e
    return LedgerPostgresFactory(url, lock_timeout=lock_timeout)
