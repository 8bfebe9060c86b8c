"""How commands become events: their conditions, the optimistic retry, the result.

Shared by the single writes of `ImageStore` and by its batches.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from eventsourcing.persistence import RecordConflictError

from imageledger.domain.errors import Conflict, InvalidArgument, shown
from imageledger.domain.image import ImageName
from imageledger.domain.trusted import unvalidated
from imageledger.infrastructure.errors import StoreError
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
