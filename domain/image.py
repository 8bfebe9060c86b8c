"""The Image aggregate: one image name in one namespace, and its two events.

A name's stream starts with its first `Registered` (the created event, as
eventsourcing needs one) and continues through deletes and re-registrations:
a deleted name registered again continues the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import AggregateEvent, BaseAggregate

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import ImageNotFound

# Fixed for ever: image ids are uuid5(IMAGE_ID_NAMESPACE, "namespace/name"), so
# two writers of one name, in any process or on any host, meet on one stream.
IMAGE_ID_NAMESPACE = UUID("6d1f3c0e-4a57-5b8e-9a40-2f1e8c7d9b63")


@lru_cache(maxsize=1024)  # a write asks twice: to load the name, then to create it
def image_id(namespace: str, name: str) -> UUID:
    """The deterministic aggregate id of (namespace, name)."""
    # A namespace never contains "/", so the joined string is unambiguous.
    return uuid5(IMAGE_ID_NAMESPACE, f"{namespace}/{name}")


class Image(BaseAggregate[UUID]):
    """An image name and the descriptor it points at, rebuilt from its events."""

    TOPIC = "imageledger:Image"

    namespace: str
    name: str
    target: Descriptor
    labels: dict[str, str]
    live: bool
    created_at: datetime

    @staticmethod
    def create_id(namespace: str, name: str) -> UUID:
        return image_id(namespace, name)

    # eventsourcing makes every event class a frozen dataclass; the decorators
    # say so to type checkers too.
    @dataclass(frozen=True)
    class Event(AggregateEvent):
        """What every image event carries besides id, version and timestamp."""

        TOPIC: ClassVar[str]
        namespace: str
        name: str
        actor: str
        reason: str | None

    @dataclass(frozen=True)
    class Registered(Event):
        """The name now points at `target`, with `labels`."""

        TOPIC = "imageledger:Image.Registered"

        target: Descriptor
        labels: dict[str, str]

        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:  # the first event of the stream creates it
                image = Image.__new__(Image)
                image.__base_init__(
                    originator_id=self.originator_id,
                    originator_version=self.originator_version,
                    timestamp=self.timestamp,
                )
                image.namespace, image.name = self.namespace, self.name
                self.apply(image)
                return image
            return super().mutate(aggregate)

        def apply(self, aggregate: Any) -> None:
            image = cast(Image, aggregate)
            if not getattr(image, "live", False):
                image.created_at = self.timestamp
            image.target = self.target
            image.labels = dict(self.labels)
            image.live = True

    @dataclass(frozen=True)
    class Deleted(Event):
        """The name no longer exists (its stream may continue later)."""

        TOPIC = "imageledger:Image.Deleted"

        def apply(self, aggregate: Any) -> None:
            cast(Image, aggregate).live = False

    @classmethod
    def register_new(
        cls,
        *,
        namespace: str,
        name: str,
        target: Descriptor,
        labels: dict[str, str],
        actor: str,
        reason: str | None,
    ) -> Image:
        """Start the stream of a name that has never been registered."""
        event = cls.Registered(
            originator_id=image_id(namespace, name),
            originator_version=cls.INITIAL_VERSION,
            timestamp=cls.Registered.create_timestamp(),
            namespace=namespace,
            name=name,
            actor=actor,
            reason=reason,
            target=target,
            labels=dict(labels),
        )
        image = cast(Image, event.mutate(None))
        image.pending_events.append(event)
        return image

    @classmethod
    def restore(
        cls,
        *,
        id: UUID,
        namespace: str,
        name: str,
        version: int,
        target: Descriptor,
        labels: dict[str, str],
        live: bool,
        created_at: datetime,
        updated_at: datetime,
    ) -> Image:
        """Rebuild the aggregate from a known state at `version` (a snapshot)."""
        image = cls.__new__(cls)
        image.__base_init__(
            originator_id=id,
            originator_version=version,
            timestamp=created_at,
        )
        image.modified_on = updated_at
        image.namespace, image.name = namespace, name
        image.target, image.labels = target, dict(labels)
        image.live, image.created_at = live, created_at
        return image

    def _next_timestamp(self) -> datetime:
        # A name's events are in time order, whatever the clock does (a step
        # back, or another host's clock): so the events of one name at or
        # before any moment are a prefix of its stream, which is what lets
        # `as_of(moment)` read one row per name.
        return max(self.Event.create_timestamp(), self.modified_on)

    def register(
        self,
        target: Descriptor,
        labels: dict[str, str],
        *,
        actor: str,
        reason: str | None,
    ) -> bool:
        """Point the name at `target`; return False when that changes nothing."""
        if self.live and target == self.target and labels == self.labels:
            return False
        self.trigger_event(
            self.Registered,
            timestamp=self._next_timestamp(),
            namespace=self.namespace,
            name=self.name,
            actor=actor,
            reason=reason,
            target=target,
            labels=dict(labels),
        )
        return True

    def delete(
        self, *, actor: str, reason: str | None, if_digest: str | None = None
    ) -> None:
        """Delete the name; with `if_digest`, only while it points at that digest."""
        if not self.live:
            raise ImageNotFound(self.name, self.namespace)
        if if_digest is not None and self.target.digest != if_digest:
            raise ImageNotFound(
                self.name,
                self.namespace,
                f"it points at {self.target.digest}, not {if_digest}",
            )
        self.trigger_event(
            self.Deleted,
            timestamp=self._next_timestamp(),
            namespace=self.namespace,
            name=self.name,
            actor=actor,
            reason=reason,
        )
