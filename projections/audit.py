"""The audit index: one row per event, what the audit queries select on.

`audit_fold` is the only code that turns an event into its index row; the
live driver (in the write transaction), `rebuild()` and `verify()` all call
it. A row holds what the queries filter by (position, namespace, name, kind,
digest, timestamp, actor) and the name's state after the event that a past
view needs besides the event itself: since when its current life has lasted.
The entries the queries return are read from the log, by position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import ImageName
from imageledger.projections.audit_rows import (
    KINDS,
    AuditRow,
    Kind,
    from_micros,
    micros,
)

__all__ = [
    "KINDS",
    "AuditEntry",
    "AuditIndex",
    "AuditRow",
    "Bound",
    "Found",
    "Kind",
    "LogQuery",
    "audit_entry",
    "audit_fold",
    "from_micros",
    "micros",
]


class AuditEntry(BaseModel):
    """One change to one image name, where it stands in the global log."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    position: int
    namespace: str
    name: str
    version: int
    kind: Kind
    target: Descriptor | None
    labels: dict[str, str] | None
    timestamp: datetime
    actor: str
    reason: str | None
    immutable: bool = False
    """Whether the name is immutable after this event (a delete of an immutable
    name is always forced, and leaves it bound)."""
    forced: bool = False
    """A delete that overrode the name's immutability."""


def audit_entry(position: int, event: ImageName.Event) -> AuditEntry:
    """The audit entry of `event`, stored at log `position`."""
    target, labels, immutable, forced = None, None, False, False
    if isinstance(event, ImageName.Registered):
        target, labels = event.target, dict(event.labels)
        immutable = event.immutable
    elif isinstance(event, ImageName.Deleted):
        immutable = forced = event.forced
    return AuditEntry.model_construct(
        position=position,
        namespace=event.namespace,
        name=event.name,
        version=event.originator_version,
        kind="deleted" if target is None else "registered",
        target=target,
        labels=labels,
        timestamp=event.timestamp,
        actor=event.actor,
        reason=event.reason,
        immutable=immutable,
        forced=forced,
    )


def audit_fold(
    previous: AuditRow | None, position: int, event: ImageName.Event
) -> AuditRow:
    """The row of `event` at `position`, given the name's previous row."""
    timestamp = micros(event.timestamp)
    if isinstance(event, ImageName.Registered):
        kind: Kind = "registered"
        digest: str | None = event.target.digest
        immutable = event.immutable
        since = (
            previous.since
            if previous is not None and previous.kind == "registered"
            else timestamp
        )
    elif isinstance(event, ImageName.Deleted):
        if previous is None:
            raise ValueError(
                f"{event.namespace}/{event.name} v{event.originator_version}: "
                "deleted before it was registered"
            )
        kind, digest, since = "deleted", None, previous.since
        immutable = previous.immutable
    else:
        raise TypeError(f"not an image event: {type(event).__name__}")
    return AuditRow(
        position,
        event.namespace,
        event.name,
        event.originator_version,
        kind,
        digest,
        timestamp,
        event.actor,
        since,
        immutable,
    )


@dataclass(frozen=True, slots=True)
class Bound:
    """A point in the log's past: a position, or a moment (both inclusive)."""

    position: int | None = None
    moment: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which events `AuditIndex.entries` selects; None means no condition."""

    since: Bound = field(default_factory=Bound)
    until: Bound = field(default_factory=Bound)
    after: int | None = None
    actor: str | None = None
    namespace: str | None = None
    name: str | None = None
    digest: str | None = None
    kind: Kind | None = None
    limit: int | None = None


class Found(NamedTuple):
    """An index row with the event it indexes, as the log stores it."""

    row: AuditRow
    event: ImageName.Event


class AuditIndex(ABC):
    """Where the audit index is kept: the read side the audit queries use."""

    @abstractmethod
    def entries(self, query: LogQuery) -> Iterator[Found]:
        """Events matching `query`, by position, streamed."""

    @abstractmethod
    def last_events(
        self, namespace: str, until: Bound, name: str | None = None
    ) -> Iterator[Found]:
        """Each name's last event at or before `until` (the state it left
        there), sorted by name; only `name`'s when given."""

    @abstractmethod
    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        """The rows of every registration at `digest`, by position."""

    @abstractmethod
    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        """The name's first row after position `after`."""

    @abstractmethod
    def namespaces(self) -> list[str]:
        """Every namespace the log has an event in, sorted."""
