"""Every error imageledger raises, in one hierarchy under ImageLedgerError.

- ImageLedgerError
  - InvalidArgument: bad name, namespace, descriptor, label, condition, point in time
  - ImageNotFound: the name does not exist (or not at the digest asked for)
  - Conflict: a conditional write found another state than expected
    - ImmutableImage: a write would move, or delete without force, an immutable name
  - StoreError: cannot open, busy past the timeout, disk full, damaged, newer schema
  - IntegrityError: verification failed
  - ContainerdError: containerd cannot be reached, or its API cannot be loaded

And the one place driver errors become StoreError, with a message written for
the user (the cause stays chained, so a debugger still sees it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from imageledger.domain.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    ImmutableImage,
    InvalidArgument,
)
from imageledger.infrastructure.errors import (
    ContainerdError,
    IntegrityError,
    StoreError,
)

__all__ = [
    "Conflict",
    "ContainerdError",
    "ImageLedgerError",
    "ImageNotFound",
    "ImmutableImage",
    "IntegrityError",
    "InvalidArgument",
    "StoreError",
]


T = TypeVar("T")


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn driver errors into StoreError with a message written for the user."""
    # Imported here: the command line imports this module before it knows
    # whether it will open a store at all.
    from eventsourcing.persistence import PersistenceError

    try:
        yield
    except ImageLedgerError:
        raise
    except PersistenceError as e:
        raise StoreError(describe(e)) from e


def stream_with_storage_errors(items: Iterator[T]) -> Iterator[T]:
    """`items`, with storage_errors() around every step of the iteration."""
    with storage_errors():
        yield from items


def describe(error: Exception) -> str:
    """A user's message for a driver error: busy, full, read-only, damaged."""
    text = str(error)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered or "lock timeout" in lowered:
        return (
            f"database is busy: another process held the write lock too long ({text})"
        )
    if "full" in lowered:
        return f"disk full: the write was not made ({text})"
    if "readonly" in lowered or "read-only" in lowered:
        return f"database is read-only: the write was not made ({text})"
    if "malformed" in lowered or "not a database" in lowered:
        return f"the database file is damaged ({text})"
    return f"storage error: {text}"
