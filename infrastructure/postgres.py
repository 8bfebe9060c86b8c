"""The PostgreSQL backend: the log, the hash chain and the views in one schema.

In the order of eventsourcing's own `postgres.py`: the datastore (built from a
postgresql:// URL), what marks a schema as a store and its schema versions,
the recorder (which links each event into the hash chain and folds it into the
views in its transaction), the chain's statements, the current view, the
audit index, the listener that wakes readers, and the factory. The drivers
they run are in `storage`; this module gives them their SQL.

eventsourcing's PostgresDatastore reads its settings from the environment when
its factory builds it; here it is built from the parsed URL instead, with the
URL's libpq parameters (sslmode and the like) passed through unchanged. One
parameter is ours: `schema` (default `public`) puts the store in that schema,
so one database can hold several stores, or a store beside other tables.
Passwords never appear in a message: errors name the server as host:port/db.

PostgreSQL has no header to mark, so a store is marked by a one-row table,
`imageledger_store`, holding the schema version. A schema (by default `public`)
with no tables becomes a store; one with the marker is a store if its version
is not newer than ours; one with other tables and no marker is someone else's
and is refused untouched (use an empty database, or `?schema=NAME` in the URL).

Positions are `notification_id`s from a sequence. Writers take an EXCLUSIVE
lock on the events table before inserting (reads are not blocked), so they
take turns from the insert to the commit and positions commit in increasing
order; but a rolled-back insert keeps its sequence numbers, so positions can
have gaps: the views' compare-and-set checks "at the last position before
this write", and the chain's walk is not `dense`.
"""

from __future__ import annotations

import builtins
import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import (
    Notification,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import (
    BasePostgresFactory,
    PostgresAggregateRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
)
from eventsourcing.utils import Environment
from psycopg import Cursor, sql
from psycopg.rows import DictRow, dict_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from imageledger.domain.errors import InvalidArgument
from imageledger.domain.image import ImageName
from imageledger.infrastructure.errors import IntegrityError, LogNotEmpty, StoreError
from imageledger.infrastructure.hash_chain import (
    FORGED_EVENT,
    GENESIS,
    ChainRow,
    ChainWalk,
    chain_links,
)
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.redaction import check_credentials, redact_url, scrub
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
    TRACKING_TABLE,
)
from imageledger.infrastructure.storage import (
    ALL_COLUMNS,
    CHAIN_PAGE,
    SNAPSHOT_AUDIT_COLUMNS,
    VIEW_READ_COLUMNS,
    AuditIndexDriver,
    CurrentViewDriver,
    Decide,
    LiveView,
    Progress,
    Seen,
    Tracking,
    Wakeup,
    apply_live_views,
    chain_rows,
    image_from_row,
    log_conditions,
    rebuild_views,
    state_from_row,
    until_condition,
    verify_log,
    write,
)
from imageledger.projections.audit import AuditRow, Bound, Found, LogQuery
from imageledger.projections.current_view import CurrentImage, Image, ListKeys

# The datastore: connections built from the URL.

CONNECT_TIMEOUT = 10  # seconds to reach the server before giving up
POOL_SIZE = 2  # a write and a streaming list() at once, without waiting
POOL_OVERFLOW = 8
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}", re.ASCII)


@dataclass(frozen=True)
class PostgresLocation:
    """A parsed PostgreSQL URL: libpq parameters and the store's schema."""

    params: dict[str, str] = field(repr=False)  # holds the password
    schema: str = "public"
    url: str = field(default="", repr=False)  # as given, password and all

    @property
    def where(self) -> str:
        """host:port/db, for messages (never the user's password)."""
        host = self.params.get("host") or "localhost"
        port = self.params.get("port") or "5432"
        where = f"{host}:{port}/{self.params.get('dbname', '')}"
        return where if self.schema == "public" else f"{where}?schema={self.schema}"

    def redact(self, text: str) -> str:
        """`text` with the password, in any form the URL gave it, as ***."""
        return scrub(text, self.url, self.params.get("password", ""))


