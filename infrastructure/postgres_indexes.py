"""The current view's secondary index in PostgreSQL: images by (namespace, digest).

It serves filtered lists (`target.digest==...`). A store made before it existed
gets it when opened, if the role may create it and no writer is in the way at
that moment; until then a filtered list reads the namespace's rows instead,
with the same results.
"""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg.sql import SQL, Composed, Identifier

from imageledger.infrastructure.postgres_datastore import LedgerPostgresDatastore

DIGEST_INDEX = "images_digest"


def create_index_statement(schema: str, table: str = "images") -> Composed:
    """The statement that gives `table` (the view, or its rebuilt copy) the index."""
    return SQL("CREATE INDEX IF NOT EXISTS {} ON {} (namespace, digest)").format(
        Identifier(DIGEST_INDEX), Identifier(schema, table)
    )


def ensure_index(datastore: LedgerPostgresDatastore) -> None:
    """Create the index on a store that lacks it; never wait, never fail the open.

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
