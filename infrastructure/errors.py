"""Errors of the storage layer, part of the one imageledger hierarchy, and the
translation of driver errors into them (with a message written for the user;
the cause stays chained, so a debugger still sees it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from imageledger.domain.errors import Conflict, ImageLedgerError


class StoreError(ImageLedgerError):
    """The store cannot do what was asked: cannot open, busy, full, damaged, newer."""


class LogNotEmpty(Conflict):
    """The log already holds events where only an empty log will do."""

    def __init__(self) -> None:
        super().__init__(
            "the store already has events: import only into a new, empty store"
        )


class IntegrityError(ImageLedgerError):
    """Verification failed: the log or a view is not what the log proves.

    `position` is the first log position found bad and `problem` says what is
    wrong there (``"payload changed"``, ``"event missing"``, ``"order
    changed"``, ``"forged event"``, ``"link changed"``, ``"history
    rewritten"``, ``"rule broken"``, ``"view differs from the fold"``).
    """

    def __init__(self, position: int, problem: str, detail: str = "") -> None:
        message = f"log position {position}: {problem}"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.position = position
        self.problem = problem
        self.detail = detail


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
