"""The raw SQLite baseline: the same logical work, hand-written, same durability.

A program that keeps the same event log and current view with nothing but
`sqlite3` and orjson (the JSON library imageledger uses, so that a slower
encoder does not flatter the ratios): an events table with the same key
(stream, version) and the log position as rowid, a view table with the same
columns and key, WAL mode and synchronous=FULL. Reads run against
imageledger's own file, so both sides read the same rows from the same pages.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

NAMESPACE = uuid.UUID("6d1f3c0e-4a57-5b8e-9a40-2f1e8c7d9b63")
TOPIC = "imageledger:Image.Registered"
VIEW_COLUMNS = (
    "namespace, name, target, labels, created_at, updated_at, version, live, immutable"
)
REBUILD_BATCH = 5000

_INSERT_EVENT = "INSERT INTO stored_events VALUES (?,?,?,?)"


def _upsert(table: str) -> str:
    return (
        f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (namespace, name) DO UPDATE SET digest=excluded.digest, "
        "media_type=excluded.media_type, target=excluded.target, "
        "labels=excluded.labels, updated_at=excluded.updated_at, "
        "version=excluded.version, live=excluded.live, immutable=excluded.immutable"
    )


def _view_table(table: str) -> str:
    return (
        f"CREATE TABLE {table} (namespace TEXT NOT NULL, name TEXT NOT NULL, "
        "digest TEXT NOT NULL, media_type TEXT NOT NULL, target TEXT NOT NULL, "
        "labels TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "version INTEGER NOT NULL, live INTEGER NOT NULL, "
        "immutable INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (namespace, name)) WITHOUT ROWID"
    )


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    if create:
        connection.execute(
            "CREATE TABLE stored_events (originator_id TEXT, originator_version "
            "INTEGER, topic TEXT, state BLOB, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        connection.execute(_view_table("images"))
    return connection


def _rows(
    name: str, target: dict[str, Any], version: int, created_at: str | None = None
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The event row and the view row of one register, encoded as JSON."""
    now = datetime.now(UTC).isoformat()
    state = orjson.dumps(
        {
            "actor": "bench",
            "labels": {},
            "name": name,
            "namespace": "default",
            "reason": None,
            "target": target,
            "timestamp": now,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    stream = uuid.uuid5(NAMESPACE, f"default/{name}").hex
    event = (stream, version, TOPIC, state)
    view = (
        "default",
        name,
        target["digest"],
        target["mediaType"],
        orjson.dumps(target).decode(),
        "{}",
        created_at or now,
        now,
        version,
        1,
        0,
    )
    return event, view


def register(
    connection: sqlite3.Connection, name: str, target: dict[str, Any], version: int = 1
) -> None:
    """One durable transaction: insert the event row, upsert the view row."""
    event, view = _rows(name, target, version)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(_INSERT_EVENT, event)
    connection.execute(_upsert("images"), view)
    connection.execute("COMMIT")


def register_batch(
    connection: sqlite3.Connection, items: Iterable[tuple[str, dict[str, Any]]]
) -> None:
    """executemany of the same rows for many new names, in one transaction."""
    rows = [_rows(name, target, 1) for name, target in items]
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(_INSERT_EVENT, [event for event, _ in rows])
    connection.executemany(_upsert("images"), [view for _, view in rows])
    connection.execute("COMMIT")


def get(connection: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    """A primary-key SELECT of one live view row, its JSON (target and
    labels) decoded, as a reader needs it."""
    row: tuple[Any, ...] | None = connection.execute(
        f"SELECT {VIEW_COLUMNS} FROM images WHERE namespace=? AND name=? AND live=1",
        ("default", name),
    ).fetchone()
    if row is None:
        return None
    return (*row[:2], orjson.loads(row[2]), orjson.loads(row[3]), *row[4:])


def history(connection: sqlite3.Connection, name: str) -> list[tuple[Any, ...]]:
    """An indexed SELECT of one stream's events, oldest first."""
    stream = uuid.uuid5(NAMESPACE, f"default/{name}").hex
    return connection.execute(
        "SELECT rowid, * FROM stored_events WHERE originator_id=? "
        "ORDER BY originator_version",
        (stream,),
    ).fetchall()


def where(connection: sqlite3.Connection, digest: str) -> list[tuple[Any, ...]]:
    """The indexed SELECTs of `where`: registrations at `digest`, and the next
    event of each name."""
    found = []
    for namespace, name, position in connection.execute(
        "SELECT namespace, name, position FROM audit_index WHERE digest=? "
        "ORDER BY position",
        (digest,),
    ).fetchall():
        end = connection.execute(
            "SELECT position, timestamp FROM audit_index WHERE namespace=? AND "
            "name=? AND position>? ORDER BY position LIMIT 1",
            (namespace, name, position),
        ).fetchone()
        found.append((namespace, name, position, end))
    return found


def list_all(connection: sqlite3.Connection) -> int:
    """Iterate a SELECT of the whole view in name order; return the row count."""
    count = 0
    for _ in connection.execute(
        f"SELECT {VIEW_COLUMNS} FROM images WHERE namespace=? AND live=1 "
        "ORDER BY name",
        ("default",),
    ):
        count += 1
    return count


def rebuild(connection: sqlite3.Connection) -> int:
    """Scan the log, decode each event's JSON, upsert view rows in batches.

    Writes into a table of its own and drops it at the end, so imageledger's
    view in the same file is left as it was. Returns the events folded.
    """
    connection.execute("DROP TABLE IF EXISTS raw_rebuild")
    connection.execute(_view_table("raw_rebuild"))
    upsert = _upsert("raw_rebuild")
    position = folded = 0
    while True:
        connection.execute("BEGIN IMMEDIATE")
        batch = connection.execute(
            "SELECT rowid, originator_version, state FROM stored_events "
            "WHERE rowid>? ORDER BY rowid LIMIT ?",
            (position, REBUILD_BATCH),
        ).fetchall()
        if not batch:
            connection.execute("DROP TABLE raw_rebuild")
            connection.execute("COMMIT")
            return folded
        rows = []
        for _, version, state in batch:
            event = orjson.loads(state)
            target = event["target"]
            rows.append(
                (
                    event["namespace"],
                    event["name"],
                    target["digest"],
                    target["mediaType"],
                    orjson.dumps(target).decode(),
                    orjson.dumps(event["labels"]).decode(),
                    event["timestamp"],
                    event["timestamp"],
                    version,
                    1,
                    int(event.get("immutable", False)),
                )
            )
        connection.executemany(upsert, rows)
        connection.execute("COMMIT")
        position = batch[-1][0]
        folded += len(batch)
