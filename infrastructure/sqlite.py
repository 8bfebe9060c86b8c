"""The SQLite backend: one file holds the log, the hash chain and the views.

In the order of eventsourcing's own `sqlite.py`: the schema's creation and
upgrade, the datastore, the recorder (which links each event into the hash
chain and folds it into the views in its write transaction), the chain's
statements and checks, the current view, the audit index, and the factory
that builds a store from a path. The drivers they run are in `storage`; this
module gives them their SQL.

What marks a file as a store is checked by `sqlite_file` before anything
opens it: a file that is not a store, or one written by a newer schema, is
refused before any byte changes (even the switch to WAL mode would change
the header).

eventsourcing's SQLite datastore opens deferred transactions and leaves the
`synchronous` pragma at the build default. Every write transaction here takes
the write lock up front (BEGIN IMMEDIATE: it waits on the busy timeout instead
of failing on a stale read snapshot), and every commit is durable
(synchronous=FULL). Positions are rowids of `stored_events`: the write lock is
held from BEGIN IMMEDIATE to COMMIT, so they increase in commit order, never
interleave, and have no gaps.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
)
from eventsourcing.utils import Environment

from imageledger.domain.image import ImageName
from imageledger.infrastructure import errors
from imageledger.infrastructure.errors import LogNotEmpty, StoreError
from imageledger.infrastructure.hash_chain import (
    FORGED_EVENT,
    GENESIS,
    ChainRow,
    ChainWalk,
    chain_links,
    link,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.rows import (
    AUDIT_COLUMNS,
    AUDIT_SHADOW_TABLE,
    AUDIT_TABLE,
    AUDIT_VIEW,
    CHAIN_TABLE,
    CURRENT_VIEW,
    DIGEST_INDEX,
    EVENTS_TABLE,
    IMAGES_SHADOW_TABLE,
    IMAGES_TABLE,
    READ_COLUMNS,
    audit_row,
)
from imageledger.infrastructure.sqlite_file import (
    APPLICATION_ID,
    DEFAULT_LOCK_TIMEOUT,
    SCHEMA_VERSION,
    FileState,
    inspect_file,
    judge,
    read_only_query,
    sqlite_uri,
)
from imageledger.infrastructure.sqlite_reads import (
    CARRYING,
    CARRYING_IN_NAMESPACE,
    NEXT_ROW,
)
from imageledger.infrastructure.storage import (
    ALL_COLUMNS,
    CHAIN_PAGE,
    MIN_POSITION,
    SNAPSHOT_AUDIT_COLUMNS,
    VIEW_READ_COLUMNS,
    AuditIndexDriver,
    CurrentViewDriver,
    Decide,
    LiveView,
    Progress,
    Seen,
    SleepOnFile,
    Tracking,
    Wakeup,
    apply_live_views,
    chain_rows,
    image_from_row,
    log_conditions,
    rebuild_views,
    state_from_row,
    stream_id,
    until_condition,
    verify_log,
    write,
)
from imageledger.projections.audit import AuditRow, Bound, Found, LogQuery
from imageledger.projections.current_view import CurrentImage, Image, ListKeys


def judge_in_transaction(c: SQLiteCursor, where: str) -> FileState:
    """What the file is, read in the caller's (write) transaction."""
    c.execute("PRAGMA application_id")
    application_id = c.fetchone()[0]
    c.execute("PRAGMA user_version")
    version = c.fetchone()[0]
    c.execute("SELECT name FROM sqlite_master WHERE type='table'")
    tables = [row[0] for row in c.fetchall()]
    return judge(where, application_id, version, tables)


def initialize(c: SQLiteCursor, where: str, statements: list[str]) -> FileState:
    """Create the store in the open write transaction, unless a racer already did.

    Returns what the file was: NEW (and now created), or a store a racer made.
    """
    state = judge_in_transaction(c, where)
    if state is not FileState.NEW:
        return state
    for statement in statements:
        c.execute(statement)
    c.execute(f"PRAGMA application_id={APPLICATION_ID}")
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return state


def stored_version(c: SQLiteCursor) -> int:
    """The schema version the file is marked with, read in the caller's transaction."""
    c.execute("PRAGMA user_version")
    return int(c.fetchone()[0])


def set_schema_version(c: SQLiteCursor) -> None:
    """Mark the store as of this schema, in the upgrade's transaction."""
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


# The datastore: connections and transactions.

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


# The recorder: eventsourcing's, plus the chain's links and the live views in
# the same write.

SELECT_STREAM = (
    "SELECT rowid, * FROM stored_events "
    "WHERE originator_id=? AND originator_version>? ORDER BY originator_version"
)
"""One name's events (`history`), a search of the stream's primary key."""


