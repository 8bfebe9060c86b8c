"""How commands become events: their conditions, the optimistic retry, the
result, and batches of registers.

Shared by the single writes of `ImageStore` and by its batches. A batch
(`register_many`, for imports and mirrors) is many names in one transaction,
all or nothing: each item means what one `register` call means (an upsert,
idempotent when nothing changes, with an optional condition); the batch
validates every item before it reads anything, decides every item against
the state the earlier items left, and appends all the events in one
transaction. Any invalid item or failed condition raises and nothing is
written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from eventsourcing.persistence import RecordConflictError

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import Conflict, InvalidArgument, shown
from imageledger.domain.image import ImageName
from imageledger.domain.labels import labels_to_set
from imageledger.domain.names import validate_name
from imageledger.domain.trusted import unvalidated
from imageledger.infrastructure.errors import StoreError
from imageledger.ledger import Ledger
from imageledger.projections.current_view import Image

MAX_ATTEMPTS = 50  # optimistic retries when another writer moved the same name
MAX_POSITION = 2**63 - 1  # versions and log positions are SQLite integers

Expect = Literal["absent"] | int | None
Result = TypeVar("Result")


def write_with_retries(attempt: Callable[[], Result], what: str) -> Result:
    """Run `attempt` (read, decide, append) until no other writer gets in between.

    The log refuses a second event at the same version, so a writer that lost
    the race reads again and decides again (a condition that no longer holds
    then raises Conflict).
    """
    for tries in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except RecordConflictError:
            time.sleep(random.uniform(0, 0.001 * (tries + 1)))
    raise StoreError(
        f"gave up writing {what} after {MAX_ATTEMPTS} conflicting attempts"
    )


def pending(image: ImageName) -> list[ImageName.Event]:
    """The events a command left on the aggregate, taken off it."""
    return list(cast(Sequence[ImageName.Event], image.collect_events()))


def public(image: ImageName) -> Image:
    """The image as callers see it, from the aggregate's current state."""
    return unvalidated(
        Image,
        {
            "namespace": image.namespace,
            "name": image.name,
            "target": image.target,
            "labels": dict(image.labels),
            "created_at": image.created_at,
            "updated_at": image.modified_on,
            "version": image.version,
            "immutable": image.immutable,
        },
        set(_IMAGE_FIELDS),
    )


_IMAGE_FIELDS = frozenset(Image.model_fields)


def check_expect(
    image: ImageName | None, expect: Expect, namespace: str, name: str
) -> None:
    """Raise Conflict unless the name is in the state `expect` asks for."""
    if expect is None:
        return
    if expect == "absent":
        if image is not None and image.live:
            raise Conflict(
                f'image "{name}" already exists in namespace "{namespace}" '
                f"(version {image.version})"
            )
        return
    current = 0 if image is None else image.version
    if current != expect:
        raise Conflict(
            f'image "{name}" in namespace "{namespace}" is at version {current}, '
            f"not {expect}"
        )


def validate_flag(value: object, field: str) -> bool:
    """`value` if it is True or False, else InvalidArgument naming `field`."""
    if not isinstance(value, bool):
        raise InvalidArgument(field, f"must be True or False, not {shown(value)}")
    return value


def validate_expect(
    expect: object, *, allow_absent: bool, field: str = "expect"
) -> Expect:
    """`expect` if it is a condition a write accepts, else InvalidArgument."""
    if expect is None:
        return None
    if allow_absent and expect == "absent":
        return "absent"
    if (
        isinstance(expect, int)
        and not isinstance(expect, bool)
        and 0 <= expect <= MAX_POSITION
    ):
        return expect
    allowed = "None, 'absent' or" if allow_absent else "None or"
    raise InvalidArgument(
        field, f"must be {allowed} a version number, not {shown(expect)}"
    )


BatchItem = (
    Mapping[str, Any]
    | tuple[str, Descriptor | Mapping[str, Any]]
    | tuple[str, Descriptor | Mapping[str, Any], Mapping[str, str] | None]
)
"""One register of a batch: a mapping with `name`, `target` and optionally
`labels`, `expect` and `immutable`, or a tuple (name, target) or
(name, target, labels)."""

_KEYS = frozenset(("name", "target", "labels", "expect", "immutable"))


@dataclass(frozen=True, slots=True)
class Register:
    """One validated item of a batch."""

    name: str
    target: Descriptor
    labels: dict[str, str]
    expect: Expect
    immutable: bool


def validate_items(items: object) -> list[Register]:
    """Every item validated, or InvalidArgument naming the first bad one."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidArgument(
            "items", f"must be an iterable of items, not {type(items).__name__}"
        )
    return [_validate_item(index, item) for index, item in enumerate(items)]


def _validate_item(index: int, item: object) -> Register:
    where = f"items[{index}]"
    if isinstance(item, Mapping):
        unknown = [key for key in item if key not in _KEYS]
        if unknown:
            keys = ", ".join(shown(key) for key in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise InvalidArgument(where, f"has unknown keys {keys}{more}")
        for key in ("name", "target"):
            if key not in item:
                raise InvalidArgument(f"{where}.{key}", "is required")
        name, target = item["name"], item["target"]
        labels, expect = item.get("labels"), item.get("expect")
        immutable = item.get("immutable", False)
    elif isinstance(item, tuple) and len(item) in (2, 3):
        name, target = item[0], item[1]
        labels, expect = (item[2] if len(item) == 3 else None), None
        immutable = False
    else:
        raise InvalidArgument(
            where,
            "must be a mapping with name and target, or a tuple "
            f"(name, target[, labels]), not {type(item).__name__}",
        )
    try:
        return Register(
            name=validate_name(name),
            target=Descriptor.from_oci(target),
            labels=labels_to_set(labels),
            expect=validate_expect(expect, allow_absent=True),
            immutable=validate_flag(immutable, "immutable"),
        )
    except InvalidArgument as e:
        raise InvalidArgument(f"{where}.{e.field}", e.rule) from None


def register_all(
    log: Ledger,
    items: list[Register],
    *,
    namespace: str,
    actor: str,
    reason: str | None,
) -> list[Image]:
    """One attempt at the batch: read, decide every item, append in one transaction.

    Returns the image as each item left it. Raises Conflict (nothing written)
    when an item's condition fails or it would move an immutable name, and
    RecordConflictError when another writer moved one of the names since it
    was read (the caller retries).
    """
    results: list[Image] = []

    def decide(images: dict[str, ImageName | None]) -> list[ImageName.Event]:
        events: list[ImageName.Event] = []
        results.clear()  # a retried attempt decides afresh
        for item in items:
            image = images[item.name]
            check_expect(image, item.expect, namespace, item.name)
            if image is None:
                image = ImageName.register_new(
                    namespace=namespace,
                    name=item.name,
                    target=item.target,
                    labels=item.labels,
                    actor=actor,
                    reason=reason,
                    immutable=item.immutable,
                )
            else:
                image.register(
                    item.target,
                    item.labels,
                    actor=actor,
                    reason=reason,
                    immutable=item.immutable,
                )
            images[item.name] = image
            events.extend(pending(image))
            results.append(public(image))
        return events

    log.write(namespace, (item.name for item in items), decide)
    return results
