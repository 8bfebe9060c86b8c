"""What a command loads before it answers: a table of `get`, `list` or
`history`, and `where`, on an SQLite store are printed from the stored rows, without importing eventsourcing
or pydantic; what needs them still loads them, and a store that opening must
change first is still opened in full.

Each test runs the installed command line in a subprocess and asserts its exit
code and output, and, with `python -X importtime`, the modules it imported.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import descriptor, digest
from imageledger import ImageStore
from imageledger.errors import StoreError

HEAVY = ("eventsourcing", "pydantic", "pydantic_core", "imageledger.store")


def imported(db: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -m imageledger --db DB ARGS`; its result and the top-level
    names of every module it imported (as -X importtime lists them)."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "imageledger",
            "--db",
            str(db),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    result.stderr = "".join(
        line + "\n"
        for line in result.stderr.splitlines()
        if not line.startswith("import time:")
    )
    return result, modules


@pytest.fixture
def two_images(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    with ImageStore.open(path) as store:
        store.register("app:1", descriptor(1), {"team": "web"})
        store.register("app:2", descriptor(2), immutable=True)
        store.register("app:1", descriptor(3), actor="ci", reason="release 3")
        store.delete("app:1", actor="ops")
        store.register("app:1", descriptor(1), {"team": "web"})
        store.delete("app:2", force=True, reason="pulled")
        store.register("app:2", descriptor(2))
    return path


def heavy(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)
    )


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["get", "app:1"], 2),
        (["inspect", "app:2"], 2),
        (["list"], 3),
        (["ls", "-q"], 2),
        (["-n", "other", "list"], 1),
        (["history", "app:1"], 5),
        (["where", digest(1)], 3),
        (["where", "-A", digest(2)], 3),
        (["--json", "where", digest(1)], 2),
    ],
)
def test_a_table_read_imports_neither_eventsourcing_nor_pydantic(
    two_images: Path, args: list[str], lines: int
) -> None:
    result, modules = imported(two_images, *args)
    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == lines
    assert "imageledger.reads" in modules
    assert heavy(modules) == []


def test_a_history_table_prints_what_the_store_returns(two_images: Path) -> None:
    with ImageStore.open(two_images) as store:
        entries = {name: store.history(name) for name in ("app:1", "app:2")}
    for name, history in entries.items():
        result, modules = imported(two_images, "history", name)
        assert heavy(modules) == []
        assert [line.split() for line in result.stdout.splitlines()[1:]] == [
            [
                str(entry.position),
                str(entry.version),
                entry.kind,
                *(["(forced)"] if entry.forced else []),
                *(["(immutable)"] if entry.immutable and not entry.forced else []),
                entry.target.digest if entry.target else "-",
                entry.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                entry.actor,
                *(entry.reason or "-").split(),
            ]
            for entry in history
        ]
    kinds = [line.split()[2:4] for line in result.stdout.splitlines()[1:]]
    assert kinds == [
        ["registered", "(immutable)"],
        ["deleted", "(forced)"],
        ["registered", "(immutable)"],
    ]


def test_where_prints_what_the_store_returns(two_images: Path) -> None:
    with ImageStore.open(two_images) as store:
        intervals = store.where(digest(1))
    result, modules = imported(two_images, "--json", "where", digest(1))
    assert heavy(modules) == []
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {
            "namespace": i.namespace,
            "name": i.name,
            "since": i.since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "until": None
            if i.until is None
            else i.until.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "sincePosition": i.since_position,
            "untilPosition": i.until_position,
            "immutable": i.immutable,
        }
        for i in intervals
    ]
    assert [(i.since_position, i.until_position) for i in intervals] == [
        (1, 3),
        (5, None),
    ]


def test_a_table_read_prints_what_the_store_returns(two_images: Path) -> None:
    with ImageStore.open(two_images) as store:
        image = store.get("app:1")
    result, modules = imported(two_images, "get", "app:1")
    assert heavy(modules) == []
    assert result.stdout.splitlines()[1].split() == [
        "app:1",
        digest(1),
        image.target.media_type,
        str(image.target.size),
        image.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        str(image.version),
        "no",
        "team=web",
    ]


@pytest.mark.parametrize(
    "args",
    [["get", "app:3"], ["get", "App:1"], ["-n", "bad namespace", "get", "app:1"]],
)
def test_a_table_read_refuses_and_misses_as_the_store_does(
    two_images: Path, args: list[str]
) -> None:
    result, modules = imported(two_images, *args)
    expected = {
        "app:3": (3, 'Error: image "app:3" not found in namespace "default"\n'),
        "App:1": (2, "Error: invalid name: "),
        "app:1": (2, "Error: invalid namespace: "),
    }[args[-1]]
    assert result.returncode == expected[0]
    assert result.stderr.startswith(expected[1])
    assert len(result.stderr.splitlines()) == 1
    assert heavy(modules) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "get", "app:1"],
        ["list", "name==app:1"],
        ["--json", "ls"],
        ["--json", "history", "app:1"],
    ],
)
def test_json_and_filters_still_build_images(two_images: Path, args: list[str]) -> None:
    result, modules = imported(two_images, *args)
    assert (result.returncode, result.stderr) == (0, "")
    assert "app:1" in result.stdout
    assert "pydantic" in modules


def test_a_new_file_is_still_created_as_a_store(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result, modules = imported(path, "get", "app:1")
    assert (result.returncode, result.stdout) == (3, "")
    assert "eventsourcing" in modules
    with ImageStore.open(path) as store:
        assert list(store.list()) == []


def test_views_behind_the_log_are_caught_up_before_the_read(two_images: Path) -> None:
    with sqlite3.connect(two_images) as connection:
        connection.execute("DELETE FROM images")
        connection.execute(
            "UPDATE tracking SET notification_id=0 "
            "WHERE application_name='current_view'"
        )
    connection.close()
    result, modules = imported(two_images, "ls", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "app:1\napp:2\n",
        "",
    )
    assert "eventsourcing" in modules  # opened in full: the catch-up wrote
    with sqlite3.connect(two_images) as connection:
        rows = connection.execute(
            "SELECT notification_id FROM tracking "
            "WHERE application_name='current_view'"
        ).fetchall()
    connection.close()
    assert rows == [(7,)]


def test_a_damaged_row_is_the_error_the_store_raises(two_images: Path) -> None:
    with sqlite3.connect(two_images) as connection:
        connection.execute("UPDATE images SET target='{' WHERE name='app:1'")
    connection.close()
    with ImageStore.open(two_images) as store, pytest.raises(StoreError) as raised:
        store.get("app:1")
    for args in (["get", "app:1"], ["list"]):
        result, modules = imported(two_images, *args)
        assert heavy(modules) == []
        assert (result.returncode, result.stderr) == (1, f"Error: {raised.value}\n")


def test_a_damaged_event_time_fails_history_as_the_store_does(
    two_images: Path,
) -> None:
    with sqlite3.connect(two_images) as connection:
        connection.execute(
            "UPDATE stored_events SET state=CAST(replace(CAST(state AS TEXT), "
            '\'"timestamp":"\', \'"timestamp":"x\') AS BLOB) WHERE rowid=3'
        )
    connection.close()
    with ImageStore.open(two_images) as store, pytest.raises(StoreError) as raised:
        store.history("app:1")
    result, modules = imported(two_images, "history", "app:1")
    assert heavy(modules) == []
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the event at position 3 is damaged: ")
    assert str(raised.value).startswith("the event at position 3 is damaged: ")


def test_a_file_that_is_not_a_store_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    result, modules = imported(path, "get", "app:1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {str(path)!r} is not an imageledger store (not an SQLite database)\n"
    )
    assert heavy(modules) == []


def test_a_list_whose_reader_stops_early_prints_no_error(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    with ImageStore.open(path) as store:
        store.register_many([(f"app:{n}", descriptor(n)) for n in range(20_000)])
    reader = subprocess.Popen(
        [sys.executable, "-m", "imageledger", "--db", str(path), "ls", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline() == b"app:0\n"
    reader.stdout.close()  # as `head -1` does
    assert reader.stderr.read() == b""
    reader.wait(timeout=60)
