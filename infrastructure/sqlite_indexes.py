"""The current view's secondary index in SQLite: images by (namespace, digest).

It serves filtered lists (`target.digest==...`). A store made before it existed
gets it when opened, if the file can be written at that moment; until then a
filtered list reads the namespace's rows instead, with the same results.
"""

from __future__ import annotations

import sqlite3

from eventsourcing.sqlite import SQLiteCursor

from imageledger.infrastructure.sqlite_datastore import LedgerSQLiteDatastore

DIGEST_INDEX = "images_digest"
_HAS_INDEX = f"SELECT 1 FROM sqlite_master WHERE type='index' AND name='{DIGEST_INDEX}'"


def list_keys_statement(c: SQLiteCursor, columns: str, table: str = "images") -> str:
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


def create_index_statement(table: str = "images") -> str:
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
