"""How a reader waits for other processes' appends to the log.

SQLite has no notifications: the reader sleeps a little and then checks the
log's head, which is one indexed read. PostgreSQL's writers NOTIFY a channel
in each append's transaction (see postgres_listen), so there the reader wakes
up when one commits and sleeps only as a fallback.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from imageledger.infrastructure.errors import StoreError


class Wakeup(Protocol):
    """Something to wait on until the log may have grown."""

    interval: float
    """How long to wait at most before looking again, in seconds."""

    def wait(self, timeout: float) -> bool:
        """Block until an append may have committed, at most `timeout` seconds;
        True when woken by an append rather than by the timeout."""

    def close(self) -> None:
        """Release what the waiting holds (a connection, on PostgreSQL)."""


class Sleep:
    """The wakeup of a store without notifications: the timeout, every time."""

    interval = 0.2  # an indexed MAX(rowid) five times a second costs nothing

    def wait(self, timeout: float) -> bool:
        """Sleep `timeout` seconds; never woken early."""
        time.sleep(timeout)
        return False

    def close(self) -> None:
        """Nothing to release."""


class SleepOnFile(Sleep):
    """Sleep, and after each sleep check that the store's file is still the
    one the reader opened.

    An SQLite reader keeps reading the file it opened after that file is
    deleted or replaced (a new store renamed over it): the log it follows
    then never grows again, silently. The file's device and inode, compared
    with those at the start, tell; StoreError then, as on PostgreSQL when the
    schema is dropped.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._identity = self._current()
        if self._identity is None:
            raise self._gone("deleted")

    def wait(self, timeout: float) -> bool:
        """Sleep `timeout` seconds; StoreError if the file is gone or replaced."""
        time.sleep(timeout)
        identity = self._current()
        if identity != self._identity:
            raise self._gone("deleted" if identity is None else "replaced")
        return False

    def _current(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot watch {str(self._path)!r}: {e.strerror}") from e
        return found.st_dev, found.st_ino

    def _gone(self, how: str) -> StoreError:
        return StoreError(
            f"the store {str(self._path)!r} was {how} while being watched"
        )
