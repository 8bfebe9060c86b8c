"""The ImageName aggregate: one image name in one namespace, and its two events.

A name's stream starts with its first `Registered` (the created event, as
eventsourcing needs one) and continues through deletes and re-registrations:
a deleted name registered again continues the same stream.

A name registered with `immutable=True` is write-once: it stays bound to that
content (media type, digest and size) for ever, through deletes too. It may be
registered again at the same content (with other labels, annotations or other
descriptive fields of the descriptor), never at other content, and it is
deleted only by force.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import AggregateEvent, BaseAggregate

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import BrokenRule, ImageNotFound, ImmutableImage

# Fixed for ever: image ids are uuid5(IMAGE_ID_NAMESPACE, "namespace/name"), so
# two writers of one name, in any process or on any host, meet on one stream.
IMAGE_ID_NAMESPACE = UUID("6d1f3c0e-4a57-5b8e-9a40-2f1e8c7d9b63")


@lru_cache(maxsize=1024)  # a write asks twice: to load the name, then to create it
def image_id(namespace: str, name: str) -> UUID:
    """The deterministic aggregate id of (namespace, name)."""
    # A namespace never contains "/", so the joined string is unambiguous.
    return uuid5(IMAGE_ID_NAMESPACE, f"{namespace}/{name}")


class ImageName(BaseAggregate[UUID]):
    """An image name and the descriptor it points at, rebuilt from its events."""

    TOPIC = "imageledger:Image"

    namespace: str
    name: str
    target: Descriptor
    labels: dict[str, str]
    live: bool
    immutable: bool
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

        def mutate(self, aggregate: Any) -> Any:
            # Every event applied to an aggregate keeps the stream's rules,
            # so a command cannot make one that verify would refuse.
            check_follows(None if aggregate is None else aggregate.standing(), self)
            return super().mutate(aggregate)

    @dataclass(frozen=True)
    class Registered(Event):
        """The name now points at `target`, with `labels`.

        `immutable`: the name is bound to this content for ever. Once one
        event of a stream carries it, every later `Registered` does too.
        """

        TOPIC = "imageledger:Image.Registered"

        target: Descriptor
        labels: dict[str, str]
        # Last, with a default: events stored before write-once names have no
        # such field, and the mapper stores it only when true.
        immutable: bool = False

        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:  # the first event of the stream creates it
                check_follows(None, self)
                image = ImageName.__new__(ImageName)
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
            image = cast(ImageName, aggregate)
            if not getattr(image, "live", False):
                image.created_at = self.timestamp
            image.target = self.target
            image.labels = dict(self.labels)
            image.live = True
            image.immutable = self.immutable

    @dataclass(frozen=True)
    class Deleted(Event):
        """The name no longer exists (its stream may continue later).

        `forced`: the name was immutable and the delete overrode that. The
        binding survives: the name can come back only at the same content.
        """

        TOPIC = "imageledger:Image.Deleted"

        forced: bool = False  # stored only when true, as Registered.immutable

        def apply(self, aggregate: Any) -> None:
            cast(ImageName, aggregate).live = False

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
        immutable: bool = False,
    ) -> ImageName:
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
            immutable=immutable,
        )
        image = cast(ImageName, event.mutate(None))
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
        immutable: bool = False,
    ) -> ImageName:
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
        image.immutable = immutable
        return image

    @classmethod
    def resume(
        cls, last: Event, before: Event | None, created_at: datetime
    ) -> ImageName:
        """The aggregate as its stream's last event `last` left it.

        `before` is the event before it (None for the first): a delete keeps
        the target and labels of the registration it follows. `created_at`,
        when the current life began, is used only where these two events
        cannot tell it (a registration that continues a life).
        """
        if isinstance(last, cls.Registered):
            registered, live = last, True
            if last.originator_version == cls.INITIAL_VERSION or isinstance(
                before, cls.Deleted
            ):
                created_at = last.timestamp
        elif isinstance(before, cls.Registered):
            registered, live = before, False
        else:
            raise BrokenRule("kind", "a delete must follow a registration")
        return cls.restore(
            id=last.originator_id,
            namespace=last.namespace,
            name=last.name,
            version=last.originator_version,
            target=registered.target,
            labels=registered.labels,
            live=live,
            created_at=created_at,
            updated_at=last.timestamp,
            immutable=registered.immutable,
        )

    def standing(self) -> Standing:
        """What the rules need to know of this name before its next event."""
        return Standing(
            self.version,
            self.live,
            self.target if self.immutable else None,
            self.modified_on,
        )

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
        immutable: bool = False,
    ) -> bool:
        """Point the name at `target`; return False when that changes nothing.

        `immutable` binds the name to `target`'s content for ever. An immutable
        name (live or deleted) may be registered again at its content only:
        any other target raises ImmutableImage and writes nothing.
        """
        if self.immutable:
            immutable = True  # once bound, always bound (check_follows
            # refuses other content when the event is applied)
        if (
            self.live
            and immutable == self.immutable
            and target == self.target
            and labels == self.labels
        ):
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
            immutable=immutable,
        )
        return True

    def delete(
        self,
        *,
        actor: str,
        reason: str | None,
        if_digest: str | None = None,
        force: bool = False,
    ) -> None:
        """Delete the name; with `if_digest`, only while it points at that digest.

        An immutable name is deleted only with `force` (else ImmutableImage);
        its event then records that it was forced. `force` on a name that is
        not immutable has nothing to override and is not recorded.
        """
        if not self.live:
            raise ImageNotFound(self.name, self.namespace)
        if if_digest is not None and self.target.digest != if_digest:
            raise ImageNotFound(
                self.name,
                self.namespace,
                f"it points at {self.target.digest}, not {if_digest}",
            )
        if self.immutable and not force:
            raise ImmutableImage(self.name, self.namespace, self.target.digest)
        self.trigger_event(
            self.Deleted,
            timestamp=self._next_timestamp(),
            namespace=self.namespace,
            name=self.name,
            actor=actor,
            reason=reason,
            forced=self.immutable,
        )


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a name stands after its last event, as far as the rules care.

    `bound` is the target of an immutable name (its content is what every
    later registration must have), None for a name that is not immutable.
    """

    version: int
    live: bool
    bound: Descriptor | None
    timestamp: datetime


