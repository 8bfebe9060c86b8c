"""Batches of registers: many names in one transaction, all or nothing.

For imports and mirrors. Each item means what one `register` call means (an
upsert, idempotent when nothing changes, with an optional condition); the
batch validates every item before it reads anything, decides every item
against the state the earlier items left, and appends all the events in one
transaction. Any invalid item or failed condition raises and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import InvalidArgument, shown
from imageledger.domain.image import ImageName
from imageledger.domain.labels import labels_to_set
from imageledger.domain.names import validate_name
from imageledger.infrastructure.event_log import EventLog
from imageledger.projections.current_view import Image
from imageledger.writes import (
    Expect,
    check_expect,
    public,
    validate_expect,
    validate_flag,
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
    log: EventLog,
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
    images = log.load_many(namespace, (item.name for item in items))
    events: list[ImageName.Event] = []
    results: list[Image] = []
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
        events.extend(cast(Sequence[ImageName.Event], image.collect_events()))
        results.append(public(image))
    if events:
        log.append_events(events)
    return results
