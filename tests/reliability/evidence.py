"""What the reliability tests check a store file against, read straight from disk.

Rows are read with a plain sqlite3 connection of their own, as another tool
would, so a test never trusts the store it is checking to report on itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from imageledger import Image, ImageStore

Rows = list[tuple[Any, ...]]


def _select(db: Path, statement: str) -> Rows:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(statement).fetchall()
    finally:
        connection.close()


def log_rows(db: Path) -> Rows:
    """Every event row, in log order."""
    return _select(
        db,
        "SELECT rowid, originator_id, originator_version, topic, state "
        "FROM stored_events ORDER BY rowid",
    )


def file_rows(db: Path) -> tuple[Rows, Rows, Rows]:
    """The log, the current view and the tracking positions: the whole store."""
    return (
        log_rows(db),
        _select(db, "SELECT * FROM images ORDER BY namespace, name"),
        _select(db, "SELECT * FROM tracking ORDER BY application_name"),
    )


def positions(db: Path) -> tuple[int, int]:
    """(the log's last position, the position the current view says it reflects)."""
    head = _select(db, "SELECT MAX(rowid) FROM stored_events")[0][0] or 0
    view = _select(
        db, "SELECT notification_id FROM tracking WHERE application_name='current_view'"
    )[0][0]
    return head, view


def view(
    store: ImageStore, namespaces: tuple[str, ...] = ("default",)
) -> dict[tuple[str, str], Image]:
    """The live images of `namespaces`, keyed as `replay()` keys them."""
    return {
        (image.namespace, image.name): image
        for namespace in namespaces
        for image in store.list(namespace=namespace)
    }