_ZERO = timedelta(0)


def check_follows(standing: Standing | None, event: ImageName.Event) -> None:
    """Raise unless `event` may be the next event of a name at `standing`
    (None: a name without events).

    The rules every stream keeps, whoever wrote it: versions 1, 2, 3, ...;
    a stream starts with a registration; a delete follows a live name; once
    a name is immutable every later registration is immutable and at its
    content (else ImmutableImage), and every delete of it is forced, while
    no delete of another name is; timestamps are UTC and never go back.
    Commands apply their events through this check, the import checks each
    line with it and verify each stored event: one rule, one place.
    Raises BrokenRule naming the event's field, or ImmutableImage.
    """
    what = f"{event.name!r} in namespace {event.namespace!r}"
    expected = ImageName.INITIAL_VERSION if standing is None else standing.version + 1
    if event.originator_version != expected:
        raise BrokenRule(
            "version",
            f"{event.originator_version} is not the next version of {what}: "
            f"expected {expected}",
        )
    if event.timestamp.utcoffset() != _ZERO:
        raise BrokenRule("timestamp", f"the time of an event of {what} is not UTC")
    if standing is not None and event.timestamp < standing.timestamp:
        raise BrokenRule("timestamp", f"is earlier than the previous event of {what}")
    bound = None if standing is None else standing.bound
    if isinstance(event, ImageName.Deleted):
        if standing is None or not standing.live:
            raise BrokenRule(
                "kind", f"{what} is deleted but does not exist at that point"
            )
        if event.forced != (bound is not None):
            raise BrokenRule(
                "forced",
                f"{what} is immutable: its delete must be forced"
                if bound is not None
                else f"{what} is not immutable: its delete cannot be forced",
            )
    elif isinstance(event, ImageName.Registered):
        if bound is not None:
            if not same_content(event.target, bound):
                raise ImmutableImage(
                    event.name,
                    event.namespace,
                    _content(bound, event.target),
                    target=_content(event.target, bound),
                )
            if not event.immutable:
                raise BrokenRule(
                    "immutable",
                    f"{what} is immutable: every later registration must be",
                )
    else:
        raise BrokenRule("kind", f"not an image event: {type(event).__name__}")


def same_content(a: Descriptor, b: Descriptor) -> bool:
    """Whether two descriptors name the same bytes, read the same way.

    What an immutable name is bound to. The other fields of a descriptor
    (annotations, urls, platform, artifactType, embedded data) describe
    those bytes or where to find them, and may change like labels.
    """
    return a.digest == b.digest and a.media_type == b.media_type and a.size == b.size


def _content(descriptor: Descriptor, other: Descriptor) -> str:
    """`descriptor`'s content as a refusal names it: its digest, and its media
    type and size too when the digest is `other`'s (only those differ)."""
    if descriptor.digest != other.digest:
        return descriptor.digest
    return f"{descriptor.digest} ({descriptor.media_type}, {descriptor.size} bytes)"
