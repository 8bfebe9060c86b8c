"""Audit and time-travel queries over the audit index: log, as_of, where, diff.

Every answer comes from the index (positions, names, digests, times) joined
to the log's own events, never from the clock or the current view; `as_of`
must agree with `replay(until=...)`, which folds the raw log instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from imageledger.domain.digests import valid_digest
from imageledger.domain.errors import ImageNotFound, InvalidArgument
from imageledger.domain.image import ImageName
from imageledger.domain.labels import validate_actor
from imageledger.domain.names import (
    DEFAULT_NAMESPACE,
    validate_name,
    validate_namespace,
)
from imageledger.domain.trusted import unvalidated
from imageledger.errors import storage_errors, stream_with_storage_errors
from imageledger.projections.audit import (
    KINDS,
    AuditEntry,
    AuditIndex,
    Bound,
    Found,
    Kind,
    LogQuery,
    audit_entry,
)
from imageledger.projections.current_view import Image
from imageledger.reads import index_moment, intervals
from imageledger.writes import MAX_POSITION

When = int | datetime
"""A point of the log: a position (0 is the empty store) or a moment."""

Filtering = Callable[[Iterable[Image], tuple[str, ...]], Iterator[Image]]
"""Applies `list` filters to images (the store passes its own)."""


class Interval(BaseModel):
    """A stretch of time in which `name` pointed at one digest.

    `until` is None while it still does. Positions are those of the event
    that began it and of the one that ended it (a retag or a delete).
    `immutable`: the name was bound to the digest (write-once) by its end.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    namespace: str
    name: str
    since: datetime
    until: datetime | None
    since_position: int
    until_position: int | None
    immutable: bool


class Diff(BaseModel):
    """What changed between two points: names added, removed, retargeted.

    `retargeted` holds (before, after) pairs of names that point at another
    digest; a change of labels only is not a retarget.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    added: list[Image]
    removed: list[Image]
    retargeted: list[tuple[Image, Image]]


class PastStore:
    """The store as it was at one point of the log: read-only."""

    def __init__(self, index: AuditIndex, when: When, filtering: Filtering) -> None:
        self._index = index
        self._bound = bound("when", when)
        self._filtering = filtering

    def get(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> Image:
        """The image `name` pointed at then; raises ImageNotFound."""
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        with storage_errors():
            found = list(self._index.last_events(namespace, self._bound, name))
        if not found or found[0].row.kind != "registered":
            raise ImageNotFound(name, namespace, f"it did not exist at {self._shown()}")
        return past_image(found[0])

    def list(
        self, *filters: str, namespace: str = DEFAULT_NAMESPACE
    ) -> Iterator[Image]:
        """The images of `namespace` that lived then, sorted by name, streamed."""
        namespace = validate_namespace(namespace)
        images = (
            past_image(found)
            for found in self._index.last_events(namespace, self._bound)
            if found.row.kind == "registered"
        )
        return stream_with_storage_errors(self._filtering(images, filters))

    def _shown(self) -> str:
        if self._bound.moment is not None:
            return self._bound.moment.isoformat()
        return f"log position {self._bound.position}"


def past_image(found: Found) -> Image:
    """The image a registration left, with the life it continued."""
    row, event = found
    assert isinstance(event, ImageName.Registered)
    return unvalidated(
        Image,
        {
            "namespace": row.namespace,
            "name": row.name,
            "target": event.target,
            "labels": dict(event.labels),
            "created_at": index_moment(row, row.since),
            "updated_at": event.timestamp,
            "version": row.version,
            "immutable": row.immutable,
        },
    )


def log(index: AuditIndex, query: LogQuery) -> Iterator[AuditEntry]:
    """Entries matching `query`, by position, streamed."""
    if query.limit == 0:
        return iter(())
    entries = (audit_entry(row.position, event) for row, event in index.entries(query))
    return stream_with_storage_errors(entries)


def log_query(
    *,
    since: When | None,
    until: When | None,
    after: int | None,
    actor: str | None,
    name: str | None,
    digest: str | None,
    kind: str | None,
    namespace: str | None,
    limit: int | None,
) -> LogQuery:
    """The validated query of `ImageStore.log`'s arguments."""
    if kind is not None and kind not in KINDS:
        raise InvalidArgument("kind", f"must be one of {', '.join(KINDS)}")
    return LogQuery(
        since=Bound() if since is None else bound("since", since),
        until=Bound() if until is None else bound("until", until),
        after=None if after is None else position("after", after),
        actor=None if actor is None else validate_actor(actor),
        namespace=None if namespace is None else validate_namespace(namespace),
        name=None if name is None else validate_name(name),
        digest=None if digest is None else valid_digest("digest", digest),
        kind=_kind(kind),
        limit=None if limit is None else position("limit", limit),
    )


def where(index: AuditIndex, digest: str, namespace: str | None) -> list[Interval]:
    """Every interval in which a name pointed at `digest`, by when it began."""
    digest = valid_digest("digest", digest)
    if namespace is not None:
        namespace = validate_namespace(namespace)
    with storage_errors():
        found = intervals(index.carrying(digest, namespace), index.next_row, digest)
    return [Interval(**interval._asdict()) for interval in found]


def diff(before: Iterable[Image], after: Iterable[Image]) -> Diff:
    """Compare two states, each sorted by (namespace, name)."""
    old = {(image.namespace, image.name): image for image in before}
    new = {(image.namespace, image.name): image for image in after}
    return Diff(
        added=[image for key, image in new.items() if key not in old],
        removed=[image for key, image in old.items() if key not in new],
        retargeted=[
            (old[key], image)
            for key, image in new.items()
            if key in old and old[key].target.digest != image.target.digest
        ],
    )


def bound(field: str, when: object) -> Bound:
    """A point of the log from a position or a datetime (naive ones are UTC)."""
    if isinstance(when, datetime):
        return Bound(moment=when if when.tzinfo else when.replace(tzinfo=UTC))
    if isinstance(when, int) and not isinstance(when, bool):
        return Bound(position=position(field, when))
    raise InvalidArgument(
        field, f"must be a log position or a datetime, not {type(when).__name__}"
    )


def position(field: str, value: object) -> int:
    """A non-negative integer; beyond the largest position means the whole log."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field, f"must be an integer, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return min(value, MAX_POSITION)


def _kind(kind: str | None) -> Kind | None:
    for known in KINDS:
        if kind == known:
            return known
    return None