class LedgerSQLiteRecorder(SQLiteProcessRecorder):
    """Appends events to `stored_events`, links them into the hash chain and
    folds them into the live views, all in the write's transaction."""

    def __init__(self, datastore: LedgerSQLiteDatastore) -> None:
        super().__init__(datastore)
        self.live_views: list[LiveView] = []
        self.select_stream_statement = SELECT_STREAM

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if positions is not None:
            append_links(c, positions, stored_events)
        apply_live_views(
            c,
            self.live_views,
            positions,
            kwargs.get("image_events"),
            kwargs.get("seen"),
        )
        assert positions is not None  # apply_live_views raises otherwise
        return positions

    def insert_in(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        events: Sequence[ImageName.Event],
        seen: Seen | None = None,
    ) -> Sequence[int]:
        """Insert events in the caller's write transaction `c` (with their
        links and the live views, folded from `seen`); return their positions."""
        positions = self._insert_events(
            c, stored_events, image_events=events, seen=seen
        )
        assert positions is not None  # _insert_events raises otherwise
        return positions

    def insert_into_empty(
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]]
    ) -> int:
        """Insert pages of events in one write transaction (an import), only
        into an empty log: LogNotEmpty, and nothing inserted, otherwise."""
        inserted = 0
        with self.datastore.transaction(commit=True) as c:  # the write lock
            c.execute(f"SELECT 1 FROM {self.events_table_name} LIMIT 1")
            if c.fetchone() is not None:
                raise LogNotEmpty
            for stored, events in pages:
                if stored:
                    self._insert_events(c, stored, image_events=events)
                    inserted += len(stored)
        return inserted

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        """eventsourcing's conversion, with a damaged id as a StoreError."""
        return stream_id(originator_id)

    def select_stream(self, originator_id: UUID, gt: int = 0) -> list[Notification]:
        """The events of one aggregate after version `gt`, oldest first, with
        their log positions (so that a damaged one can be named by position).
        """
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_stream_statement, (originator_id.hex, gt))
            return [notification_from_row(row) for row in c.fetchall()]


