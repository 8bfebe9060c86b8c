"""What the SQLite and PostgreSQL backends share: the store's interface, the
rows of the views, and the drivers that keep the views current.

Each write transaction inserts its events, links them into the hash chain,
then hands them with their log positions to every live view, on the same
cursor: the view rows and the positions they reflect commit, or roll back,
with the events themselves. The drivers here (live fold, catch-up, rebuild,
verify's check) are written once; each backend (`sqlite`, `postgres`)
subclasses them with its statements, and gives its `Tracking`: how it reads
the log and the views' tracking rows.

Nothing here imports a database driver: the command line and the base install
(without the postgres extra) load this module.
"""

from __future__ import annotations

import builtins
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification, ProgrammingError, StoredEvent

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import BrokenRule, ImmutableImage, shown_repr
from imageledger.domain.image import ImageName, check_follows, image_id
from imageledger.domain.trusted import unvalidated
from imageledger.infrastructure.errors import IntegrityError, StoreError
from imageledger.infrastructure.hash_chain import (
    RULE_BROKEN,
    VIEW_DIFFERS,
    ChainRow,
    ChainWalk,
    check_tracked,
    proven_event,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.rows import (
    AUDIT_COLUMNS,
    AUDIT_SHADOW_TABLE,
    AUDIT_TABLE,
    AUDIT_VIEW,
    CURRENT_VIEW,
    DECODING_ERRORS,
    IMAGES_SHADOW_TABLE,
    IMAGES_TABLE,
    READ_COLUMNS,
    audit_row,
    damaged,
    image_fields,
)
from imageledger.projections.audit import (
    AuditIndex,
    AuditRow,
    Bound,
    LogQuery,
    audit_fold,
    micros,
)
from imageledger.projections.current_view import (
    CurrentImage,
    CurrentView,
    Image,
    ListKeys,
    fold,
    standing,
)

REBUILD_BATCH = 5000  # events folded per statement batch (catch-up, rebuild)
CHAIN_PAGE = 1000  # positions read per page by verify and the chain's upgrade
MIN_POSITION = -(2**63)  # below every position either backend can hold

Progress = Callable[[int, int], None]
"""Called as progress(events folded so far, events in the log when it started)."""

Recorded = Sequence[tuple[int, ImageName.Event]]
"""Events as the log recorded them: (position, event), in log order."""

# What a write reads of one name.


class Snapshot(NamedTuple):
    """What a write reads of one name, at one moment: the view's row of it
    (None when it has none, the error when it cannot be read), the last two
    events of its stream with their log positions, newest first (fewer for a
    short stream), and the log position the view says it reflects (0 when it
    says nothing)."""

    row: CurrentImage | StoreError | None
    last: list[tuple[int, ImageName.Event]]
    view_position: int
    audit: AuditRow | None = None
    """The audit index's row of the newest event (None: no event, or no row)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """What a write read of its names at its start, in its own transaction:
    their current-view rows (None: no row) and their audit rows at their
    streams' last events (None: a new name). The live views fold the write's
    events from these instead of reading the rows again, but only when their
    tracking shows they reflected the whole log before the write (see
    LiveViewDriver.apply)."""

    states: dict[tuple[str, str], CurrentImage | None]
    audit_rows: dict[tuple[str, str], AuditRow | None]

    @classmethod
    def of(
        cls, namespace: str, snapshots: dict[str, Snapshot], names: Iterable[str]
    ) -> Seen:
        """The rows of `names` in `snapshots` (a name with none has no row)."""
        states: dict[tuple[str, str], CurrentImage | None] = {}
        audit_rows: dict[tuple[str, str], AuditRow | None] = {}
        for name in names:
            snapshot = snapshots.get(name) or Snapshot(None, [], 0)
            key = (namespace, name)
            if not isinstance(snapshot.row, StoreError):
                states[key] = snapshot.row
            if snapshot.audit is not None or not snapshot.last:  # none: a new name
                audit_rows[key] = snapshot.audit
        return cls(states, audit_rows)


Decide = Callable[[dict[str, Snapshot]], Sequence[ImageName.Event]]
"""What a write decides: the events to append, given each name's snapshot."""


# The store's interface: what the event log and the image store use of a backend.


class LiveView(Protocol):
    """A view kept current inside the transaction that appends the events."""

    def apply(self, cursor: Any, recorded: Recorded, seen: Seen | None) -> None:
        """Fold `recorded` into the view using `cursor`'s transaction."""


class StoreView(LiveView, Protocol):
    """The current view as the event log uses it (and a live view of the writes)."""

    def get(self, namespace: str, name: str) -> Image | None:
        """The live image, or None when the name is absent or deleted."""

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        """Live images of `namespace`, sorted by name, streamed; with `keys`,
        only those with one of its names or digests."""

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


class Wakeup(Protocol):
    """Something to wait on until the log may have grown."""

    interval: float
    """How long to wait at most before looking again, in seconds."""

    def wait(self, timeout: float) -> bool:
        """Block until an append may have committed, at most `timeout` seconds;
        True when woken by an append rather than by the timeout."""

    def close(self) -> None:
        """Release what the waiting holds (a connection, on PostgreSQL)."""


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

    def write(self, namespace: str, names: list[str], decide: Decide) -> list[int]:
        """In one write transaction: read each name's Snapshot, call `decide`
        with them (it returns the events to append, possibly none; anything it
        raises rolls the transaction back and propagates), then insert the
        events with their chain links and fold them into the live views;
        return their log positions (empty when decide returned no events).
        Raises eventsourcing's RecordConflictError if another writer appended
        at one of these versions first (the caller retries)."""

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


# The stored event as both backends read it.


def stream_id(stored: object, position: int | None = None) -> UUID:
    """The aggregate id of a stored event (SQLite keeps its hex text,
    PostgreSQL a uuid); StoreError if the column is damaged."""
    if isinstance(stored, UUID):
        return stored
    try:
        if isinstance(stored, str):
            return UUID(stored)
    except ValueError:
        pass
    where = "an event" if position is None else f"the event at position {position}"
    raise StoreError(f"{where} has a damaged aggregate id {stored!r}")


# A current-view row and the fold state it holds, both ways. A row is the
# columns namespace, name, target, labels, created_at, updated_at, version,
# live and immutable, in that order (plus digest and media_type when written):
# JSON text for target and labels, RFC 3339 text for the times, so that the
# rows are plain and equal on every backend.

VIEW_READ_COLUMNS = ", ".join(f"v.{column}" for column in READ_COLUMNS.split(", "))
"""READ_COLUMNS of the view's table named `v` in a join."""

ALL_COLUMNS = (
    "namespace",
    "name",
    "digest",
    "media_type",
    "target",
    "labels",
    "created_at",
    "updated_at",
    "version",
    "live",
    "immutable",  # schema 3 (SQLite), 2 (PostgreSQL): write-once names
)
"""Every column of a view row, in the order `row_params` writes them."""


def row_params(state: CurrentImage) -> tuple[Any, ...]:
    """The columns of a view row for `state`, in the upsert's order."""
    image = state.image
    created_at = image.created_at.isoformat()
    return (
        image.namespace,
        image.name,
        image.target.digest,
        image.target.media_type,
        orjson.dumps(image.target.to_oci()).decode(),
        # Sorted, as in the log, so that the view and the fold write equal text.
        orjson.dumps(image.labels, option=orjson.OPT_SORT_KEYS).decode()
        if image.labels
        else "{}",
        created_at,
        created_at
        if image.updated_at is image.created_at
        else image.updated_at.isoformat(),
        image.version,
        int(state.live),
        int(image.immutable),
    )


def read_state(row: Sequence[Any]) -> CurrentImage | StoreError:
    """`state_from_row`, with a damaged row's error returned, not raised."""
    try:
        return state_from_row(row)
    except StoreError as e:
        return e


def state_from_row(row: Sequence[Any]) -> CurrentImage:
    """A view row (the columns of READ_COLUMNS, in order) as fold state."""
    return CurrentImage(image=image_from_row(row), live=bool(row[7]))


def image_from_row(row: Sequence[Any]) -> Image:
    """The image a view row holds; StoreError if the row is damaged."""
    # Rows were written from validated events: rebuild them without validating
    # (a damaged row still fails to decode, which is reported).
    try:
        fields = image_fields(row)
        fields["target"] = Descriptor.from_stored(fields["target"])
    except DECODING_ERRORS as e:
        raise damaged(row, e) from e
    return unvalidated(Image, fields, set(_IMAGE_FIELDS))  # none is ever None


_IMAGE_FIELDS = frozenset(Image.model_fields)


def same_column(column: str, viewed: object, folded: object) -> bool:
    """Whether a view column holds what the fold gives (JSON compared as JSON,
    so rows written with another key order still match)."""
    if viewed == folded:
        return True
    if column in ("target", "labels") and isinstance(viewed, str):
        try:
            return bool(orjson.loads(viewed) == orjson.loads(str(folded)))
        except orjson.JSONDecodeError:
            return False
    return False


# An audit-index row: the fold as storage sees it, and the WHERE clauses of
# the queries.

SNAPSHOT_AUDIT_COLUMNS = ", ".join(
    f"a.{column} AS audit_{column}" for column in AUDIT_COLUMNS.split(", ")
)
"""AUDIT_COLUMNS of the index's table named `a` in the snapshot read."""


LAST = 2**63 - 1


def fold_row(
    previous: AuditRow | None, position: int, event: ImageName.Event
) -> AuditRow:
    """`audit_fold`, with a log that cannot be folded as a StoreError."""
    try:
        return audit_fold(previous, position, event)
    except (ValueError, TypeError) as e:  # a damaged or forged log
        raise StoreError(f"the log cannot be folded: {e}") from e


def difference(found: AuditRow | None, expected: AuditRow) -> str:
    """What verify says about an index row that is not the fold of its event."""
    if found is None:
        return "the event is missing from the audit index"
    return "; ".join(
        f"{field} is {getattr(found, field)!r} in the audit index, "
        f"{getattr(expected, field)!r} in the log"
        for field in AuditRow._fields
        if getattr(found, field) != getattr(expected, field)
    )


def until_condition(bound: Bound, mark: str) -> tuple[str, list[Any]]:
    """The condition of rows at or before `bound` (`mark`: the placeholder)."""
    if bound.moment is not None:
        return f"timestamp <= {mark}", [micros(bound.moment)]
    return f"position <= {mark}", [LAST if bound.position is None else bound.position]


def log_conditions(query: LogQuery, mark: str) -> tuple[list[str], list[Any]]:
    """The conditions of `query` on the index aliased `a`, and their parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("a.namespace", query.namespace),
        ("a.name", query.name),
        ("a.digest", query.digest),
        ("a.kind", query.kind),
        ("a.actor", query.actor),
    ):
        if value is not None:
            conditions.append(f"{column} = {mark}")
            params.append(value)
    if query.after is not None:
        conditions.append(f"a.position > {mark}")
        params.append(query.after)
    for bound, operator in ((query.since, ">="), (query.until, "<=")):
        if bound.position is not None:
            conditions.append(f"a.position {operator} {mark}")
            params.append(bound.position)
        if bound.moment is not None:
            conditions.append(f"a.timestamp {operator} {mark}")
            params.append(micros(bound.moment))
    return conditions, params


# Folding.


def apply_live_views(
    c: Any,
    views: Sequence[LiveView],
    positions: Sequence[int] | None,
    events: Sequence[ImageName.Event] | None,
    seen: Seen | None = None,
) -> None:
    """Fold events just inserted at `positions` into every live view, in the
    insert's transaction `c` (the recorders' last step); `seen`: what the
    write read of its names at its start."""
    if events is None or positions is None:
        raise ProgrammingError(
            "imageledger writes pass their domain events, so views stay current"
        )
    recorded = list(zip(positions, events, strict=True))
    for view in views:
        view.apply(c, recorded, seen)


def check_not_beyond(view: str, position: int, head: int) -> None:
    """IntegrityError if `view` says it reflects more of the log than there is."""
    if position > head:
        raise IntegrityError(
            head + 1,
            VIEW_DIFFERS,
            f"the {view} says it reflects log position {position}, but the log "
            f"ends at position {head}; `imageledger rebuild` refolds the views "
            "from the log",
        )


def fold_states(
    states: dict[tuple[str, str], CurrentImage | None],
    events: Sequence[ImageName.Event],
    positions: Sequence[int] | None = None,
) -> None:
    """Fold `events` in order into `states` (the view's rows of their names).

    With `positions` (verify's fold), first prove that each event keeps its
    stream's rules where the fold so far says the name stands: IntegrityError
    at the first that does not.
    """
    for index, event in enumerate(events):
        key = (event.namespace, event.name)
        previous = states.get(key)
        if positions is not None:
            try:
                check_follows(None if previous is None else standing(previous), event)
            except (BrokenRule, ImmutableImage) as e:
                raise IntegrityError(
                    positions[index],
                    RULE_BROKEN,
                    f"image {event.name!r} in namespace {event.namespace!r}: {e}",
                ) from e
        try:
            states[key] = fold(previous, event)
        except (ValueError, TypeError) as e:  # a damaged or forged log
            raise StoreError(f"the log cannot be folded: {e}") from e


class Tracking(ABC):
    """What the view drivers read of the log and of their tracking rows, in
    the caller's transaction (`c`: the backend's cursor)."""

    @abstractmethod
    def position(self, c: Any, view: str) -> int:
        """The log position `view` says it reflects (0 when its row is gone:
        the view then catches up from the start, as a view that never ran)."""

    @abstractmethod
    def track(self, c: Any, view: str, position: int) -> None:
        """Record that `view` reflects the log up to `position`."""

    @abstractmethod
    def advance(self, c: Any, view: str, first: int, last: int) -> bool:
        """Move `view` to `last` if it is right before `first` (where a write's
        events start); whether it was."""

    @abstractmethod
    def before(self, c: Any, first: int) -> int:
        """The position of the last event before position `first`."""

    @abstractmethod
    def head(self, c: Any) -> int:
        """The position of the log's last event (0 when empty)."""

    @abstractmethod
    def page(self, c: Any, *, after: int, upto: int | None, limit: int) -> Recorded:
        """Up to `limit` events after position `after` (and up to `upto`)."""

    @abstractmethod
    def lock(self, c: Any) -> None:
        """Take the lock writers take, so no write is between insert and commit."""


class LiveViewDriver(ABC):
    """A view folded live in the writes, caught up when behind, rebuilt into a
    shadow table: what the current view and the audit index do alike."""

    name: str  # its row in the tracking table
    title: str  # what messages call it
    table: str
    shadow_table: str

    def __init__(self, datastore: Any, mapper: LedgerMapper, tracking: Tracking):
        self.datastore = datastore
        self.mapper = mapper
        self.tracking = tracking

    @abstractmethod
    def _fold_into(
        self, c: Any, table: str, recorded: Recorded, seen: Seen | None = None
    ) -> None:
        """Fold `recorded` into `table` (the view, or its shadow), starting
        from the rows in `seen` for the names it has."""

    @abstractmethod
    def _forget_after(self, c: Any, table: str, position: int) -> None:
        """Drop what `table` holds past `position` before a catch-up refolds it."""

    @abstractmethod
    def start_rebuild(self, c: Any) -> None:
        """Create the view's empty shadow table (dropping any left by a crash)."""

    @abstractmethod
    def _swap_in_shadow(self, c: Any) -> None:
        """Replace the view's table by its shadow, with the view's indexes."""

    # Live driver: called by the recorder inside the write transaction.

    def apply(self, cursor: Any, recorded: Recorded, seen: Seen | None) -> None:
        """Fold `recorded` into the view using `cursor`'s transaction, from
        the rows the write read at its start (`seen`) when the view reflected
        the whole log before these events: then no row of it has changed since."""
        if not recorded:
            return
        first, last = recorded[0][0], recorded[-1][0]
        if not self.tracking.advance(cursor, self.name, first, last):
            # The view is not where these events start (it was created on an
            # existing log, or lost its rows): catch it up first, same transaction.
            self._catch_up(cursor, self.table, upto=self.tracking.before(cursor, first))
            self.tracking.track(cursor, self.name, last)
            seen = None  # the catch-up may have rewritten the rows seen
        self._fold_into(cursor, self.table, recorded, seen)

    def catch_up(self) -> int:
        """Fold events the view has not seen yet (after a crash or an upgrade).

        Looks first in a read transaction, so opening a current store (the
        usual case) neither waits for nor takes the write lock.
        """
        with self.datastore.transaction(commit=False) as c:
            if self.tracking.head(c) <= self.tracking.position(c, self.name):
                return 0
        with self.datastore.transaction(commit=True) as c:
            self.tracking.lock(c)
            head = self.tracking.head(c)
            if head <= self.tracking.position(c, self.name):
                return 0
            folded = self._catch_up(c, self.table, upto=head)
            self.tracking.track(c, self.name, head)
            return folded

    def tracked_position(self, c: Any) -> int:
        """The log position the view says it reflects."""
        return self.tracking.position(c, self.name)

    # Rebuild driver (see rebuild_views).

    def fold_rebuild(self, c: Any, recorded: Recorded) -> None:
        """Fold the next batch of the log into the shadow table."""
        self._fold_into(c, self.shadow_table, recorded)

    def finish_rebuild(self, c: Any, position: int) -> None:
        """Swap the shadow table in, as the view at log `position`."""
        self._swap_in_shadow(c)
        self.tracking.track(c, self.name, position)

    def _catch_up(self, c: Any, table: str, *, upto: int) -> int:
        after = self.tracking.position(c, self.name)
        check_not_beyond(self.title, after, upto)
        # What lies past the tracked position (its tracking row was moved
        # back, or lost) is folded again from the log, not trusted.
        self._forget_after(c, table, after)
        folded = 0
        while after < upto:
            batch = self.tracking.page(c, after=after, upto=upto, limit=REBUILD_BATCH)
            if not batch:
                break
            self._fold_into(c, table, batch)
            after = batch[-1][0]
            folded += len(batch)
        return folded


def rebuild_views(
    transaction: Callable[[], AbstractContextManager[Any]],
    tracking: Tracking,
    views: Sequence[LiveViewDriver],
    progress: Progress | None = None,
) -> int:
    """Refold `views` from the log into shadow tables, then swap them in.

    One pass over the log for every view, a batch per write transaction
    (taking the lock writers take); readers and writers keep using the old
    tables until the swap, which happens in the transaction that finds no
    more events, so the new tables are exactly at the head. A crash leaves
    only unused shadow tables, dropped by the next rebuild. Returns the
    number of events folded.
    """
    with transaction() as c:
        for view in views:
            view.start_rebuild(c)
        total = tracking.head(c)
    position, folded = 0, 0
    while True:
        with transaction() as c:
            tracking.lock(c)
            batch = tracking.page(c, after=position, upto=None, limit=REBUILD_BATCH)
            if not batch:
                for view in views:
                    view.finish_rebuild(c, position)
                return folded
            for view in views:
                view.fold_rebuild(c, batch)
            position = batch[-1][0]
            folded += len(batch)
        if progress is not None:
            progress(folded, max(total, position))


class CurrentViewDriver(LiveViewDriver, CurrentView):
    """The current view (`images`, one row per name the log has seen; deleted
    ones stay as tombstones, live=0, so a later write continues the stream
    without reading its history), over a backend's statements."""

    name = CURRENT_VIEW
    title = "current view"
    table = IMAGES_TABLE
    shadow_table = IMAGES_SHADOW_TABLE
    check_table: str  # the fold verify compares with: temporary, per transaction

    # The statements each backend runs.

    @abstractmethod
    def _snapshot_rows(
        self,
        c: Any,
        namespace: str,
        names: builtins.list[str],
        streams: builtins.list[UUID],
    ) -> Iterable[Sequence[Any]]:
        """The rows of the snapshot read: the key, VIEW_READ_COLUMNS, one of
        the stream's last two events (position, id, version, topic, state,
        newest first, NULLs for none), the view's tracked position and the
        audit index's row of that event (SNAPSHOT_AUDIT_COLUMNS), read in
        `c`'s transaction."""

    @abstractmethod
    def _states(
        self, c: Any, table: str, keys: builtins.list[tuple[str, str]]
    ) -> Iterable[tuple[tuple[str, str], CurrentImage]]:
        """The rows `table` holds for these (namespace, name) keys."""

    @abstractmethod
    def _upsert(self, c: Any, table: str, rows: builtins.list[tuple[Any, ...]]) -> None:
        """Insert or replace rows (`_row_params`) of `table`."""

    def _row_params(self, state: CurrentImage) -> tuple[Any, ...]:
        return row_params(state)

    @abstractmethod
    def start_check(self, c: Any) -> None:
        """Start an empty fold in `c`'s transaction (a temporary table)."""

    @abstractmethod
    def _differing_keys(self, c: Any) -> Iterator[tuple[Any, Any]]:
        """The (namespace, name) of the rows in which the view and the check
        fold may differ, in order."""

    @abstractmethod
    def _view_and_fold(
        self, c: Any, key: tuple[Any, Any]
    ) -> tuple[Sequence[Any] | None, Sequence[Any] | None]:
        """The view's and the check fold's rows of `key`, ALL_COLUMNS each."""

    @abstractmethod
    def _last_position(self, c: Any, stream: UUID) -> int | None:
        """The position of the last event of `stream`, if it has any."""

    # Write side: what a write reads.

    def read_snapshots(
        self, c: Any, namespace: str, names: builtins.list[str]
    ) -> dict[str, Snapshot]:
        """Each name's snapshot in `c`'s transaction (each name's view row and
        its stream's last two events, decoded); a name never seen gets none."""
        names = builtins.list(dict.fromkeys(names))
        streams = [image_id(namespace, name) for name in names]
        decode = self.mapper.to_domain_event
        found: dict[str, Snapshot] = {}
        for row in self._snapshot_rows(c, namespace, names, streams):
            name = row[0]
            snapshot = found.get(name)
            if snapshot is None:
                state = None if row[2] is None else read_state(row[1:10])
                audit = None if row[16] is None else audit_row(row[16:26])
                snapshot = found[name] = Snapshot(state, [], row[15] or 0, audit)
            if row[10] is not None:
                stored = Notification(
                    id=row[10],
                    originator_id=stream_id(row[11], row[10]),
                    originator_version=row[12],
                    topic=row[13],
                    state=bytes(row[14]),
                )
                snapshot.last.append((row[10], decode(stored)))
        return found

    # Shared by the drivers.

    def _forget_after(self, c: Any, table: str, position: int) -> None:
        """Nothing: a catch-up refolds every name it meets from its row, and
        the row is rewritten whole."""

    def _fold_into(
        self, c: Any, table: str, recorded: Recorded, seen: Seen | None = None
    ) -> None:
        self._fold(c, table, recorded, check=False, seen=seen)

    def _fold(
        self,
        c: Any,
        table: str,
        recorded: Recorded,
        *,
        check: bool,
        seen: Seen | None = None,
    ) -> None:
        events = [event for _, event in recorded]
        keys = builtins.list(dict.fromkeys((e.namespace, e.name) for e in events))
        states: dict[tuple[str, str], CurrentImage | None] = dict.fromkeys(keys)
        known = {} if seen is None else seen.states
        unread = [key for key in keys if key not in known]
        states.update((key, known[key]) for key in keys if key in known)
        if unread:
            states.update(self._states(c, table, unread))
        fold_states(states, events, [p for p, _ in recorded] if check else None)
        self._upsert(
            c,
            table,
            [self._row_params(state) for state in states.values() if state is not None],
        )

    # Verify driver: the log folded into a temporary table, compared with the view.

    def fold_check(self, c: Any, recorded: Recorded) -> None:
        """Prove that the next events of the log keep their streams' rules,
        and fold them into the check table."""
        self._fold(c, self.check_table, recorded, check=True)

    def finish_check(self, c: Any, head: int) -> None:
        """After the last page: the view's tracking at `head`, and each row
        equal to the fold (IntegrityError at the last event of the first that
        is not)."""
        check_tracked(self.tracked_position(c), head)
        for key in self._differing_keys(c):
            what = self._compare(c, key)
            if what:
                stream = (
                    image_id(*key)
                    if all(isinstance(part, str) for part in key)
                    else None
                )
                last = None if stream is None else self._last_position(c, stream)
                raise IntegrityError(
                    last or head,
                    VIEW_DIFFERS,
                    f"image {key[1]!r} in namespace {key[0]!r}: {what}",
                )

    def _compare(self, c: Any, key: tuple[Any, Any]) -> str:
        viewed, folded = self._view_and_fold(c, key)
        if folded is None:
            return "it is in the view, but no event in the log made it"
        if viewed is None:
            return "the log made it, but it is missing from the view"
        return "; ".join(
            f"{column} is {shown_repr(viewed[i])} in the view, "
            f"{shown_repr(folded[i])} in the log"
            for i, column in enumerate(ALL_COLUMNS)
            if not same_column(column, viewed[i], folded[i])
        )


class AuditIndexDriver(LiveViewDriver, AuditIndex):
    """The audit index (`audit_index`, one row per event keyed by its log
    position, read back joined to the events), over a backend's statements."""

    name = AUDIT_VIEW
    title = "audit index"
    table = AUDIT_TABLE
    shadow_table = AUDIT_SHADOW_TABLE

    # The statements each backend runs.

    @abstractmethod
    def _last_row(
        self, c: Any, table: str, key: tuple[str, str], *, before: int | None
    ) -> AuditRow | None:
        """The name's last row in `table` (before position `before`, if given)."""

    def _last_rows(
        self, c: Any, table: str, before: dict[tuple[str, str], int | None]
    ) -> dict[tuple[str, str], AuditRow | None]:
        """`_last_row` of each name in `before`, before its position there
        (None: the name's last row); a backend may read them in one statement."""
        return {
            key: self._last_row(c, table, key, before=position)
            for key, position in before.items()
        }

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

    # Verify driver: each row must be the fold of its event and of the row
    # before it of the same name, which the check has already proved.

    def check(self, c: Any, recorded: Recorded) -> None:
        """Check the index rows of a page of events, read in `c`'s transaction."""
        if not recorded:
            return
        stored = self._rows_between(c, recorded[0][0], recorded[-1][0])
        # Each name's row before its first event of the page, read at once.
        first: dict[tuple[str, str], int | None] = {}
        for position, event in recorded:
            first.setdefault((event.namespace, event.name), position)
        previous = self._last_rows(c, self.table, first)
        for position, event in recorded:
            key = (event.namespace, event.name)
            expected = fold_row(previous[key], position, event)
            found = stored.get(position)
            if found != expected:
                raise IntegrityError(
                    position, VIEW_DIFFERS, difference(found, expected)
                )
            previous[key] = expected

    def finish_check(self, c: Any, head: int, events: int) -> None:
        """After the last page: no rows without events, and tracking at `head`."""
        check_tracked(self.tracked_position(c), head)
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

    def _forget_after(self, c: Any, table: str, position: int) -> None:
        self._delete_after(c, table, position)

    def _fold_into(
        self, c: Any, table: str, recorded: Recorded, seen: Seen | None = None
    ) -> None:
        previous: dict[tuple[str, str], AuditRow | None] = {}
        if seen is not None:
            previous.update(seen.audit_rows)
        keys = dict.fromkeys((event.namespace, event.name) for _, event in recorded)
        unread = [key for key in keys if key not in previous]
        if unread:  # read at once: each name's last row
            previous.update(self._last_rows(c, table, dict.fromkeys(unread)))
        rows = []
        for position, event in recorded:
            key = (event.namespace, event.name)
            row = fold_row(previous[key], position, event)
            previous[key] = row
            rows.append(row)
        self._insert(c, table, rows)


# The hash chain's checks, whatever the database.


def chain_rows(
    read_page: Callable[[int], builtins.list[ChainRow]], after: int | None
) -> Iterator[ChainRow]:
    """The stored positions after `after` (None: all), in order, a page at a
    time: `read_page(start)` returns up to CHAIN_PAGE rows from `start` on."""
    start = MIN_POSITION if after is None else after + 1
    while True:
        page = read_page(start)
        yield from page
        if len(page) < CHAIN_PAGE:
            return
        start = page[-1].position + 1


def proven_pages(walk: ChainWalk, mapper: LedgerMapper) -> Iterator[Recorded]:
    """The events whose links `walk` proves, a page at a time, each decoded
    with every field validated (a field that does not pass is a broken rule
    at its position).

    A page is decoded in one pass once its links are proved. A bad link
    stops the walk: the events before it are decoded first, so that one
    which does not decode is reported before it, as in position order.
    """
    rows: builtins.list[ChainRow] = []
    try:
        for row in walk.walk():
            rows.append(row)
            if len(rows) == CHAIN_PAGE:
                yield _proven(mapper, rows)
                rows = []
    except IntegrityError:
        _proven(mapper, rows)
        raise
    yield _proven(mapper, rows)


def _proven(mapper: LedgerMapper, rows: builtins.list[ChainRow]) -> Recorded:
    return mapper.decode_rows(
        [
            (row.position, row.originator_id, row.version, row.topic, row.state, row)
            for row in rows
        ],
        lambda row: proven_event(mapper.to_checked_event, row[5]),
        checked=True,
    )


def verify_log(
    c: Any,
    walk: ChainWalk,
    mapper: LedgerMapper,
    view: CurrentViewDriver,
    audit: AuditIndexDriver,
) -> ChainWalk:
    """Walk the chain (and its checkpoint), then check that the views equal
    the fold, all in `c`'s read transaction: the fold goes to a temporary
    table, a page of events at a time. Returns the finished walk (events
    checked, last position, head); raises IntegrityError at the first bad
    position."""
    view.start_check(c)
    for page in proven_pages(walk, mapper):
        view.fold_check(c, page)
        audit.check(c, page)
    view.finish_check(c, walk.position)
    audit.finish_check(c, walk.position, walk.events)
    return walk


def write(
    c: Any,
    view: CurrentViewDriver,
    insert: Callable[
        [Any, Sequence[StoredEvent], Sequence[ImageName.Event], Seen], Any
    ],
    namespace: str,
    names: builtins.list[str],
    decide: Decide,
) -> builtins.list[int]:
    """One write in `c`'s open write transaction (see StoreFactory.write):
    read the snapshots, decide, insert what was decided."""
    snapshots = view.read_snapshots(c, namespace, names)
    events = decide(snapshots)
    if not events:
        return []
    stored = [view.mapper.to_stored_event(event) for event in events]
    return builtins.list(
        insert(c, stored, events, Seen.of(namespace, snapshots, names))
    )


# Waiting for other processes' appends. SQLite has no notifications: the
# reader sleeps a little and then checks the log's head, one indexed read.
# PostgreSQL's writers NOTIFY a channel in each append's transaction, so there
# the reader wakes up when one commits and sleeps only as a fallback.


class Sleep:
    """The wakeup of a store without notifications: the timeout, every time."""

    interval = 0.2  # an indexed MAX(rowid) five times a second costs nothing

    def wait(self, timeout: float) -> bool:
        """Sleep `timeout` seconds; never woken early."""
        time.sleep(timeout)
        return False

    def close(self) -> None:
        """Nothing to release."""


class SleepOnFile(Sleep):
    """Sleep, and after each sleep check that the store's file is still the
    one the reader opened.

    An SQLite reader keeps reading the file it opened after that file is
    deleted or replaced (a new store renamed over it): the log it follows
    then never grows again, silently. The file's device and inode, compared
    with those at the start, tell; StoreError then, as on PostgreSQL when the
    schema is dropped.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._identity = self._current()
        if self._identity is None:
            raise self._gone("deleted")

    def wait(self, timeout: float) -> bool:
        """Sleep `timeout` seconds; StoreError if the file is gone or replaced."""
        time.sleep(timeout)
        identity = self._current()
        if identity != self._identity:
            raise self._gone("deleted" if identity is None else "replaced")
        return False

    def _current(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot watch {str(self._path)!r}: {e.strerror}") from e
        return found.st_dev, found.st_ino

    def _gone(self, how: str) -> StoreError:
        return StoreError(
            f"the store {str(self._path)!r} was {how} while being watched"
        )
