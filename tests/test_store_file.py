"""Opening files: only imageledger stores open, and a refusal changes nothing."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import SCRIPT, descriptor, digest
from imageledger import ImageStore
from imageledger.errors import IntegrityError, InvalidArgument, StoreError
from imageledger.infrastructure.hash_chain import canonical_bytes, link
from imageledger.infrastructure.sqlite import APPLICATION_ID, SCHEMA_VERSION


def test_a_new_file_becomes_a_marked_store(db_path: Path) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"stored_events", "tracking", "images"} <= tables
    connection.close()


def test_an_empty_file_is_initialised(db_path: Path) -> None:
    db_path.touch()
    with ImageStore.open(db_path) as store:
        assert store.register("a", descriptor(1)).version == 1


def special_file(kind: str, tmp_path: Path) -> Path:
    """A FIFO, a device or a socket where a store could be."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "store.db")
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "store.db"))
        listener.close()
    else:
        (tmp_path / "store.db").symlink_to("/dev/null")
    return tmp_path / "store.db"


@pytest.mark.parametrize(
    ("kind", "what"),
    [("fifo", "a FIFO"), ("device", "a character device"), ("socket", "a socket")],
)
def test_a_fifo_device_or_socket_as_the_store_is_refused_at_once(
    tmp_path: Path, kind: str, what: str
) -> None:
    path = special_file(kind, tmp_path)
    # A child with a timeout: opening a FIFO used to wait for ever.
    result = subprocess.run(
        [str(SCRIPT), "--db", str(path), "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: cannot open {str(path)!r}: it is {what}, not a regular file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def test_the_location_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGELEDGER_DB", str(tmp_path / "from-env.db"))
    with ImageStore.open() as store:
        store.register("a", descriptor(1))
    assert (tmp_path / "from-env.db").exists()


def test_a_path_with_uri_characters_opens_that_very_file(tmp_path: Path) -> None:
    path = tmp_path / "odd name?mode=ro#x.db"
    with ImageStore.open(path) as store:
        store.register("a", descriptor(1))
    assert path.exists()


def _refused(path: Path, message: str) -> None:
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError, match=message):
        ImageStore.open(path)
    after = path.read_bytes() if path.is_file() else None
    assert after == before
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # nothing written there either


def test_a_file_that_is_not_sqlite_is_refused_untouched(db_path: Path) -> None:
    db_path.write_bytes(b"just some text, not a database\n" * 10)
    _refused(db_path, "is not an imageledger store \\(not an SQLite database\\)")


def test_another_programs_sqlite_database_is_refused_untouched(db_path: Path) -> None:
    connection = sqlite3.connect(db_path)
    connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.commit()
    connection.close()
    _refused(
        db_path,
        "an SQLite database but not an imageledger store \\(tables customers\\)",
    )


def test_a_database_of_another_application_id_is_refused(db_path: Path) -> None:
    connection = sqlite3.connect(db_path)
    connection.execute("PRAGMA application_id=1234")
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    _refused(db_path, "application id 0x4d2")


def test_a_store_with_a_newer_schema_is_refused_untouched(db_path: Path) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
    connection = sqlite3.connect(db_path)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    _refused(db_path, f"written by a newer imageledger \\(schema {SCHEMA_VERSION + 1}")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="it is a directory"):
        ImageStore.open(tmp_path)


def test_a_missing_directory_is_refused_without_creating_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        ImageStore.open(tmp_path / "no" / "such" / "x.db")
    assert not (tmp_path / "no").exists()


def test_a_url_of_another_database_is_refused_without_showing_its_password() -> None:
    with pytest.raises(StoreError) as caught:
        ImageStore.open("mysql://admin:s3cret@db.example:3306/images")
    assert "s3cret" not in str(caught.value)
    assert "mysql://***@db.example:3306/images" in str(caught.value)
    assert "postgresql:// URLs are supported" in str(caught.value)


HOSTILE_TOPIC = "hostile_module:Evil"


@pytest.fixture
def hostile_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module on sys.path that records being imported; yields its marker file."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "hostile_module.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            Path({str(marker)!r}).write_text("imported")
            class Evil: pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    assert "hostile_module" not in sys.modules
    assert not marker.exists()


def _insert_hostile_event(db_path: Path, *, linked: bool) -> None:
    """Append version 2 of image "a" under a foreign topic, by plain SQL.

    `linked` also writes its hash-chain link, as an intruder who knows the
    chain's definition would, so that only the topic is wrong.
    """
    connection = sqlite3.connect(db_path)
    with connection:
        stream = connection.execute(
            "SELECT originator_id FROM stored_events"
        ).fetchone()[0]
        state = b"{}"
        connection.execute(
            "INSERT INTO stored_events VALUES (?, 2, ?, ?)",
            (stream, HOSTILE_TOPIC, state),
        )
        if linked:
            previous = connection.execute(
                "SELECT chain FROM event_chain WHERE position=1"
            ).fetchone()[0]
            connection.execute(
                "INSERT INTO event_chain VALUES (2, ?)",
                (link(previous, canonical_bytes(stream, 2, HOSTILE_TOPIC, state)),),
            )
    connection.close()


