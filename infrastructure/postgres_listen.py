"""Waiting for appends on PostgreSQL: LISTEN on the channel writers NOTIFY.

Every append (eventsourcing's insert, and ours in postgres_recorder) runs
`NOTIFY stored_events` in its transaction; PostgreSQL delivers it when that
transaction commits, so a listener wakes up once the new events are readable.
The channel is per database, not per schema: appends to another store in the
same database wake the listener too, and it finds nothing new to read.
"""

from __future__ import annotations

import psycopg
from psycopg.sql import SQL, Identifier

from imageledger.infrastructure.postgres_datastore import (
    PostgresLocation,
    connect,
    connection_error,
)


class PostgresListener:
    """A connection of its own, listening on the append channel."""

    interval = 2.0  # a fallback only: a NOTIFY wakes the reader at the commit

    def __init__(self, location: PostgresLocation, channel: str) -> None:
        self._location = location
        self._connection = connect(location)  # autocommit: LISTEN takes effect now
        try:
            self._connection.execute(SQL("LISTEN {}").format(Identifier(channel)))
        except psycopg.Error as e:
            self._connection.close()
            raise connection_error(location, e) from e

    def wait(self, timeout: float) -> bool:
        """Block until a NOTIFY arrives or `timeout` seconds pass."""
        try:
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as e:
            raise connection_error(self._location, e) from e
        return False

    def close(self) -> None:
        """Close the listening connection."""
        self._connection.close()