def parse_url(url: str) -> PostgresLocation:
    """Split a postgresql:// URL into libpq parameters and our `schema`.

    A URL whose user name or password is not cleanly percent-encoded is
    refused first (see redaction.check_credentials): parsed, its password
    would spill into the host, port or database name, and from there into
    every message that names the server.
    """
    if "://" not in url:
        raise StoreError(
            f"cannot open {redact_url(url)!r}: not a valid PostgreSQL URL "
            "(write postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    check_credentials(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else "public"
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidArgument(
            "location",
            "the schema must be a lowercase SQL name (letters, digits, _), "
            f"not {schema!r}",
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    try:
        params = psycopg.conninfo.conninfo_to_dict(libpq_url)
    except psycopg.Error as e:
        reason = scrub(" ".join(str(e).split()), url)
        raise StoreError(
            f"cannot open {redact_url(url)!r}: not a valid PostgreSQL URL ({reason})"
        ) from None  # the driver's message may quote the URL, password and all
    return PostgresLocation({k: str(v) for k, v in params.items()}, schema, url)


def connect(location: PostgresLocation) -> psycopg.Connection[DictRow]:
    """One autocommit connection, or StoreError saying why not (no password)."""
    params: dict[str, Any] = dict(location.params)
    try:
        return psycopg.connect(
            **params,
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
            row_factory=dict_row,
        )
    except psycopg.Error as e:
        raise connection_error(location, e) from None


def connection_error(location: PostgresLocation, error: Exception) -> StoreError:
    """The StoreError for a failed connection: one line, password removed."""
    reason = " ".join(str(error).split()).removeprefix("connection failed: ")
    return StoreError(
        f"cannot connect to PostgreSQL at {location.where}: {location.redact(reason)}"
    )


def lock_timeout_setting(seconds: float) -> str:
    """`SET LOCAL lock_timeout` value: PostgreSQL reads 0 as "wait forever",
    SQLite's busy timeout as "do not wait", so 0 becomes one millisecond."""
    return f"{max(1, round(seconds * 1000))}ms"


class LedgerPostgresDatastore(PostgresDatastore):
    """eventsourcing's PostgreSQL datastore on the URL's server and schema.

    `lock_timeout` is how long a write waits for another writer's table lock
    (seconds, fractions allowed); past it the write fails as busy.
    """

    def __init__(self, location: PostgresLocation, *, lock_timeout: float) -> None:
        params = location.params
        super().__init__(
            dbname=params.get("dbname", ""),
            host=params.get("host", ""),
            port=params.get("port", ""),
            user=params.get("user", ""),
            password=params.get("password", ""),
            connect_timeout=CONNECT_TIMEOUT,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            schema=location.schema,
        )
        # Exactly the URL's parameters: an empty host or user given to libpq is
        # not the same as leaving it out (the default socket, the OS user).
        kwargs: dict[str, Any] = {
            **params,
            "connect_timeout": CONNECT_TIMEOUT,
            "row_factory": dict_row,
        }
        self.pool.kwargs = kwargs
        self.location = location
        self.lock_timeout_setting = lock_timeout_setting(lock_timeout)


# What makes a schema a store: its marker table and schema versions.

SCHEMA_VERSION = 2  # 1: the first release; 2: the audit index, immutable names
MARKER_TABLE = "imageledger_store"

_TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    "ORDER BY c.relname"
)


class DatabaseState(enum.Enum):
    NEW = "new"  # no schema, or a schema without tables
    STORE = "store"  # an imageledger store of this schema
    OLDER = "older"  # a store of an older schema, which opening upgrades


def inspect_database(c: Cursor[DictRow], location: PostgresLocation) -> DatabaseState:
    """Say whether the URL's schema is a new or an existing store; else StoreError."""
    c.execute(_TABLES, (location.schema,))
    tables = [row["relname"] for row in c.fetchall()]
    if MARKER_TABLE not in tables:
        if not tables:
            return DatabaseState.NEW
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"PostgreSQL at {location.where} is not an imageledger store "
            f"(schema {location.schema!r} has tables {shown}); use an empty "
            "database, or a schema of its own with ?schema=NAME in the URL"
        )
    version = _stored_version(c, location)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"PostgreSQL at {location.where} was written by a newer imageledger "
            f"(schema {version}; this version reads up to {SCHEMA_VERSION}): "
            "upgrade imageledger"
        )
    if CHAIN_TABLE not in tables:
        # Schema 1 has the chain; only a store made before the release lacks it.
        raise StoreError(
            f"PostgreSQL at {location.where} is a store made by a development "
            f"version of imageledger, without the hash chain ({CHAIN_TABLE}"
            "): create it again"
        )
    return DatabaseState.STORE if version == SCHEMA_VERSION else DatabaseState.OLDER


def _stored_version(c: Cursor[DictRow], location: PostgresLocation) -> int:
    c.execute(
        sql.SQL("SELECT schema_version FROM {}.{}").format(
            sql.Identifier(location.schema), sql.Identifier(MARKER_TABLE)
        )
    )
    row = c.fetchone()
    return 0 if row is None else int(row["schema_version"])


def _take_turns(c: Cursor[DictRow], location: PostgresLocation) -> None:
    # An advisory lock, held to the end of the transaction: processes that
    # create or upgrade the same store at once take turns, and each looks
    # again once it has the lock.
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))",
        (f"imageledger:{location.schema}",),
    )


def initialize(
    c: Cursor[DictRow], location: PostgresLocation, statements: Sequence[Any]
) -> None:
    """Create the store in the open transaction, unless a racer already did.

    Processes that create the same store at once take turns (an advisory
    lock); each looks again once it has its turn.
    """
    _take_turns(c, location)
    if inspect_database(c, location) is not DatabaseState.NEW:
        return
    schema = sql.Identifier(location.schema)
    c.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    for statement in statements:
        c.execute(statement)
    c.execute(
        sql.SQL("CREATE TABLE {}.{} (schema_version integer NOT NULL)").format(
            schema, sql.Identifier(MARKER_TABLE)
        )
    )
    c.execute(
        sql.SQL("INSERT INTO {}.{} VALUES (%s)").format(
            schema, sql.Identifier(MARKER_TABLE)
        ),
        (SCHEMA_VERSION,),
    )


def upgrade(
    c: Cursor[DictRow],
    location: PostgresLocation,
    steps: Mapping[int, Sequence[Any]],
) -> None:
    """Upgrade an older store to this schema in the open transaction, unless a
    racer already did.

    `steps[v]` are the statements that take schema v - 1 to v. Processes that
    open the store at once take turns (the advisory lock of `initialize`).
    """
    _take_turns(c, location)
    if inspect_database(c, location) is not DatabaseState.OLDER:
        return
    for version in range(_stored_version(c, location) + 1, SCHEMA_VERSION + 1):
        for statement in steps[version]:
            c.execute(statement)
    c.execute(
        sql.SQL("UPDATE {}.{} SET schema_version = %s").format(
            sql.Identifier(location.schema), sql.Identifier(MARKER_TABLE)
        ),
        (SCHEMA_VERSION,),
    )


def _sql(schema: str, text: str) -> Composed:
    """`text` with {events}, {tracking} and {chain} named in `schema`."""
    return SQL(text).format(
        events=Identifier(schema, EVENTS_TABLE),
        tracking=Identifier(schema, TRACKING_TABLE),
        chain=Identifier(schema, CHAIN_TABLE),
    )


# The recorder: eventsourcing's, plus the chain's links and the live views in
# the same write.


