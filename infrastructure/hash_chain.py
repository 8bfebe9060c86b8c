"""The hash chain over the event log: its definition and its checking, any backend.

Every stored event has a link, `sha256(previous link || canonical bytes)`, the
first one chained to `GENESIS`. The canonical bytes of an event are four fields
of the stored row, each preceded by its length as 8 bytes big-endian:

1. the aggregate id, its 32 lowercase hex digits (as SQLite stores it);
2. the version, in decimal ASCII;
3. the topic, UTF-8;
4. the state, exactly the bytes stored (JSON holding namespace, name, timestamp,
   actor, reason and, for a registration, target and labels; `immutable` or
   `forced` only when true).

So a third party hashes what is on disk, without parsing anything. Nothing here
touches a database: recorders compute links with `link`, and `ChainWalk`
checks rows that a backend reads in position order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from imageledger.infrastructure.errors import IntegrityError, StoreError

Event = TypeVar("Event")

GENESIS = bytes(32)
"""The link before the first event."""

HEAD_PREFIX = "sha256:"

PAYLOAD_CHANGED = "payload changed"
EVENT_MISSING = "event missing"
ORDER_CHANGED = "order changed"
FORGED_EVENT = "forged event"
LINK_CHANGED = "link changed"
REWRITTEN = "history rewritten"
RULE_BROKEN = "rule broken"
VIEW_DIFFERS = "view differs from the fold"


def canonical_bytes(
    originator_id: str, version: int, topic: str, state: bytes
) -> bytes:
    """The bytes of one stored event that its link hashes (see the module doc)."""
    fields = (originator_id.encode(), str(version).encode(), topic.encode(), state)
    return b"".join(struct.pack(">Q", len(field)) + field for field in fields)


def link(previous: bytes, canonical: bytes) -> bytes:
    """The link of an event: sha256 of the previous link and its canonical bytes."""
    return hashlib.sha256(previous + canonical).digest()


def chain_links(
    previous: bytes, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[tuple[int, bytes]]:
    """(position, link) of events just inserted at `positions`, after `previous`."""
    links = []
    for position, event in zip(positions, stored_events, strict=True):
        originator_id = event.originator_id
        previous = link(
            previous,
            canonical_bytes(
                originator_id.hex
                if isinstance(originator_id, UUID)
                else str(originator_id),
                event.originator_version,
                event.topic,
                event.state,
            ),
        )
        links.append((position, previous))
    return links


def head_text(head: bytes) -> str:
    """A link as users see it: `sha256:` and 64 lowercase hex digits."""
    return HEAD_PREFIX + head.hex()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One log position as stored: its event's columns and its link, either absent."""

    position: int
    originator_id: object = None
    version: object = None
    topic: object = None
    state: object = None
    link: bytes | None = None
    has_event: bool = True

    def notification(self) -> Notification:
        """The row as eventsourcing's mapper reads it (its id is the position)."""
        return Notification(
            id=self.position,
            originator_id=cast(UUID, self.originator_id),  # the mapper parses it
            originator_version=cast(int, self.version),
            topic=cast(str, self.topic),
            state=cast(bytes, self.state),
        )

    def canonical(self) -> bytes | None:
        """The canonical bytes, or None when a column is not of its type."""
        if not (
            isinstance(self.originator_id, str)
            and isinstance(self.version, int)
            and isinstance(self.topic, str)
            and isinstance(self.state, bytes)
        ):
            return None
        try:
            return canonical_bytes(
                self.originator_id, self.version, self.topic, self.state
            )
        except UnicodeEncodeError:  # lone surrogates from a damaged text column
            return None


def proven_event(decode: Callable[[Notification], Event], row: ChainRow) -> Event:
    """The event of a row whose link checked, decoded by `decode` (which
    validates every field); a field that does not pass is a broken rule."""
    try:
        return decode(row.notification())
    except StoreError as e:
        raise IntegrityError(row.position, RULE_BROKEN, str(e)) from e


Rows = Callable[[int | None], Iterable[ChainRow]]
"""rows(after): the stored positions after `after` (None: all), in position order."""


