"""The audit queries search indexes; none scans the log (SQLite's query plans)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import descriptor, digest, sqlite_only
from imageledger import ImageStore
from imageledger.domain.image import image_id
from imageledger.infrastructure.sqlite import (
    CARRYING,
    CARRYING_IN_NAMESPACE,
    NEXT_ROW,
    SELECT_STREAM,
)


def plan(path: Path, statement: str, params: tuple[object, ...]) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("EXPLAIN QUERY PLAN " + statement, params)
        return [row[3] for row in rows]
    finally:
        connection.close()


@sqlite_only
def test_history_and_where_search_indexes_and_never_scan(
    store: ImageStore, db_path: Path
) -> None:
    store.register_many(
        [(f"app:{n}", descriptor(n % 50)) for n in range(2000)], actor="ci"
    )
    store.register_many(
        [(f"app:{n}", descriptor(n % 7)) for n in range(0, 2000, 3)], actor="ci"
    )
    stream = image_id("default", "app:3").hex
    plans = {
        "history": plan(db_path, SELECT_STREAM, (stream, 0)),
        "where": plan(db_path, CARRYING, (digest(3),)),
        "where, one namespace": plan(
            db_path, CARRYING_IN_NAMESPACE, (digest(3), "default")
        ),
        "where, the end of an interval": plan(
            db_path, NEXT_ROW, ("default", "app:3", 5)
        ),
    }
    assert plans == {
        "history": [
            "SEARCH stored_events USING INDEX "
            "sqlite_autoindex_stored_events_1 (originator_id=? AND originator_version>?)"
        ],
        "where": ["SEARCH audit_index USING INDEX audit_index_by_digest (digest=?)"],
        "where, one namespace": [
            "SEARCH audit_index USING INDEX audit_index_by_digest (digest=?)"
        ],
        "where, the end of an interval": [
            "SEARCH audit_index USING INDEX audit_index_by_name "
            "(namespace=? AND name=? AND position>?)"
        ],
    }
    # And what they find is right: app:9 moved from digest 9 to digest 2 in
    # the second batch, whose first three items changed nothing.
    assert [e.position for e in store.history("app:9")] == [10, 2001]
    moved = [i for i in store.where(digest(9)) if i.name == "app:9"]
    assert [(i.since_position, i.until_position) for i in moved] == [(10, 2001)]