class LedgerPostgresRecorder(PostgresProcessRecorder):
    """Appends events to `stored_events` and folds them into the live views.

    Our `insert_events` runs eventsourcing's statements (table lock, NOTIFY,
    INSERT ... RETURNING notification_id) in one transaction, then appends the
    events' links to the hash chain and folds them into the live views, on the
    same cursor: no event commits without its link. eventsourcing's own
    version pipelines its statements and commits even when a step after the
    insert raises a non-database error, which would leave events without
    their links and view rows; ours rolls back on any error. It also does not
    retry a lock timeout ten times: it reports busy.
    """

    def __init__(self, datastore: LedgerPostgresDatastore) -> None:
        super().__init__(
            datastore,
            events_table_name=EVENTS_TABLE,
            tracking_table_name=TRACKING_TABLE,
        )
        self.live_views: list[LiveView] = []
        schema = datastore.schema
        # eventsourcing sets the lock timeout in whole seconds, where 0 means
        # wait forever; ours is in milliseconds (see lock_timeout_setting).
        self.lock_table_statements = [
            *lock_statements(schema, datastore.lock_timeout_setting)
        ]
        # Sent as one simple query: a round trip instead of eventsourcing's
        # three, and the hash chain's last link read under the lock just taken.
        self.lock_notify_and_last_link_statement = SQL("; ").join(
            [
                *self.lock_table_statements,
                SQL("NOTIFY {}").format(Identifier(self.channel_name)),
                _sql(
                    schema, "SELECT chain FROM {chain} ORDER BY position DESC LIMIT 1"
                ),
            ]
        )
        self.select_stream_statement = _sql(
            schema,
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {events} WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version",
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            return self._insert_events(curs, stored_events, **kwargs)

    def insert_in(
        self,
        c: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        events: Sequence[ImageName.Event],
        seen: Seen | None = None,
    ) -> Sequence[int]:
        """Insert events in the caller's transaction `c` (with their links and
        the live views, folded from `seen`); return their positions."""
        return self._insert_events(c, stored_events, image_events=events, seen=seen)

    def insert_into_empty(
        self, pages: Iterable[tuple[Sequence[StoredEvent], Sequence[ImageName.Event]]]
    ) -> int:
        """Insert pages of events in one transaction (an import), only into an
        empty log: LogNotEmpty, and nothing inserted, otherwise."""
        inserted = 0
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            for stored, events in pages:
                if not stored:
                    continue
                positions = self._insert_events(curs, stored, image_events=events)
                if not inserted and self._has_events_before(curs, positions[0]):
                    # Checked under the write lock the first page took.
                    raise LogNotEmpty
                inserted += len(stored)
        return inserted

    def _has_events_before(self, curs: Cursor[DictRow], position: int) -> bool:
        curs.execute(
            _sql(
                self.datastore.schema,
                "SELECT 1 FROM {events} WHERE notification_id < %s LIMIT 1",
            ),
            (position,),
        )
        return curs.fetchone() is not None

    def _insert_events(  # type: ignore[override]  # returns positions, as on SQLite
        self,
        c: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int]:
        super()._insert_events(c, stored_events, **kwargs)  # tracking, if given
        previous = self._lock_and_read_last_link(c)
        PostgresAggregateRecorder._insert_stored_events(
            self, c, stored_events, **kwargs
        )
        positions = self._fetch_ids_after_insert_events(c, stored_events, **kwargs)
        if positions is not None:
            append_links(c, self.datastore.schema, previous, positions, stored_events)
        apply_live_views(
            c,
            self.live_views,
            positions,
            kwargs.get("image_events"),
            kwargs.get("seen"),
        )
        assert positions is not None  # apply_live_views raises otherwise
        return positions

    def _lock_and_read_last_link(self, curs: Cursor[DictRow]) -> bytes:
        """Take the write lock, NOTIFY, and read the chain's last link.

        What eventsourcing's `_insert_stored_events` does before its INSERT,
        plus the read, in one round trip. Under the lock (held to the commit)
        no other writer can append a link before this one's.
        """
        curs.execute(self.lock_notify_and_last_link_statement)
        while curs.nextset():  # to the last statement's result: the link
            pass
        row = curs.fetchone()
        return GENESIS if row is None else bytes(row["chain"])

    def select_stream(self, originator_id: UUID, gt: int = 0) -> list[Notification]:
        """The events of one aggregate after version `gt`, oldest first, with
        their log positions."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_stream_statement, (originator_id, gt))
            return [notification_from_row(row) for row in curs.fetchall()]


def notification_from_row(row: DictRow) -> Notification:
    """A notification from a row of the events table."""
    return Notification(
        id=row["notification_id"],
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )


def lock_statements(schema: str, lock_timeout: str) -> list[Composed]:
    """The lock writers take, waiting at most `lock_timeout`: while it is held
    no other write is between its insert and its commit."""
    return [
        SQL("SET LOCAL lock_timeout = {}").format(Literal(lock_timeout)),
        _sql(schema, "LOCK TABLE {events} IN EXCLUSIVE MODE"),
    ]


# The hash chain: `event_chain` holds one link per event (`position` is the
# event's notification_id), the same links as on SQLite: the canonical bytes
# use the id's 32 hex digits and the state exactly as stored. The recorder
# appends links after the insert, holding the EXCLUSIVE lock on
# `stored_events` that every writer takes and keeps to its commit, so the
# last link it read is the last one committed.


def create_chain_statement(schema: str) -> Composed:
    """What a new store runs to hold the chain."""
    return _sql(
        schema,
        "CREATE TABLE {chain} (position bigint PRIMARY KEY, chain bytea NOT NULL)",
    )


def append_links(
    c: Cursor[DictRow],
    schema: str,
    previous: bytes,
    positions: Sequence[int],
    stored_events: Sequence[StoredEvent],
) -> None:
    """Link events just inserted at `positions` after `previous`, the last link
    (read under the writers' lock, see LedgerPostgresRecorder)."""
    links = chain_links(previous, positions, stored_events)
    insert = _sql(schema, "INSERT INTO {chain} (position, chain) VALUES (%s, %s)")
    if len(links) == 1:
        c.execute(insert, links[0], prepare=True)
    else:
        c.executemany(insert, links)


def _chain_page(c: Cursor[DictRow], schema: str, start: int) -> list[ChainRow]:
    # Every position that has an event, a link or both, so that a deleted event
    # and an event without a link both show up at their place.
    page = _sql(
        schema,
        "SELECT p.position, e.originator_id, e.originator_version, e.topic, "
        "e.state, l.chain, e.notification_id IS NOT NULL AS has_event FROM ("
        "SELECT notification_id AS position FROM {events} "
        "WHERE notification_id >= %(start)s "
        "UNION SELECT position FROM {chain} WHERE position >= %(start)s "
        "ORDER BY 1 LIMIT %(limit)s) AS p "
        "LEFT JOIN {events} AS e ON e.notification_id = p.position "
        "LEFT JOIN {chain} AS l ON l.position = p.position "
        "ORDER BY p.position",
    )
    c.execute(page, {"start": start, "limit": CHAIN_PAGE}, prepare=True)
    return [_chain_row(row) for row in c.fetchall()]


def _chain_row(row: DictRow) -> ChainRow:
    stream, state, chain = row["originator_id"], row["state"], row["chain"]
    return ChainRow(
        row["position"],
        # The canonical bytes hold the id as SQLite stores it: 32 hex digits.
        stream.hex if isinstance(stream, UUID) else stream,
        row["originator_version"],
        row["topic"],
        None if state is None else bytes(state),
        None if chain is None else bytes(chain),
        has_event=row["has_event"],
    )


# What the views read of the log and of their tracking rows.


class PostgresTracking(Tracking):
    """The log and the tracking rows in one schema, where positions can have
    gaps and readers of the log take the writers' lock to see no write between
    its insert and its commit."""

    def __init__(self, datastore: LedgerPostgresDatastore, mapper: LedgerMapper):
        self.schema = schema = datastore.schema
        self.mapper = mapper
        self._lock = lock_statements(schema, datastore.lock_timeout_setting)
        # Positions can have gaps, so the view must be at the last position
        # before this write, not first - 1.
        self._advance = _sql(
            schema,
            "UPDATE {tracking} SET notification_id=%s "
            "WHERE application_name=%s AND notification_id=(SELECT "
            "COALESCE(MAX(notification_id), 0) FROM {events} "
            "WHERE notification_id < %s) RETURNING 1",
        )

    def position(self, c: Cursor[DictRow], view: str) -> int:
        c.execute(
            _sql(
                self.schema,
                "SELECT notification_id FROM {tracking} WHERE application_name=%s",
            ),
            (view,),
        )
        row = c.fetchone()
        return (
            0
            if row is None or row["notification_id"] is None
            else int(row["notification_id"])
        )

    def track(self, c: Cursor[DictRow], view: str, position: int) -> None:
        c.execute(
            _sql(
                self.schema,
                "INSERT INTO {tracking} (application_name, notification_id) "
                "VALUES (%s, %s) ON CONFLICT (application_name) "
                "DO UPDATE SET notification_id=excluded.notification_id",
            ),
            (view, position),
        )

    def advance(self, c: Cursor[DictRow], view: str, first: int, last: int) -> bool:
        c.execute(self._advance, (last, view, first), prepare=True)
        return c.fetchone() is not None

    def before(self, c: Cursor[DictRow], first: int) -> int:
        return self._head(c, below=first)

    def head(self, c: Cursor[DictRow]) -> int:
        return self._head(c, below=None)

    def _head(self, c: Cursor[DictRow], *, below: int | None) -> int:
        statement = "SELECT MAX(notification_id) AS head FROM {events}"
        params: tuple[int, ...] = ()
        if below is not None:
            statement += " WHERE notification_id < %s"
            params = (below,)
        c.execute(_sql(self.schema, statement), params)
        row = c.fetchone()
        return int(row["head"] or 0) if row is not None else 0

    def page(
        self, c: Cursor[DictRow], *, after: int, upto: int | None, limit: int
    ) -> builtins.list[tuple[int, ImageName.Event]]:
        statement = (
            "SELECT notification_id, originator_id, originator_version, topic, "
            "state FROM {events} WHERE notification_id > %s "
        )
        params: list[int] = [after]
        if upto is not None:
            statement += "AND notification_id <= %s "
            params.append(upto)
        statement += "ORDER BY notification_id LIMIT %s"
        c.execute(_sql(self.schema, statement), [*params, limit])
        rows = [
            (
                row["notification_id"],
                row["originator_id"],
                row["originator_version"],
                row["topic"],
                bytes(row["state"]),
            )
            for row in c.fetchall()
        ]
        return self.mapper.decode_rows(rows, self._one)

    def _one(self, row: Sequence[Any]) -> ImageName.Event:
        return self.mapper.to_domain_event(
            Notification(
                id=row[0],
                originator_id=row[1],
                originator_version=row[2],
                topic=row[3],
                state=row[4],
            )
        )

    def lock(self, c: Cursor[DictRow]) -> None:
        for statement in self._lock:
            c.execute(statement)


# The current view: the same rows as on SQLite (deleted names stay as
# tombstones, live=false), kept the same way: every host's write folds its
# events into these tables in its own transaction, so every host reads every
# committed write.

CHECK_TABLE = "images_check"  # the fold verify compares with: a temporary table
LIST_BATCH = 1000  # rows a streaming list() fetches per round trip


def _row_params(state: CurrentImage) -> tuple[Any, ...]:
    # Booleans for the boolean columns; labels as the event gave them.
    image = state.image
    return (
        image.namespace,
        image.name,
        image.target.digest,
        image.target.media_type,
        orjson.dumps(image.target.to_oci()).decode(),
        orjson.dumps(image.labels).decode(),
        image.created_at.isoformat(),
        image.updated_at.isoformat(),
        image.version,
        state.live,
        image.immutable,
    )


def create_index_statement(schema: str, table: str = IMAGES_TABLE) -> Composed:
    """The statement that gives `table` (the view, or its rebuilt copy) the
    index by (namespace, digest), which serves filtered lists."""
    return SQL("CREATE INDEX IF NOT EXISTS {} ON {} (namespace, digest)").format(
        Identifier(DIGEST_INDEX), Identifier(schema, table)
    )


def ensure_index(datastore: LedgerPostgresDatastore) -> None:
    """Create the digest index on a store made before it existed; never wait,
    never fail the open (until then a filtered list reads the namespace's
    rows instead, with the same results).

    It looks first, so opening a store that has it (every store this version
    made) takes no lock. Otherwise it tries once, giving up at once if a writer
    holds the table; the next open tries again.
    """
    schema = datastore.schema
    with datastore.transaction(commit=False) as c:
        c.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname=%s AND indexname=%s",
            (schema, DIGEST_INDEX),
        )
        if c.fetchone() is not None:
            return
    try:
        with datastore.transaction(commit=True) as c:
            c.execute("SET LOCAL lock_timeout = '1ms'")
            c.execute(create_index_statement(schema))
    except (PersistenceError, psycopg.Error):
        pass  # not now: the list works without it


class PostgresCurrentView(CurrentViewDriver):
    """The current view in one PostgreSQL schema, kept in the writes' transactions."""

    check_table = CHECK_TABLE
    datastore: LedgerPostgresDatastore

    def __init__(
        self,
        datastore: LedgerPostgresDatastore,
        mapper: LedgerMapper,
        tracking: PostgresTracking,
    ):
        super().__init__(datastore, mapper, tracking)
        self._get = self._sql(
            f"SELECT {READ_COLUMNS} FROM {{table}} "
            "WHERE namespace=%s AND name=%s AND live",
        )
        # Each name's view row and its stream's last two events, read in one
        # statement (one moment): a write checks the row against the events.
        self._snapshot = self._sql(
            f"SELECT k.key, {VIEW_READ_COLUMNS}, e.notification_id, "
            "e.originator_id, e.originator_version, e.topic, e.state, "
            "(SELECT notification_id FROM {tracking} WHERE application_name="
            f"'{CURRENT_VIEW}') AS tracked, {SNAPSHOT_AUDIT_COLUMNS} "
            "FROM unnest(%s::text[], %s::uuid[]) AS k(key, stream) "
            "LEFT JOIN {table} AS v ON v.namespace=%s AND v.name=k.key "
            "LEFT JOIN LATERAL (SELECT notification_id, originator_id, "
            "originator_version, topic, state FROM {events} "
            "WHERE originator_id=k.stream ORDER BY originator_version DESC "
            "LIMIT 2) AS e ON true "
            "LEFT JOIN {audit} AS a ON a.position=e.notification_id "
            "ORDER BY k.key, e.originator_version DESC"
        )
        self._list = self._sql(
            f"SELECT {READ_COLUMNS} FROM {{table}} WHERE namespace=%s AND live "
            "ORDER BY name"
        )
        self._list_keys = self._sql(  # by names or digests, through the indexes
            f"SELECT {READ_COLUMNS} FROM {{table}} WHERE namespace=%s AND live "
            "AND (name=ANY(%s::text[]) OR digest=ANY(%s::text[])) ORDER BY name"
        )

    def _sql(self, text: str, table: str = IMAGES_TABLE) -> Composed:
        """`text` with {table}, {events}, {tracking}, {audit} and {pkey} named in
        our schema."""
        # The check table is temporary, private to verify's transaction.
        schema = "pg_temp" if table == CHECK_TABLE else self.datastore.schema
        return SQL(text).format(
            table=Identifier(schema, table),
            events=Identifier(self.datastore.schema, EVENTS_TABLE),
            tracking=Identifier(self.datastore.schema, TRACKING_TABLE),
            audit=Identifier(self.datastore.schema, AUDIT_TABLE),
            pkey=Identifier(f"{table}_pkey"),
        )

    def create_statements(self) -> builtins.list[Composed]:
        """What a new store runs to hold this view (with its tracking row)."""
        return [
            self._create_table(IMAGES_TABLE),
            create_index_statement(self.datastore.schema, IMAGES_TABLE),
            self._sql("INSERT INTO {tracking} VALUES ('__migration__', 1)"),
            self._sql(f"INSERT INTO {{tracking}} VALUES ('{CURRENT_VIEW}', 0)"),
        ]

    def add_immutable_column(self) -> Composed:
        """The upgrade of schema 1's view to schema 2: write-once names.

        False for every existing row is exact: no event before schema 2 can
        carry the flag.
        """
        return self._sql(
            "ALTER TABLE {table} ADD COLUMN immutable boolean NOT NULL DEFAULT false"
        )

    def _create_table(self, table: str) -> Composed:
        return self._sql(
            "CREATE TABLE {table} ("
            "namespace text NOT NULL, "
            "name text NOT NULL, "
            "digest text NOT NULL, "
            "media_type text NOT NULL, "
            "target text NOT NULL, "  # OCI JSON of the descriptor
            "labels text NOT NULL, "  # JSON object
            "created_at text NOT NULL, "  # RFC 3339, UTC, as the events have it
            "updated_at text NOT NULL, "
            "version bigint NOT NULL, "
            "live boolean NOT NULL, "
            # Last, as the upgrade from schema 1 adds it (add_immutable_column).
            "immutable boolean NOT NULL DEFAULT false, "
            "CONSTRAINT {pkey} PRIMARY KEY (namespace, name))",
            table,
        )

    # Read side.

    def get(self, namespace: str, name: str) -> Image | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._get, (namespace, name), prepare=True).fetchone()
        return None if row is None else image_from_row(tuple(row.values()))

    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        # A server-side cursor in one read transaction: a consistent snapshot,
        # fetched LIST_BATCH rows at a time; closing the iterator ends it.
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="imageledger_list") as cursor,
        ):
            cursor.itersize = LIST_BATCH
            if keys is None:
                cursor.execute(self._list, (namespace,))
            else:
                params = (namespace, [*keys.names], [*keys.digests])
                cursor.execute(self._list_keys, params)
            for row in cursor:
                yield image_from_row(tuple(row.values()))

    def _snapshot_rows(
        self,
        c: Cursor[DictRow],
        namespace: str,
        names: builtins.list[str],
        streams: builtins.list[UUID],
    ) -> builtins.list[tuple[Any, ...]]:
        rows = c.execute(
            self._snapshot, (names, streams, namespace), prepare=True
        ).fetchall()
        return [tuple(row.values()) for row in rows]

    # The statements of the shared drivers (CurrentViewDriver).

    def _states(
        self, c: Cursor[DictRow], table: str, keys: builtins.list[tuple[str, str]]
    ) -> Iterator[tuple[tuple[str, str], CurrentImage]]:
        if len(keys) == 1:  # a single write: one prepared statement
            rows = c.execute(
                self._sql(
                    f"SELECT {READ_COLUMNS} FROM {{table}} "
                    "WHERE namespace=%s AND name=%s",
                    table,
                ),
                keys[0],
                prepare=True,
            ).fetchall()
        else:  # a batch, a catch-up or a fold: the rows of all its names at once
            rows = c.execute(
                self._sql(
                    f"SELECT {READ_COLUMNS} FROM {{table}} WHERE (namespace, name) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    table,
                ),
                ([k[0] for k in keys], [k[1] for k in keys]),
            ).fetchall()
        for row in rows:
            yield (row["namespace"], row["name"]), state_from_row(tuple(row.values()))

    def _row_params(self, state: CurrentImage) -> tuple[Any, ...]:
        return _row_params(state)

    def _upsert(
        self, c: Cursor[DictRow], table: str, rows: builtins.list[tuple[Any, ...]]
    ) -> None:
        upsert = self._sql(
            "INSERT INTO {table} (namespace, name, digest, media_type, target, "
            "labels, created_at, updated_at, version, live, immutable) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (namespace, name) DO UPDATE SET digest=excluded.digest, "
            "media_type=excluded.media_type, target=excluded.target, "
            "labels=excluded.labels, created_at=excluded.created_at, "
            "updated_at=excluded.updated_at, version=excluded.version, "
            "live=excluded.live, immutable=excluded.immutable",
            table,
        )
        if len(rows) == 1:
            c.execute(upsert, rows[0], prepare=True)
        elif rows:
            c.executemany(upsert, rows)

    def start_rebuild(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", IMAGES_SHADOW_TABLE))
        c.execute(self._create_table(IMAGES_SHADOW_TABLE))

    def _swap_in_shadow(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE {table}"))
        c.execute(
            self._sql(
                f"ALTER TABLE {{table}} RENAME TO {IMAGES_TABLE}", IMAGES_SHADOW_TABLE
            )
        )
        c.execute(
            SQL("ALTER INDEX {} RENAME TO {}").format(
                Identifier(self.datastore.schema, f"{IMAGES_SHADOW_TABLE}_pkey"),
                Identifier(f"{IMAGES_TABLE}_pkey"),
            )
        )
        c.execute(create_index_statement(self.datastore.schema, IMAGES_TABLE))

    def start_check(self, c: Cursor[DictRow]) -> None:
        """Start an empty fold in `c`'s transaction (a table dropped at its end)."""
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", CHECK_TABLE))
        c.execute(self._create_table(CHECK_TABLE) + SQL(" ON COMMIT DROP"))

    def _differing_keys(self, c: Cursor[DictRow]) -> Iterator[tuple[Any, Any]]:
        columns = ", ".join(ALL_COLUMNS)
        c.execute(
            SQL(
                f"SELECT namespace, name FROM (SELECT {columns} FROM {{view}} "
                f"EXCEPT SELECT {columns} FROM {{check}}) AS extra UNION "
                f"SELECT namespace, name FROM (SELECT {columns} FROM {{check}} "
                f"EXCEPT SELECT {columns} FROM {{view}}) AS lacking ORDER BY 1, 2"
            ).format(
                view=Identifier(self.datastore.schema, IMAGES_TABLE),
                check=Identifier("pg_temp", CHECK_TABLE),
            )
        )
        for key in c.fetchall():
            yield key["namespace"], key["name"]

    def _view_and_fold(
        self, c: Cursor[DictRow], key: tuple[Any, Any]
    ) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
        select = f"SELECT {', '.join(ALL_COLUMNS)} FROM {{table}} "
        select += "WHERE namespace=%s AND name=%s"
        found = []
        for table in (IMAGES_TABLE, CHECK_TABLE):
            row = c.execute(self._sql(select, table), key).fetchone()
            found.append(None if row is None else tuple(row.values()))
        return found[0], found[1]

    def _last_position(self, c: Cursor[DictRow], stream: UUID) -> int | None:
        c.execute(
            self._sql(
                "SELECT MAX(notification_id) AS last FROM {events} "
                "WHERE originator_id = %s"
            ),
            (stream,),
        )
        row = c.fetchone()
        return None if row is None or row["last"] is None else int(row["last"])


# The audit index: the same table, rows and drivers as on SQLite.

FETCH = 1000  # rows a streaming query fetches per round trip
_AS_A = ", ".join(f"a.{column}" for column in AUDIT_COLUMNS.split(", "))
_EVENT = "e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
_AUDIT_INDEXES = {
    "by_name": "namespace, name, position",
    "by_digest": "digest, position",
    "by_time": "timestamp",
    "by_actor": "actor, position",
}


def _audit_row(row: DictRow) -> AuditRow:
    return AuditRow(*(row[field] for field in AuditRow._fields))


class PostgresAuditIndex(AuditIndexDriver):
    """The audit index in one PostgreSQL schema, kept in the writes' transactions."""

    datastore: LedgerPostgresDatastore

    def _sql(self, text: str, table: str = AUDIT_TABLE) -> Composed:
        """`text` with {table}, {events} and {tracking} named in our schema."""
        return SQL(text).format(
            table=Identifier(self.datastore.schema, table),
            events=Identifier(self.datastore.schema, EVENTS_TABLE),
            tracking=Identifier(self.datastore.schema, TRACKING_TABLE),
        )

    def create_statements(self) -> builtins.list[Composed]:
        """What a store runs to hold the index (with its tracking row)."""
        return [
            self._create_table(AUDIT_TABLE),
            *self._index_statements(AUDIT_TABLE, _AUDIT_INDEXES),
            self._sql(f"INSERT INTO {{tracking}} VALUES ('{AUDIT_VIEW}', 0)"),
        ]

    def _create_table(self, table: str) -> Composed:
        return self._sql(
            "CREATE TABLE {table} ("
            "position bigint PRIMARY KEY, "  # the event's notification_id
            "namespace text NOT NULL, "
            "name text NOT NULL, "
            "version bigint NOT NULL, "
            "kind text NOT NULL, "  # registered or deleted
            "digest text, "  # the target's digest; NULL for a delete
            "timestamp bigint NOT NULL, "  # microseconds since the epoch, UTC
            "actor text NOT NULL, "
            "since bigint NOT NULL, "  # when the name's current life began
            "immutable boolean NOT NULL)",  # bound to its content after the event
            table,
        )

    def _index_statements(
        self, table: str, indexes: dict[str, str]
    ) -> builtins.list[Composed]:
        return [
            SQL("CREATE INDEX {} ON {} ({})").format(
                Identifier(f"{table}_{suffix}"),
                Identifier(self.datastore.schema, table),
                SQL(columns),
            )
            for suffix, columns in indexes.items()
        ]

    # Read side.

    def entries(self, query: LogQuery) -> Iterator[Found]:
        conditions, params = log_conditions(query, "%s")
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM {{table}} AS a "
            "JOIN {events} AS e ON e.notification_id = a.position "
            f"WHERE {' AND '.join(conditions) or 'true'} ORDER BY a.position"
        )
        if query.limit is not None:
            statement += " LIMIT %s"
            params.append(query.limit)
        return self._found(self._sql(statement), params)

    def last_events(
        self, namespace: str, until: Bound, name: str | None = None
    ) -> Iterator[Found]:
        bound, params = until_condition(until, "%s")
        names = "AND name = %s " if name is not None else ""
        statement = (
            f"SELECT {_AS_A}, {_EVENT} FROM (SELECT DISTINCT ON (name) position "
            f"FROM {{table}} WHERE namespace = %s {names}AND {bound} "
            "ORDER BY name, position DESC) AS last "
            "JOIN {table} AS a ON a.position = last.position "
            "JOIN {events} AS e ON e.notification_id = a.position ORDER BY a.name"
        )
        given = [namespace, *([name] if name is not None else []), *params]
        return self._found(self._sql(statement), given)

    def carrying(self, digest: str, namespace: str | None) -> list[AuditRow]:
        statement = f"SELECT {AUDIT_COLUMNS} FROM {{table}} WHERE digest = %s"
        params: list[Any] = [digest]
        if namespace is not None:
            statement += " AND namespace = %s"
            params.append(namespace)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql(statement + " ORDER BY position"), params)
            return [_audit_row(row) for row in c.fetchall()]

    def next_row(self, namespace: str, name: str, after: int) -> AuditRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    f"SELECT {AUDIT_COLUMNS} FROM {{table}} WHERE namespace = %s "
                    "AND name = %s AND position > %s ORDER BY position LIMIT 1"
                ),
                (namespace, name, after),
            )
            row = c.fetchone()
        return None if row is None else _audit_row(row)

    def namespaces(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                # A seek on the index by name per namespace (a loose index
                # scan), instead of DISTINCT over every row of the index.
                self._sql(
                    "WITH RECURSIVE ns(namespace) AS (SELECT MIN(namespace) "
                    "FROM {table} UNION ALL SELECT (SELECT MIN(namespace) "
                    "FROM {table} WHERE namespace > ns.namespace) FROM ns "
                    "WHERE ns.namespace IS NOT NULL) "
                    "SELECT namespace FROM ns WHERE namespace IS NOT NULL"
                )
            )
            return [row["namespace"] for row in c.fetchall()]

    def _found(self, statement: Composed, params: list[Any]) -> Iterator[Found]:
        # A server-side cursor in one read transaction: a consistent snapshot.
        decode = self.mapper.to_domain_event
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="imageledger_audit") as cursor,
        ):
            cursor.itersize = FETCH
            cursor.execute(statement, params)
            for row in cursor:
                yield Found(_audit_row(row), decode(notification_from_row(row)))

    # The statements of the shared drivers (AuditIndexDriver).

    # As on SQLite: only the index the fold reads is kept while folding.

    def start_rebuild(self, c: Cursor[DictRow]) -> None:
        c.execute(self._sql("DROP TABLE IF EXISTS {table}", AUDIT_SHADOW_TABLE))
        c.execute(self._create_table(AUDIT_SHADOW_TABLE))
        by_name = {"by_name": _AUDIT_INDEXES["by_name"]}
        for statement in self._index_statements(AUDIT_SHADOW_TABLE, by_name):
            c.execute(statement)

    def _swap_in_shadow(self, c: Cursor[DictRow]) -> None:
        schema = self.datastore.schema
        c.execute(self._sql("DROP TABLE {table}"))
        c.execute(
            self._sql(
                f"ALTER TABLE {{table}} RENAME TO {AUDIT_TABLE}", AUDIT_SHADOW_TABLE
            )
        )
        for old, new in (
            (f"{AUDIT_SHADOW_TABLE}_pkey", f"{AUDIT_TABLE}_pkey"),
            (f"{AUDIT_SHADOW_TABLE}_by_name", f"{AUDIT_TABLE}_by_name"),
        ):
            c.execute(
                SQL("ALTER INDEX {} RENAME TO {}").format(
                    Identifier(schema, old), Identifier(new)
                )
            )
        others = {k: v for k, v in _AUDIT_INDEXES.items() if k != "by_name"}
        for statement in self._index_statements(AUDIT_TABLE, others):
            c.execute(statement)

    def _rows_between(
        self, c: Cursor[DictRow], first: int, last: int
    ) -> dict[int, AuditRow]:
        c.execute(
            self._sql(
                f"SELECT {AUDIT_COLUMNS} FROM {{table}} "
                "WHERE position BETWEEN %s AND %s"
            ),
            (first, last),
        )
        return {row["position"]: _audit_row(row) for row in c.fetchall()}

    def _insert(self, c: Cursor[DictRow], table: str, rows: list[AuditRow]) -> None:
        insert = self._sql(
            f"INSERT INTO {{table}} ({AUDIT_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            table,
        )
        if len(rows) == 1:
            c.execute(insert, rows[0], prepare=True)
        else:
            c.executemany(insert, rows)

    def _delete_after(self, c: Cursor[DictRow], table: str, position: int) -> None:
        c.execute(
            self._sql("DELETE FROM {table} WHERE position>%s", table), (position,)
        )

    def _row_count(self, c: Cursor[DictRow]) -> int:
        c.execute(self._sql("SELECT COUNT(*) AS n FROM {table}"))
        row = c.fetchone()
        return 0 if row is None else int(row["n"])

    def _first_row_without_event(self, c: Cursor[DictRow]) -> int | None:
        c.execute(
            self._sql(
                "SELECT a.position FROM {table} AS a LEFT JOIN {events} AS e "
                "ON e.notification_id = a.position WHERE e.notification_id IS NULL "
                "ORDER BY a.position LIMIT 1"
            )
        )
        row = c.fetchone()
        return None if row is None else int(row["position"])

    def _last_row(
        self,
        c: Cursor[DictRow],
        table: str,
        key: tuple[str, str],
        *,
        before: int | None,
    ) -> AuditRow | None:
        statement = (
            f"SELECT {AUDIT_COLUMNS} FROM {{table}} WHERE namespace=%s AND name=%s "
        )
        params: list[Any] = list(key)
        if before is not None:
            statement += "AND position<%s "
            params.append(before)
        statement += "ORDER BY position DESC LIMIT 1"
        c.execute(self._sql(statement, table), params, prepare=True)
        row = c.fetchone()
        return None if row is None else _audit_row(row)