class ChainWalk:
    """Checks the links in position order; IntegrityError at the first bad one.

    `rows(after)` reads the log (paged, so memory stays bounded); it is called
    again from the bad position only to say what is wrong there. With a
    checkpoint `(position, head)`, the walk also checks that the recomputed
    link at that position is `head`.

    `dense` says that every position from 1 to the last one holds an event, as
    on SQLite: a gap then means events were removed. PostgreSQL's positions
    can skip numbers (a rolled-back insert keeps its sequence numbers), and the
    chain links consecutive events, not consecutive numbers, so there a gap is
    no finding by itself.
    """

    def __init__(
        self,
        rows: Rows,
        checkpoint: tuple[int, bytes] | None = None,
        *,
        dense: bool = True,
    ):
        self._rows = rows
        self._checkpoint = checkpoint
        self._dense = dense
        self.position = 0
        self.head = GENESIS
        self.events = 0

    def walk(self) -> Iterator[ChainRow]:
        """Yield each row whose link checks, in order; then check the checkpoint."""
        self._check_checkpoint_at_or_before(0)
        for row in self._rows(None):
            self.head = self._check(row)
            self.position = row.position
            self.events += 1
            self._check_checkpoint_at_or_before(row.position)
            yield row
        if self._checkpoint is not None and self._checkpoint[0] > self.position:
            raise IntegrityError(
                self.position + 1,
                EVENT_MISSING,
                f"the log ends at position {self.position}, but the checkpoint "
                f"says it reached position {self._checkpoint[0]}",
            )

    def _check(self, row: ChainRow) -> bytes:
        """The row's link, if it follows from the head so far."""
        if not row.has_event:
            raise IntegrityError(
                row.position, EVENT_MISSING, "its link is stored but its event is not"
            )
        if row.link is None:
            raise IntegrityError(
                row.position,
                FORGED_EVENT,
                "the event has no link: it was not written by imageledger",
            )
        canonical = row.canonical()
        if canonical is None:
            raise IntegrityError(
                row.position, PAYLOAD_CHANGED, "a column does not have its type"
            )
        computed = link(self.head, canonical)
        if computed != row.link:
            raise self._diagnose(row, canonical, computed)
        return computed

    def _diagnose(
        self, row: ChainRow, canonical: bytes, computed: bytes
    ) -> IntegrityError:
        gap = row.position > self.position + 1
        if gap and self._dense:
            # Every position holds an event, so a gap right before a link
            # that does not follow means events went with their links.
            return IntegrityError(
                self.position + 1,
                EVENT_MISSING,
                f"the next stored event is at position {row.position} and its "
                "link does not follow from the one before the gap",
            )
        later = iter(self._rows(row.position))
        following = next(later, None)
        if (
            following is not None
            and following.link is not None
            and (following_canonical := following.canonical()) is not None
            and link(computed, following_canonical) == following.link
        ):
            return IntegrityError(
                row.position,
                LINK_CHANGED,
                "the event is intact but its stored link was altered",
            )
        previous = row.link
        for other in ([] if following is None else [following], later):
            for candidate in other:
                if candidate.link is None:
                    previous = None
                    continue
                if previous is not None and link(previous, canonical) == candidate.link:
                    return IntegrityError(
                        row.position,
                        ORDER_CHANGED,
                        f"this event was written at position {candidate.position}",
                    )
                previous = candidate.link
        # Where positions may skip numbers, events removed with their links
        # leave a gap that looks like a skipped number: say so.
        removed = (
            f", or events between positions {self.position} and {row.position} "
            "were removed with their links"
            if gap
            else ""
        )
        return IntegrityError(
            row.position,
            PAYLOAD_CHANGED,
            f"the stored event (aggregate {row.originator_id}, version "
            f"{row.version}) no longer hashes to its link{removed}",
        )

    def _check_checkpoint_at_or_before(self, position: int) -> None:
        if self._checkpoint is None:
            return
        at, head = self._checkpoint
        if at > position:
            return
        if at < position:  # the walk stepped over the checkpoint's position
            raise IntegrityError(
                at, EVENT_MISSING, "the checkpoint's position is not in the log"
            )
        if head != self.head:
            raise IntegrityError(
                at,
                REWRITTEN,
                f"the log's head there is {head_text(self.head)}, the checkpoint "
                f"says {head_text(head)}: an event at or before it was changed",
            )
        self._checkpoint = None


def check_tracked(tracked: int, head: int) -> None:
    """Raise IntegrityError unless a view's tracking position is the log's head."""
    if tracked != head:
        raise IntegrityError(
            min(tracked, head) + 1,
            VIEW_DIFFERS,
            f"the view says it reflects log position {tracked}, "
            f"but the log ends at position {head}",
        )
