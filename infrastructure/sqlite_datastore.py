"""SQLite connections and transactions as imageledger needs them.

eventsourcing's SQLite datastore opens deferred transactions and leaves the
`synchronous` pragma at the build default. We want every write transaction to
take the write lock up front (BEGIN IMMEDIATE: waits on the busy timeout
instead of failing on a stale read snapshot) and every commit to be durable
(synchronous=FULL), so this module adjusts both and nothing else.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
)

DEFAULT_LOCK_TIMEOUT = 5.0

_TRANSLATIONS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
)


def translate(error: sqlite3.Error) -> PersistenceError:
    """The eventsourcing persistence error for a sqlite3 error."""
    for sqlite_class, persistence_class in _TRANSLATIONS:
        if isinstance(error, sqlite_class):
            return persistence_class(error)
    return PersistenceError(error)


STATEMENT_CACHE = 64


class LedgerSQLiteConnectionPool(SQLiteConnectionPool):
    """Connections in WAL mode with durable commits and a real statement cache.

    (eventsourcing passes `cached_statements=True`, which sqlite3 reads as a
    cache of one statement: every other statement would be prepared again.)
    """

    read_only = False  # set by the datastore: no switch to WAL then

    def _create_connection(self) -> SQLiteConnection:
        try:
            raw = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # we issue BEGIN and COMMIT ourselves
                cached_statements=STATEMENT_CACHE,
                timeout=self._timeout,
            )
        except sqlite3.Error as e:
            raise translate(e) from e
        try:
            if not self.read_only:
                self._use_wal(raw)
            raw.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raw.close()
            raise translate(e) from e
        raw.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=raw, max_age=self.max_age)

    @property
    def _timeout(self) -> float:
        return DEFAULT_LOCK_TIMEOUT if self.lock_timeout is None else self.lock_timeout

    def _use_wal(self, raw: sqlite3.Connection) -> None:
        # Switching to WAL needs the file to itself; SQLite does not call the
        # busy handler for it, so processes that open a new store together
        # would fail at once. Retry until the lock timeout instead.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    raw.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)


class LedgerSQLiteDatastore(SQLiteDatastore):
    """One SQLite file; write transactions take the write lock when they begin.

    Single-statement reads (`get`, loading an aggregate) use one connection per
    thread, in autocommit mode, instead of going through the pool: each such
    SELECT is its own read transaction, so it sees every commit made before it.
    """

    def __init__(
        self,
        db_uri: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        read_only: bool = False,
    ):
        super().__init__(db_name=db_uri, lock_timeout=int(lock_timeout))
        self.pool.close()
        self.pool = LedgerSQLiteConnectionPool(
            db_name=db_uri,
            lock_timeout=lock_timeout,  # type: ignore[arg-type]  # sqlite3 takes floats
        )
        self.pool.read_only = read_only
        self._local = threading.local()
        # Weak: a thread's connection goes (and closes) when the thread ends;
        # close() closes those of threads still running.
        self._readers: weakref.WeakSet[SQLiteConnection] = weakref.WeakSet()
        self._readers_lock = threading.Lock()

    def reader(self) -> sqlite3.Connection:
        """This thread's connection for single-statement reads."""
        connection: SQLiteConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.pool._create_connection()
            with self._readers_lock:
                self._readers.add(connection)
            self._local.connection = connection
        return connection._sqlite_conn

    def read_one(self, statement: str, params: tuple[Any, ...]) -> Any:
        """The first row of a single-statement read on this thread's reader."""
        try:
            return self.reader().execute(statement, params).fetchone()
        except sqlite3.Error as e:  # e.g. a damaged page, or text that is not UTF-8
            raise translate(e) from e
        except UnicodeDecodeError as e:
            raise DataError(e) from e

    def read_all(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        """Every row of a single-statement read on this thread's reader."""
        try:
            return self.reader().execute(statement, params).fetchall()
        except sqlite3.Error as e:
            raise translate(e) from e
        except UnicodeDecodeError as e:
            raise DataError(e) from e

    def close(self) -> None:
        with self._readers_lock:
            readers = list(self._readers)
            self._readers.clear()
        for connection in readers:
            connection.close()
        self._local = threading.local()
        super().close()

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        with self.get_connection(commit=commit) as connection:
            raw = connection._sqlite_conn
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE" if commit else "BEGIN")
                yield cursor
                if commit:
                    raw.commit()
                else:
                    raw.rollback()
            except sqlite3.Error as e:
                _rollback_quietly(raw)
                raise translate(e) from e
            except UnicodeDecodeError as e:  # text in a damaged file that is not UTF-8
                _rollback_quietly(raw)
                raise DataError(e) from e
            except BaseException:
                _rollback_quietly(raw)
                raise
            finally:
                cursor.sqlite_cursor.close()


def _rollback_quietly(connection: sqlite3.Connection) -> None:
    # Nothing more can be done when the rollback itself fails (the connection
    # is gone): the original error is the one to report.
    with contextlib.suppress(sqlite3.Error):
        connection.rollback()