# Waiting for appends: LISTEN on the channel writers NOTIFY. Every append
# (eventsourcing's insert, and ours in the recorder) runs `NOTIFY stored_events`
# in its transaction; PostgreSQL delivers it when that transaction commits, so
# a listener wakes up once the new events are readable. The channel is per
# database, not per schema: appends to another store in the same database wake
# the listener too, and it finds nothing new to read.


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


# The factory.


class LedgerPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, built from a URL instead of the environment.

    As with SQLite, configuration never comes from environment variables: a
    POSTGRES_PASSWORD set for some other program must not change what we open.
    """

    def __init__(self, url: str, *, lock_timeout: float) -> None:
        self.location = location = parse_url(url)
        # One plain connection first: a server that cannot be reached, or a
        # schema that is not a store, fails here with a clear message and
        # before anything is created.
        with connect(location) as probe, probe.cursor() as c:
            state = inspect_database(c, location)
        # Deliberately not BasePostgresFactory.__init__, which reads the environment.
        super(BasePostgresFactory, self).__init__(Environment("imageledger", {}))
        self.datastore = LedgerPostgresDatastore(location, lock_timeout=lock_timeout)
        try:
            self.mapper_instance = mapper = LedgerMapper()
            self.tracking = PostgresTracking(self.datastore, mapper)
            self.recorder = LedgerPostgresRecorder(self.datastore)
            self.current_view = PostgresCurrentView(
                self.datastore, mapper, self.tracking
            )
            self.audit_index = PostgresAuditIndex(self.datastore, mapper, self.tracking)
            self.recorder.live_views += [self.current_view, self.audit_index]
            if state is DatabaseState.NEW:
                self._initialize()
            elif state is DatabaseState.OLDER:
                self._upgrade()
            self.datastore.register_type_adapters()
            if state is not DatabaseState.NEW:
                self.current_view.catch_up()
                self.audit_index.catch_up()
                ensure_index(self.datastore)
        except BaseException:
            self.datastore.close()  # a store that failed to open holds nothing
            raise

    def write(self, namespace: str, names: list[str], decide: Decide) -> list[int]:
        """One write (see storage.StoreFactory.write). The snapshots are read
        in the write's transaction before the insert takes the writers' lock:
        if another writer appends to one of these streams meanwhile, the
        insert fails with RecordConflictError and nothing is written."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as c,
        ):
            return write(
                c, self.current_view, self.recorder.insert_in, namespace, names, decide
            )

    def checkpoint(self) -> tuple[int, bytes]:
        """The last log position and its stored link; (0, GENESIS) for an empty log."""
        with self.datastore.transaction(commit=False) as c:
            # One statement: the position and its link are read at one moment.
            c.execute(
                _sql(
                    self.datastore.schema,
                    "SELECT last.position, l.chain FROM (SELECT MAX(notification_id) "
                    "AS position FROM {events}) AS last "
                    "LEFT JOIN {chain} AS l ON l.position = last.position",
                )
            )
            row = c.fetchone()
        if row is None or row["position"] is None:
            return 0, GENESIS
        position = int(row["position"])
        if row["chain"] is None:
            raise IntegrityError(
                position, FORGED_EVENT, "the last event in the log has no link"
            )
        return position, bytes(row["chain"])

    def rebuild(self, progress: Progress | None = None) -> int:
        """Refold the current view and the audit index in one pass over the log."""
        return rebuild_views(
            lambda: self.datastore.transaction(commit=True),
            self.tracking,
            [self.current_view, self.audit_index],
            progress,
        )

    def verify(self, checkpoint: tuple[int, bytes] | None) -> ChainWalk:
        """Check the chain, the checkpoint and the views (see storage.verify_log).

        In one REPEATABLE READ transaction, so the log and the views are seen
        at one moment whatever writers do meanwhile (it takes no lock that
        blocks them), rolled back at the end.
        """
        schema = self.datastore.schema
        with self.datastore.transaction(commit=False) as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            walk = ChainWalk(
                lambda after: chain_rows(
                    lambda start: _chain_page(c, schema, start), after
                ),
                checkpoint,
                dense=False,
            )
            return verify_log(
                c, walk, self.mapper_instance, self.current_view, self.audit_index
            )

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """The stored links of the positions after `after` up to `until`."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                _sql(
                    self.datastore.schema,
                    "SELECT position, chain FROM {chain} "
                    "WHERE position > %s AND position <= %s ORDER BY position",
                ),
                (after, until),
            )
            return {int(row["position"]): bytes(row["chain"]) for row in c.fetchall()}

    def wakeup(self) -> Wakeup:
        """A listener on the channel every append NOTIFYs."""
        return PostgresListener(self.location, self.recorder.channel_name)

    def _initialize(self) -> None:
        statements: list[Any] = [
            *self.recorder.sql_create_statements,
            create_chain_statement(self.datastore.schema),
            *self.current_view.create_statements(),
            *self.audit_index.create_statements(),
        ]
        with self.datastore.transaction(commit=True) as c:
            initialize(c, self.location, statements)

    def _upgrade(self) -> None:
        # Every step from the store's schema to ours, in one transaction.
        steps = {
            # The audit index (created empty: opening folds the log into it,
            # as into any view that is behind) and immutable names.
            2: [
                *self.audit_index.create_statements(),
                self.current_view.add_immutable_column(),
            ],
        }
        with self.datastore.transaction(commit=True) as c:
            upgrade(c, self.location, steps)
