"""Fixtures shared by the test modules: real SQLite files in a temporary folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imageledger import ImageStore

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(n: int) -> str:
    """A valid sha256 digest, different for every n."""
    return f"sha256:{n:064x}"


def descriptor(n: int = 1, **extra: Any) -> dict[str, Any]:
    """OCI JSON of a manifest descriptor, different for every n."""
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n, **extra}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "imageledger.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[ImageStore]:
    with ImageStore.open(db_path) as opened:
        yield opened


@pytest.fixture
def log_rows(db_path: Path) -> Callable[[], list[tuple[Any, ...]]]:
    """Read the raw event log rows straight from the file, as another tool would."""

    def read() -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(db_path)
        try:
            return connection.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                "FROM stored_events ORDER BY rowid"
            ).fetchall()
        finally:
            connection.close()

    return read
