"""The raw SQLite baseline: the same logical work, hand-written, same durability."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(
        "CREATE TABLE events (id TEXT, version INTEGER, topic TEXT, state BLOB,"
        " PRIMARY KEY (id, version));"
        "CREATE TABLE images (namespace TEXT, name TEXT, target TEXT, labels TEXT,"
        " created_at TEXT, updated_at TEXT, version INTEGER,"
        " PRIMARY KEY (namespace, name)) WITHOUT ROWID;"
    )
    return connection


def register(
    connection: sqlite3.Connection, name: str, target: dict[str, object]
) -> None:
    """One durable transaction: insert the event row, upsert the view row."""
    now = datetime.now(UTC).isoformat()
    state = json.dumps({"name": name, "target": target, "timestamp": now}).encode()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(
        "INSERT INTO events VALUES (?,?,?,?)",
        (uuid.uuid5(uuid.NAMESPACE_URL, name).hex, 1, "registered", state),
    )
    connection.execute(
        "INSERT INTO images VALUES (?,?,?,?,?,?,?) ON CONFLICT (namespace, name) "
        "DO UPDATE SET target=excluded.target, updated_at=excluded.updated_at, "
        "version=excluded.version",
        ("default", name, json.dumps(target), "{}", now, now, 1),
    )
    connection.execute("COMMIT")
