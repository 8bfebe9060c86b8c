"""Audit entries: one per event, as history and audit queries return them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import Image as ImageAggregate


class AuditEntry(BaseModel):
    """One change to one image name, where it stands in the global log."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    position: int
    namespace: str
    name: str
    version: int
    kind: Literal["registered", "deleted"]
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


def audit_entry(position: int, event: ImageAggregate.Event) -> AuditEntry:
    """The audit entry of `event`, stored at log `position`."""
    target, labels, immutable, forced = None, None, False, False
    if isinstance(event, ImageAggregate.Registered):
        target, labels = event.target, dict(event.labels)
        immutable = event.immutable
    elif isinstance(event, ImageAggregate.Deleted):
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