def notification_from_row(row: Any) -> Notification:
    """A notification from a `SELECT rowid, *` row of the events table."""
    return Notification(
        id=row["rowid"],
        originator_id=stream_id(row["originator_id"], row["rowid"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"],
    )


# The hash chain: `event_chain` holds one link per log position (`position`
# is the event's rowid). The recorder appends links in the transaction that
# inserts the events; the write lock (BEGIN IMMEDIATE) makes the previous link
# it reads the last one committed. The chain's definition is in `hash_chain`.

CREATE_CHAIN = (
    f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} "
    "(position INTEGER PRIMARY KEY, chain BLOB NOT NULL)"
)
_LAST_LINK = f"SELECT position, chain FROM {CHAIN_TABLE} ORDER BY position DESC LIMIT 1"
_INSERT_LINK = f"INSERT INTO {CHAIN_TABLE} (position, chain) VALUES (?, ?)"
_LINKS_BETWEEN = (
    f"SELECT position, chain FROM {CHAIN_TABLE} WHERE position>? AND position<=? "
    "ORDER BY position"
)
_EVENTS_PAGE = (
    "SELECT rowid, originator_id, originator_version, topic, state "
    f"FROM {EVENTS_TABLE} WHERE rowid>=? ORDER BY rowid LIMIT ?"
)
# Every position that has an event, a link or both, so that a deleted event
# and an event without a link both show up at their place.
_CHAIN_PAGE = (
    "SELECT p.position, e.originator_id, e.originator_version, e.topic, e.state, "
    "l.chain, e.rowid IS NOT NULL FROM ("
    f"SELECT rowid AS position FROM {EVENTS_TABLE} WHERE rowid>=?1 "
    f"UNION SELECT position FROM {CHAIN_TABLE} WHERE position>=?1 "
    "ORDER BY 1 LIMIT ?2) AS p "
    f"LEFT JOIN {EVENTS_TABLE} AS e ON e.rowid=p.position "
    f"LEFT JOIN {CHAIN_TABLE} AS l ON l.position=p.position "
    "ORDER BY p.position"
)


def append_links(
    c: SQLiteCursor, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> None:
    """Link events just inserted at `positions`, in the same transaction."""
    c.execute(_LAST_LINK)
    row = c.fetchone()
    previous = GENESIS if row is None else bytes(row[1])
    c.executemany(_INSERT_LINK, chain_links(previous, positions, stored_events))


def add_chain(c: SQLiteCursor) -> int:
    """Create `event_chain` and link every event already in the log (schema 1 -> 2).

    Runs in the caller's write transaction, a page of events at a time.
    Returns the number of events linked.
    """
    c.execute(CREATE_CHAIN)
    previous, after, linked = GENESIS, MIN_POSITION, 0
    while True:
        c.execute(_EVENTS_PAGE, (after, CHAIN_PAGE))
        rows = c.fetchall()
        links = []
        for position, *columns in rows:
            canonical = ChainRow(position, *columns).canonical()
            if canonical is None:
                raise StoreError(
                    f"cannot upgrade the store: the event at position {position} "
                    "is damaged"
                )
            previous = link(previous, canonical)
            links.append((position, previous))
        c.executemany(_INSERT_LINK, links)
        linked += len(rows)
        if len(rows) < CHAIN_PAGE:
            return linked
        after = rows[-1][0] + 1


def _chain_page(c: SQLiteCursor, start: int) -> list[ChainRow]:
    c.execute(_CHAIN_PAGE, (start, CHAIN_PAGE))
    return [
        ChainRow(position, stream, version, topic, state, chain, has_event=bool(has))
        for position, stream, version, topic, state, chain, has in c.fetchall()
    ]


# What the views read of the log and of their tracking rows.


class SQLiteTracking(Tracking):
    """The log and the tracking rows in SQLite, where positions have no gaps
    and the write lock is held from BEGIN IMMEDIATE on."""

    def __init__(self, mapper: LedgerMapper) -> None:
        self.mapper = mapper

    def position(self, c: SQLiteCursor, view: str) -> int:
        c.execute(
            "SELECT notification_id FROM tracking WHERE application_name=?", (view,)
        )
        row = c.fetchone()
        return 0 if row is None or not isinstance(row[0], int) else row[0]

    def track(self, c: SQLiteCursor, view: str, position: int) -> None:
        c.execute(
            "INSERT INTO tracking (application_name, notification_id) VALUES (?, ?) "
            "ON CONFLICT (application_name) "
            "DO UPDATE SET notification_id=excluded.notification_id",
            (view, position),
        )

    def advance(self, c: SQLiteCursor, view: str, first: int, last: int) -> bool:
        c.execute(
            "UPDATE tracking SET notification_id=? "
            "WHERE application_name=? AND notification_id=? RETURNING 1",
            (last, view, first - 1),
        )
        return bool(c.fetchall())

    def before(self, c: SQLiteCursor, first: int) -> int:
        return first - 1

    def head(self, c: SQLiteCursor) -> int:
        c.execute(f"SELECT MAX(rowid) FROM {EVENTS_TABLE}")
        return int(c.fetchone()[0] or 0)

    def page(
        self, c: SQLiteCursor, *, after: int, upto: int | None, limit: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        statement = (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {EVENTS_TABLE} WHERE rowid>? "
        )
        params: list[int] = [after]
        if upto is not None:
            statement += "AND rowid<=? "
            params.append(upto)
        # Plain tuples, decoded in bulk, on a cursor of their own in the
        # same transaction (`c` keeps its named rows for its other readers).
        cursor = c.sqlite_cursor.connection.cursor()
        cursor.row_factory = None
        try:
            cursor.execute(statement + "ORDER BY rowid LIMIT ?", [*params, limit])
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return self.mapper.decode_rows(rows, self._one)

    def _one(self, row: Sequence[Any]) -> ImageName.Event:
        return self.mapper.to_domain_event(
            Notification(
                id=row[0],
                originator_id=stream_id(row[1], row[0]),
                originator_version=row[2],
                topic=row[3],
                state=row[4],
            )
        )

    def lock(self, c: SQLiteCursor) -> None:
        """Nothing to take: a write transaction holds the write lock from BEGIN."""


# The current view: the `images` table and its tracking row.

CHECK_TABLE = "temp.images_check"  # the fold verify compares with, per connection
SELECT_CHUNK = 500  # names per SELECT, well below SQLite's limit of variables
_HAS_INDEX = f"SELECT 1 FROM sqlite_master WHERE type='index' AND name='{DIGEST_INDEX}'"


def create_table_statement(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "namespace TEXT NOT NULL, "
        "name TEXT NOT NULL, "
        "digest TEXT NOT NULL, "
        "media_type TEXT NOT NULL, "
        "target TEXT NOT NULL, "  # OCI JSON of the descriptor
        "labels TEXT NOT NULL, "  # JSON object
        "created_at TEXT NOT NULL, "  # RFC 3339, UTC
        "updated_at TEXT NOT NULL, "
        "version INTEGER NOT NULL, "
        "live INTEGER NOT NULL, "
        # Last, where the upgrade from schema 2 adds it (ADD_IMMUTABLE_COLUMN).
        "immutable INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (namespace, name)) WITHOUT ROWID"
    )


# Schema 3: write-once names. 0 for every existing row is exact: no event
# written before schema 3 can carry the flag.
ADD_IMMUTABLE_COLUMN = (
    f"ALTER TABLE {IMAGES_TABLE} ADD COLUMN immutable INTEGER NOT NULL DEFAULT 0"
)


def _upsert_statement(table: str) -> str:
    return (
        f"INSERT INTO {table} (namespace, name, digest, media_type, target, labels, "
        "created_at, updated_at, version, live, immutable) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (namespace, name) DO UPDATE SET digest=excluded.digest, "
        "media_type=excluded.media_type, target=excluded.target, "
        "labels=excluded.labels, created_at=excluded.created_at, "
        "updated_at=excluded.updated_at, version=excluded.version, "
        "live=excluded.live, immutable=excluded.immutable"
    )


# The view's secondary index, images by (namespace, digest), serves filtered
# lists (`target.digest==...`). A store made before it existed gets it when
# opened, if the file can be written at that moment; until then a filtered
# list reads the namespace's rows instead, with the same results.


def list_keys_statement(
    c: SQLiteCursor, columns: str, table: str = IMAGES_TABLE
) -> str:
    """The live rows of a namespace with some names or digests, sorted by name.

    Parameters: a JSON array of names, the namespace, a JSON array of digests,
    the namespace. CROSS JOIN makes SQLite loop over the keys and look each up,
    never over the table. Without statistics SQLite would rather walk the
    namespace in the primary key than use the digest index (it guesses that a
    namespace has ten rows), so the index is named, when the store has it.
    """
    c.execute(_HAS_INDEX)
    indexed = f" INDEXED BY {DIGEST_INDEX}" if c.fetchone() else ""
    return (
        f"SELECT {columns} FROM json_each(?) CROSS JOIN {table} "
        "ON namespace=? AND name=value WHERE live=1 UNION "
        f"SELECT {columns} FROM json_each(?) CROSS JOIN {table}{indexed} "
        "ON namespace=? AND digest=value WHERE live=1 ORDER BY name"
    )


def list_keys_params(namespace: str, keys: ListKeys) -> tuple[str, ...]:
    """The parameters of the view's list by names or digests."""
    names = orjson.dumps(keys.names).decode()
    digests = orjson.dumps(keys.digests).decode()
    return names, namespace, digests, namespace


def create_index_statement(table: str = IMAGES_TABLE) -> str:
    """The statement that gives `table` (the view, or its rebuilt copy) the index."""
    return f"CREATE INDEX IF NOT EXISTS {DIGEST_INDEX} ON {table} (namespace, digest)"


def ensure_index(datastore: LedgerSQLiteDatastore, uri: str) -> None:
    """Create the index on a store that lacks it; never wait, never fail the open.

    It looks in a read transaction first, so opening a store that has it (every
    store this version made) writes nothing, and a read-only file stays as it is.
    Otherwise it tries once on a connection of its own that does not wait for
    the write lock: a read-only file, a busy writer or a full disk leave the
    store as it was, and the next open tries again.
    """
    with datastore.transaction(commit=False) as c:
        c.execute(_HAS_INDEX)
        if c.fetchone() is not None:
            return
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(create_index_statement())
        connection.execute("COMMIT")
    except sqlite3.Error:
        pass  # not now: the list works without it
    finally:
        connection.close()


class SQLiteCurrentView(CurrentViewDriver):
    """The current view on one SQLite file, kept in the writes' transactions."""

    check_table = CHECK_TABLE

    def __init__(
        self,
        datastore: LedgerSQLiteDatastore,
        mapper: LedgerMapper,
        tracking: SQLiteTracking,
    ):
        super().__init__(datastore, mapper, tracking)
        self._get = (
            f"SELECT {READ_COLUMNS} FROM {IMAGES_TABLE} "
            "WHERE namespace=? AND name=? AND live=1"
        )
        # Each name's view row and its stream's last two events, read in one
        # statement (one moment): a write checks the row against the events.
        # The names come as a JSON array of [name, stream] pairs, or for a
        # single name (most writes) as two parameters, which is cheaper.
        self._snapshot, self._snapshot_one = (
            f"SELECT k.key, {VIEW_READ_COLUMNS}, e.rowid, e.originator_id, "
            "e.originator_version, e.topic, e.state, (SELECT notification_id "
            f"FROM tracking WHERE application_name='{CURRENT_VIEW}'), "
            f"{SNAPSHOT_AUDIT_COLUMNS} FROM {keys} AS k "
            f"LEFT JOIN {IMAGES_TABLE} AS v ON v.namespace=? AND v.name=k.key "
            f"LEFT JOIN {EVENTS_TABLE} AS e ON e.originator_id=k.stream "
            "AND e.originator_version>=(SELECT MAX(originator_version) "
            f"FROM {EVENTS_TABLE} WHERE originator_id=k.stream)-1 "
            f"LEFT JOIN {AUDIT_TABLE} AS a ON a.position=e.rowid "
            "ORDER BY k.key, e.originator_version DESC"
            for keys in (
                "(SELECT json_extract(value, '$[0]') AS key, "
                "json_extract(value, '$[1]') AS stream FROM json_each(?))",
                "(SELECT ? AS key, ? AS stream)",
            )
        )
        self._list = (
            f"SELECT {READ_COLUMNS} FROM {IMAGES_TABLE} "
            "WHERE namespace=? AND live=1 ORDER BY name"
        )

    def create_statements(self) -> builtins.list[str]:
        """What a new store runs to hold this view (with its tracking row)."""
        return [
            create_table_statement(IMAGES_TABLE),
            create_index_statement(IMAGES_TABLE),
            f"INSERT OR IGNORE INTO tracking VALUES ('{CURRENT_VIEW}', 0)",
        ]

    # Read side.

    def get(self, namespace: str, name: str) -> Image | None:
        row = self.datastore.read_one(self._get, (namespace, name))
        return None if row is None else image_from_row(row)

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        # One read transaction for the whole iteration: a consistent snapshot,
        # streamed row by row; closing the iterator ends it.
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples: no Row object per row
            if keys is None:
                cursor.execute(self._list, (namespace,))
            else:
                statement = list_keys_statement(c, READ_COLUMNS, IMAGES_TABLE)
                cursor.execute(statement, list_keys_params(namespace, keys))
            for row in cursor:
                yield image_from_row(row)

    def _snapshot_rows(
        self,
        c: SQLiteCursor,
        namespace: str,
        names: builtins.list[str],
        streams: builtins.list[UUID],
    ) -> Iterator[Any]:
        if len(names) == 1:
            c.execute(self._snapshot_one, (names[0], streams[0].hex, namespace))
            yield from c.fetchall()
            return
        for start in range(0, len(names), SELECT_CHUNK):
            keys = [
                [name, stream.hex]
                for name, stream in zip(
                    names[start : start + SELECT_CHUNK],
                    streams[start : start + SELECT_CHUNK],
                    strict=True,
                )
            ]
            c.execute(self._snapshot, (orjson.dumps(keys).decode(), namespace))
            yield from c.fetchall()

    # The statements of the shared drivers (CurrentViewDriver).

    def _states(
        self, c: SQLiteCursor, table: str, keys: builtins.list[tuple[str, str]]
    ) -> Iterator[tuple[tuple[str, str], CurrentImage]]:
        by_namespace: dict[str, builtins.list[str]] = {}
        for namespace, name in keys:
            by_namespace.setdefault(namespace, []).append(name)
        for namespace, names in by_namespace.items():
            for start in range(0, len(names), SELECT_CHUNK):
                chunk = names[start : start + SELECT_CHUNK]
                c.execute(
                    f"SELECT {READ_COLUMNS} FROM {table} WHERE namespace=? "
                    f"AND name IN ({','.join('?' * len(chunk))})",
                    [namespace, *chunk],
                )
                for row in c.fetchall():
                    yield (namespace, row[1]), state_from_row(row)

    def _upsert(
        self, c: SQLiteCursor, table: str, rows: builtins.list[tuple[Any, ...]]
    ) -> None:
        c.executemany(_upsert_statement(table), rows)

    def start_rebuild(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE IF EXISTS {IMAGES_SHADOW_TABLE}")
        c.execute(create_table_statement(IMAGES_SHADOW_TABLE))

    def _swap_in_shadow(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE {IMAGES_TABLE}")
        c.execute(f"ALTER TABLE {IMAGES_SHADOW_TABLE} RENAME TO {IMAGES_TABLE}")
        c.execute(create_index_statement(IMAGES_TABLE))

    def start_check(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE IF EXISTS {CHECK_TABLE}")
        c.execute(create_table_statement(CHECK_TABLE))

    def _differing_keys(self, c: SQLiteCursor) -> Iterator[tuple[Any, Any]]:
        # A row of either table without an equal row (every column `IS`
        # equal, as EXCEPT compares them) in the other: one primary-key
        # search per row, where EXCEPT would sort both tables.
        def without_equal(table: str, other: str) -> str:
            equal = " AND ".join(f"o.{column} IS t.{column}" for column in ALL_COLUMNS)
            return (
                f"SELECT t.namespace, t.name FROM {table} AS t "
                f"WHERE NOT EXISTS (SELECT 1 FROM {other} AS o WHERE {equal})"
            )

        differing = (
            f"{without_equal(IMAGES_TABLE, CHECK_TABLE)} UNION "
            f"{without_equal(CHECK_TABLE, IMAGES_TABLE)} ORDER BY 1, 2"
        )
        # Streamed on a second cursor of the same connection (and transaction),
        # while `c` reads each candidate's two rows.
        keys = c.sqlite_cursor.connection.execute(differing)
        try:
            for row in keys:
                yield row[0], row[1]
        finally:
            keys.close()

    def _view_and_fold(self, c: SQLiteCursor, key: tuple[Any, Any]) -> tuple[Any, Any]:
        columns = ", ".join(ALL_COLUMNS)
        select = f"SELECT {columns} FROM {{}} WHERE namespace IS ? AND name IS ?"
        c.execute(select.format(IMAGES_TABLE), key)
        viewed = c.fetchone()
        c.execute(select.format(CHECK_TABLE), key)
        return viewed, c.fetchone()

    def _last_position(self, c: SQLiteCursor, stream: UUID) -> int | None:
        c.execute(
            f"SELECT MAX(rowid) FROM {EVENTS_TABLE} WHERE originator_id=?",
            (stream.hex,),
        )
        position = c.fetchone()[0]
        return None if position is None else int(position)


# The audit index: the `audit_index` table and its tracking row. One row per
# event, keyed by its log position (the event's rowid), with an index for each
# way the audit queries look events up: by name, by digest, by time and by
# actor. Entries are read back joined to `stored_events`, so the index never
# holds a second copy of an event's payload.

_AS_A = ", ".join(f"a.{column}" for column in AUDIT_COLUMNS.split(", "))
_EVENT = "e.rowid AS rowid, e.originator_id, e.originator_version, e.topic, e.state"


def _create_audit_table(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "position INTEGER PRIMARY KEY, "  # the event's rowid in stored_events
        "namespace TEXT NOT NULL, "
        "name TEXT NOT NULL, "
        "version INTEGER NOT NULL, "
        "kind TEXT NOT NULL, "  # registered or deleted
        "digest TEXT, "  # the target's digest; NULL for a delete
        "timestamp INTEGER NOT NULL, "  # microseconds since the epoch, UTC
        "actor TEXT NOT NULL, "
        "since INTEGER NOT NULL, "  # when the name's current life began
        "immutable INTEGER NOT NULL)"  # bound to its content after the event
    )


def _audit_index_statements(table: str) -> list[str]:
    # Named after AUDIT_TABLE whatever table they are built on: a rebuilt
    # table is renamed to AUDIT_TABLE, and its indexes are created after the swap.
    return [
        f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_by_name "
        f"ON {table} (namespace, name, position)",
        f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_by_digest "
        f"ON {table} (digest, position)",
        f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_by_time ON {table} (timestamp)",
        f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_by_actor "
        f"ON {table} (actor, position)",
    ]


def create_audit_statements() -> list[str]:
    """What a store runs to hold the audit index (with its tracking row)."""
    return [
        _create_audit_table(AUDIT_TABLE),
        *_audit_index_statements(AUDIT_TABLE),
        f"INSERT OR IGNORE INTO tracking VALUES ('{AUDIT_VIEW}', 0)",
    ]


def _last_rows_statement(table: str) -> str:
    """Each name's last row in `table` before a position (all its rows when
    the position is null): one JSON array of [namespace, name, position]."""
    key = (
        "json_extract(value, '$[0]') AS namespace, "
        "json_extract(value, '$[1]') AS name, "
        "json_extract(value, '$[2]') AS before"
    )
    return (
        f"SELECT {_AS_A} FROM (SELECT {key} FROM json_each(?)) AS k "
        f"JOIN {table} AS a ON a.position = (SELECT MAX(position) FROM {table} "
        "WHERE namespace = k.namespace AND name = k.name "
        "AND (k.before IS NULL OR position < k.before))"
    )


class SQLiteAuditIndex(AuditIndexDriver):
    """The audit index on one SQLite file, kept in the writes' transactions."""

    # Read side.

    def entries(self, query: LogQuery) -> Iterator[Found]:
        conditions, params = log_conditions(query, "?")
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM {AUDIT_TABLE} AS a "
            f"JOIN {EVENTS_TABLE} AS e ON e.rowid = a.position "
            f"WHERE {' AND '.join(conditions) or '1'} ORDER BY a.position"
        )
        if query.limit is not None:
            statement += " LIMIT ?"
            params.append(query.limit)
        return self._found(statement, params)

    def last_events(
        self, namespace: str, until: Bound, name: str | None = None
    ) -> Iterator[Found]:
        bound, params = until_condition(until, "?")
        names = "AND name = ? " if name is not None else ""
        # SQLite's bare columns: with MAX(), the row holding the maximum.
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM (SELECT MAX(position) AS last "
            f"FROM {AUDIT_TABLE} WHERE namespace = ? {names}AND {bound} "
            f"GROUP BY name) JOIN {AUDIT_TABLE} AS a ON a.position = last "
            f"JOIN {EVENTS_TABLE} AS e ON e.rowid = a.position ORDER BY a.name"
        )
        given = [namespace, *([name] if name is not None else []), *params]
        return self._found(statement, given)

    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        statement, params = CARRYING, [digest]
        if namespace is not None:
            statement, params = CARRYING_IN_NAMESPACE, [digest, namespace]
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [audit_row(row) for row in c.fetchall()]

    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        row = self.datastore.read_one(NEXT_ROW, (namespace, name, after))
        return None if row is None else audit_row(row)

    def namespaces(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_NAMESPACES)
            return [row[0] for row in c.fetchall()]

    def _found(self, statement: str, params: list[Any]) -> Iterator[Found]:
        # One read transaction for the whole iteration: a consistent snapshot.
        decode = self.mapper.to_domain_event
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.execute(statement, params)
            for row in cursor:
                yield Found(audit_row(row), decode(notification_from_row(row)))

    # The statements of the shared drivers (AuditIndexDriver).

    # The index is rebuilt into a new table with only the index the fold
    # reads; the others are created at the swap, which is faster than keeping
    # them up to date row by row.

    def start_rebuild(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE IF EXISTS {AUDIT_SHADOW_TABLE}")
        c.execute(_create_audit_table(AUDIT_SHADOW_TABLE))
        c.execute(
            f"CREATE INDEX {AUDIT_SHADOW_TABLE}_by_name "
            f"ON {AUDIT_SHADOW_TABLE} (namespace, name, position)"
        )

    def _swap_in_shadow(self, c: SQLiteCursor) -> None:
        c.execute(f"DROP TABLE {AUDIT_TABLE}")
        c.execute(f"ALTER TABLE {AUDIT_SHADOW_TABLE} RENAME TO {AUDIT_TABLE}")
        c.execute(f"DROP INDEX {AUDIT_SHADOW_TABLE}_by_name")
        for statement in _audit_index_statements(AUDIT_TABLE):
            c.execute(statement)

    def _rows_between(
        self, c: SQLiteCursor, first: int, last: int
    ) -> dict[int, AuditRow]:
        c.execute(
            f"SELECT {AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE position BETWEEN ? AND ?",
            (first, last),
        )
        return {row[0]: audit_row(row) for row in c.fetchall()}

    def _insert(self, c: SQLiteCursor, table: str, rows: list[AuditRow]) -> None:
        c.executemany(
            f"INSERT INTO {table} ({AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows
        )

    def _delete_after(self, c: SQLiteCursor, table: str, position: int) -> None:
        c.execute(f"DELETE FROM {table} WHERE position>?", (position,))

    def _row_count(self, c: SQLiteCursor) -> int:
        c.execute(f"SELECT COUNT(*) FROM {AUDIT_TABLE}")
        return int(c.fetchone()[0])

    def _first_row_without_event(self, c: SQLiteCursor) -> int | None:
        c.execute(
            f"SELECT a.position FROM {AUDIT_TABLE} AS a LEFT JOIN {EVENTS_TABLE} AS e "
            "ON e.rowid = a.position WHERE e.rowid IS NULL "
            "ORDER BY a.position LIMIT 1"
        )
        row = c.fetchone()
        return None if row is None else int(row[0])

    def _last_rows(
        self,
        c: SQLiteCursor,
        table: str,
        before: dict[tuple[str, str], int | None],
    ) -> dict[tuple[str, str], AuditRow | None]:
        found: dict[tuple[str, str], AuditRow | None] = dict.fromkeys(before)
        keys = [[*key, position] for key, position in before.items()]
        for start in range(0, len(keys), SELECT_CHUNK):
            c.execute(
                _last_rows_statement(table),
                (orjson.dumps(keys[start : start + SELECT_CHUNK]).decode(),),
            )
            for row in c.fetchall():
                found[row[1], row[2]] = audit_row(row)
        return found

    def _last_row(
        self,
        c: SQLiteCursor,
        table: str,
        key: tuple[str, str],
        *,
        before: int | None,
    ) -> AuditRow | None:
        statement = f"SELECT {AUDIT_COLUMNS} FROM {table} WHERE namespace=? AND name=? "
        params: list[Any] = list(key)
        if before is not None:
            statement += "AND position<? "
            params.append(before)
        c.execute(statement + "ORDER BY position DESC LIMIT 1", params)
        row = c.fetchone()
        return None if row is None else audit_row(row)


# Each namespace by a seek on the index by name from the one before (a loose
# index scan), instead of DISTINCT over every row of the index.
_NAMESPACES = (
    f"WITH RECURSIVE ns(namespace) AS (SELECT MIN(namespace) FROM {AUDIT_TABLE} "
    f"UNION ALL SELECT (SELECT MIN(namespace) FROM {AUDIT_TABLE} "
    "WHERE namespace > ns.namespace) FROM ns WHERE ns.namespace IS NOT NULL) "
    "SELECT namespace FROM ns WHERE namespace IS NOT NULL"
)


# The factory.


class LedgerSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, built from a path instead of the environment.

    Configuration never comes from environment variables here: a variable such
    as MAPPER_TOPIC set for some other program must not change what we load.
    """

    def __init__(self, path: Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        state = inspect_file(path)  # raises before anything touches the file
        # A store that cannot be written is opened read-only: reads work,
        # writes fail as read-only (see read_only_query).
        query = "" if state is FileState.NEW else read_only_query(path)
        if query and state is FileState.OLDER:
            raise StoreError(
                f"cannot open {str(path)!r}: its schema needs an upgrade, and "
                "the file is read-only (open it once where it can be written)"
            )
        # Deliberately not SQLiteFactory.__init__, which reads the environment.
        super(SQLiteFactory, self).__init__(Environment("imageledger", {}))
        self.path = path
        self.read_only = bool(query)
        self.datastore = LedgerSQLiteDatastore(
            sqlite_uri(path) + query,
            lock_timeout=lock_timeout,
            read_only=self.read_only,
        )
        self.mapper_instance = mapper = LedgerMapper()
        self.tracking = SQLiteTracking(mapper)
        self.recorder = LedgerSQLiteRecorder(self.datastore)
        self.current_view = SQLiteCurrentView(self.datastore, mapper, self.tracking)
        self.audit_index = SQLiteAuditIndex(self.datastore, mapper, self.tracking)
        self.recorder.live_views += [self.current_view, self.audit_index]
        try:
            if state is FileState.NEW:
                state = self._initialize()
            if state is FileState.OLDER:
                self._upgrade()
            if not self.read_only:  # a read-only store is read as it is
                self.current_view.catch_up()
                self.audit_index.catch_up()
                ensure_index(self.datastore, sqlite_uri(path))
        except BaseException:
            self.datastore.close()  # a store that failed to open holds nothing
            raise

    def write(self, namespace: str, names: list[str], decide: Decide) -> list[int]:
        """One write (see storage.StoreFactory.write). The snapshots are read
        under the write lock (BEGIN IMMEDIATE), so the state `decide` sees is
        the state its events are appended to."""
        with self.datastore.transaction(commit=True) as c:
            return write(
                c, self.current_view, self.recorder.insert_in, namespace, names, decide
            )

    def checkpoint(self) -> tuple[int, bytes]:
        """The last log position and its stored link; (0, GENESIS) for an empty log."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT MAX(rowid) FROM {EVENTS_TABLE}")
            position = c.fetchone()[0]
            if position is None:
                return 0, GENESIS
            c.execute(f"SELECT chain FROM {CHAIN_TABLE} WHERE position=?", (position,))
            row = c.fetchone()
        if row is None or not isinstance(row[0], bytes):
            raise errors.IntegrityError(
                position, FORGED_EVENT, "the last event in the log has no link"
            )
        return int(position), bytes(row[0])

    def rebuild(self, progress: Progress | None = None) -> int:
        """Refold the current view and the audit index in one pass over the log."""
        return rebuild_views(
            lambda: self.datastore.transaction(commit=True),
            self.tracking,
            [self.current_view, self.audit_index],
            progress,
        )

    def verify(self, checkpoint: tuple[int, bytes] | None) -> ChainWalk:
        """Check the chain, the checkpoint and the views (see storage.verify_log),
        in one read transaction: the log and the views are seen at one moment."""
        with self.datastore.transaction(commit=False) as c:
            walk = ChainWalk(lambda after: _chain_rows(c, after), checkpoint)
            return verify_log(
                c, walk, self.mapper_instance, self.current_view, self.audit_index
            )

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """The stored links of the positions after `after` up to `until`."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(_LINKS_BETWEEN, (after, until))
            return {int(row[0]): bytes(row[1]) for row in c.fetchall()}

    def wakeup(self) -> Wakeup:
        """SQLite cannot notify: waiting for appends is sleeping between polls
        (and checking that the file is still the one being followed)."""
        return SleepOnFile(self.path)

    def _initialize(self) -> FileState:
        statements = [
            *self.recorder.create_table_statements,
            CREATE_CHAIN,
            "INSERT OR IGNORE INTO tracking VALUES ('__migration__', 1)",
            *self.current_view.create_statements(),
            *create_audit_statements(),
        ]
        with self.datastore.transaction(commit=True) as c:
            return initialize(c, str(self.path), statements)

    def _upgrade(self) -> None:
        # Every step from the file's schema to ours, in one write transaction,
        # unless another process has just done it.
        with self.datastore.transaction(commit=True) as c:
            if judge_in_transaction(c, str(self.path)) is FileState.OLDER:
                version = stored_version(c)
                if version < 2:  # no hash chain: link the events already in the log
                    add_chain(c)
                if version < 3:  # no audit index (opening folds the log into
                    # it, as into any view that is behind), no immutable names
                    for statement in create_audit_statements():
                        c.execute(statement)
                    c.execute(ADD_IMMUTABLE_COLUMN)
                set_schema_version(c)


def _chain_rows(c: SQLiteCursor, after: int | None) -> Iterator[ChainRow]:
    return chain_rows(lambda start: _chain_page(c, start), after)
