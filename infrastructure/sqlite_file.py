"""What makes an SQLite file an imageledger store, checked before it is opened.

A store is marked in the SQLite header itself: `application_id` says the file
is ours, `user_version` holds the schema version. `inspect_file` reads those
marks on a read-only connection of its own, so a file that is not a store, or
one written by a newer schema, is refused before any byte changes. Nothing
here imports eventsourcing: the command line's reads open a store with this
module and `sqlite_reads` alone.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import stat
from pathlib import Path

from imageledger.infrastructure.errors import StoreError

DEFAULT_LOCK_TIMEOUT = 5.0
"""Seconds a write waits for another process's write lock."""

# What makes a file a store: its marks and its schema.

APPLICATION_ID = 0x494C4447  # "ILDG"
SCHEMA_VERSION = (
    3  # 2: the hash chain (event_chain); 3: the audit index, immutable names
)
_SQLITE_MAGIC = b"SQLite format 3\x00"


class FileState(enum.Enum):
    NEW = "new"  # absent, empty, or an SQLite database with nothing in it
    STORE = "store"  # an imageledger store of this schema
    OLDER = "older"  # a store of an older schema, which opening upgrades


def sqlite_uri(path: Path) -> str:
    """The `file:` URI of `path`, so names with '?' or '#' open the right file."""
    return path.absolute().as_uri()


def read_only_query(path: Path) -> str:
    """The URI query that opens the existing store at `path` as it can be opened.

    "" when the file and its directory can be written. Otherwise the store is
    opened read-only, so that every read works on a read-only file or mount:
    "?mode=ro" while the directory is writable (WAL readers need its `-shm`
    file there), "?mode=ro&immutable=1" when it is not (a read-only mount:
    nothing can change the file, so SQLite needs neither locks nor `-shm`).
    A write then fails as read-only. StoreError when the directory cannot be
    written and a `-wal` file holds commits that only a writable open could
    fold in.
    """
    directory = path.parent
    if os.access(path, os.W_OK) and os.access(directory, os.W_OK):
        return ""
    if os.access(directory, os.W_OK):
        return "?mode=ro"
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"cannot open {str(path)!r} read-only: its write-ahead log "
            f"{str(wal)!r} holds changes, and its directory is read-only (open "
            "it once where it can be written, or copy the files elsewhere)"
        )
    return "?mode=ro&immutable=1"


def inspect_file(path: Path) -> FileState:
    """Say whether `path` is a new or an existing store; raise StoreError otherwise."""
    try:
        is_dir, exists, in_dir = path.is_dir(), path.exists(), path.parent.is_dir()
    except OSError as e:  # a name too long, a loop of links, a folder not ours
        raise StoreError(f"cannot open {str(path)[:200]!r}: {e.strerror}") from e
    if is_dir:
        raise StoreError(f"cannot open {str(path)!r}: it is a directory")
    if not exists:
        if not in_dir:
            raise StoreError(
                f"cannot create {str(path)!r}: directory "
                f"{str(path.parent)!r} does not exist"
            )
        return FileState.NEW
    header = _read_header(path)
    if not header:
        return FileState.NEW
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreError(
            f"{str(path)!r} is not an imageledger store (not an SQLite database)"
        )
    query = read_only_query(path) or "?mode=ro"
    try:
        connection = sqlite3.connect(
            sqlite_uri(path) + query, uri=True, isolation_level=None
        )
        try:
            application_id, version, tables = _read_marks(connection)
            state = judge(str(path), application_id, version, tables)
            if state is not FileState.NEW:
                _check_event_columns(str(path), connection)
        finally:
            connection.close()
    except (sqlite3.Error, UnicodeDecodeError) as e:  # the latter: damaged names
        raise StoreError(f"cannot open {str(path)!r}: {e}") from e
    return state


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _read_header(path: Path) -> bytes:
    """The first 100 bytes of `path`, which must be a regular file.

    A FIFO would block the open (and SQLite's) until a writer came, a device
    would be read or written as if it were a database: both are refused, and
    the open does not wait (O_NONBLOCK), so a FIFO put there after the caller
    looked is refused too.
    """
    try:
        _require_regular(path, os.stat(path).st_mode)  # a socket cannot be opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise StoreError(f"cannot read {str(path)!r}: {e.strerror}") from e
    try:
        _require_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(100)
    except OSError as e:
        raise StoreError(f"cannot read {str(path)!r}: {e.strerror}") from e
    finally:
        os.close(fd)


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        raise StoreError(f"cannot open {str(path)!r}: it is {kind}, not a regular file")


# eventsourcing reads the events table with `SELECT *` and takes columns by
# name, so a damaged schema naming other columns must stop us at the door.
_EVENT_COLUMNS = ["originator_id", "originator_version", "topic", "state"]


def _check_event_columns(where: str, connection: sqlite3.Connection) -> None:
    columns = [row[1] for row in connection.execute("PRAGMA table_info(stored_events)")]
    if columns != _EVENT_COLUMNS:
        raise StoreError(
            f"{where!r} is damaged: its event table has columns {columns}, "
            f"not {_EVENT_COLUMNS}"
        )


def _read_marks(connection: sqlite3.Connection) -> tuple[int, int, list[str]]:
    # One read transaction: a store being created by another process is seen
    # either before its creation commits or after, never half made.
    connection.execute("BEGIN")
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            )
        ]
    finally:
        connection.rollback()
    return application_id, version, tables


def judge(
    where: str, application_id: int, version: int, tables: list[str]
) -> FileState:
    """What a file with these marks and tables is; StoreError if not a store
    this version can open."""
    if application_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where!r} was written by a newer imageledger (schema {version}; "
                f"this version reads up to {SCHEMA_VERSION}): upgrade imageledger"
            )
        return FileState.STORE if version == SCHEMA_VERSION else FileState.OLDER
    if application_id == 0 and not tables:
        return FileState.NEW
    what = (
        f"application id {application_id:#x}"
        if application_id
        else "tables " + ", ".join(tables[:5])
    )
    raise StoreError(
        f"{where!r} is an SQLite database but not an imageledger store ({what})"
    )
