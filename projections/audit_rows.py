"""The audit index's rows, without pydantic or eventsourcing.

What the command line's `where` needs of the audit index: an index row
(`AuditRow`, the output of `audit_fold`) and the times it holds, in
microseconds since the epoch. `audit` builds on these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

Kind = Literal["registered", "deleted"]
KINDS: tuple[Kind, ...] = ("registered", "deleted")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """`moment` as integer microseconds since the epoch: exact, and it sorts."""
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC datetime of `micros`."""
    return _EPOCH + timedelta(microseconds=value)


class AuditRow(NamedTuple):
    """The audit index's row of the event at `position`.

    Times are microseconds since the epoch (`micros`). `since` is when the
    name's current life began: the timestamp of the registration that followed
    its last delete (a delete keeps the life it ended).
    """

    position: int
    namespace: str
    name: str
    version: int
    kind: Kind
    digest: str | None
    timestamp: int
    actor: str
    since: int
    immutable: bool
