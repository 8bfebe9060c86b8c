"""How a reader waits for other processes' appends to the log.

SQLite has no notifications: the reader sleeps a little and then checks the
log's head, which is one indexed read. PostgreSQL's writers NOTIFY a channel
in each append's transaction (see postgres_listen), so there the reader wakes
up when one commits and sleeps only as a fallback.
"""

from __future__ import annotations

import time
from typing import Protocol


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