# Every way of reading the log; each must refuse the row without importing.
READERS: dict[str, Callable[[ImageStore], object]] = {
    "history": lambda store: store.history("a"),
    "replay": lambda store: store.replay(),
    "register": lambda store: store.register("a", descriptor(2)),
    "rebuild": lambda store: store.rebuild(),
}


def test_opening_a_store_with_a_foreign_topic_refuses_it_without_importing(
    db_path: Path, hostile_module: Path
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
    _insert_hostile_event(db_path, linked=True)
    with pytest.raises(
        StoreError, match="position 2 has event topic 'hostile_module:Evil'"
    ):
        ImageStore.open(db_path)


@pytest.mark.parametrize("reader", READERS)
def test_reading_a_foreign_topic_raises_store_error_without_importing(
    db_path: Path, hostile_module: Path, reader: str
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        _insert_hostile_event(db_path, linked=True)
        with pytest.raises(
            StoreError, match="position 2 has event topic 'hostile_module:Evil'"
        ):
            READERS[reader](store)


def test_get_and_list_answer_from_the_view_which_never_held_the_foreign_event(
    db_path: Path, hostile_module: Path
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        _insert_hostile_event(db_path, linked=True)
        assert store.get("a").version == 1
        assert [image.version for image in store.list()] == [1]


def test_verify_reports_a_linked_foreign_event_as_a_broken_rule_without_importing(
    db_path: Path, hostile_module: Path
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        _insert_hostile_event(db_path, linked=True)
        with pytest.raises(IntegrityError) as caught:
            store.verify()
    assert (caught.value.position, caught.value.problem) == (2, "rule broken")
    assert "event topic 'hostile_module:Evil'" in caught.value.detail


def test_verify_reports_an_unlinked_foreign_event_as_forged_without_importing(
    db_path: Path, hostile_module: Path
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        _insert_hostile_event(db_path, linked=False)
        with pytest.raises(IntegrityError) as caught:
            store.verify()
    assert (caught.value.position, caught.value.problem) == (2, "forged event")


@pytest.mark.parametrize(
    ("location", "rule"),
    [
        (123, "must be a path, not int"),
        ("", "must be a non-empty text path"),
        (b"x.db", "must be a path, not bytes"),
        ("x\x00.db", "must not contain NUL"),
    ],
)
def test_a_bad_location_is_refused(
    location: object, rule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgument, match=rule):
        ImageStore.open(location)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def _downgrade(path: Path, version: int) -> None:
    """Make the file what imageledger wrote at schema `version`: 1 had no hash
    chain; 2 no audit index and no column for immutable names."""
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DROP TABLE audit_index")
        connection.execute("DELETE FROM tracking WHERE application_name='audit_index'")
        connection.execute("ALTER TABLE images DROP COLUMN immutable")
        if version < 2:
            connection.execute("DROP TABLE event_chain")
        connection.execute(f"PRAGMA user_version={version}")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def _downgrade_to_schema_1(path: Path) -> None:
    _downgrade(path, 1)


def test_a_schema_1_store_is_upgraded_by_linking_its_events(db_path: Path) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        store.register("b", descriptor(2))
        store.delete("a")
        linked_when_written = store.checkpoint()
    _downgrade_to_schema_1(db_path)
    with ImageStore.open(db_path) as store:
        assert store.checkpoint() == linked_when_written
        report = store.verify(linked_when_written)
        store.register("c", descriptor(3))
        assert store.verify(linked_when_written).position == 4
    assert report.events == 3
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("SELECT COUNT(*) FROM event_chain").fetchone()[0] == 4
    connection.close()


def test_a_schema_2_store_is_upgraded_by_indexing_its_log(db_path: Path) -> None:
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1), actor="alice")
        store.register("b", descriptor(2), actor="bob")
        store.delete("a", actor="carol")
        entries = list(store.log())
        checkpoint = store.checkpoint()
    _downgrade(db_path, 2)
    with ImageStore.open(db_path) as store:
        assert list(store.log()) == entries
        assert [i.name for i in store.where(digest(1))] == ["a"]
        store.register("c", descriptor(3), actor="dave")
        assert [e.actor for e in store.log()] == ["alice", "bob", "carol", "dave"]
        assert store.verify(checkpoint).views == ("current_view", "audit_index")
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("SELECT COUNT(*) FROM audit_index").fetchone()[0] == 4
    connection.close()


def test_an_empty_schema_1_store_is_upgraded(db_path: Path) -> None:
    ImageStore.open(db_path).close()
    _downgrade_to_schema_1(db_path)
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        assert store.verify().events == 1
