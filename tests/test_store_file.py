"""Opening files: only imageledger stores open, and a refusal changes nothing."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import descriptor
from imageledger import ImageStore
from imageledger.errors import InvalidArgument, StoreError
from imageledger.infrastructure.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION


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
    assert "admin:***@db.example:3306/images" in str(caught.value)
    assert "postgresql:// URLs are supported" in str(caught.value)


def test_a_stored_topic_outside_the_allow_list_is_never_imported(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    with ImageStore.open(db_path) as store:
        store.register("a", descriptor(1))
        stream = store.history("a")[0]
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute(
            "INSERT INTO stored_events VALUES (?, 2, 'hostile_module:Evil', ?)",
            (
                connection.execute(
                    "SELECT originator_id FROM stored_events"
                ).fetchone()[0],
                b"{}",
            ),
        )
    connection.close()
    assert stream.position == 1
    with pytest.raises(
        StoreError, match="position 2 has event topic 'hostile_module:Evil'"
    ):
        ImageStore.open(db_path)
    assert "hostile_module" not in sys.modules
    assert not marker.exists()


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
