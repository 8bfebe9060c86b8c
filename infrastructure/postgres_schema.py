"""What makes a PostgreSQL schema an imageledger store, checked before any write.

PostgreSQL has no header to mark, so a store is marked by a one-row table,
`imageledger_store`, holding the schema version. A schema (by default `public`)
with no tables becomes a store; one with the marker is a store if its version
is not newer than ours; one with other tables and no marker is someone else's
and is refused untouched (use an empty database, or `?schema=NAME` in the URL).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from imageledger.infrastructure import postgres_chain
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.postgres_datastore import PostgresLocation

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
    if postgres_chain.TABLE not in tables:
        # Schema 1 has the chain; only a store made before the release lacks it.
        raise StoreError(
            f"PostgreSQL at {location.where} is a store made by a development "
            f"version of imageledger, without the hash chain ({postgres_chain.TABLE}"
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
